"""Compares ferroloop with stock asyncio, uvloop, rloop and rsloop in one
run, and checks ferroloop against its performance targets.

    python bench/run.py [--suite core|process|net|timers|memory|all] [--quick]
                        [--only NAME ...] [--loops NAME ...] [--repeat N]
                        [--markdown FILE]

Every measurement runs in a fresh process, so loops cannot disturb each
other, and is repeated (5 times; --quick: twice, with smaller sizes and
shorter runs); tables show medians. The figure of merit is CPU time per
operation (time.process_time, which counts every thread of the process)
over the measured part only, not interpreter start-up or set-up; wall time
is shown too. Ratios are ferroloop's cost over that of uvloop (fl/uv) and of
the best peer (fl/best: the lowest of every other loop measured; 'best'
names it); '±' is the measurement noise of that comparison: the larger
half-range over the rounds, relative to the median, of ferroloop's and the
best peer's numbers. A cell reads 'n/a' where the loop raised
NotImplementedError (it lacks the API the row needs) and 'err' where the
measurement failed otherwise; the reasons are listed at the end. Peers
that are not installed (see bench/peers.py) are left out, with a note.

Suites:
  core  scheduling: callbacks, thread-safe callbacks, timers, task
        switches, task creation (bench/workloads.py), and the lesson program
  process  child processes: 500 `true` children started and reaped, and
        1 GiB through `cat`'s pipes (bench/workloads.py); the parent's CPU
        time, the Python threads started, pipe throughput in MiB/s
  net   servers on each loop loaded by a separate C client, with a bare C
        epoll echo server as the physical limit (bench/net.py); the
        server's CPU time per round trip. (fl-C)/(uv-C) is '-' when uvloop
        is not above the C server.
  timers  how late asyncio.sleep() and call_later() wake up (bench/lateness.py)
  memory  memory per idle TCP connection and per sleeping task
        (bench/memory.py)

The machine's 1-minute load average is shown after each row and in the
header: numbers taken while it is above about 1.5 (other work on the
machine) are noise.

--only takes benchmark or case names, or shell-style patterns
('proto_unix_*'); --loops measures only the named loops. --markdown FILE also writes the report as Markdown, for
bench/RESULTS.md.
"""

import argparse
import fnmatch
import importlib.metadata
import os
import platform
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import lateness
import memory
import net
import peers
import report
from loops import LOOP_NAMES, describe, installed_loops
from measure import (BASELINE, Failure, Sample, Target, best_peer, over_baseline, ratio,
                     run_child, summarise)

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
CORE_CHILD = BENCH / 'core_child.py'
NATIVE_BUILD_DIR = BENCH / 'out'
SHORT_NAMES = {**{name: name for name in LOOP_NAMES}, BASELINE: 'C epoll',
               lateness.FLOOR: 'time.sleep'}
NOISY_LOAD = 1.5
STARTED = time.monotonic()


@dataclass(frozen=True)
class CoreBenchmark:
    name: str            # a workload in bench/workloads.py
    size: int
    quick_size: int
    target: Target | None


# Issue 11: call_soon and call_soon_threadsafe at most 0.9 of the best peer
# and half of uvloop.
CALLBACK_TARGET = Target('best-peer', 0.9) & Target('uvloop', 0.5)
CORE_BENCHMARKS = [
    CoreBenchmark('call_soon', 1_000_000, 200_000, CALLBACK_TARGET),
    CoreBenchmark('call_soon_threadsafe', 200_000, 40_000, CALLBACK_TARGET),
    CoreBenchmark('call_later', 100_000, 20_000, Target('uvloop', 0.4)),
    CoreBenchmark('gather_sleep0', 10_000, 2_000, Target('uvloop', 1.0)),  # size: tasks
    CoreBenchmark('task_churn', 100_000, 20_000, Target('uvloop', 0.7)),
    CoreBenchmark('lesson', 1, 1, None),
]
PROCESS_BENCHMARKS = [
    CoreBenchmark('spawn_true', 500, 100, Target('asyncio', 0.5)),  # size: children
    CoreBenchmark('pipe_cat', 1024, 128, Target('uvloop', 1.0)),     # size: MiB
]
CORE_TIMEOUT = {False: 120, True: 30}   # seconds per measurement, by --quick
NET_SECONDS = {False: 0.5, True: 0.2}   # client run length, by --quick


