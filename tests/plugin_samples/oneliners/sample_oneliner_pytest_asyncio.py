"""The pytest-asyncio sample on ferroloop through conftest.py's hook."""

from sample_pytest_asyncio import *  # noqa: F401,F403
