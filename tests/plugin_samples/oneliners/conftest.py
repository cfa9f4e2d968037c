# pytest-asyncio's loops from ferroloop, without the plugin: the one-liner
# the README gives.
import ferroloop


def pytest_asyncio_loop_factories(config, item):
    return {'ferroloop': ferroloop.new_event_loop}
