"""What a fuzz example is, in a form both sides of the worker pipe share.

A ``Call`` names a method on a target (the loop or a transport or server the
worker makes) and its arguments. Plain values (None, numbers, str, bytes,
containers of them) travel as themselves; everything that only exists inside
the worker (sockets, memoryviews, callables, objects whose fileno() raises or
lies, ...) travels as a ``Make`` recipe the worker turns into the object."""

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Make:
    """A value the worker builds: ``recipe`` names the kind (see
    worker.Fixtures.make), ``detail`` the variant."""
    recipe: str
    detail: object = None

    def __repr__(self):
        return f'<{self.recipe}{"" if self.detail is None else " " + repr(self.detail)}>'


@dataclass(frozen=True)
class Call:
    target: str                 # 'loop', 'tcp transport', 'udp transport', 'server', ...
    method: str
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)

    def __repr__(self):
        parts = [repr(a) for a in self.args] + [f'{k}={v!r}' for k, v in self.kwargs.items()]
        return f'{self.target}.{self.method}({", ".join(parts)})'


MEMORYVIEW_KINDS = ('bytes', 'bytearray', 'empty', 'read-only', 'non-contiguous',
                    'read-only non-contiguous', 'released', 'multi-dimensional', 'format I',
                    'format d', 'large')
FILENO_KINDS = ('raises ValueError', 'raises OSError', 'returns str', 'returns float',
                'returns None', 'returns a closed number', 'returns a live socket',
                'changes between calls')
# Numbers an object's fileno() may lie with.
LYING_FILENOS = (-1, -2, 0, 1, 2, 1023, 65536, 10_000, 10_000_000, 2**31 - 1, 2**31, 2**40, 2**70)
SOCKET_KINDS = ('connected', 'blocking', 'listening', 'udp', 'udp connected', 'unix datagram pair',
                'unix stream pair', 'fresh tcp', 'closed', 'shut down')
CALLABLE_KINDS = ('noop', 'raises', 'coroutine function', 'protocol', 'recorder', 'print',
                  'class', 'datagram recorder', 'buffered recorder')
OTHER_KINDS = ('object', 'context', 'done future', 'coroutine', 'ssl client context',
               'ssl server context', 'executor', 'binary file', 'text file', 'closed file',
               'read pipe', 'write pipe', 'tcp transport', 'protocol', 'port', 'unix path', 'array')
