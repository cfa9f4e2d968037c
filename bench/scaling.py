"""Throughput of a small ASGI app served by uvicorn with 1 and 2 worker
processes behind one port, on ferroloop, uvloop and stock asyncio, loaded by
wrk:

    python bench/scaling.py [--workers 1 2] [--loops ferroloop uvloop asyncio]
                            [--duration 10] [--connections 64] [--repeat 3]

Needs wrk (Debian's package) and uvicorn with httptools in this
interpreter's environment. Each run starts uvicorn afresh, warms it for two
seconds, then runs wrk with one thread for --duration seconds; the table shows
the median requests per second of --repeat runs. wrk shares the machine with
the workers, so on a small machine it takes CPU the workers could use: say how
many cores the numbers were taken on.
"""

import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

APP = '''
async def app(scope, receive, send):
    if scope['type'] != 'http':
        return
    await send({'type': 'http.response.start', 'status': 200,
                'headers': [(b'content-type', b'text/plain')]})
    await send({'type': 'http.response.body', 'body': b'Hello, world!'})
'''
LOOPS = {'ferroloop': 'ferroloop:new_event_loop', 'uvloop': 'uvloop', 'asyncio': 'asyncio'}
STARTUP_TIMEOUT = 30


def free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def wait_for_port(port, proc):
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f'uvicorn exited: {proc.stderr.read()}')
        try:
            socket.create_connection(('127.0.0.1', port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit('uvicorn did not start')


def wrk(url, seconds, connections):
    out = subprocess.run(['wrk', '-t1', f'-c{connections}', f'-d{seconds}s', url],
                         capture_output=True, text=True, check=True,
                         timeout=seconds + 30).stdout
    errors = re.search(r'Non-2xx or 3xx responses: (\d+)|Socket errors: .*', out)
    if errors:
        raise SystemExit(f'wrk saw errors:\n{out}')
    return float(re.search(r'Requests/sec:\s+([\d.]+)', out)[1])


def measure(app_dir, loop, workers, args):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, '-m', 'uvicorn', 'bench_app:app', '--host', '127.0.0.1',
         '--port', str(port), '--workers', str(workers), '--loop', LOOPS[loop],
         '--http', 'httptools', '--no-access-log', '--log-level', 'warning'],
        cwd=app_dir, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_port(port, proc)
        url = f'http://127.0.0.1:{port}/'
        wrk(url, 2, args.connections)
        return wrk(url, args.duration, args.connections)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=STARTUP_TIMEOUT)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--workers', type=int, nargs='+', default=[1, 2])
    parser.add_argument('--loops', nargs='+', choices=LOOPS, default=list(LOOPS))
    parser.add_argument('--duration', type=int, default=10)
    parser.add_argument('--connections', type=int, default=64)
    parser.add_argument('--repeat', type=int, default=3)
    args = parser.parse_args()
    if not shutil.which('wrk'):
        raise SystemExit('wrk is not installed (apt-get install wrk)')
    with open('/proc/loadavg') as f:
        load = f.read().split()[0]
    print(f'{os.cpu_count()} cores, load average {load} before the run; wrk -t1 '
          f'-c{args.connections} -d{args.duration}s, median of {args.repeat}')
    with tempfile.TemporaryDirectory() as app_dir:
        Path(app_dir, 'bench_app.py').write_text(APP)
        print(f'| workers | {" | ".join(args.loops)} |')
        print(f'|---|{"---|" * len(args.loops)}')
        for workers in args.workers:
            rates = [statistics.median(measure(app_dir, loop, workers, args)
                                       for _ in range(args.repeat))
                     for loop in args.loops]
            print(f'| {workers} | {" | ".join(f"{rate:,.0f} req/s" for rate in rates)} |',
                  flush=True)


if __name__ == '__main__':
    main()
