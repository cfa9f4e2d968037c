"""The concrete event loop class users get from ``new_event_loop()``."""

from .unix_loop import UnixLoop


class Loop(UnixLoop):
    """The ferroloop event loop: an ``asyncio.AbstractEventLoop``."""
