"""Runs CPython's own asyncio test suite (test.test_asyncio, shipped with the
interpreter) against ferroloop, or against stock asyncio for a baseline.

Each module runs in its own process (child.py) with a per-test watchdog;
when a test hangs or crashes the process, it is recorded as failed and the
module resumes after it. Prints passed/failed/skipped per module and in
total, and exits non-zero if any test fails that is not on the expected-
failures list.

    python tests/cpython_suite/run_suite.py                 # the default modules
    python tests/cpython_suite/run_suite.py test_tasks      # some modules
    python tests/cpython_suite/run_suite.py --loop asyncio  # baseline
"""

import argparse
import concurrent.futures
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

CORE_MODULES = [
    'test_tasks', 'test_futures', 'test_futures2', 'test_locks',
    'test_queues', 'test_timeouts', 'test_waitfor', 'test_taskgroups',
    'test_runners', 'test_context', 'test_pep492', 'test_threads',
    'test_events', 'test_base_events',
]
CORE_MODULES_312 = ['test_eager_task_factory']
NETWORK_MODULES = [
    'test_sock_lowlevel', 'test_sendfile', 'test_server', 'test_streams',
    'test_ssl', 'test_sslproto', 'test_buffered_proto', 'test_protocols',
    'test_transports', 'test_unix_events', 'test_subprocess',
]
NETWORK_MODULES_313 = ['test_staggered']


def default_modules():
    modules = CORE_MODULES + NETWORK_MODULES
    if sys.version_info >= (3, 12):
        modules += CORE_MODULES_312
    if sys.version_info >= (3, 13):
        modules += NETWORK_MODULES_313
    return modules


def read_expected_failures(path):
    """``test_id  # reason`` lines; a line may start with a version
    condition such as ``>=3.12`` or ``<3.13``."""
    expected = {}
    if not path.exists():
        return expected
    for raw in path.read_text().splitlines():
        line = raw.split('#', 1)
        test = line[0].strip()
        if not test:
            continue
        reason = line[1].strip() if len(line) > 1 else ''
        parts = test.split()
        if len(parts) == 2:
            condition, test = parts
            if not version_matches(condition):
                continue
        if not reason:
            raise SystemExit(f'expected failure without a reason: {raw!r}')
        expected[test] = reason
    return expected


def version_matches(condition):
    for op in ('>=', '<'):
        if condition.startswith(op):
            major, minor = (int(x) for x in condition[len(op):].split('.'))
            here = sys.version_info[:2]
            return here >= (major, minor) if op == '>=' else here < (major, minor)
    raise SystemExit(f'bad version condition {condition!r}')


def run_module(module, args, workdir):
    """Runs one module to the end, resuming after hangs and crashes.
    Returns {test_id: (outcome, detail)} and the wall time."""
    results_file = workdir / f'{module}.jsonl'
    skip_file = workdir / f'{module}.skip'
    log_file = workdir / f'{module}.log'
    outcomes = {}
    started = time.monotonic()
    for _attempt in range(200):
        skip_file.write_text('\n'.join(outcomes) + '\n')
        cmd = [sys.executable, str(HERE / 'child.py'), '--loop', args.loop,
               '--module', module, '--results', str(results_file),
               '--skip', str(skip_file), '--timeout', str(args.timeout)]
        with open(log_file, 'a') as log:
            try:
                proc = subprocess.run(cmd, stdout=log, stderr=log,
                                      timeout=args.module_timeout,
                                      cwd=workdir)
                code = proc.returncode
            except subprocess.TimeoutExpired:
                code = 'module timeout'
        last_started = None
        if results_file.exists():
            for line in results_file.read_text().splitlines():
                record = json.loads(line)
                if record['event'] == 'start':
                    last_started = record['test']
                else:
                    outcomes[record['test']] = (record['outcome'],
                                                record.get('detail', ''))
                    if record['test'] == last_started:
                        last_started = None
            results_file.unlink()
        if code == 0:
            break
        if last_started is None:
            outcomes[f'{module} (import or process)'] = (
                'failed', f'process ended with {code}; see {log_file}')
            break
        tail = log_file.read_text()[-4000:]
        outcomes[last_started] = ('failed', f'hang or crash ({code}):\n{tail}')
    return outcomes, time.monotonic() - started


def short_id(test_id):
    return test_id.replace('test.test_asyncio.', '')


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('modules', nargs='*')
    parser.add_argument('--loop', choices=('ferroloop', 'asyncio'), default='ferroloop')
    parser.add_argument('--timeout', type=float, default=120,
                        help='seconds one test may take')
    parser.add_argument('--module-timeout', type=float, default=1800)
    parser.add_argument('--jobs', type=int, default=2)
    parser.add_argument('--expected', type=Path,
                        default=HERE / 'expected_failures.txt')
    parser.add_argument('--verbose', '-v', action='store_true',
                        help='print the traceback of every unexpected failure')
    args = parser.parse_args()

    modules = args.modules or default_modules()
    expected = read_expected_failures(args.expected) if args.loop == 'ferroloop' else {}
    workdir = Path(tempfile.mkdtemp(prefix='cpython-suite-'))

    print(f'CPython {sys.version.split()[0]} test.test_asyncio on {args.loop}; '
          f'logs in {workdir}', flush=True)
    totals = dict(passed=0, failed=0, skipped=0, expected=0)
    unexpected = []
    unexpected_passes = []
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        jobs = {module: pool.submit(run_module, module, args, workdir)
                for module in modules}
        for module, job in jobs.items():
            outcomes, took = job.result()
            counts = dict(passed=0, failed=0, skipped=0, expected=0)
            for test, (outcome, detail) in sorted(outcomes.items()):
                name = short_id(test)
                if outcome == 'failed' and name in expected:
                    counts['expected'] += 1
                elif outcome == 'failed':
                    counts['failed'] += 1
                    unexpected.append((name, detail))
                else:
                    counts[outcome] += 1
                    if outcome == 'passed' and name in expected:
                        unexpected_passes.append(name)
            for key in totals:
                totals[key] += counts[key]
            print(f'{module:28} {counts["passed"]:5} passed {counts["failed"]:4} failed '
                  f'{counts["skipped"]:4} skipped {counts["expected"]:4} expected failures '
                  f'({took:.0f} s)', flush=True)

    print(f'{"TOTAL":28} {totals["passed"]:5} passed {totals["failed"]:4} failed '
          f'{totals["skipped"]:4} skipped {totals["expected"]:4} expected failures')
    for name in unexpected_passes:
        print(f'note: listed as expected failure but passed: {name}')
    for name, detail in unexpected:
        print(f'FAILED {name}')
        if args.verbose:
            print('    ' + detail.strip().replace('\n', '\n    '))
    return 1 if unexpected else 0


if __name__ == '__main__':
    sys.exit(main())
