"""make demo: each lesson program on stock asyncio and on ferroloop, side by
side, with its output and how long it took; then the timelines of the gather
lesson and of its time.sleep variant, and the blocking detector's report
for the latter."""
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
LESSONS = sorted((HERE / 'lessons').glob('*.py'))
TIMELINES = HERE / 'timelines'
TRACED: tuple[tuple[str, list[str]], ...] = (
    ('03_gather.py', []), ('04_blocking.py', ['--detect-blocking', '0.05']))
WIDTH = 44


def run(loop: str, program: Path) -> tuple[list[str], float, int]:
    """Output lines, run time (seconds, start-up excluded) and exit code."""
    with tempfile.NamedTemporaryFile() as timing:
        env = dict(os.environ, FERROLOOP_TIMING_FILE=timing.name)
        proc = subprocess.run([sys.executable, str(HERE / 'run_with.py'), loop, str(program)],
                              capture_output=True, text=True, timeout=60, env=env)
        took = float(Path(timing.name).read_text() or 'nan')
    text = proc.stdout + proc.stderr.replace(str(program), program.name)
    return text.rstrip().splitlines(), took, proc.returncode


def main() -> int:
    print(f'Python {sys.version.split()[0]}; each lesson runs in a fresh process.\n')
    all_same = True
    for program in LESSONS:
        doc = program.read_text().split('"""')[1].replace('\n', ' ')
        print(f'== {program.name}: {doc}')
        stock, stock_took, stock_rc = run('asyncio', program)
        ours, ours_took, ours_rc = run('ferroloop', program)
        print(f'{"stock asyncio":{WIDTH}} | ferroloop')
        print(f'{"-" * WIDTH} | {"-" * WIDTH}')
        for i in range(max(len(stock), len(ours))):
            left = stock[i] if i < len(stock) else ''
            right = ours[i] if i < len(ours) else ''
            print(f'{left[:WIDTH]:{WIDTH}} | {right[:WIDTH]}')
        same = stock == ours and stock_rc == ours_rc
        all_same &= same
        print(f'{f"({stock_took:.2f} s, exit {stock_rc})":{WIDTH}} | ({ours_took:.2f} s, exit {ours_rc})')
        print('same output' if same else 'OUTPUT DIFFERS', '\n')
    print('All outputs match.' if all_same else 'Some outputs differ.')
    traced = show_timelines()
    return 0 if all_same and traced else 1


def show_timelines() -> bool:
    """Traces the gather lesson and its blocking variant with
    ``python -m ferroloop trace``; prints where the pages are and what the
    blocking detector reported."""
    print('\n== What the loop did: timelines (open them in a browser)')
    TIMELINES.mkdir(exist_ok=True)
    ok = True
    for name, options in TRACED:
        page = TIMELINES / name.replace('.py', '.html')
        proc = subprocess.run([sys.executable, '-m', 'ferroloop', 'trace', *options,
                               '-o', str(page), str(HERE / 'lessons' / name)],
                              capture_output=True, text=True, timeout=60)
        ok &= proc.returncode == 0 and page.exists()
        print(f'{name}: {page}')
        reports = [line for line in proc.stderr.splitlines()
                   if not line.startswith('ferroloop: timeline written')]
        if reports:
            print('  the blocking detector reported:')
            print('\n'.join(f'    {line}' for line in reports))
    return ok


if __name__ == '__main__':
    sys.exit(main())
