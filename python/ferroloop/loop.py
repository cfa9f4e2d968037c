"""The concrete event loop class users get from ``new_event_loop()``."""

from .observing import ObservingLoop
from .unix_loop import UnixLoop


class Loop(ObservingLoop, UnixLoop):
    """The ferroloop event loop: an ``asyncio.AbstractEventLoop``."""
