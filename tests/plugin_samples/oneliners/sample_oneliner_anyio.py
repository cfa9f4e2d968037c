"""The anyio sample on ferroloop through the backend's options."""

import pytest

import ferroloop
from sample_anyio import *  # noqa: F401,F403


@pytest.fixture
def anyio_backend():
    return ('asyncio', {'loop_factory': ferroloop.new_event_loop})
