"""The console: ``python -m ferroloop ps PID`` asks a running process for
its tasks over a Unix socket.

A process serves it only when started with ``FERROLOOP_CONSOLE=1``, from
its first ferroloop loop on; otherwise nothing is opened. The socket is
``<dir>/<pid>.sock``, where ``<dir>`` is ``$FERROLOOP_CONSOLE_DIR`` or
``/tmp/ferroloop-console-<uid>``: the directory is made with mode 0700 and
refused if it exists with another owner or any access for others; the
socket gets mode 0600. Beyond the file modes, each connection's peer is
checked with ``SO_PEERCRED``: only the process's own user is answered.

The serving thread answers one JSON request per connection (``{"command":
"ps"}``) with every task of every live ferroloop loop: name, coroutine,
state, where it waits (file and line of user code), and, from the per-task
statistics the console switches on, its steps and busy time.
"""

import asyncio
import atexit
import json
import os
import socket
import stat
import struct
import sys
import threading


_REQUEST_LIMIT = 4096
_TIMEOUT = 5.0
_server = None


class ConsoleError(Exception):
    """Why a console could not be asked (one line for the user)."""


def console_dir(uid=None):
    uid = os.getuid() if uid is None else uid
    configured = os.environ.get('FERROLOOP_CONSOLE_DIR')
    return configured or os.path.join('/tmp', f'ferroloop-console-{uid}')


def socket_path(pid, uid=None):
    return os.path.join(console_dir(uid), f'{pid}.sock')


