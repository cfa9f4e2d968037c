"""Result tables, printed as aligned text for the terminal and as Markdown
for bench/RESULTS.md: one Table value renders both ways, so the two always
carry the same numbers."""

from dataclasses import dataclass, field


@dataclass
class Table:
    title: str
    header: list
    rows: list = field(default_factory=list)


def render_text(table):
    widths = [max(len(row[i]) for row in [table.header, *table.rows])
              for i in range(len(table.header))]

    def line(cells):
        first, *rest = cells
        return '  '.join([first.ljust(widths[0]),
                          *(cell.rjust(width) for cell, width in zip(rest, widths[1:]))])

    rule = '-' * len(line(table.header))
    return '\n'.join([table.title, rule, line(table.header), rule,
                      *map(line, table.rows), rule])


def render_markdown(table):
    def line(cells):
        return '| ' + ' | '.join(cells) + ' |'

    alignment = ['---'] + ['---:'] * (len(table.header) - 1)
    return '\n'.join([f'**{table.title}**', '', line(table.header), line(alignment),
                      *map(line, table.rows)])


def number(value):
    """A time or rate with about three significant digits; '-' if missing."""
    if value is None:
        return '-'
    if value >= 100:
        return f'{value:.0f}'
    if value >= 10:
        return f'{value:.1f}'
    if value >= 1:
        return f'{value:.2f}'
    return f'{value:.3f}'


def ratio(value):
    return '-' if value is None else f'{value:.2f}'
