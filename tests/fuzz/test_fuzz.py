"""Every public loop and transport method, called with arbitrary arguments on
stock asyncio and on ferroloop (in worker processes, see workers.py):
ferroloop never crashes or hangs, and raises what asyncio raises (the type
always; the message where asyncio's is its own, see compare.py), with the
same protocol events and exception-handler calls afterwards. Known
differences (known.py) are excused in the properties and pinned by strict
xfails, one per known difference."""

import pytest
from hypothesis import given

from .calls import Call
from .compare import problems
from .conftest import CORPUS
from .known import KNOWN, explained
from .strategies import all_signatures, calls

SIGNATURES = all_signatures()
# Whether a child's exit or its pipes' EOF is seen first is the kernel's
# timing: their events are compared as sets.
SUBPROCESSES = {'subprocess_exec', 'subprocess_shell'}
# Calls that may bind a port of the call's choosing run on one worker after
# the other: at once, the two would race for it.
BINDING = {'create_server', 'create_datagram_endpoint', 'create_connection'}


def run(workers, call):
    answers = workers.run(call, at_once=call.method not in BINDING)
    stock, ours = answers['asyncio'], answers['ferroloop']
    return stock, ours, problems(stock, ours, events_in_order=call.method not in SUBPROCESSES,
                                 method=call.method)


@pytest.mark.parametrize('target, method', sorted(SIGNATURES),
                         ids=[f'{t}.{m}'.replace(' ', '_') for t, m in sorted(SIGNATURES)])
def test_arbitrary_arguments(workers, target, method):
    @given(calls(target, method, SIGNATURES[(target, method)]))
    def same_as_asyncio(call):
        CORPUS['calls'] += 1
        stock, ours, found = run(workers, call)
        if found:
            known = explained(call, stock, ours)
            if known is None:
                raise AssertionError(f'{call!r}\n' + '\n'.join(found))
            CORPUS['excused'][known.reason] = CORPUS['excused'].get(known.reason, 0) + 1

    same_as_asyncio()


class ShowsKnownDifference(AssertionError):
    """A reproduction showed exactly its known difference."""


def reproductions():
    for known in KNOWN:
        for example in known.examples:
            marks = [pytest.mark.xfail(strict=True, raises=ShowsKnownDifference,
                                       reason=known.reason)] if known.applies_here() else []
            yield pytest.param(known, example, id=repr(example), marks=marks)


@pytest.mark.parametrize('known, call', list(reproductions()))
def test_known_difference(workers, known, call: Call):
    stock, ours, found = run(workers, call)
    if found and known.matches(call, stock, ours):
        raise ShowsKnownDifference(f'{call!r}\n' + '\n'.join(found))
    assert not found, f'{call!r} differs, but not as known ({known.reason}):\n' + '\n'.join(found)
