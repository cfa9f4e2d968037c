"""Runs a Python program unchanged on the chosen event loop:

    python examples/run_with.py ferroloop program.py
    python examples/run_with.py asyncio program.py

With ``ferroloop`` the policy is installed first, so the program's own
``asyncio.run()`` uses ferroloop's loop. If FERROLOOP_TIMING_FILE is set,
the program's run time (without interpreter start-up) is written there.
"""
import asyncio  # noqa: F401  (imported before timing, for both loops alike)
import os
import runpy
import sys
import time


def main() -> None:
    loop, program = sys.argv[1], sys.argv[2]
    if loop == 'ferroloop':
        import ferroloop
        ferroloop.install()
    elif loop != 'asyncio':
        raise SystemExit(f'unknown loop {loop!r}')
    sys.argv = sys.argv[2:]
    started = time.perf_counter()
    try:
        runpy.run_path(program, run_name='__main__')
    finally:
        timing_file = os.environ.get('FERROLOOP_TIMING_FILE')
        if timing_file:
            with open(timing_file, 'w') as f:
                f.write(repr(time.perf_counter() - started))


if __name__ == '__main__':
    main()
