"""What ferroloop's instruments cost: the blocking detector on the
scheduling and echo benchmarks, and the timeline tracer per task step.

    python bench/overhead.py [--quick] [--repeat N]

Each benchmark of bench/run.py named below runs on ferroloop with the
detector off and on (threshold 0.05 s, bench/loops.py's DETECTOR_LOOP),
measurements interleaved, medians of CPU time per operation, in fresh
processes as bench/run.py makes them. The tracer's cost per task step is
traced_gather_sleep0 minus gather_sleep0, per task switch.
"""

import argparse
import statistics
import sys

import net
from loops import DETECTOR_LOOP
from measure import Failure, summarise
from run import CORE_BENCHMARKS, NATIVE_BUILD_DIR, NET_SECONDS, CoreBenchmark, measure_core

CORE = ('call_soon', 'call_later', 'gather_sleep0', 'task_churn')
NET = ('proto_tcp_1k_x10', 'proto_unix_1k_x10', 'streams_tcp_1k_x10', 'udp_1k_x10')
LOOPS = ('ferroloop', DETECTOR_LOOP)


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


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--quick', action='store_true')
    parser.add_argument('--repeat', type=int, default=None)
    args = parser.parse_args()
    repeat = args.repeat or (3 if args.quick else 7)
    by_name = {b.name: b for b in CORE_BENCHMARKS}
    lines = ['**blocking detector: ferroloop CPU µs per operation, off and on '
             f'(median of {repeat})**', '',
             '| benchmark | off | on | change |', '| --- | ---: | ---: | ---: |']
    for name in CORE:
        summaries = interleaved(repeat, LOOPS,
                                lambda loop: measure_core(by_name[name], loop, args.quick))
        lines.append(overhead_row(name, summaries))
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
    traced = CoreBenchmark('traced_gather_sleep0', plain.size, plain.quick_size, None)
    samples = {'plain': [], 'traced': []}
    for _ in range(repeat):
        samples['plain'].append(measure_core(plain, 'ferroloop', args.quick))
        samples['traced'].append(measure_core(traced, 'ferroloop', args.quick))
    summaries = {kind: summarise(results) for kind, results in samples.items()}
    lines += ['', f'**timeline tracer: CPU µs per task step (median of {repeat})**', '',
              '| gather_sleep0 | traced | tracer per step |', '| ---: | ---: | ---: |']
    if any(isinstance(s, Failure) for s in summaries.values()):
        lines.append(f'| err | err | {summaries} |')
    else:
        lines.append(f"| {summaries['plain'].cpu_us:.3g} | {summaries['traced'].cpu_us:.3g} | "
                     f"{summaries['traced'].cpu_us - summaries['plain'].cpu_us:.3g} |")
    print('\n'.join(lines))


if __name__ == '__main__':
    main()
