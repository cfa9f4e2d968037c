"""What ferroloop's instruments cost: the blocking detector on the
scheduling and echo benchmarks, and the timeline tracer per task step.

    python bench/overhead.py [--quick] [--repeat N] [--instructions]

Each benchmark of bench/run.py named below runs on ferroloop with the
detector off and on (threshold 0.05 s, bench/loops.py's DETECTOR_LOOP). A
core row runs off and on in turn, ROUNDS times, in each of N processes
(bench/core_child.py --alternate), a fresh loop each time: the change is the
median over those rounds of on/off, each pair measured in the same process,
moments apart (processes on this shared virtual machine differ from one
another by more than the detector costs). The runs are short and many:
a tenth of bench/run.py's size (call_soon: 100,000 callbacks, about 25 ms;
call_later keeps its size, see SIZE_DIVISORS). The median of 420 short
pairs moves by a few tenths of a percent between runs, that of 35 long
ones by several percent. An echo row needs a server
process per measurement: those alternate between processes. The tracer's
cost per task step is traced_gather_sleep0 minus gather_sleep0, per task
switch, measured in turn in the same way.

--instructions counts instructions instead (callgrind, the core rows, two
echo rows and the tracer; each a long run minus a short one, per operation,
counted only while the loop runs, so that writing the trace out is not;
an echo row's server runs under callgrind while the C client loads it for
2 s, then for 6 s): the figure
that does not move with the machine's load, where CPU times on a shared
virtual machine swing by tens of percent between identical runs. It
counts work, not the cost of caches missed, so it is a floor under the
time an instrument adds.
"""

import argparse
import os
import sys
import tempfile
from pathlib import Path

import net
from loops import DETECTOR_LOOP
from measure import Failure, Sample, run_child, summarise
from profile import core_run
from run import (CORE_BENCHMARKS, CORE_CHILD, CORE_TIMEOUT, NATIVE_BUILD_DIR, NET_SECONDS,
                 CoreBenchmark)

CORE = ('call_soon', 'call_later', 'gather_sleep0', 'task_churn')
NET = ('proto_tcp_1k_x10', 'proto_unix_1k_x10', 'streams_tcp_1k_x10', 'udp_1k_x10')
LOOPS = ('ferroloop', DETECTOR_LOOP)
# What runs the loop (run_forever's inner loop): instructions are counted
# inside it only.
LOOP_RUN_SYMBOL = '*LoopCore*__pymethod__run__'
# The short run's size under callgrind (the long run is three times that).
INSTRUCTION_SIZES = {'call_soon': 100_000, 'call_later': 20_000, 'gather_sleep0': 1_000,
                     'task_churn': 10_000}
# Echo rows counted in instructions: one connection, so that a round trip is
# mostly one iteration running one item. Mostly: the count still moves with
# timing (proto_tcp_1k_x1 gave 3,354, 3,354 and 3,476 instructions in three
# runs with the detector off), by less than on the other rows: with ten
# connections the items an iteration finds depend on timing, and under
# callgrind's slowness the UDP client's retries leave iterations with
# nothing to echo (counts several percent apart, once negative).
INSTRUCTION_NET = ('proto_tcp_1k_x1', 'proto_unix_1k_x1')
INSTRUCTION_NET_SECONDS = (2.0, 6.0)


# Rounds of a core row's variants in one process (bench/core_child.py
# --alternate), each run bench/run.py's size divided by SIZE_DIVISORS[name].
# call_later's timers are spread over 50 ms: a tenth of them would leave the
# loop waiting between timers, another workload.
ROUNDS = 60
SIZE_DIVISORS = {'call_soon': 10, 'call_later': 1, 'gather_sleep0': 10, 'task_churn': 10}
# The tracer's cost per step grows with the tasks it follows (their entries
# leave the caches): measured at bench/run.py's size, 10,000 tasks, in fewer
# rounds (each takes about a second).
TRACER_SIZE_DIVISOR = 1
TRACER_ROUNDS = 10


