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

import os

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


# What an await chain's innermost library coroutine says the task waits on.
_WAIT_KINDS = {
    'sleep': 'sleep',
    'Lock.acquire': 'lock', 'Semaphore.acquire': 'semaphore',
    'Event.wait': 'event', 'Condition.wait': 'condition', 'Barrier.wait': 'barrier',
    'Queue.get': 'queue get', 'Queue.put': 'queue put', 'Queue.join': 'queue join',
    'StreamWriter.drain': 'stream drain', 'wait_for': 'wait_for', 'wait': 'wait',
    'TaskGroup.__aexit__': 'task group',
}
_FUTURE_KINDS = {'_GatheringFuture': 'gather', 'Future': 'future', 'Task': 'task'}


def _qualname(code):
    return getattr(code, 'co_qualname', code.co_name)


def wait_text(wait, names):
    """What a task waits on, in words, from a step's recorded wait."""
    at, inner, future_type, future_task = wait
    if future_task:
        return f'task {names.get(future_task, "?")}'
    if inner is not None:
        name = _qualname(inner)
        if name.startswith('StreamReader.'):
            return f'stream read ({name.partition(".")[2]})'
        if name.startswith(('SocketLoop.sock_', 'BaseSelectorEventLoop.sock_')):
            return f'socket ({name.partition(".")[2]})'
        return _WAIT_KINDS.get(name, name)
    if future_type is not None:
        return _FUTURE_KINDS.get(future_type.__name__, future_type.__name__)
    return 'nothing (rescheduled)'


