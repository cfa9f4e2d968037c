"""How two workers' answers to one Call are compared.

Exception types always; messages where stock asyncio's is its own and
stable: an OSError's (errno and strerror), and any message that begins with
a literal that asyncio's (or selectors') source raises. Other messages come
from CPython's argument conversion and are worded after the implementation
(Python or native code), so only their types must agree."""

import asyncio
import glob
import os
import re
import selectors
import socket  # noqa: F401  (its gaierror and timeout are OSErrors to list)
import ssl  # noqa: F401  (so are its SSLErrors)
import sys


# The loop's and its transports' class names and reprs, which are each
# implementation's own ('_SelectorSocketTransport' / 'SocketTransport').
_OWN_OBJECTS = re.compile(r"<_?\w*Transport\b[^<>]*(?:<[^<>]*>[^<>]*)*>"
                          r"|'(?:_Selector\w*|_Unix\w*|Socket|Datagram)Transport'"
                          r"|'(?:_UnixSelectorEventLoop|Loop)'")


def normalise(value):
    """Messages without what differs between two processes for no reason
    of the loop's: object addresses, and the loop's own class names."""
    if isinstance(value, str):
        return _OWN_OBJECTS.sub('<loop object>', re.sub(r'0x[0-9a-fA-F]+', '0x?', value))
    if isinstance(value, list):
        return [normalise(v) for v in value]
    if isinstance(value, dict):
        return {k: normalise(v) for k, v in value.items()}
    return value


def _subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


OS_ERRORS = {cls.__name__ for cls in [OSError, *_subclasses(OSError)]}


def _asyncio_literals():
    """The literal beginnings of the messages asyncio's source raises."""
    sources = glob.glob(os.path.join(os.path.dirname(asyncio.__file__), '*.py'))
    literals = set()
    for path in sources + [selectors.__file__]:
        with open(path, encoding='utf-8') as f:
            text = f.read()
        for match in re.finditer(r"raise \w+\(\s*f?(['\"])(.*?)\1", text):
            literal = re.split(r'[{%]', match.group(2))[0]
            if len(literal) >= 6:
                literals.add(literal)
    return tuple(literals)


ASYNCIO_MESSAGES = _asyncio_literals()


def _message_compared(outcome):
    kind, message = outcome[1], outcome[2]
    return kind in OS_ERRORS or message.startswith(ASYNCIO_MESSAGES)


def _without_message(outcome):
    if len(outcome) >= 3 and outcome[0] == 'raised':
        return outcome[:2] + ['<message not compared>'] + outcome[3:]
    return outcome


# Where ferroloop differs on purpose (README.md, "Differences from stock
# asyncio"): non-callables and coroutine functions are refused at call time
# always, and so are blocking sockets in sock_* methods.
DELIBERATE = [
    ('TypeError', 'a callable object was expected by '),
    ('TypeError', 'coroutines cannot be used with '),
    ('ValueError', 'the socket must be non-blocking'),
    # A deadline that is no number is refused at once (asyncio schedules it,
    # then its run loop fails comparing deadlines).
    ('TypeError', 'must be real number, not '),
]


def deliberate(ours):
    outcome = ours.get('outcome', [])
    return outcome[:1] == ['raised'] and any(
        outcome[1] == kind and outcome[2].startswith(prefix) for kind, prefix in DELIBERATE)


# CPython 3.12.0-3.12.7 and 3.13.0-3.13.1 do not pause the protocol when
# writelines() fills the buffer past the high-water mark (gh-127655, fixed
# since); ferroloop pauses it, as fixed CPython does (README).
_WRITELINES_DOES_NOT_PAUSE = (3, 12) <= sys.version_info[:2] < (3, 14)


def problems(stock, ours, events_in_order=True, method=None):
    """What is wrong with ferroloop's answer, given stock asyncio's: a list
    of findings, empty when they agree."""
    for answer in (stock, ours):
        if 'worker error' in answer:
            raise AssertionError('the fuzz worker failed to set a call up:\n' + answer['worker error'])
    if 'crash' in ours:
        return [f"ferroloop's worker crashed ({ours['crash']}):\n{ours['stderr']}"]
    if 'hang' in ours:
        return [f"ferroloop hung: {ours['hang']}"]
    if 'crash' in stock or 'hang' in stock or deliberate(ours):
        return []               # stock asyncio dies there, or we differ on purpose
    found = []
    # Fewer descriptors after a call than before: a leftover of an earlier
    # call was collected meanwhile; it says nothing of this one.
    if max(0, ours['fds']) > max(0, stock['fds']):
        return [f"ferroloop left {ours['fds']} descriptors open, stock asyncio {stock['fds']}"]
    if stock['outcome'][:2] in (['raised', 'AssertionError'], ['raised', 'IndexError']):
        # An assert in asyncio's code (gone under -O), or a slip of its own
        # (3.13's create_unix_server(sock=<unnamed socket>) indexes an empty
        # name): no contract to keep.
        return []
    stock, ours = normalise(stock), normalise(ours)
    if stock['outcome'][0] == 'raised' and not _message_compared(stock['outcome']):
        stock['outcome'], ours['outcome'] = (_without_message(stock['outcome']),
                                             _without_message(ours['outcome']))
    if (method == 'writelines' and _WRITELINES_DOES_NOT_PAUSE
            and [e for e in ours['events'] if e != 'pause_writing'] == stock['events']):
        ours['events'] = stock['events']
    if not events_in_order:
        stock['events'], ours['events'] = sorted(map(repr, stock['events'])), sorted(map(repr, ours['events']))
    for key in ('outcome', 'events', 'handler'):
        if stock[key] != ours[key]:
            found.append(f'{key}: asyncio {stock[key]!r}, ferroloop {ours[key]!r}')
    return found
