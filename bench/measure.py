"""What a measurement yields, how repeated ones are summarised, and how
ferroloop is judged against its targets; shared by the core and net suites.
"""

import json
import statistics
import subprocess
from dataclasses import dataclass


@dataclass(frozen=True)
class Sample:
    """One measurement: ``ops`` operations took ``cpu`` seconds of CPU time
    and ``wall`` seconds of elapsed time, and started ``threads`` threads."""
    ops: int
    cpu: float
    wall: float
    threads: int = 0


@dataclass(frozen=True)
class Failure:
    """A measurement that could not be made, and why."""
    reason: str

    @property
    def label(self):
        """'n/a' when the loop lacks the feature, 'err' for anything else."""
        return 'n/a' if self.reason.startswith('NotImplementedError') else 'err'


@dataclass(frozen=True)
class Summary:
    """Medians over repeated samples: operations per sample, CPU and wall
    microseconds per operation, threads started per sample; and the spread
    of the CPU time: half the range of the samples, relative to the median."""
    ops: int
    cpu_us: float
    wall_us: float
    threads: int = 0
    cpu_spread: float = 0.0


def summarise(outcomes):
    """A Summary of the samples, or the first Failure among them."""
    for outcome in outcomes:
        if isinstance(outcome, Failure):
            return outcome
    cpu_us = [s.cpu / s.ops * 1e6 for s in outcomes]
    return Summary(
        ops=int(statistics.median(s.ops for s in outcomes)),
        cpu_us=statistics.median(cpu_us),
        wall_us=statistics.median(s.wall / s.ops * 1e6 for s in outcomes),
        threads=int(statistics.median(s.threads for s in outcomes)),
        cpu_spread=spread(cpu_us))


def spread(values):
    """Half the range of ``values``, relative to their median."""
    middle = statistics.median(values)
    return (max(values) - min(values)) / 2 / middle if middle else 0.0


def read_report(stdout, stderr, returncode):
    """The JSON object a benchmark process printed last, or a Failure saying
    what went wrong (its own error report, or how it died)."""
    lines = stdout.strip().splitlines()
    try:
        report = json.loads(lines[-1])
    except (IndexError, ValueError):
        last_words = stderr.strip().splitlines()[-1:] or ['no output']
        return Failure(f'exit status {returncode}: {last_words[0]}')
    if 'error' in report:
        return Failure(report['error'])
    return report


def run_child(command, timeout):
    """Runs a benchmark process to its end; its report (see read_report) or a
    Failure if it took longer than ``timeout`` seconds."""
    try:
        child = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return Failure(f'timed out after {timeout} s')
    return read_report(child.stdout, child.stderr, child.returncode)


UNDER_TEST = 'ferroloop'
BASELINE = 'baseline'   # the bare C server of the net suite: a limit, not a peer


def best_peer(values):
    """(name, value) of the lowest value among the peers (every entry but
    ferroloop and the C baseline), or None if there is none."""
    peers = {name: value for name, value in values.items()
             if name not in (UNDER_TEST, BASELINE) and value is not None}
    if not peers:
        return None
    name = min(peers, key=peers.get)
    return name, peers[name]


@dataclass(frozen=True)
class Target:
    """ferroloop's cost per operation (CPU time, or memory) must be at most
    ``limit`` times that of ``reference``: a loop name ('uvloop',
    'asyncio'), 'best-peer' (the lowest of all other loops measured in the
    same run), or 'uvloop-over-baseline', which compares only what each loop
    spends above the C baseline server. ``a & b`` requires both."""
    reference: str
    limit: float

    def describe(self):
        ratio = {'uvloop': 'fl/uv', 'asyncio': 'fl/asyncio', 'best-peer': 'fl/best',
                 'uvloop-over-baseline': '(fl-C)/(uv-C)'}[self.reference]
        return f'{ratio} <= {self.limit}'

    def ratio(self, cpu):
        """The ratio the target limits, from the cost per operation by server
        name; None if a number it needs is missing."""
        if self.reference == 'uvloop-over-baseline':
            return over_baseline(cpu)
        if self.reference == 'best-peer':
            best = best_peer(cpu)
            return ratio(cpu.get(UNDER_TEST), best and best[1])
        return ratio(cpu.get(UNDER_TEST), cpu.get(self.reference))

    def verdict(self, cpu):
        value = self.ratio(cpu)
        if value is None:
            return 'n/a'
        return 'PASS' if value <= self.limit else 'MISS'

    def __and__(self, other):
        return AllTargets((self, other))


@dataclass(frozen=True)
class AllTargets:
    """Several targets that must all be met."""
    parts: tuple

    def describe(self):
        return ' and '.join(part.describe() for part in self.parts)

    def verdict(self, cpu):
        verdicts = {part.verdict(cpu) for part in self.parts}
        for verdict in ('MISS', 'n/a'):
            if verdict in verdicts:
                return verdict
        return 'PASS'

    def __and__(self, other):
        return AllTargets((*self.parts, other))


def ratio(numerator, denominator):
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def over_baseline(cpu):
    """(ferroloop - C) / (uvloop - C): the part of uvloop's cost above the
    physical limit that ferroloop still spends."""
    baseline = cpu.get(BASELINE)
    if baseline is None or cpu.get(UNDER_TEST) is None or cpu.get('uvloop') is None:
        return None
    above_uvloop = cpu['uvloop'] - baseline
    if above_uvloop <= 0:
        return None
    return (cpu[UNDER_TEST] - baseline) / above_uvloop