def parse_args():
    summary, _usage, details = __doc__.split('\n\n', 2)
    parser = argparse.ArgumentParser(
        description=summary, epilog=details,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--suite', choices=('core', 'process', 'net', 'timers', 'memory',
                                            'all'), default='core')
    parser.add_argument('--quick', action='store_true',
                        help='smaller sizes, shorter runs, 2 repeats')
    parser.add_argument('--only', nargs='+', metavar='NAME',
                        help='run only these benchmarks (names or patterns)')
    parser.add_argument('--loops', nargs='+', metavar='NAME', choices=LOOP_NAMES,
                        help='measure only these loops (default: every one installed)')
    parser.add_argument('--repeat', type=int, metavar='N',
                        help='measurements per cell (default 5, --quick 2)')
    parser.add_argument('--markdown', type=Path, metavar='FILE',
                        help='also write the report as Markdown')
    args = parser.parse_args()
    if args.repeat is None:
        args.repeat = 2 if args.quick else 5
    if args.repeat < 1:
        parser.error('--repeat must be at least 1')
    installed = installed_loops()
    wanted = args.loops or LOOP_NAMES
    args.loops = tuple(name for name in installed if name in wanted)
    args.notes = [f'{name} not measured: {peers.missing_reason(name)}'
                  for name in wanted if name not in installed]
    args.load = LoadWatch()
    return args, parser


def select_benchmarks(suites, patterns, parser):
    """The benchmarks of each suite that --only names (all without it)."""
    if not patterns:
        return suites
    names = [item.name for items in suites for item in items]
    for pattern in patterns:
        if not fnmatch.filter(names, pattern):
            parser.error(f'--only {pattern!r} matches nothing; known: {", ".join(names)}')
    return [[item for item in items
             if any(fnmatch.fnmatch(item.name, pattern) for pattern in patterns)]
            for items in suites]


class LoadWatch:
    """The machine's 1-minute load average, read at the start and after
    each row."""

    def __init__(self):
        self.readings = [os.getloadavg()[0]]

    def read(self):
        self.readings.append(os.getloadavg()[0])
        return self.readings[-1]

    def describe(self):
        first, *rest = self.readings
        during = f', at most {max(rest):.2f} during the run, {rest[-1]:.2f} at the end' \
            if rest else ''
        noisy = sum(reading > NOISY_LOAD for reading in rest)
        warning = f'; above {NOISY_LOAD} after {noisy} of {len(rest)} rows' if noisy else ''
        return f'1-min load average {first:.2f} at the start{during}{warning}'


def run_repeatedly(name, servers, args, measure_once, summarise=summarise,
                   show=lambda s: s.cpu_us):
    """Measures each server ``args.repeat`` times, interleaving the servers
    so that slow drift in the machine spreads over all of them, and returns
    the summaries by server. A server that fails once is not measured again.
    ``show`` picks the number the progress line shows of a summary."""
    started = time.monotonic()
    outcomes = {server: [] for server in servers}
    for _ in range(args.repeat):
        for server in servers:
            if not any(isinstance(o, Failure) for o in outcomes[server]):
                outcomes[server].append(guarded(measure_once, server))
    summaries = {server: summarise(results) for server, results in outcomes.items()}
    progress = '  '.join(f'{SHORT_NAMES[server]} {cell(summary, show)}'
                         for server, summary in summaries.items())
    print(f'  {name:<22} {progress}  ({time.monotonic() - started:.1f} s, '
          f'load {args.load.read():.2f})', file=sys.stderr, flush=True)
    return summaries


def guarded(measure_once, server):
    """A surprise in the harness itself (say, output it cannot parse) fails
    one cell, not the whole run."""
    try:
        return measure_once(server)
    except Exception as exc:  # noqa: BLE001  (reported as the cell's failure)
        return Failure(f'harness: {describe(exc)}')


