"""Hypothesis strategies for fuzz Calls: arbitrary arguments of every kind,
mixed with plausible ones per parameter name so that calls also get past
the first type check and into the code behind it.

Strings and bytes in arbitrary positions always start with a NUL, and host
parameters only ever get numeric loopback addresses: no fuzzed value may
become a DNS query (the worker refuses lookups as well, see no_lookups.py)."""

import asyncio
import inspect
import math
import signal
import socket
import sys

from hypothesis import strategies as st

from .calls import (CALLABLE_KINDS, FILENO_KINDS, LYING_FILENOS, MEMORYVIEW_KINDS,
                    OTHER_KINDS, SOCKET_KINDS, Call, Make)

SPECIAL_INTS = [0, 1, -1, 2, 3, 1024, 65535, 65536, 10_000_000, 2**31 - 1, 2**31, -2**31 - 1,
                2**32, 2**63 - 1,
                2**63, 2**64, 2**70, -2**70, 10**30]
SPECIAL_FLOATS = [math.nan, math.inf, -math.inf, -0.0, 0.0, 0.5, 1.5, 1e-9, 1e300, -1e300]

ints = st.one_of(st.sampled_from(SPECIAL_INTS), st.integers(-1000, 1000), st.integers())
floats = st.one_of(st.sampled_from(SPECIAL_FLOATS), st.floats())
numbers = st.one_of(ints, floats, st.booleans())
texts = st.one_of(st.text(max_size=8), st.just('x' * 3_000)).map(lambda s: '\x00' + s)
binaries = st.one_of(st.binary(max_size=16), st.just(b'y' * 3_000)).map(lambda b: b'\x00' + b)
memoryviews = st.sampled_from(MEMORYVIEW_KINDS).map(lambda k: Make('memoryview', k))
filenos = st.one_of(st.sampled_from(FILENO_KINDS), st.sampled_from(LYING_FILENOS)).map(
    lambda k: Make('fileno', k))
sockets = st.sampled_from(SOCKET_KINDS).map(lambda k: Make('socket', k))
callables = st.sampled_from(CALLABLE_KINDS).map(lambda k: Make('callable', k))
others = st.sampled_from(OTHER_KINDS).map(Make)
scalars = st.one_of(st.none(), numbers, texts, binaries, binaries.map(bytearray),
                    memoryviews, filenos, sockets, callables, others)
anything = st.one_of(scalars, st.tuples(scalars, scalars), st.lists(scalars, max_size=3),
                     st.dictionaries(texts, scalars, max_size=2))

hosts = st.sampled_from(['127.0.0.1', '::1', '0.0.0.0', '127.0.0.2', '::'])
ports = st.one_of(st.just(Make('port')), st.sampled_from([0, -1, 65536, 2**70, '0', 'x\x00']),
                  st.integers(-2, 70000))
addresses = st.one_of(st.tuples(hosts, ports), st.tuples(hosts, ports, ints, ints),
                      st.tuples(hosts), st.tuples(), st.just(Make('unix path')))
buffers = st.one_of(memoryviews, st.binary(max_size=64).map(bytearray),
                    st.binary(max_size=64), st.just(Make('array')))
data = st.one_of(st.binary(max_size=64), st.just(b'z' * 300_000), buffers, texts)
protocol_factories = st.sampled_from(['recorder', 'buffered recorder', 'datagram recorder',
                                      'protocol']).map(lambda k: Make('callable', k))
signals = st.one_of(st.sampled_from([signal.SIGUSR1, signal.SIGUSR2, signal.SIGHUP, signal.SIGINT,
                                     signal.SIGTERM, signal.SIGCHLD, signal.SIGKILL, signal.SIGSTOP,
                                     signal.SIGWINCH, 0, -1, 65, 1000]), ints)
socket_constants = st.sampled_from([0, socket.AF_INET, socket.AF_INET6, socket.AF_UNIX,
                                    socket.SOCK_STREAM, socket.SOCK_DGRAM, socket.AI_PASSIVE,
                                    socket.IPPROTO_TCP, socket.IPPROTO_UDP, 255])
