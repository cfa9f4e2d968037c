"""The fault harness itself: a crash, a hang, a Rust-style panic message and
descriptor growth are each reported as such (so a case that passes means
ferroloop did none of them)."""

from .harness import run_on_both

SEGFAULT = 'import ctypes\nctypes.string_at(0)\n'
HANG = 'import time\ntime.sleep(3600)\n'
PANIC = "import sys\nsys.stderr.write(\"thread 'main' panicked at src/lib.rs:1:1\\n\")\n"
LEAK = '''
import os
from case_helpers import report, soak
held = []
soak(4, lambda i: held.append(os.open(os.devnull, os.O_RDONLY)))
report('leaked')
'''


def test_the_harness_reports_crashes_hangs_panics_and_leaks():
    assert {o.status for o in run_on_both(SEGFAULT, timeout=30).values()} == {'crash SIGSEGV'}
    assert {o.status for o in run_on_both(HANG, timeout=2).values()} == {'hang'}
    assert {o.status for o in run_on_both(PANIC, timeout=30).values()} == {'panic'}
    leak = run_on_both(LEAK, timeout=30)['ferroloop']
    assert leak.status == 'ok' and leak.resources['fd_growth'] == 2
