"""The type stubs type-check user code: ``mypy --strict`` on the examples and
on a program that uses every public name, for the Python running the tests;
and the stubs name what the package really has."""

import ast
import asyncio
import subprocess
import sys

import ferroloop
from conftest import ROOT

STUB = ROOT / 'python' / 'ferroloop' / '__init__.pyi'
EVERY_NAME = ROOT / 'tests' / 'typing' / 'uses_every_public_name.py'
TIMEOUT = 300


def test_mypy_strict_on_the_examples_and_every_public_name(tmp_path):
    version = f'{sys.version_info.major}.{sys.version_info.minor}'
    proc = subprocess.run(
        [sys.executable, '-m', 'mypy', '--strict', '--python-version', version,
         '--cache-dir', str(tmp_path), '--no-error-summary', '--hide-error-context',
         'examples', str(EVERY_NAME.relative_to(ROOT))],
        cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT)
    # The one error is lesson 5's point: a coroutine called without await.
    assert proc.stdout.splitlines() == [
        'examples/lessons/05_missing_await.py:11: error: Value of type '
        '"Coroutine[Any, Any, None]" must be used  [unused-coroutine]',
        'examples/lessons/05_missing_await.py:11: note: Are you missing an await?',
    ], proc.stdout + proc.stderr


def test_the_type_checked_program_runs():
    proc = subprocess.run([sys.executable, '-W', 'error', str(EVERY_NAME)],
                          capture_output=True, text=True, timeout=TIMEOUT)
    runs = 6 if sys.version_info >= (3, 12) else 5
    assert proc.stdout == f"{ferroloop.__version__} {['done'] * runs}\n", proc.stderr
    assert proc.returncode == 0


def stub_tree():
    return ast.parse(STUB.read_text())


def test_stub_declares_every_public_name():
    declared = set()
    for node in stub_tree().body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            declared.add(node.name)
        elif isinstance(node, ast.AnnAssign):
            declared.add(node.target.id)
        elif isinstance(node, ast.Assign) and node.targets[0].id == '__all__':
            assert ast.literal_eval(node.value) == ferroloop.__all__
    assert declared >= {*ferroloop.__all__, '__version__'}


def test_loop_implements_every_method_the_stub_says_it_does():
    # The stub names the abstract methods of AbstractEventLoop as Loop's, so
    # that checkers see a concrete class; the runtime class implements every
    # method of AbstractEventLoop (abstract in the stubs or not).
    loop_class = next(node for node in stub_tree().body
                      if isinstance(node, ast.ClassDef) and node.name == 'Loop')
    named = {node.targets[0].id for node in loop_class.body if isinstance(node, ast.Assign)}
    methods = {name for name, value in vars(asyncio.AbstractEventLoop).items()
               if callable(value) and not name.startswith('_')}
    assert named <= methods
    for name in methods:
        assert getattr(ferroloop.Loop, name) is not getattr(asyncio.AbstractEventLoop, name), name
