"""``python -m ferroloop``: run, trace, or look into asyncio programs.

    python -m ferroloop run [--detect-blocking S] [--stats] script.py [args...]
    python -m ferroloop run [--detect-blocking S] [--stats] -m module [args...]
    python -m ferroloop trace [-o timeline.html] [--json trace.json] script.py [args...]
    python -m ferroloop ps PID

``run`` runs an unmodified asyncio program on ferroloop: ferroloop's policy
is installed, so ``asyncio.run``, ``asyncio.Runner`` and
``get_event_loop().run_until_complete`` use it; ``sys.argv``, ``sys.path[0]``,
the ``__main__`` module, the exit status and uncaught exceptions are as
``python script.py`` (or ``python -m module``) would have them: the
traceback starts at the program's own first frame.

Mistakes on the command line are one line on stderr and a non-zero exit,
never a traceback.
"""

import argparse
import builtins
import importlib.machinery
import io
import os
import runpy
import signal
import sys
import types

from . import instruments

_PROG = 'python -m ferroloop'


class UsageError(Exception):
    """A mistake on the command line: one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(f'{self.prog}: error: {message}')


def _threshold(text):
    try:
        value = instruments.parse_threshold(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if value is None:
        raise argparse.ArgumentTypeError(f'{text!r}: the threshold must be more than 0')
    return value


def _pid(text):
    try:
        pid = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'{text!r} is not a process id') from None
    if pid <= 0:
        raise argparse.ArgumentTypeError(f'{text!r} is not a process id')
    return pid


def _add_program(parser):
    parser.add_argument('--detect-blocking', metavar='S', type=_threshold,
                        help='report callbacks that hold the loop S seconds or more')
    parser.add_argument('--stats', action='store_true',
                        help='print per-task statistics at exit, by busy time')
    parser.add_argument('-m', dest='module', metavar='module',
                        help='run a library module as a script (like python -m)')
    parser.add_argument('program', nargs=argparse.REMAINDER, metavar='script.py [args...]',
                        help='the program and its arguments')


def build_parser():
    parser = _Parser(prog=_PROG, description='Run, trace, or look into asyncio programs '
                     'on ferroloop.')
    commands = parser.add_subparsers(dest='command', metavar='{run,trace,ps}', required=True,
                                     parser_class=_Parser)
    run = commands.add_parser('run', help='run a program on ferroloop',
                              description='Run an unmodified asyncio program on ferroloop, '
                              'as python would run it.')
    _add_program(run)
    trace = commands.add_parser('trace', help='run a program and write its task timeline',
                                description='Run a program on ferroloop and write the timeline '
                                'of its tasks: an HTML page, and Chrome trace JSON if asked.')
    trace.add_argument('-o', dest='html', metavar='timeline.html', default='timeline.html',
                       help='the HTML timeline to write (default: timeline.html)')
    trace.add_argument('--json', metavar='trace.json',
                       help='also write Chrome trace-event JSON (Perfetto, chrome://tracing)')
    _add_program(trace)
    ps = commands.add_parser('ps', help="list another process's tasks",
                             description='List the tasks of a process started with '
                             'FERROLOOP_CONSOLE=1.')
    ps.add_argument('pid', type=_pid, metavar='PID', help='the process id')
    return parser


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = build_parser().parse_args(argv)
        if args.command == 'ps':
            from .console import ConsoleError, print_tasks
            try:
                print_tasks(args.pid)
            except ConsoleError as exc:
                print(f'{_PROG} ps: {exc}', file=sys.stderr)
                return 1
            return 0
        if args.module is None and not args.program:
            raise UsageError(f'{_PROG} {args.command}: error: '
                             'a script (or -m module) to run is required')
        if args.module is None and args.program[0].startswith('-'):
            raise UsageError(f'{_PROG} {args.command}: error: '
                             f'unrecognized arguments: {args.program[0]}')
    except UsageError as exc:
        print(exc, file=sys.stderr)
        return 2
    return run_program(args)


def run_program(args):
    """Runs the program with what the options ask for, as python would."""
    import ferroloop
    settings = instruments.current_settings()
    if args.detect_blocking:
        settings.detect_blocking = args.detect_blocking
    sessions = []
    if args.stats:
        sessions.append(instruments.open_session(instruments.TaskStatsTable(sys.stderr)))
    if args.command == 'trace':
        sessions.append(ferroloop.trace(html=args.html, json=args.json).start())
    ferroloop.install()
    try:
        if args.module is not None:
            return _run_module(args.module, args.program)
        return _run_script(args.program[0], args.program[1:])
    finally:
        for session in reversed(sessions):
            instruments.close_session(session)
            if isinstance(session, ferroloop.trace):
                written = [p for p in (session.html_path, session.json_path) if p]
                print(f'ferroloop: timeline written to {" and ".join(written)}',
                      file=sys.stderr, flush=True)


def _fresh_main_module():
    main = types.ModuleType('__main__')
    main.__dict__.update(__builtins__=builtins, __annotations__={})
    sys.modules['__main__'] = main
    return main


def _run_module(name, args):
    """``python -m name args``: runpy's ``_run_module_as_main`` is what the
    interpreter itself calls for ``-m``."""
    sys.argv = [name, *args]
    sys.path[0] = os.getcwd()
    _fresh_main_module()
    # python -m shows runpy's frames in tracebacks too: keep them.
    return _run_reporting_exceptions(lambda: runpy._run_module_as_main(name, alter_argv=True))


def _run_script(path, args):
    """``python path args``, in a ``__main__`` module set up as python does."""
    full_path = os.path.abspath(path)
    try:
        with io.open_code(full_path) as source_file:
            source = source_file.read()
    except OSError as exc:
        print(f"{_PROG} run: can't open file {full_path!r}: [Errno {exc.errno}] {exc.strerror}",
              file=sys.stderr)
        return 2
    sys.argv = [path, *args]
    sys.path[0] = os.path.dirname(os.path.realpath(path))
    main = _fresh_main_module()
    main.__dict__.update(
        __file__=full_path,
        __cached__=None,
        __loader__=importlib.machinery.SourceFileLoader('__main__', full_path),
        __spec__=None,
        __package__=None,
    )
    try:
        code = compile(source, full_path, 'exec', dont_inherit=True)
    except SyntaxError as exc:
        _print_exception(exc)
        return 1
    return _run_reporting_exceptions(lambda: exec(code, main.__dict__))


def _run_reporting_exceptions(run):
    """Runs the program; an uncaught exception is shown as python shows it,
    from the program's first frame, with python's exit status."""
    try:
        run()
    except SystemExit:
        raise
    except BaseException as exc:  # noqa: BLE001  (shown as the interpreter would)
        _print_exception(exc)
        if isinstance(exc, KeyboardInterrupt):
            _exit_as_interrupted()
        return 1
    return 0


def _print_exception(exc):
    """Hands the exception to sys.excepthook, as the interpreter does, with
    the frames of this module removed from its traceback."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    exc.__traceback__ = tb
    sys.excepthook(type(exc), exc, tb)


def _exit_as_interrupted():
    """python ends on an uncaught KeyboardInterrupt by killing itself with
    SIGINT (after its exit handlers), so the parent sees the signal."""
    import atexit
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGINT)
