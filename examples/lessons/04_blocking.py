"""The same program with time.sleep(): a blocking call holds the whole loop,
so the coroutines run one after another (about 0.6 s)."""
import asyncio
import time


async def a() -> str:
    print('a started')
    time.sleep(0.2)
    print('a finished')
    return 'a'


async def b() -> str:
    print('b started')
    time.sleep(0.1)
    print('b finished')
    return 'b'


async def c() -> str:
    print('c started')
    time.sleep(0.3)
    print('c finished')
    return 'c'


async def main() -> None:
    result = await asyncio.gather(a(), b(), c())
    print('Result', result)


asyncio.run(main())
