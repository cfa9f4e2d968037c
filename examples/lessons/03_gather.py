"""Three coroutines wait at the same time: the whole run takes about as long
as the longest sleep (0.3 s), not the sum (0.6 s)."""
import asyncio


async def work(name: str, delay: float) -> str:
    print(name, 'started')
    await asyncio.sleep(delay)
    print(name, 'finished')
    return name


async def main() -> None:
    result = await asyncio.gather(work('a', 0.2), work('b', 0.1), work('c', 0.3))
    print('Result', result)


asyncio.run(main())
