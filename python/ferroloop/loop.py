"""The concrete event loop class users get from ``new_event_loop()``."""

from .base_loop import BaseLoop


class Loop(BaseLoop):
    """The ferroloop event loop: an ``asyncio.AbstractEventLoop``."""
