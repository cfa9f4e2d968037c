"""The timeline tracer: what it records of tasks, the Chrome trace-event
JSON it writes (checked against the format's rules), and the HTML page,
rendered in headless Chromium."""

import asyncio
import concurrent.futures
import json
import shutil
import time
from pathlib import Path

import pytest

import ferroloop
from ferroloop._trace import Timeline

ARTEFACTS = Path(__file__).resolve().parent / 'artefacts'
CHROMIUM = shutil.which('chromium')


async def work(name, delay, blocking):
    if blocking:
        time.sleep(delay)
    else:
        await asyncio.sleep(delay)
    return name


async def lesson(blocking):
    return await asyncio.gather(work('a', 0.2, blocking), work('b', 0.1, blocking),
                                work('c', 0.3, blocking))


def traced_lesson(blocking, **paths):
    with ferroloop.trace(**paths) as tracer:
        assert ferroloop.run(lesson(blocking),
                             detect_blocking=0.05 if blocking else None) == ['a', 'b', 'c']
    return tracer.timeline


def runs_of(timeline):
    """{lane name: [(start, end)]} of the task lanes' running segments."""
    runs = {}
    for index, kind, start, stop, *_ in timeline.segments:
        if kind == 'run':
            runs.setdefault(timeline.lanes[index]['name'], []).append((start, stop))
    return runs


def test_sleeping_tasks_overlap_and_blocking_ones_follow_each_other():
    overlapping = traced_lesson(False)
    names = [lane['name'] for lane in overlapping.lanes if lane['id']]
    assert len(names) == 4  # main and the three gathered tasks
    workers = [lane for lane in overlapping.lanes if lane['coroutine'] == 'work']
    assert len(workers) == 3
    # Each worker runs twice (start, wake-up) and waits on its sleep between.
    runs = runs_of(overlapping)
    waits = {}
    for index, kind, start, stop, title, detail in overlapping.segments:
        if kind == 'wait':
            waits.setdefault(overlapping.lanes[index]['name'], []).append((start, stop, detail))
    for lane in workers:
        assert len(runs[lane['name']]) == 2
        [(start, stop, detail)] = waits[lane['name']]
        assert detail == 'sleep'
    spans = sorted(waits[lane['name']][0][1] - waits[lane['name']][0][0] for lane in workers)
    assert spans[0] >= 0.1 and spans[1] >= 0.2 and spans[2] >= 0.3
    # The waits overlap: all three started before the first ended.
    assert max(w[0][0] for w in (waits[lane['name']] for lane in workers)) < min(
        w[0][1] for w in (waits[lane['name']] for lane in workers))

    sequential = traced_lesson(True)
    runs = runs_of(sequential)
    worker_runs = sorted(runs[lane['name']][0] for lane in sequential.lanes
                         if lane['coroutine'] == 'work')
    # One after another, each as long as its time.sleep at least.
    assert [stop - start >= delay for (start, stop), delay in zip(worker_runs, (0.2, 0.1, 0.3))] \
        == [True, True, True]
    for (_, first_end), (second_start, _) in zip(worker_runs, worker_runs[1:]):
        assert second_start >= first_end
    blocking = [s for s in sequential.segments if s[1] == 'blocking' and
                sequential.lanes[s[0]]['id'] == 0]
    assert len(blocking) == 3


def test_creation_waits_on_another_task_and_cancellation():
    async def child():
        await asyncio.sleep(10)

    async def parent():
        task = asyncio.create_task(child(), name='child')
        await asyncio.sleep(0)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        waiter = asyncio.create_task(asyncio.sleep(0.01), name='short')
        await waiter

    with ferroloop.trace() as tracer:
        ferroloop.run(parent())
    recording = tracer.recordings[0]
    tasks = {task['name']: task for task in recording['tasks']}
    main = next(task for task in recording['tasks'] if task['coroutine'].endswith('parent'))
    assert tasks['child']['parent'] == main['id']
    assert tasks['child']['cancelled'] and tasks['child']['done']
    created = [e for e in recording['events'] if e[0] == 'created' and e[1] == tasks['child']['id']]
    assert created and created[0][3] != 0
    timeline = tracer.timeline
    details = [s[5] for s in timeline.segments
               if s[1] == 'run' and timeline.lanes[s[0]]['coroutine'].endswith('parent')]
    assert any('then waits on task child' in d for d in details)
    assert any('then waits on task short' in d for d in details)


def test_tracing_changes_no_result_and_stops_cleanly():
    async def item(i):
        await asyncio.sleep(0)
        return i

    async def main():
        return sum(await asyncio.gather(*(item(i) for i in range(50))))

    with ferroloop.trace() as tracer:
        assert ferroloop.run(main()) == sum(range(50))
    assert ferroloop.run(main()) == sum(range(50))
    assert len([l for l in tracer.timeline.lanes if l['id']]) == 51


def check_trace_event_format(trace):
    """The JSON object form of the trace-event format: a traceEvents list
    whose events have the fields their phase requires."""
    assert isinstance(trace, dict) and isinstance(trace['traceEvents'], list)
    assert trace.get('displayTimeUnit') in ('ms', 'ns')
    phases = set()
    for event in trace['traceEvents']:
        phase = event['ph']
        phases.add(phase)
        assert isinstance(event['name'], str) and event['name']
        assert isinstance(event['pid'], int) and isinstance(event['tid'], int)
        if phase == 'X':
            assert isinstance(event['ts'], (int, float)) and event['ts'] >= 0
            assert isinstance(event['dur'], (int, float)) and event['dur'] >= 0
            assert isinstance(event.get('cat', ''), str)
            assert isinstance(event.get('args', {}), dict)
        elif phase == 'i':
            assert event['s'] in ('g', 'p', 't')
            assert isinstance(event['ts'], (int, float))
        elif phase == 'M':
            assert event['name'] in ('process_name', 'thread_name', 'thread_sort_index')
            assert isinstance(event['args'], dict)
        else:
            raise AssertionError(f'unexpected phase {phase!r}')
    return phases


