"""The fuzz suite's settings and workers.

``make test`` runs the 'ci' profile: derandomized (the same examples every
run) and bounded. ``make fuzz`` sets FERROLOOP_FUZZ_PROFILE=fuzz: fresh
random examples, many more of them."""

import os

import pytest
from hypothesis import HealthCheck, settings

from .workers import Workers

COMMON = dict(deadline=None, database=None, print_blob=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                     HealthCheck.data_too_large,
                                     HealthCheck.function_scoped_fixture])
settings.register_profile('ci', derandomize=True, max_examples=40, **COMMON)
settings.register_profile('fuzz', max_examples=500, **COMMON)
settings.load_profile(os.environ.get('FERROLOOP_FUZZ_PROFILE', 'ci'))

# What ran, for the summary: calls per loop, and the differences excused
# as known (by the known difference's text).
CORPUS = {'calls': 0, 'excused': {}}


@pytest.fixture(scope='session')
def workers():
    pool = Workers()
    yield pool
    pool.close()


def pytest_terminal_summary(terminalreporter):
    if not CORPUS['calls']:
        return
    write = terminalreporter.write_line
    terminalreporter.section('fuzz corpus')
    write(f"{CORPUS['calls']} calls made on each loop "
          f"({settings.default.max_examples} examples a method at most, profile "
          f"{os.environ.get('FERROLOOP_FUZZ_PROFILE', 'ci')})")
    for what, count in sorted(CORPUS['excused'].items()):
        write(f'  {count:5d} excused as known: {what}')