def measure_core(benchmark, loop_name, quick):
    size = benchmark.quick_size if quick else benchmark.size
    command = [sys.executable, str(CORE_CHILD), loop_name, benchmark.name, str(size)]
    outcome = run_child(command, CORE_TIMEOUT[quick])
    return outcome if isinstance(outcome, Failure) else Sample(**outcome)


def run_core(benchmarks, args, suite='core'):
    print(f'{suite} suite', file=sys.stderr)
    return {
        benchmark: run_repeatedly(
            benchmark.name, args.loops, args,
            lambda loop_name: measure_core(benchmark, loop_name, args.quick))
        for benchmark in benchmarks
    }


def run_net(cases, tools, placement, args):
    print('net suite', file=sys.stderr)
    seconds = NET_SECONDS[args.quick]
    return {
        case: run_repeatedly(
            case.name, args.loops + ((BASELINE,) if case.baseline else ()), args,
            lambda server: net.measure(case, server, seconds, tools, placement))
        for case in cases
    }


def run_timers(benchmarks, args):
    print('timers suite', file=sys.stderr)
    return {
        benchmark: run_repeatedly(
            benchmark.name, (*args.loops, lateness.FLOOR), args,
            lambda loop_name: lateness.measure(benchmark, loop_name, args.quick),
            summarise=lateness.summarise, show=lambda s: s.median)
        for benchmark in benchmarks
    }


def run_memory(benchmarks, args):
    print('memory suite', file=sys.stderr)
    return {
        benchmark: run_repeatedly(
            benchmark.name, args.loops, args,
            lambda loop_name: memory.measure(benchmark, loop_name, args.quick),
            summarise=memory.summarise, show=lambda s: s.per_thing)
        for benchmark in benchmarks
    }


def cell(summary, value=lambda s: s.cpu_us):
    if summary is None:
        return '-'
    if isinstance(summary, Failure):
        return summary.label
    return report.number(value(summary))


def ops_of(summaries):
    """The operation count of a core benchmark (the same on every loop)."""
    counts = [s.ops for s in summaries.values() if not isinstance(s, Failure)]
    return f'{counts[0]:,}' if counts else '-'


def cost_table(title, results, servers, first_column, count=None,
               value=lambda s: s.cpu_us, spread=lambda s: s.cpu_spread):
    """Cost per operation by server (``value`` of each summary: CPU µs by
    default), with ferroloop's ratios, the noise of the comparison with the
    best peer, and the verdict. ``count`` names the column of operation
    counts, if any."""
    with_baseline = BASELINE in servers
    header = [first_column, *([count] if count else []),
              *(SHORT_NAMES[s] for s in servers), 'fl/uv', 'fl/best', 'best', '±',
              *(['(fl-C)/(uv-C)'] if with_baseline else []), 'target', 'result']
    table = report.Table(title, header)
    for item, summaries in results.items():
        measured = {server: summary for server, summary in summaries.items()
                    if not isinstance(summary, Failure)}
        costs = {server: value(summary) for server, summary in measured.items()}
        best = best_peer(costs)
        noise = max((spread(measured[name]) for name in ('ferroloop', best and best[0])
                     if name in measured), default=None)
        table.rows.append([
            item.name, *([ops_of(summaries)] if count else []),
            *(cell(summaries.get(s), value) for s in servers),
            report.ratio(ratio(costs.get('ferroloop'), costs.get('uvloop'))),
            report.ratio(ratio(costs.get('ferroloop'), best and best[1])),
            SHORT_NAMES[best[0]] if best else '-',
            '-' if noise is None else f'{noise:.0%}',
            *([report.ratio(over_baseline(costs))] if with_baseline else []),
            item.target.describe() if item.target else '-',
            item.target.verdict(costs) if item.target else '-'])
    return table


def cpu_table(title, results, servers, first_column, with_ops):
    """CPU µs per operation by server, with ferroloop's ratios and verdict."""
    return cost_table(title, results, servers, first_column, 'ops' if with_ops else None)