class Timeline:
    """The tasks and segments of one or more loops' recordings, on one time
    axis (seconds from the first event)."""

    def __init__(self, lanes, segments, marks, origin, duration):
        self.lanes = lanes          # [{'id', 'loop', 'name', 'coroutine', 'stats'}]
        self.segments = segments    # [(lane index, kind, start, end, title, detail)]
        self.marks = marks          # [(lane index, start, text)]
        self.origin = origin
        self.duration = duration

    @classmethod
    def from_recordings(cls, recordings, show_library_tasks=False):
        """The timeline of the recordings (one per loop). Tasks running
        library coroutines (asyncio.run's own shutdown_asyncgens, ...) are
        left out unless ``show_library_tasks``."""
        lanes, segments, marks = [], [], []
        origin = min((r['started'] for r in recordings), default=0.0)
        for events in (r['events'] for r in recordings):
            starts = [e[2] if e[0] == 'created' else e[3] if e[0] == 'step' else e[2]
                      for e in events]
            if starts:
                origin = min(origin, min(starts))
        end = origin
        for loop_index, recording in enumerate(recordings, 1):
            loop_lane = len(lanes)
            lanes.append({'id': 0, 'loop': loop_index, 'name': f'event loop {loop_index}',
                          'coroutine': '', 'stats': None})
            lane_of, names = {}, {}
            by_id = {task['id']: task for task in recording['tasks']}
            hidden = {task_id for task_id, task in by_id.items()
                      if task['library'] and not show_library_tasks}
            for task_id, task in sorted(by_id.items()):
                names[task_id] = str(task['name'])
            last_end = {}

            def lane(task_id):
                if task_id not in lane_of:
                    task = by_id.get(task_id, {})
                    lane_of[task_id] = len(lanes)
                    lanes.append({'id': task_id, 'loop': loop_index,
                                  'name': str(task.get('name', f'task {task_id}')),
                                  'coroutine': str(task.get('coroutine', '')),
                                  'stats': _lane_stats(task) if task else None})
                return lane_of[task_id]

            for event in recording['events']:
                kind = event[0]
                if event[1] in hidden:
                    continue
                if kind == 'created':
                    _, task_id, at, parent = event
                    index = lane(task_id)
                    last_end[task_id] = at
                    by = f' by {names.get(parent, "?")}' if parent else ''
                    marks.append((index, at - origin, f'created{by}'))
                    end = max(end, at)
                elif kind == 'step':
                    _, task_id, queued, start, stop, wait, done = event
                    index = lane(task_id)
                    previous = last_end.get(task_id)
                    if previous is not None and queued - previous > 0:
                        segments.append((index, 'wait', previous - origin, queued - origin,
                                         'waiting', lanes[index].get('waiting_on', '')))
                    if start - queued > 0:
                        segments.append((index, 'scheduled', queued - origin, start - origin,
                                         'ready, waiting for the loop', ''))
                    coroutine = lanes[index]['coroutine']
                    if wait is not None:
                        waiting_on = wait_text(wait, names)
                        detail = f'then waits on {waiting_on} at {place_text(wait[0])}'
                        lanes[index]['waiting_on'] = waiting_on
                    else:
                        detail = 'then ' + ('ends' if done else 'returns')
                    segments.append((index, 'run', start - origin, stop - origin,
                                     f'{coroutine} step', detail))
                    last_end[task_id] = stop
                    if done:
                        marks.append((index, stop - origin, 'done'))
                    end = max(end, stop)
                elif kind == 'blocking':
                    _, task_id, start, stop = event
                    who = f' by {names[task_id]}' if task_id in names else ''
                    segments.append((loop_lane, 'blocking', start - origin, stop - origin,
                                     f'loop blocked{who}', ''))
                    if task_id in lane_of:
                        segments.append((lane_of[task_id], 'blocking', start - origin,
                                         stop - origin, 'blocked the loop', ''))
                    end = max(end, stop)
                elif kind == 'poll':
                    _, _, start, stop = event
                    segments.append((loop_lane, 'poll', start - origin, stop - origin,
                                     'waiting in the poller', ''))
                    end = max(end, stop)
        for lane_info in lanes:
            lane_info.pop('waiting_on', None)
        return cls(lanes, _clip_blocking(segments), marks, origin, max(end - origin, 1e-6))

    def chrome_trace(self):
        """The trace-event format (JSON object form): one process per loop,
        one thread (track) per task, steps and waits as complete events."""
        events = []
        for loop in sorted({lane['loop'] for lane in self.lanes}):
            events.append({'ph': 'M', 'name': 'process_name', 'pid': loop, 'tid': 0,
                           'args': {'name': f'ferroloop event loop {loop}'}})
        for order, lane in enumerate(self.lanes):
            name = lane['name'] if not lane['coroutine'] else f"{lane['name']} ({lane['coroutine']})"
            events.append({'ph': 'M', 'name': 'thread_name', 'pid': lane['loop'],
                           'tid': lane['id'], 'args': {'name': name}})
            events.append({'ph': 'M', 'name': 'thread_sort_index', 'pid': lane['loop'],
                           'tid': lane['id'], 'args': {'sort_index': order}})
        for index, kind, start, stop, title, detail in self.segments:
            lane = self.lanes[index]
            name = (lane['coroutine'] if kind == 'run' else
                    detail if kind == 'wait' and detail else title)
            events.append({'ph': 'X', 'cat': kind, 'name': name or title,
                           'pid': lane['loop'], 'tid': lane['id'],
                           'ts': round(start * 1e6, 3), 'dur': round((stop - start) * 1e6, 3),
                           'args': {'what': title, 'detail': detail}})
        for index, at, text in self.marks:
            lane = self.lanes[index]
            events.append({'ph': 'i', 's': 't', 'cat': 'task', 'name': text,
                           'pid': lane['loop'], 'tid': lane['id'], 'ts': round(at * 1e6, 3)})
        return {'traceEvents': events, 'displayTimeUnit': 'ms',
                'otherData': {'generator': 'ferroloop'}}

    def write_json(self, path):
        import json
        with open(path, 'w') as out:
            json.dump(self.chrome_trace(), out)

    def html(self, title='ferroloop timeline'):
        """The self-contained HTML page (inline script and style)."""
        import html
        import json
        from ._timeline_page import PAGE
        data = {'lanes': self.lanes, 'duration': self.duration,
                'segments': self.segments, 'marks': self.marks}
        payload = json.dumps(data).replace('</', '<\\/')
        return (PAGE.replace('__TITLE__', html.escape(title))
                    .replace('__DATA__', payload))

    def write_html(self, path, title=None):
        with open(path, 'w', encoding='utf-8') as out:
            out.write(self.html(title or f'ferroloop timeline: {os.path.basename(str(path))}'))


def _clip_blocking(segments):
    """A blocking episode starts, as the detector reports it, up to one
    sampling period early; on a task's lane, start it with the step."""
    runs = {}
    for segment in segments:
        if segment[1] == 'run':
            runs.setdefault(segment[0], []).append(segment)
    clipped = []
    for segment in segments:
        if segment[1] == 'blocking' and segment[0] in runs:
            index, kind, start, stop, title, detail = segment
            overlapping = [r for r in runs[index] if r[2] < stop and r[3] > start]
            if overlapping:
                start = max(start, min(r[2] for r in overlapping))
            segment = (index, kind, start, stop, title, detail)
        clipped.append(segment)
    return clipped


def _lane_stats(task):
    return {'steps': task['steps'], 'busy': task['busy'], 'scheduled': task['scheduled'],
            'idle': task['idle'], 'slowest_step': task['slowest_step'],
            'slowest_at': place_text(task['slowest_at'])}
