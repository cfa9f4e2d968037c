"""``pytest --ferroloop`` and the one-liners that do without it, on the sample
suites in tests/plugin_samples (pytest-asyncio, anyio, unittest's
IsolatedAsyncioTestCase). Each sample checks which loop runs it against
EXPECTED_LOOP, so a run that passes proves the loop was the expected one."""

import asyncio
import os
import subprocess
import sys

import pytest

import ferroloop.pytest_plugin
from conftest import ROOT

SAMPLES = ROOT / 'tests' / 'plugin_samples'
SUITES = ['sample_pytest_asyncio.py', 'sample_anyio.py', 'sample_unittest.py']
SAMPLE_TESTS = {'sample_pytest_asyncio.py': 3, 'sample_anyio.py': 2, 'sample_unittest.py': 2}
TIMEOUT = 120


def run_pytest(expected_loop, *args):
    env = dict(os.environ, EXPECTED_LOOP=expected_loop, PYTHONDONTWRITEBYTECODE='1')
    return subprocess.run(
        [sys.executable, '-m', 'pytest', '-p', 'no:cacheprovider',
         '-W', 'error::DeprecationWarning', *args],
        cwd=SAMPLES, env=env, capture_output=True, text=True, timeout=TIMEOUT)


def closing_line(proc):
    return proc.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize('suite', SUITES)
def test_option_runs_the_suite_on_ferroloop(suite):
    proc = run_pytest('ferroloop', '--ferroloop', suite)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f'{SAMPLE_TESTS[suite]} passed' in closing_line(proc), proc.stdout
    assert 'event loops: ferroloop ' in proc.stdout


@pytest.mark.parametrize('suite', SUITES)
def test_without_the_option_the_plugin_does_nothing(suite):
    proc = run_pytest('asyncio', suite)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f'{SAMPLE_TESTS[suite]} passed' in closing_line(proc), proc.stdout
    assert 'event loops: ferroloop' not in proc.stdout


@pytest.mark.parametrize('suite', SUITES)
def test_one_liners_without_the_plugin(suite):
    one_liner_suite = 'oneliners/' + suite.replace('sample_', 'sample_oneliner_')
    proc = run_pytest('ferroloop', '-p', 'no:ferroloop', one_liner_suite)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f'{SAMPLE_TESTS[suite]} passed' in closing_line(proc), proc.stdout


def test_samples_fail_on_the_wrong_loop():
    # The check the samples make is real: expecting ferroloop without the
    # option fails every test that looks at its loop.
    proc = run_pytest('ferroloop', *SUITES)
    assert proc.returncode == 1
    assert '5 failed, 2 passed' in closing_line(proc), proc.stdout


class ConfigWithOption:
    """What the plugin's hooks use of pytest's Config, ``--ferroloop`` given."""

    def __init__(self):
        self.stash = pytest.Stash()

    def getoption(self, name):
        return name == 'ferroloop'


def test_plugin_puts_the_previous_policy_back():
    before = asyncio.get_event_loop_policy()
    config = ConfigWithOption()
    ferroloop.pytest_plugin.pytest_configure(config)
    try:
        assert isinstance(asyncio.get_event_loop_policy(), ferroloop.EventLoopPolicy)
    finally:
        ferroloop.pytest_plugin.pytest_unconfigure(config)
    assert asyncio.get_event_loop_policy() is before
