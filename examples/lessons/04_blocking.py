"""The same program with time.sleep(): a blocking call holds the whole loop,
so the coroutines run one after another (about 0.6 s)."""
import asyncio
import time


async def work(name: str, delay: float) -> str:
    print(name, 'started')
    time.sleep(delay)
    print(name, 'finished')
    return name


async def main() -> None:
    result = await asyncio.gather(work('a', 0.2), work('b', 0.1), work('c', 0.3))
    print('Result', result)


asyncio.run(main())
