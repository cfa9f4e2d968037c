"""A coroutine returns a value; asyncio.run() hands it back."""
import asyncio


async def a() -> str:
    return 'a'


print('Result', asyncio.run(a()))