def _private_dir(path):
    """Makes (or checks) a directory only our user can enter."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode):
        raise OSError(f'{path} is not a directory')
    if info.st_uid != os.getuid():
        raise OSError(f'{path} belongs to another user')
    if info.st_mode & 0o077:
        raise OSError(f'{path} is open to other users (mode {stat.S_IMODE(info.st_mode):o})')


class _Server:
    def __init__(self, live_loops):
        self.live_loops = live_loops
        self.pid = os.getpid()
        self.path = socket_path(self.pid)
        _private_dir(os.path.dirname(self.path))
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.path)
        os.chmod(self.path, 0o600)
        self.listener.listen(8)
        self.thread = threading.Thread(target=self.serve, name='ferroloop-console',
                                       daemon=True)
        self.thread.start()
        atexit.register(self.remove)

    def remove(self):
        if os.getpid() == self.pid:
            try:
                os.unlink(self.path)
            except OSError:
                pass

    def serve(self):
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            with connection:
                try:
                    connection.settimeout(_TIMEOUT)
                    connection.sendall(self.answer(connection))
                except OSError:
                    pass

    def answer(self, connection):
        credentials = connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                            struct.calcsize('3i'))
        _, uid, _ = struct.unpack('3i', credentials)
        if uid != os.getuid():
            return _reply({'ok': False, 'error': 'refused: another user'})
        request = b''
        while not request.endswith(b'\n') and len(request) < _REQUEST_LIMIT:
            chunk = connection.recv(_REQUEST_LIMIT)
            if not chunk:
                break
            request += chunk
        try:
            command = json.loads(request).get('command')
        except (ValueError, AttributeError):
            command = None
        if command != 'ps':
            return _reply({'ok': False, 'error': f'unknown request {request[:80]!r}'})
        return _reply({'ok': True, 'pid': os.getpid(), 'argv': sys.argv, 'tasks': list_tasks(self.live_loops())})


def _reply(message):
    return json.dumps(message).encode() + b'\n'


def serve(live_loops):
    """Starts serving the console in this process (once; again in a forked
    child), reporting the loops ``live_loops()`` lists. A directory that is
    not private is refused, with a warning."""
    global _server
    if _server is not None and _server.pid == os.getpid():
        return
    try:
        _server = _Server(live_loops)
    except OSError as exc:
        _server = None
        print(f'ferroloop: console not served: {exc}', file=sys.stderr)


def _where(task):
    """The innermost user-code line the task is suspended at."""
    from ._blocking import is_library_file
    place = None
    awaiting = task.get_coro()
    for _ in range(64):
        code = getattr(awaiting, 'cr_code', None) or getattr(awaiting, 'gi_code', None)
        if code is None:
            break
        frame = getattr(awaiting, 'cr_frame', None) or getattr(awaiting, 'gi_frame', None)
        if frame is not None and not is_library_file(code.co_filename):
            place = f'{code.co_filename}:{frame.f_lineno}'
        awaiting = getattr(awaiting, 'cr_await', None) or getattr(awaiting, 'gi_yieldfrom', None)
        if awaiting is None:
            break
    return place


def _state(task, running):
    if task.done():
        return 'cancelled' if task.cancelled() else 'done'
    if task is running:
        return 'running'
    return 'waiting' if getattr(task, '_fut_waiter', None) is not None else 'ready'


def list_tasks(loops):
    """Every task of the given loops, as the console reports them."""
    rows = []
    for number, loop in enumerate(loops, 1):
        stats = {id(entry['task']): entry for entry in (loop.task_stats() or ())
                 if entry['task'] is not None}
        running = asyncio.current_task(loop) if loop.is_running() else None
        for task in sorted(asyncio.all_tasks(loop), key=lambda t: t.get_name()):
            coro = task.get_coro()
            entry = stats.get(id(task), {})
            rows.append({
                'loop': number,
                'name': task.get_name(),
                'coroutine': getattr(coro, '__qualname__', type(coro).__name__),
                'state': _state(task, running),
                'where': _where(task),
                'steps': entry.get('steps'),
                'busy': entry.get('busy'),
            })
    return rows


def ask(pid, timeout=_TIMEOUT):
    """The console's answer from process ``pid``."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        raise ConsoleError(f'no process {pid}') from None
    except PermissionError:
        raise ConsoleError(f'process {pid} belongs to another user') from None
    try:
        owner = os.stat(f'/proc/{pid}').st_uid
    except OSError:
        owner = os.getuid()
    if owner != os.getuid():
        raise ConsoleError(f'process {pid} belongs to another user')
    path = socket_path(pid)
    if not os.path.exists(path):
        raise ConsoleError(f'process {pid} serves no console '
                           '(start it with FERROLOOP_CONSOLE=1)')
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.settimeout(timeout)
            client.connect(path)
            client.sendall(_reply({'command': 'ps'}))
            data = b''
            while True:
                chunk = client.recv(65536)
                if not chunk:
                    break
                data += chunk
    except PermissionError:
        raise ConsoleError(f'permission denied for the console of process {pid}') from None
    except (ConnectionRefusedError, FileNotFoundError):
        raise ConsoleError(f'process {pid} does not answer on its console '
                           '(it may have ended)') from None
    except OSError as exc:
        raise ConsoleError(f'cannot ask process {pid}: {exc.strerror or exc}') from None
    try:
        answer = json.loads(data)
    except ValueError:
        raise ConsoleError(f'process {pid} sent an unreadable answer') from None
    if not answer.get('ok'):
        raise ConsoleError(f'process {pid}: {answer.get("error", "no answer")}')
    return answer


def format_tasks(answer):
    from ._trace import _seconds
    header = ('loop', 'task', 'coroutine', 'state', 'waits at', 'steps', 'busy')
    rows = [header]
    for task in answer['tasks']:
        rows.append((str(task['loop']), task['name'], task['coroutine'], task['state'],
                     task['where'] or '-',
                     '-' if task['steps'] is None else str(task['steps']),
                     '-' if task['busy'] is None else _seconds(task['busy'])))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [f'process {answer["pid"]}: {" ".join(answer["argv"])}',
             f'{len(answer["tasks"])} task(s)']
    for row in rows:
        lines.append('  '.join(cell.rjust(w) if i in (0, 5, 6) else cell.ljust(w)
                               for i, (cell, w) in enumerate(zip(row, widths))).rstrip())
    return '\n'.join(lines)


def print_tasks(pid):
    print(format_tasks(ask(pid)))
