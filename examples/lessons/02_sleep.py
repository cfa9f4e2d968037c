"""await asyncio.sleep() suspends the coroutine; the loop wakes it later."""
import asyncio


async def main() -> None:
    print('sleeping for 1.0 s')
    await asyncio.sleep(1.0)
    print('awake')


asyncio.run(main())
