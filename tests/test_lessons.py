"""The lesson programs give exactly stock asyncio's output on ferroloop."""

from pathlib import Path

import pytest

from conftest import run_program_on_both

LESSONS = Path(__file__).resolve().parent.parent / 'examples' / 'lessons'


def lesson(name):
    return (LESSONS / name).read_text()


@pytest.mark.parametrize('name', sorted(p.name for p in LESSONS.glob('*.py')))
def test_lesson_output_matches_stock_asyncio(name):
    runs = run_program_on_both(lesson(name), name=name)
    stock, ours = runs['asyncio'], runs['ferroloop']
    assert ours.returncode == stock.returncode == 0, ours.stderr
    assert ours.stdout == stock.stdout
    assert ours.stderr == stock.stderr


def test_return_value():
    ours = run_program_on_both(lesson('01_return_value.py'))['ferroloop']
    assert ours.stdout == 'Result a\n'


def test_sleep_never_returns_early():
    ours = run_program_on_both(lesson('02_sleep.py'))['ferroloop']
    assert ours.stdout == 'sleeping for 1.0 s\nawake\n'
    assert ours.took >= 1.0


def test_gathered_sleeps_overlap():
    ours = run_program_on_both(lesson('03_gather.py'))['ferroloop']
    assert ours.stdout.splitlines() == [
        'a started', 'b started', 'c started',
        'b finished', 'a finished', 'c finished',
        "Result ['a', 'b', 'c']",
    ]
    # The waits overlap: the run lasts as long as the longest sleep (0.3 s),
    # well short of their sum (0.6 s); and never less than 0.3 s.
    assert 0.3 <= ours.took < 0.55


def test_blocking_sleep_runs_sequentially():
    ours = run_program_on_both(lesson('04_blocking.py'))['ferroloop']
    assert ours.stdout.splitlines()[:2] == ['a started', 'a finished']
    assert ours.took >= 0.6


def test_missing_await_warns():
    ours = run_program_on_both(lesson('05_missing_await.py'))['ferroloop']
    assert "RuntimeWarning: coroutine 'greet' was never awaited" in ours.stderr
    assert 'hello' not in ours.stdout
