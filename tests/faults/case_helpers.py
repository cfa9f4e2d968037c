"""Imported by every fault-case program, in the child process.

A case prints what it observed with ``report(...)``; the harness compares that
with stock asyncio's. Resource growth goes out separately with ``soak(...)``
(checked against limits, not compared: stock asyncio's allocator noise is not a
specification)."""

import asyncio
import gc
import json
import os
import re
import resource
import socket
import struct

PAGE_KIB = os.sysconf('SC_PAGE_SIZE') // 1024


def size(small, full):
    """The case's size: ``small`` in ``make test``, ``full`` under ``make soak``."""
    return full if os.environ.get('FERROLOOP_FAULT_SIZE') == 'full' else small


def fd_count():
    return len(os.listdir('/proc/self/fd'))


def rss_kib():
    """The resident set now (not the peak), so that growth shows, not size."""
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * PAGE_KIB


def report(result):
    print('RESULT ' + json.dumps(result, sort_keys=True, default=repr), flush=True)


class Growth:
    """Descriptors and resident memory, marked twice; reports the growth."""

    def __init__(self):
        self.marks = []

    def mark(self):
        gc.collect()
        self.marks.append((fd_count(), rss_kib()))

    def report(self):
        (fds0, rss0), (fds1, rss1) = self.marks
        print('RESOURCES ' + json.dumps({'fd_growth': fds1 - fds0, 'rss_growth_kib': rss1 - rss0}),
              flush=True)


def soak(rounds, run_round):
    """Runs ``run_round(i)`` ``rounds`` times after one warm-up round (i = -1)
    and reports the growth of descriptors and resident memory over the second
    half of the rounds. Returns the rounds' results."""
    growth = Growth()
    results = [run_round(-1)]
    for i in range(rounds):
        if i == rounds // 2:
            growth.mark()
        results.append(run_round(i))
    growth.mark()
    growth.report()
    return results


async def soak_async(rounds, run_round):
    """``soak`` for a coroutine function ``run_round``, inside a running loop."""
    growth = Growth()
    results = [await run_round(-1)]
    for i in range(rounds):
        if i == rounds // 2:
            growth.mark()
        results.append(await run_round(i))
    growth.mark()
    growth.report()
    return results


def describe(exc):
    """An exception as the two loops must agree on it: type and message (a
    transport's repr in it, which names the loop's own class, as
    <transport>)."""
    if exc is None:
        return None
    # (asyncio's transport reprs nest one level: <... write=<idle, ...>>)
    transport_repr = r'<\w*Transport\b(?:[^<>]|<[^<>]*>)*>'
    return [type(exc).__name__, re.sub(transport_repr, '<transport>', str(exc))]


def handler_message(message):
    """An exception handler's message without what only names a loop's
    internals: the transport's class and the reprs of a callback's arguments."""
    message = re.sub(r'\(.*\)', '(...)', message)
    return re.sub(r'\b\w*Transport\w*\.', '<transport>.', message)


def collect_handler_calls(loop):
    """Installs an exception handler that records (message, exception) pairs;
    returns the list it fills."""
    calls = []

    def handler(loop, context):
        calls.append([handler_message(context.get('message')), describe(context.get('exception'))])

    loop.set_exception_handler(handler)
    return calls


def raise_nofile_limit(wanted):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def reset(transport):
    """Closes a TCP transport with a RST (SO_LINGER 0), as a crashed peer's
    kernel does."""
    transport.get_extra_info('socket').setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                                  struct.pack('ii', 1, 0))
    transport.abort()


class Recorder(asyncio.Protocol):
    """Records EOF and the loss of the connection (as ``describe_loss``
    words it); ``lost`` is done once the connection is."""

    def __init__(self):
        self.events = []
        self.lost = asyncio.get_running_loop().create_future()

    def connection_made(self, transport):
        self.transport = transport

    def eof_received(self):
        self.events.append('eof')

    def describe_loss(self, exc):
        return describe(exc)

    def connection_lost(self, exc):
        self.events.append(['lost', self.describe_loss(exc)])
        self.lost.set_result(None)
