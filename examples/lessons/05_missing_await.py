"""Calling a coroutine function without await only creates a coroutine
object; it never runs, and Python warns that it was never awaited."""
import asyncio


async def greet():
    print('hello')


async def main():
    greet()
    await asyncio.sleep(0.1)
    print('done')


asyncio.run(main())
