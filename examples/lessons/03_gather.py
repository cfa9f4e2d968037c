"""Three coroutines wait at the same time: the whole run takes about as long
as the longest sleep (0.3 s), not the sum (0.6 s)."""
import asyncio


async def a() -> str:
    print('a started')
    await asyncio.sleep(0.2)
    print('a finished')
    return 'a'


async def b() -> str:
    print('b started')
    await asyncio.sleep(0.1)
    print('b finished')
    return 'b'


async def c() -> str:
    print('c started')
    await asyncio.sleep(0.3)
    print('c finished')
    return 'c'


async def main() -> None:
    result = await asyncio.gather(a(), b(), c())
    print('Result', result)


asyncio.run(main())
