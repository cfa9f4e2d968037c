"""Differences between ferroloop and stock asyncio that are known and not
fixed yet (issue 7, and what this suite found). Each entry recognises
exactly its difference in a fuzz example (so the property tests excuse it
and nothing else), and carries reproductions that test_fuzz.py runs as
strict xfails: when the fix lands the reproduction passes, the xfail turns
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
]


def explained(call, stock, ours):
    """The known difference this example shows, if any."""
    for known in KNOWN:
        if known.applies_here() and known.matches(call, stock, ours):
            return known
    return None