files = st.sampled_from(['binary file', 'text file', 'closed file', 'read pipe', 'write pipe']).map(Make)
stdio = st.one_of(st.sampled_from([None, -1, -2, -3]), files, filenos)
programs = st.sampled_from([sys.executable, 'true', b'true', 'false'])
optional_numbers = st.one_of(st.none(), numbers)
flags_or_any = st.one_of(st.booleans(), st.none())

# What a parameter of that name plausibly gets; every parameter also gets
# ``anything``.
PLAUSIBLE = {
    'protocol_factory': protocol_factories,
    'callback': callables, 'func': callables, 'handler': callables, 'factory': callables,
    'fd': st.one_of(ints, filenos, sockets),
    'sock': sockets,
    'delay': numbers, 'when': numbers, 'timeout': optional_numbers,
    'n': ints, 'bufsize': ints, 'nbytes': ints, 'backlog': ints,
    'buf': buffers,
    'data': data,
    'list_of_data': st.lists(data, max_size=3),
    # Not ``anything``: a long bytes "host" is an iterable of hosts, one
    # lookup each, and takes either loop minutes.
    'host': st.one_of(hosts, st.lists(hosts, max_size=2), scalars.filter(lambda v: len(repr(v)) < 200)),
    'port': ports,
    'address': addresses, 'sockaddr': addresses, 'addr': addresses,
    'local_addr': addresses, 'remote_addr': addresses,
    'path': st.just(Make('unix path')),
    'ssl': st.one_of(st.none(), st.booleans(), st.just(Make('ssl client context'))),
    'sslcontext': st.sampled_from(['ssl client context', 'ssl server context']).map(Make),
    'family': socket_constants, 'type': socket_constants, 'proto': socket_constants,
    'flags': st.one_of(socket_constants, ints),
    'file': files, 'offset': ints, 'count': st.one_of(st.none(), ints),
    'context': st.one_of(st.none(), st.just(Make('context'))),
    'executor': st.one_of(st.none(), st.just(Make('executor'))),
    'sig': signals,
    'program': programs,
    'cmd': st.sampled_from(['true', 'exit 3', b'true']),
    'pipe': st.one_of(files, sockets),
    'coro': st.sampled_from(['coroutine', 'done future']).map(Make),
    'future': st.sampled_from(['coroutine', 'done future']).map(Make),
    'transport': st.just(Make('tcp transport')),
    'protocol': st.just(Make('protocol')),
    'name': st.one_of(st.sampled_from(['peername', 'sockname', 'socket', 'pipe', 'sslcontext',
                                       'nonexistent']), st.none()),
    'server_hostname': st.one_of(st.none(), st.just('localhost')),
    'ssl_handshake_timeout': optional_numbers, 'ssl_shutdown_timeout': optional_numbers,
    'happy_eyeballs_delay': optional_numbers, 'interleave': st.one_of(st.none(), ints),
    'reuse_address': flags_or_any, 'reuse_port': flags_or_any, 'allow_broadcast': flags_or_any,
    'start_serving': flags_or_any, 'server_side': flags_or_any, 'fallback': flags_or_any,
    'stdin': stdio, 'stdout': stdio, 'stderr': stdio,
    'high': optional_numbers, 'low': optional_numbers,
}


ALONE = {'host'}     # parameters whose plausible strategy includes its own garbage


def value_for(name):
    plausible = PLAUSIBLE.get(name)
    if plausible is None:
        return anything
    return plausible if name in ALONE else st.one_of(plausible, plausible, anything)


class Signature:
    """The parameters a method has, by kind."""

    def __init__(self, positional, keywords=(), varargs=False):
        self.positional, self.keywords, self.varargs = list(positional), list(keywords), varargs

    @classmethod
    def of(cls, function):
        params = list(inspect.signature(function).parameters.values())[1:]   # self
        kind = inspect.Parameter
        return cls([p.name for p in params if p.kind in (kind.POSITIONAL_ONLY,
                                                          kind.POSITIONAL_OR_KEYWORD)],
                   [p.name for p in params if p.kind is kind.KEYWORD_ONLY],
                   any(p.kind is kind.VAR_POSITIONAL for p in params))