def wall_table(title, results, servers, first_column, value):
    table = report.Table(title, [first_column, *(SHORT_NAMES[s] for s in servers)])
    for item, summaries in results.items():
        table.rows.append([item.name, *(cell(summaries.get(s), value) for s in servers)])
    return table


def lesson_table(summaries, loops):
    table = report.Table(
        'lesson program: 3 coroutines sleeping 0.2/0.1/0.3 s, gathered (no target)',
        ['', *(SHORT_NAMES[s] for s in loops)])
    for label, value in (('wall ms', lambda s: s.wall_us / 1000),
                         ('CPU ms', lambda s: s.cpu_us / 1000)):
        table.rows.append([label, *(cell(summaries[s], value) for s in loops)])
    return table


def core_tables(results, args):
    lesson = {b: s for b, s in results.items() if b.name == 'lesson'}
    timed = {b: s for b, s in results.items() if b.name != 'lesson'}
    tables = []
    if timed:
        tables += [
            cpu_table(f'core: CPU µs per operation (median of {args.repeat})',
                      timed, args.loops, 'benchmark', with_ops=True),
            wall_table('core: wall µs per operation', timed, args.loops, 'benchmark',
                       lambda s: s.wall_us),
        ]
    tables += [lesson_table(summaries, args.loops) for summaries in lesson.values()]
    return tables


def process_tables(results, args):
    tables = [cpu_table(f'process: CPU µs per operation (median of {args.repeat}; '
                        'spawn_true: one child, pipe_cat: one MiB)',
                        results, args.loops, 'benchmark', with_ops=True)]
    spawn = {b: s for b, s in results.items() if b.name == 'spawn_true'}
    pipe = {b: s for b, s in results.items() if b.name == 'pipe_cat'}
    if spawn:
        tables.append(wall_table('process: Python threads started per run',
                                 spawn, args.loops, 'benchmark', lambda s: s.threads))
    if pipe:
        tables.append(wall_table('process: pipe throughput, MiB/s (wall clock)',
                                 pipe, args.loops, 'benchmark', lambda s: 1e6 / s.wall_us))
    return tables


def net_tables(results, args):
    servers = args.loops + (BASELINE,)
    return [
        cpu_table(f'net: server CPU µs per round trip (median of {args.repeat})',
                  results, servers, 'case', with_ops=False),
        wall_table('net: thousands of round trips per second (wall clock)',
                   results, servers, 'case', lambda s: 1e3 / s.wall_us),
    ]


def memory_tables(results, args):
    return [cost_table(
        f'memory: KiB per idle TCP connection (server side), bytes per sleeping task '
        f'(median of {args.repeat})', results, args.loops, 'what', 'count',
        value=lambda s: s.per_thing, spread=lambda s: s.spread)]


def failure_notes(all_results):
    """One line per distinct failure: which server, why, and where."""
    where = {}
    for results in all_results:
        for item, summaries in results.items():
            for server, summary in summaries.items():
                if isinstance(summary, Failure):
                    where.setdefault((server, summary.reason), []).append(item.name)
    return [f'{SHORT_NAMES[server]} {Failure(reason).label} in {", ".join(names)}: {reason}'
            for (server, reason), names in where.items()]


def header_lines(args):
    """The facts needed to read and reproduce the numbers."""
    cpu_model = 'unknown CPU'
    with open('/proc/cpuinfo') as cpuinfo:
        for line in cpuinfo:
            if line.startswith('model name'):
                cpu_model = line.partition(':')[2].strip()
                break
    return [
        f'command:   {shlex.join(map(within_checkout, sys.orig_argv))}',
        f'machine:   nproc {len(os.sched_getaffinity(0))}, {cpu_model}',
        f'python:    {platform.python_implementation()} {platform.python_version()}',
        f'peers:     {", ".join(peer_versions(args.loops))}',
        f'ferroloop: {importlib.metadata.version("ferroloop")}, {git_revision()}',
        f'date:      {time.strftime("%Y-%m-%d %H:%M %Z")}',
        f'runs:      median of {args.repeat} per cell, '
        f'{"quick" if args.quick else "full"} sizes',
    ]


