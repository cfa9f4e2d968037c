"""Differences between ferroloop and stock asyncio that are known and not
fixed yet (issue 7, and what this suite found). Each entry recognises
exactly its difference in a fuzz example (so the property tests excuse it
and nothing else), and carries one reproduction that test_fuzz.py runs as a
strict xfail: when the fix lands the reproduction passes, the xfail turns
into a failure, and the entry must go."""

import sys
from dataclasses import dataclass
from typing import Callable

from .calls import Call, Make

def raised(answer):
    """(type, message) of what the call raised, or None."""
    outcome = answer.get('outcome', [])
    return (outcome[1], outcome[2]) if outcome[:1] == ['raised'] else None


def returned(answer):
    return answer.get('outcome', [])[:1] == ['returned']


def lost_with(answer, kind):
    return ['connection_lost', kind] in answer.get('events', [])


@dataclass
class Known:
    item: str                   # where it is filed: 'issue 7 part N' or 'new (fuzz suite)'
    what: str
    examples: tuple             # reproductions: Calls that show it today
    matches: Callable           # (call, stock answer, ferroloop answer) -> bool
    versions: tuple = ((3, 0), (4, 0))     # the Pythons it shows on

    @property
    def reason(self):
        return f'{self.item}: {self.what}'

    def applies_here(self):
        return self.versions[0] <= sys.version_info[:2] < self.versions[1]


NOOP = Make('callable', 'noop')

KNOWN = [
    Known('issue 7 part 3', 'set_write_buffer_limits: floats, huge ints and inf refused (TypeError, '
          'OverflowError) where asyncio accepts them or raises its own ValueError',
          (Call('tcp transport', 'set_write_buffer_limits', (1.5,)),),
          lambda call, stock, ours: call.method == 'set_write_buffer_limits'),
    Known('issue 7 part 3', 'set_protocol(obj) refuses objects without protocol methods '
          '(AttributeError); asyncio accepts any object',
          (Call('tcp transport', 'set_protocol', (Make('object'),)),),
          lambda call, stock, ours: call.method == 'set_protocol' and returned(stock)
          and (raised(ours) or ('',))[0] == 'AttributeError'),
    Known('issue 7 part 3', "create_datagram_endpoint(sock=<TCP socket>): 'A UDP socket was "
          "expected', asyncio says 'A UDP Socket was expected'",
          (Call('loop', 'create_datagram_endpoint', (Make('callable', 'datagram recorder'),),
               {'sock': Make('socket', 'connected')}),),
          lambda call, stock, ours: (raised(ours) or ('', ''))[1].startswith('A UDP socket was'),
          versions=((3, 11), (3, 13))),    # 3.13 says 'A datagram socket', as ferroloop does
    Known('issue 7 part 3', 'writelines(<falsy>) on 3.12+: TypeError; asyncio returns at once',
          (Call('tcp transport', 'writelines', (None,)),),
          lambda call, stock, ours: call.method == 'writelines' and returned(stock)
          and (raised(ours) or ('',))[0] == 'TypeError',
          versions=((3, 12), (4, 0))),
    Known('new (fuzz suite)', 'call_at/call_later with a `when` that is no number raise '
          'TypeError at once; asyncio schedules it and its run loop fails later comparing '
          'deadlines',
          (Call('loop', 'call_at', ([], NOOP)),),
          lambda call, stock, ours: call.method in ('call_at', 'call_later')
          and (raised(ours) or ('',))[0] == 'TypeError'
          and (returned(stock) or (raised(stock) or ('',))[0] == 'RuntimeError')),
    Known('new (fuzz suite)', 'a context= that is no Context fails when the callback runs '
          'with TypeError; asyncio with AttributeError (no .run)',
          (Call('loop', 'call_soon', (NOOP,), {'context': 0}),),
          lambda call, stock, ours: call.method.startswith('call_')
          and 'context' in call.kwargs and call.kwargs['context'] not in (None, Make('context'))
          and stock.get('handler') == ['AttributeError'] and ours.get('handler') == ['TypeError']),
    Known('new (fuzz suite)', 'what came with 3.12 is there on 3.11 too: '
          'shutdown_default_executor(timeout) (asyncio 3.11: TypeError), Handle.get_context() '
          '(asyncio 3.11: AttributeError)',
          (Call('loop', 'shutdown_default_executor', (1,)), Call('handle', 'get_context')),
          lambda call, stock, ours: (call.method == 'shutdown_default_executor'
                                     and (raised(stock) or ('',))[0] == 'TypeError'
                                     and not raised(ours))
          or (call.method == 'get_context'
              and (raised(stock) or ('',))[0] == 'AttributeError'),
          versions=((3, 11), (3, 12))),
    Known('new (fuzz suite)', "sock_* methods given an object that is no socket raise "
          "AttributeError ('no attribute gettimeout') before asyncio's own checks "
          "(fileno(), the file's mode, ...) raise theirs",
          (Call('loop', 'sock_accept', (Make('fileno', 'raises ValueError'),)),),
          lambda call, stock, ours: call.method.startswith('sock_')
          and "has no attribute 'gettimeout'" in (raised(ours) or ('', ''))[1]),
    Known('new (fuzz suite)', 'create_server(host=[]) raises OSError("could not bind on any '
          'address out of []"); asyncio returns a server with no sockets',
          (Call('loop', 'create_server', (Make('callable', 'recorder'), [], 0)),),
          lambda call, stock, ours: call.method == 'create_server' and returned(stock)
          and (raised(ours) or ('', ''))[1].startswith('could not bind on any address out of []'),
          versions=((3, 11), (3, 13))),    # 3.13's asyncio raises so too
    Known('new (fuzz suite)', 'transport.write(<non-contiguous memoryview>) sends it; asyncio '
          'fails the transport (connection_lost(BufferError))',
          (Call('tcp transport', 'write', (Make('memoryview', 'non-contiguous'),)),),
          lambda call, stock, ours: call.method in ('write', 'writelines')
          and lost_with(stock, 'BufferError') and not lost_with(ours, 'BufferError')),
    Known('new (fuzz suite)', "sendto(data, addr) on a UDP transport made from a connected "
          "socket (sock=) passes addr to sendto and fails (connection_lost(TypeError)); "
          "asyncio send()s and ignores addr",
          (Call('connected udp transport', 'sendto', (b'x', ('127.0.0.1', 1, 2, 3))),),
          lambda call, stock, ours: call.target == 'connected udp transport'
          and lost_with(ours, 'TypeError') and not lost_with(stock, 'TypeError')),
]

def explained(call, stock, ours):
    """The known difference this example shows, if any."""
    for known in KNOWN:
        if known.applies_here() and known.matches(call, stock, ours):
            return known
    return None
