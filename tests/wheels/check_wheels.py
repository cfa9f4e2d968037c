"""make test-wheels: the wheels and the sdist in dist/ work on a machine
without Rust.

    python tests/wheels/check_wheels.py PYTHON...      each interpreter's wheel
    python tests/wheels/check_wheels.py --sdist PYTHON  the sdist, built by pip

For each interpreter: ``auditwheel show`` must find the wheel consistent with
a manylinux tag the file name claims; the wheel goes into a new virtual
environment (nothing else installed) that runs with no Rust toolchain on
PATH and outside the source tree, where the lesson programs must give stock
asyncio's output on ferroloop (examples/demo.py) and smoke.py must pass. The
sdist is built into a wheel by pip (with Rust, as users without a wheel
would) and that wheel is checked the same way.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DIST = ROOT / 'dist'
HERE = Path(__file__).resolve().parent
# PATH inside the clean environments: the system's directories only (Rust's
# toolchain lives under ~/.cargo, pyenv's interpreters under ~/.pyenv).
SYSTEM_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
TIMEOUT = 900


def run(command, **kwargs):
    print('+', ' '.join(str(part) for part in command), flush=True)
    return subprocess.run(command, check=True, timeout=TIMEOUT, text=True, **kwargs)


def python_tag(interpreter):
    out = run([interpreter, '-c', 'import sys; print(*sys.version_info[:2], sep="")'],
              capture_output=True).stdout.strip()
    return f'cp{out}'


def wheel_for(tag, directory):
    wheels = sorted(directory.glob(f'ferroloop-*-{tag}-{tag}-*.whl'))
    if len(wheels) != 1:
        raise SystemExit(f'expected one {tag} wheel in {directory}, found {wheels}')
    return wheels[0]


def check_manylinux_tag(wheel, auditwheel):
    report = run([auditwheel, 'show', str(wheel)], capture_output=True).stdout
    print(report)
    found = re.search(r'consistent with the following platform tag:\s*"([^"]+)"', report)
    if not found:
        raise SystemExit(f'auditwheel found no platform tag for {wheel.name}')
    claimed = wheel.name.removesuffix('.whl').split('-')[-1].split('.')
    if found[1] not in claimed:
        raise SystemExit(f'{wheel.name} claims {claimed}; auditwheel says {found[1]}')


def check_in_clean_venv(interpreter, wheel):
    with tempfile.TemporaryDirectory(prefix='ferroloop-wheel-') as tmp:
        tmp = Path(tmp)
        venv = tmp / 'venv'
        env = {'PATH': f'{venv / "bin"}:{SYSTEM_PATH}', 'HOME': str(tmp),
               'LANG': 'C.UTF-8', 'PYTHONDONTWRITEBYTECODE': '1'}
        for tool in ('cargo', 'rustc', 'maturin'):
            if shutil.which(tool, path=env['PATH']):
                raise SystemExit(f'{tool} is on the clean PATH')
        run([interpreter, '-m', 'venv', str(venv)], env=env)
        python = venv / 'bin' / 'python'
        run([python, '-m', 'pip', 'install', '-q', '--no-index', '--no-deps', str(wheel)],
            env=env)
        # A copy, so that nothing of the source tree is importable.
        shutil.copytree(ROOT / 'examples', tmp / 'examples')
        shutil.copy(HERE / 'smoke.py', tmp / 'smoke.py')
        demo = run([python, 'examples/demo.py'], env=env, cwd=tmp, capture_output=True)
        print(demo.stdout)
        if not demo.stdout.rstrip().endswith('All outputs match.'):
            raise SystemExit(f'lesson outputs differ with {wheel.name}')
        run([python, 'smoke.py'], env=env, cwd=tmp)


def build_sdist_wheel(interpreter, out):
    sdists = sorted(DIST.glob('ferroloop-*.tar.gz'))
    if len(sdists) != 1:
        raise SystemExit(f'expected one sdist in {DIST}, found {sdists}')
    with tempfile.TemporaryDirectory(prefix='ferroloop-sdist-') as tmp:
        venv = Path(tmp) / 'venv'
        run([interpreter, '-m', 'venv', str(venv)])
        run([venv / 'bin' / 'python', '-m', 'pip', 'wheel', '-q', '--no-deps',
             '-w', str(out), str(sdists[0])])
    return wheel_for(python_tag(interpreter), out)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--sdist', action='store_true',
                        help='build the sdist with pip and check that wheel')
    parser.add_argument('--auditwheel', default='auditwheel')
    parser.add_argument('interpreters', nargs='+')
    args = parser.parse_args()
    for interpreter in args.interpreters:
        if args.sdist:
            with tempfile.TemporaryDirectory(prefix='ferroloop-sdist-wheel-') as out:
                check_in_clean_venv(interpreter, build_sdist_wheel(interpreter, Path(out)))
        else:
            wheel = wheel_for(python_tag(interpreter), DIST)
            check_manylinux_tag(wheel, args.auditwheel)
            check_in_clean_venv(interpreter, wheel)
        print(f'ok: {interpreter}', flush=True)


if __name__ == '__main__':
    main()