def test_chrome_trace_json_is_valid_trace_event_format(tmp_path):
    path = tmp_path / 'trace.json'
    traced_lesson(False, json=path)
    trace = json.loads(path.read_text())
    assert check_trace_event_format(trace) == {'M', 'X', 'i'}
    names = {e['args']['name'] for e in trace['traceEvents'] if e['name'] == 'thread_name'}
    assert 'event loop 1' in names
    assert len([n for n in names if n.startswith('Task-') and n.endswith(' (work)')]) == 3
    assert len([n for n in names if n.endswith(' (lesson)')]) == 1
    steps = [e for e in trace['traceEvents'] if e['ph'] == 'X' and e['cat'] == 'run']
    assert steps and all(e['name'] in ('work', 'lesson') for e in steps)
    assert {e['name'] for e in trace['traceEvents'] if e.get('cat') == 'wait'} >= {'sleep'}


def test_the_html_page_is_self_contained(tmp_path):
    path = tmp_path / 'timeline.html'
    traced_lesson(False, html=path)
    page = path.read_text()
    assert page.startswith('<!DOCTYPE html>')
    for needle in ('http://', 'https://', '<link', 'src='):
        assert needle not in page
    data = json.loads(page.split('id="timeline-data">', 1)[1].split('</script>', 1)[0])
    assert [lane['coroutine'] for lane in data['lanes']].count('work') == 3


def test_a_name_ending_in_json_writes_json(tmp_path):
    with ferroloop.trace(tmp_path / 'x.json'):
        ferroloop.run(asyncio.sleep(0))
    with ferroloop.trace(tmp_path / 'x.html'):
        ferroloop.run(asyncio.sleep(0))
    json.loads((tmp_path / 'x.json').read_text())
    assert (tmp_path / 'x.html').read_text().startswith('<!DOCTYPE html>')


@pytest.fixture(scope='module')
def browser():
    if CHROMIUM is None:
        pytest.skip('chromium is not installed (make test installs it)')
    sync_api = pytest.importorskip('playwright.sync_api')
    # Playwright starts Chromium with a fresh profile directory of its own.
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
                  '--disable-background-networking', '--disable-component-update',
                  '--disable-sync'])
        yield browser
        browser.close()


def render(browser, html_path, screenshot):
    """Opens the page; returns its lane names and the console errors."""
    page = browser.new_page(viewport={'width': 1100, 'height': 330})
    errors = []
    page.on('console', lambda message: errors.append(message.text)
            if message.type == 'error' else None)
    page.on('pageerror', lambda error: errors.append(str(error)))
    page.route('**/*', lambda route: route.abort()
               if not route.request.url.startswith('file://') else route.continue_())
    page.goto(html_path.as_uri())
    page.wait_for_selector('.lane-label')
    names = page.eval_on_selector_all('.lane-label .name', 'els => els.map(e => e.textContent)')
    coroutines = page.eval_on_selector_all('.lane-label', 'els => els.map(e => '
                                           '(e.querySelector(".coroutine") || {}).textContent || "")')
    # Hovering a running segment shows its details.
    box = page.query_selector('#canvas').bounding_box()
    page.mouse.move(box['x'] + box['width'] * 0.02, box['y'] + 24 + 28 * 2 + 14)
    tip = page.inner_text('#tip') if page.is_visible('#tip') else ''
    page.mouse.wheel(0, -300)
    page.screenshot(path=str(screenshot), full_page=True)
    page.close()
    return names, coroutines, errors, tip


def test_the_timeline_renders_in_chromium(browser, tmp_path):
    ARTEFACTS.mkdir(exist_ok=True)
    shots = []
    for blocking in (False, True):
        html_path = tmp_path / f'lesson_{"blocking" if blocking else "sleep"}.html'
        # Playwright runs an event loop in this thread: trace in another.
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            timeline = pool.submit(traced_lesson, blocking, html=html_path).result(60)
        shot = ARTEFACTS / f'{html_path.stem}.png'
        names, coroutines, errors, tip = render(browser, html_path, shot)
        assert errors == []
        assert names == [lane['name'] for lane in timeline.lanes]
        assert names[0] == 'event loop 1'
        assert coroutines.count('work') == 3
        assert shot.stat().st_size > 1000
        shots.append(html_path)
    # Both lessons on one page: the picture in the README (docs/timelines.png).
    both = tmp_path / 'lessons.html'
    both.write_text('<!DOCTYPE html><html><body style="margin:0">' + ''.join(
        f'<iframe src="{page.name}" style="width:1100px;height:330px;border:0;display:block">'
        '</iframe>' for page in shots) + '</body></html>')
    page = browser.new_page(viewport={'width': 1100, 'height': 660})
    page.goto(both.as_uri())
    for frame in page.frames[1:]:
        frame.wait_for_selector('.lane-label')
    page.screenshot(path=str(ARTEFACTS / 'lessons.png'))
    page.close()
    assert (ARTEFACTS / 'lessons.png').stat().st_size > 1000
