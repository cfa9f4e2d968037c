"""pytest-asyncio tests: a test, an async fixture, a module-scoped loop."""

import asyncio

import pytest
import pytest_asyncio

from loop_kind import EXPECTED, echo_through_server, running_loop_kind


@pytest_asyncio.fixture
async def loop_of_fixture():
    yield asyncio.get_running_loop()


@pytest.mark.asyncio
async def test_runs_on_the_expected_loop():
    assert running_loop_kind() == EXPECTED


@pytest.mark.asyncio
async def test_fixture_shares_the_test_loop(loop_of_fixture):
    assert loop_of_fixture is asyncio.get_running_loop()
    assert await echo_through_server(b'asyncio\n') == b'asyncio\n'


@pytest.mark.asyncio(loop_scope='module')
async def test_module_scoped_loop():
    assert running_loop_kind() == EXPECTED
