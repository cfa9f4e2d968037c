"""The parent's side of the fuzz workers: one worker process per loop, each
Call sent to both (at once, where they cannot race), each answer awaited
with a hard timeout. A worker
that dies is reported as a crash (with its signal and the tail of its
stderr), one that stops answering as a hang; either is replaced by a fresh
worker, so one bad example never ends the run."""

import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORKER = HERE / 'worker.py'
LOOPS = ('asyncio', 'ferroloop')
# Far beyond any call's own time (PENDING plus fixtures): only a stuck loop
# takes this long.
HANG_TIMEOUT = 20.0


class Worker:
    def __init__(self, loop_name):
        self.loop_name = loop_name
        self.proc = None

    def start(self):
        request_r, self.requests = os.pipe()
        self.responses, response_w = os.pipe()
        self.stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [sys.executable, str(WORKER), self.loop_name, str(request_r), str(response_w)],
            pass_fds=(request_r, response_w), stdin=subprocess.DEVNULL, stdout=self.stderr,
            stderr=self.stderr, start_new_session=True,
            env=dict(os.environ, PYTHONDONTWRITEBYTECODE='1', PYTHONFAULTHANDLER='1'))
        os.close(request_r)
        os.close(response_w)

    def stop(self):
        if self.proc is None:
            return
        for fd in (self.requests, self.responses):
            os.close(fd)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        self._kill()

    def _kill(self):
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        self.stderr.close()
        self.proc = None

    def send(self, call):
        if self.proc is None:
            self.start()
        payload = pickle.dumps(call)
        try:
            os.write(self.requests, struct.pack('!I', len(payload)) + payload)
        except BrokenPipeError:
            pass                # it died; receive() reports how

    def receive(self, deadline):
        data = b''
        needed = None
        while needed is None or len(data) < needed:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.responses], [], [], left)[0]:
                self._replace()
                return {'hang': 'no answer in time'}
            chunk = os.read(self.responses, 1 << 20)
            if not chunk:
                return self._crashed()
            data += chunk
            if needed is None and len(data) >= 4:
                needed = 4 + struct.unpack('!I', data[:4])[0]
        return pickle.loads(data[4:])

    def _crashed(self):
        returncode = self.proc.wait()
        self.stderr.seek(0)
        tail = self.stderr.read().decode(errors='replace')[-3000:]
        status = (f'killed by {signal.Signals(-returncode).name}' if returncode < 0
                  else f'exited with {returncode}')
        self._replace()
        return {'crash': status, 'stderr': tail}

    def _replace(self):
        for fd in (self.requests, self.responses):
            os.close(fd)
        self._kill()


class Workers:
    """A worker per loop; ``run(call)`` answers {loop: answer}."""

    def __init__(self, hang_timeout=HANG_TIMEOUT):
        self.workers = {name: Worker(name) for name in LOOPS}
        self.hang_timeout = hang_timeout

    def run(self, call, at_once=True):
        """Sends the call to both workers, at once unless the two would race
        for the same system-wide name (a TCP or UDP port the call binds)."""
        if not at_once:
            return {name: self._run_on(name, call) for name in LOOPS}
        for name in LOOPS:
            self.workers[name].send(call)
        deadline = time.monotonic() + self.hang_timeout
        return {name: self.workers[name].receive(deadline) for name in LOOPS}

    def _run_on(self, name, call):
        self.workers[name].send(call)
        return self.workers[name].receive(time.monotonic() + self.hang_timeout)

    def close(self):
        for worker in self.workers.values():
            worker.stop()
