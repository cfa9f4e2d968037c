"""How bench/ judges ferroloop against issue 11's targets: the best peer
leaves out ferroloop and the C server, a combined target needs every part,
a missing number gives 'n/a' rather than a verdict, and a timer that wakes
early misses. Pure arithmetic on made-up costs: nothing here is timed, and
no peer loop needs to be installed."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / 'bench'))

import lateness  # noqa: E402  (bench/ is no package)
from measure import BASELINE, Target, best_peer, over_baseline  # noqa: E402

CALLBACK_TARGET = Target('best-peer', 0.9) & Target('uvloop', 0.5)


def test_best_peer_is_the_cheapest_other_loop():
    costs = {'ferroloop': 0.1, BASELINE: 0.05, 'uvloop': 0.4, 'rloop': 0.24,
             'rsloop': None}
    assert best_peer(costs) == ('rloop', 0.24)
    assert best_peer({'ferroloop': 0.1, BASELINE: 0.05}) is None


@pytest.mark.parametrize('costs, verdict', [
    ({'ferroloop': 0.17, 'uvloop': 0.39, 'rsloop': 0.19}, 'PASS'),
    # 0.9 of the best peer but more than half of uvloop's
    ({'ferroloop': 0.2, 'uvloop': 0.39, 'rsloop': 0.23}, 'MISS'),
    # half of uvloop's but above 0.9 of the best peer
    ({'ferroloop': 0.18, 'uvloop': 0.39, 'rsloop': 0.19}, 'MISS'),
    ({'ferroloop': 0.17, 'rsloop': 0.19}, 'n/a'),
])
def test_a_combined_target_needs_every_part(costs, verdict):
    assert CALLBACK_TARGET.verdict(costs) == verdict


def test_echo_target_is_no_more_than_every_peer():
    first = Target('best-peer', 1.0)
    assert first.verdict({'ferroloop': 46.9, 'uvloop': 46.9, 'rloop': 114.2}) == 'PASS'
    assert first.verdict({'ferroloop': 46.9, 'uvloop': 43.6, 'rloop': 114.2,
                          BASELINE: 31.7}) == 'MISS'


def test_over_baseline_compares_what_each_spends_above_the_c_server():
    assert over_baseline({'ferroloop': 35.0, 'uvloop': 40.0, BASELINE: 30.0}) == 0.5
    assert over_baseline({'ferroloop': 35.0, 'uvloop': 30.0, BASELINE: 30.0}) is None


@pytest.mark.parametrize('statistic, value, verdict', [
    ('median', 0.1, 'PASS'), ('median', 0.11, 'MISS'),
    ('p99', 0.5, 'PASS'), ('p99', 0.6, 'MISS'),
    ('earliest', 0.0, 'PASS'), ('earliest', -0.001, 'MISS'),
    ('earliest', None, 'n/a'),
])
def test_lateness_limits(statistic, value, verdict):
    assert lateness.LIMITS[statistic].verdict(value) == verdict
