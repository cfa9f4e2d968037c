"""Turns the native recording of task steps into what people read: Chrome
trace-event JSON, a self-contained HTML timeline, and the per-task
statistics table.

The recording (``LoopCore._stop_recording_steps()``) is a dict: ``tasks``
(one dict per task: id, name, coroutine, parent, steps, busy, scheduled,
idle, slowest step...) and ``events``, tuples in time order per kind::

    ('created', task, at, parent)
    ('step', task, queued, start, end, wait, done)
        wait: None (the task ended) or (at, inner, future_type, future_task)
        at: (code, line) of the user code awaiting; inner: the code of the
        innermost library coroutine awaited (asyncio.sleep, Queue.get...)
    ('blocking', task, start, end)
    ('poll', 0, start, end)

Times are ``loop.time()`` seconds.
"""

from ._blocking import is_library_file


def is_user_code(code):
    """Whether a code object is the program's own (for "where it waits")."""
    return not is_library_file(code.co_filename)


def _seconds(value):
    if value >= 1:
        return f'{value:.2f} s'
    if value >= 1e-3:
        return f'{value * 1e3:.1f} ms'
    return f'{value * 1e6:.0f} µs'


def place_text(place):
    """``file:line`` of a (code, line) pair, or '-'."""
    if not place:
        return '-'
    code, line = place
    return f'{code.co_filename}:{line}'


def task_stats_table(tasks):
    """The ``--stats`` table: one row per task, by busy time."""
    rows = [('task', 'coroutine', 'steps', 'busy', 'scheduled', 'idle',
             'slowest step', 'at')]
    for task in sorted(tasks, key=lambda t: t['busy'], reverse=True):
        rows.append((str(task['name']), str(task['coroutine']), str(task['steps']),
                     _seconds(task['busy']), _seconds(task['scheduled']),
                     _seconds(task['idle']), _seconds(task['slowest_step']),
                     place_text(task['slowest_at'])))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ['ferroloop task statistics (sorted by busy time)']
    for row in rows:
        lines.append('  '.join(cell.ljust(width) if i < 2 or i == 7 else cell.rjust(width)
                               for i, (cell, width) in enumerate(zip(row, widths))).rstrip())
    return '\n'.join(lines)
