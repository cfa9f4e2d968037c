"""ferroloop: asyncio's event loop, written in Rust.

Use it with any of::

    asyncio.run(main(), loop_factory=ferroloop.new_event_loop)   # 3.12+
    asyncio.Runner(loop_factory=ferroloop.new_event_loop)         # 3.11+
    ferroloop.run(main())
    ferroloop.install()   # then plain asyncio.run(main())
"""

from ._blocking import BlockingReport
from ._ferroloop import __version__
from .policy import EventLoopPolicy, Loop, install, new_event_loop, run
from .tracing import trace

__all__ = ('BlockingReport', 'EventLoopPolicy', 'Loop', 'install', 'new_event_loop',
           'run', 'trace')