@st.composite
def calls(draw, target, method, signature):
    """A Call of ``target.method``: usually with as many positional
    arguments as it takes (sometimes one fewer or more), each plausible or
    arbitrary, and some of its keyword arguments."""
    count = len(signature.positional)
    count = draw(st.one_of(st.just(count), st.just(count), st.integers(max(0, count - 1), count + 1)))
    names = (signature.positional + ['extra'])[:count]
    args = tuple(draw(value_for(name)) for name in names)
    if signature.varargs:
        args += tuple(draw(st.lists(anything, max_size=2)))
    chosen = draw(st.lists(st.sampled_from(signature.keywords), unique=True,
                           max_size=min(3, len(signature.keywords)))) if signature.keywords else []
    kwargs = {name: draw(value_for(name)) for name in chosen}
    return Call(target, method, args, kwargs)


def loop_signatures():
    """Every public method of asyncio's loop (this Python's), but the ones
    that run the loop until told to stop."""
    loop_class = asyncio.SelectorEventLoop
    signatures = {}
    for name in dir(loop_class):
        function = getattr(loop_class, name)
        if name.startswith('_') or not callable(function) or name == 'run_forever':
            continue
        signatures[name] = Signature.of(function)
    return signatures


TRANSPORT_SIGNATURES = {
    'tcp transport': {
        'write': Signature(['data']), 'writelines': Signature(['list_of_data']),
        'write_eof': Signature([]), 'can_write_eof': Signature([]), 'close': Signature([]),
        'abort': Signature([]), 'pause_reading': Signature([]), 'resume_reading': Signature([]),
        'is_reading': Signature([]), 'is_closing': Signature([]),
        'set_write_buffer_limits': Signature(['high', 'low']),
        'get_write_buffer_size': Signature([]), 'get_write_buffer_limits': Signature([]),
        'set_protocol': Signature(['protocol']), 'get_protocol': Signature([]),
        'get_extra_info': Signature(['name', 'default']),
    },
    'udp transport': {
        'sendto': Signature(['data', 'addr']), 'close': Signature([]), 'abort': Signature([]),
        'is_closing': Signature([]), 'set_protocol': Signature(['protocol']),
        'get_extra_info': Signature(['name', 'default']),
        'get_write_buffer_size': Signature([]),
        'set_write_buffer_limits': Signature(['high', 'low']),
    },
    'connected udp transport': {'sendto': Signature(['data', 'addr'])},
    'write pipe transport': {
        'write': Signature(['data']), 'writelines': Signature(['list_of_data']),
        'write_eof': Signature([]), 'abort': Signature([]),
        'set_write_buffer_limits': Signature(['high', 'low']),
    },
    'read pipe transport': {
        'pause_reading': Signature([]), 'resume_reading': Signature([]),
        'is_reading': Signature([]), 'close': Signature([]),
        'set_protocol': Signature(['protocol']), 'get_extra_info': Signature(['name', 'default']),
    },
    'handle': {
        'cancel': Signature([]), 'cancelled': Signature([]), 'get_context': Signature([]),
        '__eq__': Signature(['other']),
    },
    'timer handle': {
        'cancel': Signature([]), 'cancelled': Signature([]), 'when': Signature([]),
        'get_context': Signature([]), '__eq__': Signature(['other']),
        '__lt__': Signature(['other']), '__le__': Signature(['other']),
        '__gt__': Signature(['other']), '__ge__': Signature(['other']),
    },
    'server': {
        'close': Signature([]), 'is_serving': Signature([]), 'start_serving': Signature([]),
        'wait_closed': Signature([]), 'get_loop': Signature([]),
    },
}


def all_signatures():
    """(target, method) -> Signature, for every method the suite fuzzes."""
    table = {}
    for name, sig in loop_signatures().items():
        table['loop', name] = sig
        table['closed loop', name] = sig
    for target, methods in TRANSPORT_SIGNATURES.items():
        table.update({(target, name): sig for name, sig in methods.items()})
    return table