def within_checkout(argument):
    """A path under the checkout relative to it, so the report names no
    directory of the machine it ran on."""
    path = Path(argument)
    return str(path.relative_to(ROOT)) if path.is_absolute() and path.is_relative_to(ROOT) \
        else argument


def peer_versions(loops):
    return [f'{name} {importlib.metadata.version(name)}' for name in loops
            if name not in ('asyncio', 'ferroloop')]


def git_revision():
    def git(*args):
        return subprocess.run(['git', '-C', str(ROOT), *args], capture_output=True,
                              text=True, timeout=10).stdout.strip()
    try:
        commit = git('rev-parse', '--short', 'HEAD')
        dirty = git('status', '--porcelain', '--untracked-files=no')
    except (OSError, subprocess.TimeoutExpired):
        return 'commit unknown'
    return f'commit {commit}' + (' with uncommitted changes' if dirty else '')


def write_report(header, tables, notes, markdown_path):
    """Prints the report, and writes it as Markdown if asked to."""
    blocks = ['\n'.join(header), *map(report.render_text, tables)]
    if notes:
        blocks.append('\n'.join(['notes:', *(f'  {note}' for note in notes)]))
    print('\n\n'.join(blocks))
    if markdown_path:
        blocks = ['\n'.join(['```text', *header, '```']),
                  *map(report.render_markdown, tables)]
        if notes:
            blocks.append('\n'.join(['Notes:', '', *(f'- {note}' for note in notes)]))
        markdown_path.write_text('\n\n'.join(blocks) + '\n')


def main():
    args, parser = parse_args()
    header = header_lines(args)
    in_suite = lambda suite: args.suite in (suite, 'all')  # noqa: E731
    core_benchmarks, process_benchmarks, net_cases, timer_benchmarks, memory_benchmarks = \
        select_benchmarks(
            [CORE_BENCHMARKS if in_suite('core') else [],
             PROCESS_BENCHMARKS if in_suite('process') else [],
             net.net_cases() if in_suite('net') else [],
             lateness.BENCHMARKS if in_suite('timers') else [],
             memory.BENCHMARKS if in_suite('memory') else []],
            args.only, parser)

    tables, all_results, notes = [], [], list(args.notes)
    for note in notes:
        print(note, file=sys.stderr)
    if core_benchmarks:
        results = run_core(core_benchmarks, args)
        tables += core_tables(results, args)
        all_results.append(results)
    if process_benchmarks:
        results = run_core(process_benchmarks, args, 'process')
        tables += process_tables(results, args)
        all_results.append(results)
    if net_cases:
        try:
            tools = net.build_native(NATIVE_BUILD_DIR)
        except (OSError, RuntimeError, subprocess.TimeoutExpired) as exc:
            notes.append(f'net suite not run: cannot build the C programs: {exc}')
        else:
            placement = net.Placement.choose()
            header.append(f'net:       {NET_SECONDS[args.quick]} s per run, '
                          + (placement.describe() if placement else 'one CPU'))
            results = run_net(net_cases, tools, placement, args)
            tables += net_tables(results, args)
            all_results.append(results)
            if 'rsloop' in args.loops and any(c.server == 'streams' for c in net_cases):
                notes.append('rsloop replaces asyncio.start_server and open_connection with '
                             'its own native streams when imported: its streams row runs '
                             "those, not asyncio's StreamReader/StreamWriter")
    if timer_benchmarks:
        results = run_timers(timer_benchmarks, args)
        tables.append(lateness.table(results, args.loops, SHORT_NAMES))
        all_results.append(results)
    if memory_benchmarks:
        results = run_memory(memory_benchmarks, args)
        tables += memory_tables(results, args)
        all_results.append(results)
    header.append(f'load:      {args.load.describe()}')
    header.append(f'took:      {(time.monotonic() - STARTED) / 60:.1f} min')
    write_report(header, tables, notes + failure_notes(all_results), args.markdown)


if __name__ == '__main__':
    main()
