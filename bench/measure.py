"""What a measurement yields, how repeated ones are summarised, and how
ferroloop is judged against its targets; shared by the core and net suites.
"""

import json
import statistics
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
    microseconds per operation, threads started per sample."""
    ops: int
    cpu_us: float
    wall_us: float
    threads: int = 0


def summarise(outcomes):
    """A Summary of the samples, or the first Failure among them."""
    for outcome in outcomes:
        if isinstance(outcome, Failure):
            return outcome
    return Summary(
        ops=int(statistics.median(s.ops for s in outcomes)),
        cpu_us=statistics.median(s.cpu / s.ops * 1e6 for s in outcomes),
        wall_us=statistics.median(s.wall / s.ops * 1e6 for s in outcomes),
        threads=int(statistics.median(s.threads for s in outcomes)))


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


@dataclass(frozen=True)
class Target:
    """ferroloop's CPU time per operation must be at most ``limit`` times that
    of ``reference``: 'uvloop', 'asyncio', or 'uvloop-over-baseline', which
    compares only what each loop spends above the C baseline server."""
    reference: str
    limit: float

    def describe(self):
        ratio = {'uvloop': 'fl/uv', 'asyncio': 'fl/asyncio',
                 'uvloop-over-baseline': '(fl-C)/(uv-C)'}[self.reference]
        return f'{ratio} <= {self.limit}'

    def ratio(self, cpu):
        """The ratio the target limits, from CPU µs per operation by server
        name; None if a number it needs is missing."""
        if self.reference == 'uvloop-over-baseline':
            return over_baseline(cpu)
        return ratio(cpu.get('ferroloop'), cpu.get(self.reference))

    def verdict(self, cpu):
        value = self.ratio(cpu)
        if value is None:
            return 'n/a'
        return 'PASS' if value <= self.limit else 'MISS'


def ratio(numerator, denominator):
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def over_baseline(cpu):
    """(ferroloop - C) / (uvloop - C): the part of uvloop's cost above the
    physical limit that ferroloop still spends."""
    baseline = cpu.get('baseline')
    if baseline is None or cpu.get('ferroloop') is None or cpu.get('uvloop') is None:
        return None
    above_uvloop = cpu['uvloop'] - baseline
    if above_uvloop <= 0:
        return None
    return (cpu['ferroloop'] - baseline) / above_uvloop
