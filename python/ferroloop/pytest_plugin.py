"""``pytest --ferroloop``: a test suite's asyncio code runs on ferroloop loops.

The option installs ferroloop's event loop policy for the session (and puts
the previous one back at the end). Every loop the usual frameworks make comes
from the policy, so they all get ferroloop's: pytest-asyncio's, anyio's
asyncio backend (unless a test's ``anyio_backend`` names a ``loop_factory``
or uvloop), ``unittest.IsolatedAsyncioTestCase`` (unless the class sets
``loop_factory``, 3.13), and the suite's own ``asyncio.run()`` and
``asyncio.new_event_loop()`` calls. Without the option the plugin does
nothing. pytest finds it through the ``pytest11`` entry point.
"""

import asyncio

import pytest

_PREVIOUS_POLICY = pytest.StashKey[asyncio.AbstractEventLoopPolicy]()


def pytest_addoption(parser):
    parser.getgroup('ferroloop').addoption(
        '--ferroloop', action='store_true',
        help="run the tests' asyncio event loops on ferroloop")


def pytest_configure(config):
    if config.getoption('ferroloop'):
        import ferroloop
        config.stash[_PREVIOUS_POLICY] = asyncio.get_event_loop_policy()
        ferroloop.install()


def pytest_unconfigure(config):
    previous = config.stash.get(_PREVIOUS_POLICY, None)
    if previous is not None:
        asyncio.set_event_loop_policy(previous)


def pytest_report_header(config):
    if config.getoption('ferroloop'):
        import ferroloop
        return f'event loops: ferroloop {ferroloop.__version__} (--ferroloop)'
    return None
