"""The net suite: echo (and small HTTP) servers on each loop, loaded by a
separate client process, with a bare C epoll echo server answering the same
load as the physical limit.

The server runs alone in its process (bench/net_server.py, or the C baseline)
and reports its own CPU time, so the client's work is not counted; the
client is a small C program (bench/baseline/loadgen.c) so that it costs
little and the server sets the pace. Server and client are pinned to two
different CPUs (see Placement). CPU time per round trip is the server's CPU
time, from listening until told to stop, divided by the round trips the
client completed; the wall-clock rate is the client's.
"""

import os
import select
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from measure import BASELINE, Failure, Sample, Target, read_report

BENCH = Path(__file__).resolve().parent
NATIVE_SOURCES = BENCH / 'baseline'
NET_SERVER = BENCH / 'net_server.py'
ECHO_SIZES = (1024, 10 * 1024, 100 * 1024)
# A UDP datagram holds at most 65,507 bytes: no 100 KiB datagram echo.
DATAGRAM_SIZES = (1024, 10 * 1024)
CONNECTIONS = (1, 10)

STARTUP_TIMEOUT = 30    # seconds for a server to start listening
STOP_TIMEOUT = 15       # seconds for a server to stop and report
CLIENT_GRACE = 15       # seconds a client may take beyond its run length
COMPILE_TIMEOUT = 120


@dataclass(frozen=True)
class NetCase:
    name: str
    server: str          # a KIND of net_server.py
    transport: str       # 'tcp', 'unix' or 'udp'
    connections: int     # client connections, each with one request in flight
    size: int            # bytes per echoed message (the HTTP client ignores it)
    target: Target
    baseline: bool       # whether the C echo server answers this load too

    @property
    def client_mode(self):
        return 'http' if self.server == 'http' else 'echo'


def net_cases():
    """Echo over TCP and Unix Protocols, sock_* methods and UDP, at each
    size and connection count, then streams and HTTP. On every echo row
    ferroloop is to spend no more CPU than any peer (issue 11)."""
    first = Target('best-peer', 1.0)
    cases = [
        NetCase(f'{prefix}_{size // 1024}k_x{connections}', server,
                transport, connections, size, first, baseline=server != 'sock')
        for prefix, server, transport, sizes in (
            ('proto_tcp', 'protocol', 'tcp', ECHO_SIZES),
            ('proto_unix', 'protocol', 'unix', ECHO_SIZES),
            ('sock_tcp', 'sock', 'tcp', ECHO_SIZES),
            ('udp', 'udp', 'udp', DATAGRAM_SIZES))
        for size in sizes
        for connections in CONNECTIONS
    ]
    return cases + [
        NetCase('streams_tcp_1k_x10', 'streams', 'tcp', 10, 1024,
                Target('uvloop', 0.75), baseline=False),
        NetCase('http_tcp_x10', 'http', 'tcp', 10, 0,
                Target('uvloop', 0.9), baseline=False),
    ]


@dataclass(frozen=True)
class Placement:
    """The CPUs the server and the client are pinned to: each its own, so
    that they do not compete, and the same in every run. Left to itself the
    scheduler sometimes puts both on one CPU and sometimes not, and a
    one-connection ping-pong then costs several times less or more."""
    server_cpu: int
    client_cpu: int

    @classmethod
    def choose(cls):
        """The first two CPUs we may use; None with only one."""
        cpus = sorted(os.sched_getaffinity(0))
        return cls(cpus[0], cpus[1]) if len(cpus) > 1 else None

    def describe(self):
        return f'server on CPU {self.server_cpu}, client on CPU {self.client_cpu}'


def pin_to(cpu):
    """A preexec_fn pinning the new process to ``cpu`` (None: no pinning).
    preexec_fn is safe here: the harness runs no threads."""
    if cpu is None:
        return None
    return lambda: os.sched_setaffinity(0, {cpu})


@dataclass(frozen=True)
class NativeTools:
    echo_server: Path
    loadgen: Path


