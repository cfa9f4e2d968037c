"""Calling a coroutine function without await only creates a coroutine
object; it never runs, and Python warns that it was never awaited."""
import asyncio


async def greet() -> None:
    print('hello')


async def main() -> None:
    greet()
    await asyncio.sleep(0.1)
    print('done')


asyncio.run(main())