def alternated(variants, benchmark, divisor, rounds, quick, repeat):
    """Samples of each (loop, benchmark name) variant, in the order given:
    ``repeat`` processes, each measuring them in turn ``rounds`` times, at
    ``benchmark``'s size over ``divisor``. A Failure if one failed."""
    samples = [[] for _ in variants]
    size = max(1, (benchmark.quick_size if quick else benchmark.size) // divisor)
    for _ in range(repeat):
        command = [sys.executable, str(CORE_CHILD), '--alternate', str(rounds), str(size),
                   *(f'{loop}:{benchmark}' for loop, benchmark in variants)]
        outcome = run_child(command, CORE_TIMEOUT[quick]
                            * max(1, rounds * len(variants) // divisor))
        if isinstance(outcome, Failure):
            return outcome
        for pooled, got in zip(samples, outcome['samples']):
            pooled.extend(Sample(**sample) for sample in got)
    return samples


def per_op_us(sample):
    return sample.cpu / sample.ops * 1e6


def paired_cells(samples, change, unit=''):
    """Table cells of variant 0 (off) and variant 1 (on): their medians, and
    the median over rounds of ``change(off, on)`` within each round."""
    if isinstance(samples, Failure):
        return ['err', 'err', samples.reason]
    off, on = samples
    changes = sorted(change(per_op_us(a), per_op_us(b)) for a, b in zip(off, on))
    return [f'{summarise(off).cpu_us:.3g}', f'{summarise(on).cpu_us:.3g}',
            f'{changes[len(changes) // 2]:+.3g}{unit}']


def row(cells):
    return '| ' + ' | '.join(cells) + ' |'


def interleaved(repeat, loops, measure_once):
    """Summaries by loop of ``repeat`` measurements each, interleaved."""
    outcomes = {loop: [] for loop in loops}
    for _ in range(repeat):
        for loop in loops:
            outcomes[loop].append(measure_once(loop))
    return {loop: summarise(results) for loop, results in outcomes.items()}


def overhead_row(name, summaries):
    off, on = summaries['ferroloop'], summaries[DETECTOR_LOOP]
    if isinstance(off, Failure) or isinstance(on, Failure):
        failure = off if isinstance(off, Failure) else on
        return f'| {name} | err | err | {failure.reason} |'
    change = (on.cpu_us / off.cpu_us - 1) * 100
    return f'| {name} | {off.cpu_us:.3g} | {on.cpu_us:.3g} | {change:+.1f} % |'


def total_instructions(out_path):
    """The instruction count of a callgrind output file."""
    for line in Path(out_path).read_text().splitlines():
        if line.startswith(('summary:', 'totals:')):
            return int(line.split()[1])
    raise RuntimeError(f'no instruction count in {out_path}')


def instructions_per_op(benchmark, loop_name, size, directory):
    """Instructions per operation: a run of 3 × ``size`` minus one of ``size``."""
    runs = []
    for index, scale in enumerate((1, 3)):
        out = Path(directory) / f'{loop_name}-{benchmark.name}-{index}.out'
        wrap = ['valgrind', '--tool=callgrind', f'--callgrind-out-file={out}',
                f'--toggle-collect={LOOP_RUN_SYMBOL}']
        ops = core_run(benchmark, loop_name, size * scale, wrap)
        runs.append((ops, total_instructions(out)))
    (short_ops, short), (long_ops, long) = runs
    return (long - short) / (long_ops - short_ops)


def net_instructions_per_op(case, loop_name, directory, tools, placement):
    """Instructions per round trip of an echo server: a run of 6 s minus one
    of 2 s, the server under callgrind."""
    runs = []
    for index, seconds in enumerate(INSTRUCTION_NET_SECONDS):
        out = Path(directory) / f'{loop_name}-{case.name}-{index}.out'
        wrap = ['valgrind', '--tool=callgrind', f'--callgrind-out-file={out}',
                f'--toggle-collect={LOOP_RUN_SYMBOL}']
        sample = net.measure(case, loop_name, seconds, tools, placement, wrap=wrap)
        if isinstance(sample, Failure):
            raise RuntimeError(f'{loop_name} {case.name}: {sample.reason}')
        runs.append((sample.ops, total_instructions(out)))
    (short_ops, short), (long_ops, long) = runs
    return (long - short) / (long_ops - short_ops)


def instruction_tables():
    # String hashing is randomised per process; fixed, the counts repeat.
    os.environ['PYTHONHASHSEED'] = '0'
    by_name = {b.name: b for b in CORE_BENCHMARKS}
    lines = ['**blocking detector: ferroloop instructions per operation, off and on '
             '(callgrind)**', '',
             '| benchmark | off | on | change |', '| --- | ---: | ---: | ---: |']
    with tempfile.TemporaryDirectory(prefix='ferroloop-overhead-') as directory:
        for name in CORE:
            off, on = (instructions_per_op(by_name[name], loop, INSTRUCTION_SIZES[name],
                                           directory) for loop in LOOPS)
            lines.append(f'| {name} | {off:,.0f} | {on:,.0f} | {(on / off - 1) * 100:+.1f} % |')
            print(lines[-1], file=sys.stderr, flush=True)
        tools = net.build_native(NATIVE_BUILD_DIR)
        placement = net.Placement.choose()
        cases = {case.name: case for case in net.net_cases()}
        for name in INSTRUCTION_NET:
            off, on = (net_instructions_per_op(cases[name], loop, directory, tools, placement)
                       for loop in LOOPS)
            lines.append(f'| {name} | {off:,.0f} | {on:,.0f} | {(on / off - 1) * 100:+.1f} % |')
            print(lines[-1], file=sys.stderr, flush=True)
        plain = by_name['gather_sleep0']
        traced = CoreBenchmark('traced_gather_sleep0', plain.size, plain.quick_size, None)
        size = INSTRUCTION_SIZES['gather_sleep0']
        untraced, traced = (instructions_per_op(b, 'ferroloop', size, directory)
                            for b in (plain, traced))
    lines += ['', '**timeline tracer: instructions per task step (callgrind)**', '',
              '| gather_sleep0 | traced | tracer per step |', '| ---: | ---: | ---: |',
              f'| {untraced:,.0f} | {traced:,.0f} | {traced - untraced:,.0f} |']
    print('\n'.join(lines))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--quick', action='store_true')
    parser.add_argument('--repeat', type=int, default=None)
    parser.add_argument('--instructions', action='store_true')
    args = parser.parse_args()
    if args.instructions:
        instruction_tables()
        return
    repeat = args.repeat or (3 if args.quick else 7)
    by_name = {b.name: b for b in CORE_BENCHMARKS}
    lines = ['**blocking detector: ferroloop CPU µs per operation, off and on '
             f'(medians; core rows: {repeat} processes × {ROUNDS} rounds in turn, change: '
             f'median of the rounds\' on/off; echo rows: {repeat} servers each)**', '',
             '| benchmark | off | on | change |', '| --- | ---: | ---: | ---: |']
    for name in CORE:
        benchmark = by_name[name]
        samples = alternated([('ferroloop', name), (DETECTOR_LOOP, name)], benchmark,
                             SIZE_DIVISORS[name], ROUNDS, args.quick, repeat)
        lines.append(row([name, *paired_cells(samples, lambda off, on: (on / off - 1) * 100,
                                              ' %')]))
        print(lines[-1], file=sys.stderr, flush=True)
    tools = net.build_native(NATIVE_BUILD_DIR)
    placement = net.Placement.choose()
    cases = {case.name: case for case in net.net_cases()}
    for name in NET:
        summaries = interleaved(repeat, LOOPS, lambda loop: net.measure(
            cases[name], loop, NET_SECONDS[args.quick], tools, placement))
        lines.append(overhead_row(name, summaries))
        print(lines[-1], file=sys.stderr, flush=True)

    plain = by_name['gather_sleep0']
    samples = alternated([('ferroloop', 'gather_sleep0'), ('ferroloop', 'traced_gather_sleep0')],
                         plain, TRACER_SIZE_DIVISOR, TRACER_ROUNDS, args.quick, repeat)
    lines += ['', '**timeline tracer: CPU µs per task step (medians; '
              f'{repeat} processes × {TRACER_ROUNDS} rounds in turn; per step: median of the '
              'rounds\' difference)**', '',
              '| gather_sleep0 | traced | tracer per step |', '| ---: | ---: | ---: |',
              row(paired_cells(samples, lambda plain, traced: traced - plain))]
    print('\n'.join(lines))


if __name__ == '__main__':
    main()