def build_native(out_dir):
    """Compiles the C baseline server and load generator into out_dir, unless
    they are newer than their sources. Raises RuntimeError if gcc fails."""
    out_dir.mkdir(parents=True, exist_ok=True)
    header = NATIVE_SOURCES / 'address.h'
    built = {}
    for name in ('echo_epoll', 'loadgen'):
        source, binary = NATIVE_SOURCES / f'{name}.c', out_dir / name
        newest_source = max(source.stat().st_mtime, header.stat().st_mtime)
        if not binary.exists() or binary.stat().st_mtime < newest_source:
            compile_ = subprocess.run(
                ['gcc', '-O2', '-Wall', '-o', str(binary), str(source)],
                capture_output=True, text=True, timeout=COMPILE_TIMEOUT)
            if compile_.returncode:
                raise RuntimeError(f'gcc {source.name} failed:\n{compile_.stderr}')
        built[name] = binary
    return NativeTools(echo_server=built['echo_epoll'], loadgen=built['loadgen'])


class ServerProcess:
    """A server under test, in its own process; see net_server.py for how it
    talks to us. Its stderr goes to a file, so it can never block on a pipe."""

    def __init__(self, command, log_path, cpu):
        self._log_path = log_path
        with open(log_path, 'wb') as log:
            self._proc = subprocess.Popen(command, stdin=subprocess.PIPE,
                                          stdout=subprocess.PIPE, stderr=log,
                                          bufsize=0, preexec_fn=pin_to(cpu))
        self._output = b''

    def wait_ready(self):
        """The address the server listens on, or a Failure."""
        deadline = time.monotonic() + STARTUP_TIMEOUT
        stdout = self._proc.stdout
        while b'\n' not in self._output:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([stdout], [], [], left)[0]:
                return Failure(f'server not ready within {STARTUP_TIMEOUT} s')
            chunk = os.read(stdout.fileno(), 4096)
            if not chunk:
                break
            self._output += chunk
        first_line, _, rest = self._output.partition(b'\n')
        if first_line.startswith(b'ready '):
            self._output = rest
            return first_line[len(b'ready '):].decode()
        report = self.finish()
        return report if isinstance(report, Failure) else Failure('server did not start')

    def finish(self):
        """Ends the run (closes the server's stdin) and returns the server's
        report: a dict with its CPU time, or a Failure."""
        try:
            stdout, _ = self._proc.communicate(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            return Failure(f'server did not stop within {STOP_TIMEOUT} s')
        stdout = (self._output + stdout).decode(errors='replace')
        return read_report(stdout, self._log_path.read_text(errors='replace'),
                           self._proc.returncode)

    def kill(self):
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()


def run_client(loadgen, case, address, seconds, cpu):
    """(round trips, elapsed seconds) from the load generator, or a Failure."""
    command = [str(loadgen), case.client_mode, address, str(case.connections),
               str(case.size), str(seconds)]
    try:
        client = subprocess.run(command, capture_output=True, text=True,
                                timeout=seconds + CLIENT_GRACE, preexec_fn=pin_to(cpu))
    except subprocess.TimeoutExpired:
        return Failure('client timed out')
    if client.returncode:
        last_words = client.stderr.strip().splitlines()[-1:] or ['no message']
        return Failure(f'client failed: {last_words[0]}')
    round_trips, elapsed = client.stdout.split()
    return int(round_trips), float(elapsed)


def listen_address(transport, directory):
    if transport == 'unix':
        return f'unix:{directory}/echo.sock'
    return f'{transport}:127.0.0.1:0'


def server_command(server_name, case, address, tools):
    if server_name == BASELINE:
        return [str(tools.echo_server), address]
    return [sys.executable, str(NET_SERVER), server_name, case.server, address]


def measure(case, server_name, seconds, tools, placement, wrap=()):
    """One run of ``case`` against the named server (a loop name or
    BASELINE), placed on CPUs by ``placement`` (None: anywhere): a Sample
    of the server's CPU time over the client's round trips, or a Failure.
    ``wrap`` is a command the server runs under (a profiler)."""
    server_cpu, client_cpu = ((placement.server_cpu, placement.client_cpu)
                              if placement else (None, None))
    with tempfile.TemporaryDirectory(prefix='ferroloop-bench-') as directory:
        command = [*wrap, *server_command(server_name, case,
                                          listen_address(case.transport, directory), tools)]
        server = ServerProcess(command, Path(directory) / 'server.log', server_cpu)
        try:
            address = server.wait_ready()
            if isinstance(address, Failure):
                return address
            client = run_client(tools.loadgen, case, address, seconds, client_cpu)
            report = server.finish()
        finally:
            server.kill()
    # The server's own error (say NotImplementedError) explains a client
    # failure better than the client can.
    for outcome in (report, client):
        if isinstance(outcome, Failure):
            return outcome
    round_trips, elapsed = client
    return Sample(ops=round_trips, cpu=report['cpu'], wall=elapsed)
