"""Prints the fault table (case x stock asyncio / ferroloop outcome) at the
end of any session that ran fault cases."""

from .harness import FAULT_TABLE


def pytest_terminal_summary(terminalreporter):
    if not FAULT_TABLE:
        return
    width = max(len(row[0]) for row in FAULT_TABLE + [('case',)])
    cols = max(len(row[1]) for row in FAULT_TABLE + [('', 'stock asyncio')])
    write = terminalreporter.write_line
    terminalreporter.section('fault table')
    write(f"{'case':<{width}}  {'stock asyncio':<{cols}}  ferroloop")
    for case, stock, ours in FAULT_TABLE:
        write(f'{case:<{width}}  {stock:<{cols}}  {ours}')
