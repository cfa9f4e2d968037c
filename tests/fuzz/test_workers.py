"""The fuzz workers themselves: a call that kills its worker is reported as
a crash and one that never returns as a hang, and the next call gets a
fresh worker (so a passing property means ferroloop did neither)."""

from .calls import Call, Make
from .workers import Workers


def test_crashes_and_hangs_are_reported_and_survived():
    workers = Workers(hang_timeout=3)
    try:
        crashed = workers.run(Call('loop', 'call_soon', (Make('callable', 'aborts'),)))
        assert {answer['crash'] for answer in crashed.values()} == {'killed by SIGABRT'}
        hung = workers.run(Call('loop', 'call_soon', (Make('callable', 'blocks'),)))
        assert all('hang' in answer for answer in hung.values())
        fine = workers.run(Call('loop', 'call_soon', (Make('callable', 'noop'),)))
        assert all(answer['outcome'] == ['returned', 'Handle'] for answer in fine.values())
    finally:
        workers.close()
