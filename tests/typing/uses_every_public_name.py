"""Uses every public name of ferroloop. tests/test_typing.py type-checks it
with ``mypy --strict`` for each supported Python, and runs it."""

import asyncio
import sys
import unittest

import ferroloop


async def main() -> str:
    await asyncio.sleep(0)
    return 'done'


def run_every_way() -> list[str]:
    results = [ferroloop.run(main()), ferroloop.run(main(), debug=True)]
    with asyncio.Runner(loop_factory=ferroloop.new_event_loop) as runner:
        results.append(runner.run(main()))
    if sys.version_info >= (3, 12):
        results.append(asyncio.run(main(), loop_factory=ferroloop.new_event_loop))
    loop: ferroloop.Loop = ferroloop.Loop()
    try:
        reports: list[ferroloop.BlockingReport] = []
        loop.detect_blocking(0.5, reports.append)
        timer: asyncio.TimerHandle = loop.call_later(3600, print, 'never')
        timer.cancel()
        with ferroloop.trace():
            results.append(loop.run_until_complete(main()))
        assert loop.stats()['callbacks'] > 0 and loop.task_stats() is None
    finally:
        loop.close()
    policy: asyncio.AbstractEventLoopPolicy = ferroloop.EventLoopPolicy()
    made_by_policy = policy.new_event_loop()
    assert isinstance(made_by_policy, ferroloop.Loop)
    made_by_policy.close()
    ferroloop.install()
    results.append(asyncio.run(main()))
    return results


class OnFerroloop(unittest.IsolatedAsyncioTestCase):
    loop_factory = ferroloop.Loop  # read by Python 3.13


if __name__ == '__main__':
    print(ferroloop.__version__, run_every_way())
