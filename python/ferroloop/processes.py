"""Child processes of ``subprocess_exec``/``subprocess_shell``: started by
ferroloop's native spawn, reaped by the loop itself.

- ``NativePopen`` is a ``subprocess.Popen`` (what asyncio's transports hold,
  and what ``get_extra_info('subprocess')`` returns), so every keyword
  ``Popen`` takes on this Python version is checked and prepared by
  ``Popen`` itself; only the start of the child is ours. ``_execute_child``
  is overridden for that: it hands what ``Popen`` prepared to the native
  ``spawn`` (``clone`` with ``CLONE_VFORK``, see ``crates/python/src/spawn.rs``),
  which knows the outcome of the ``exec`` when it returns, so nothing waits
  on an error pipe. A ``preexec_fn`` runs Python code in the child, which
  only CPython's ``_posixsubprocess`` can do; there the error pipe is read by
  the loop, without blocking, before the transport connects.
- ``ChildReaper`` reaps the loop's children with no thread and no child
  watcher: a pidfd (from the same ``clone``) watched by the poller where the
  kernel has pidfds, and otherwise a poll of ``waitid(WNOHANG)`` on a timer
  that backs off.
- ``SubprocessTransport`` is asyncio's ``BaseSubprocessTransport`` (the
  protocol callbacks and their order, ``_wait``, the pipes connected through
  ``connect_read_pipe``/``connect_write_pipe``, hence native pipe transports)
  with the child started as above.
"""

import builtins
import os
import subprocess
import sys
from asyncio import base_subprocess
from asyncio.log import logger

from ._ferroloop import reap, spawn

# 3.13 tells a failed chdir(cwd) apart from the other steps before exec
# and names no file for the latter; earlier versions name cwd for both.
_NOEXEC_NAMES_NO_FILE = sys.version_info >= (3, 13)

# Steps of starting the child that the native spawn reports failed.
_FAILED_EXEC, _FAILED_CHDIR = 1, 2

# Error pipe of a preexec_fn child: at most this much is read (CPython's
# limit), in chunks of this size.
_ERRPIPE_LIMIT = 50000


def _child_failure_text(failed_errno, step):
    """What ``_posixsubprocess`` of this version writes to its error pipe
    for a failure at ``step``; parsed by ``child_exception``."""
    if step == _FAILED_EXEC:
        message = ''
    elif step == _FAILED_CHDIR and _NOEXEC_NAMES_NO_FILE:
        message = 'noexec:chdir'
    else:
        message = 'noexec'
    return f'OSError:{failed_errno:x}:{message}'.encode()


def child_exception(data, orig_executable, cwd):
    """A copy of the end of ``Popen._execute_child`` (which parses the
    report inline, so it cannot be reused): the exception ``subprocess.Popen``
    raises for what a failed child reported, worded as this version words it."""
    try:
        exception_name, hex_errno, err_msg = bytes(data).split(b':', 2)
        err_msg = err_msg.decode()
    except ValueError:
        exception_name = b'SubprocessError'
        hex_errno = b'0'
        err_msg = f'Bad exception data from child: {bytes(data)!r}'
    child_exception_type = getattr(builtins, exception_name.decode('ascii'),
                                   subprocess.SubprocessError)
    if issubclass(child_exception_type, OSError) and hex_errno:
        errno_num = int(hex_errno, 16)
        err_filename = orig_executable
        if _NOEXEC_NAMES_NO_FILE:
            if err_msg == 'noexec:chdir':
                err_msg, err_filename = '', cwd
            elif err_msg == 'noexec':
                err_msg, err_filename = '', None
        elif err_msg == 'noexec':
            err_msg, err_filename = '', cwd
        if errno_num != 0:
            err_msg = os.strerror(errno_num)
        if err_filename is None and _NOEXEC_NAMES_NO_FILE:
            return child_exception_type(errno_num, err_msg)
        return child_exception_type(errno_num, err_msg, err_filename)
    return child_exception_type(err_msg)


class NativePopen(subprocess.Popen):
    """A ``subprocess.Popen`` whose child is started natively.

    ``reaper`` takes the child when starting it fails after the clone (the
    child then exits at once and is reaped by the loop, not waited for).
    ``pidfd`` is the child's pidfd, -1 without one. ``exec_errpipe`` is the
    error pipe of a ``preexec_fn`` child, for the loop to read, or None.
    """

    def __init__(self, args, *, reaper, **kwargs):
        self.pidfd = -1
        self.exec_errpipe = None
        self._reaper = reaper
        super().__init__(args, **kwargs)

    def _execute_child(self, args, executable, preexec_fn, close_fds,
                       pass_fds, cwd, env, startupinfo, creationflags, shell,
                       p2cread, p2cwrite, c2pread, c2pwrite, errread,
                       errwrite, restore_signals, gid, gids, uid, umask,
                       start_new_session, process_group):
        """A copy of CPython's own ``_execute_child`` up to the call that
        starts the child (the same checks and errors; it cannot be called
        for them alone), then the native spawn."""
        if isinstance(args, (str, bytes)):
            args = [args]
        elif isinstance(args, os.PathLike):
            if shell:
                raise TypeError('path-like args is not allowed when '
                                'shell is true')
            args = [args]
        else:
            args = list(args)
        if shell:
            unix_shell = ('/system/bin/sh' if
                          hasattr(sys, 'getandroidapilevel') else '/bin/sh')
            args = [unix_shell, '-c'] + args
            if executable:
                args[0] = executable
        if executable is None:
            executable = args[0]
        sys.audit('subprocess.Popen', executable, args, cwd, env)
        orig_executable = executable
        if env is not None:
            env_list = []
            for k, v in env.items():
                k = os.fsencode(k)
                if b'=' in k:
                    raise ValueError('illegal environment variable name')
                env_list.append(k + b'=' + os.fsencode(v))
        else:
            env_list = None
        executable = os.fsencode(executable)
        stdio = (p2cread, p2cwrite, c2pread, c2pwrite, errread, errwrite)
        if preexec_fn is not None:
            if os.path.dirname(executable):
                executable_list = (executable,)
            else:
                executable_list = tuple(
                    os.path.join(os.fsencode(dir), executable)
                    for dir in os.get_exec_path(env))
            self._fork_exec_with_preexec(
                args, executable_list, close_fds, pass_fds, cwd, env_list,
                stdio, restore_signals, start_new_session, process_group,
                gid, gids, uid, umask, preexec_fn, orig_executable)
            return
        # The search along PATH is built natively (the same list).
        pid, pidfd, failed_errno, step = spawn(
            executable, os.get_exec_path(env), args, env_list, cwd, stdio,
            sorted(set(map(int, pass_fds))), close_fds, restore_signals,
            start_new_session, process_group, gid, gids, uid, umask,
            self._reaper.uses_pidfd)
        self.pid = pid
        self.pidfd = pidfd
        self._child_created = True
        self._close_pipe_fds(*stdio)
        if step:
            # The child exits at once; the loop reaps it.
            self._child_created = False
            self._reaper.discard(pid, pidfd)
            self.pidfd = -1
            raise child_exception(_child_failure_text(failed_errno, step),
                                  orig_executable, cwd)

    def _fork_exec_with_preexec(self, args, executable_list, close_fds,
                                pass_fds, cwd, env_list, stdio,
                                restore_signals, start_new_session,
                                process_group, gid, gids, uid, umask,
                                preexec_fn, orig_executable):
        """Starts the child with CPython's ``_posixsubprocess`` (which can
        run Python code in it) and leaves its error pipe to the loop."""
        errpipe_read, errpipe_write = os.pipe()
        low_fds_to_close = []
        while errpipe_write < 3:
            low_fds_to_close.append(errpipe_write)
            errpipe_write = os.dup(errpipe_write)
        for low_fd in low_fds_to_close:
            os.close(low_fd)
        try:
            try:
                fds_to_keep = set(pass_fds)
                fds_to_keep.add(errpipe_write)
                self.pid = subprocess._fork_exec(
                    args, executable_list, close_fds,
                    tuple(sorted(map(int, fds_to_keep))), cwd, env_list,
                    *stdio, errpipe_read, errpipe_write, restore_signals,
                    start_new_session, process_group, gid, gids, uid, umask,
                    preexec_fn, False)
                self._child_created = True
            finally:
                os.close(errpipe_write)
            self._close_pipe_fds(*stdio)
            os.set_blocking(errpipe_read, False)
            if self._reaper.uses_pidfd:
                # Not yet reaped, so the pid cannot have been reused.
                try:
                    self.pidfd = os.pidfd_open(self.pid)
                except OSError:
                    pass
        except BaseException:
            os.close(errpipe_read)
            raise
        self.exec_errpipe = (errpipe_read, orig_executable, cwd)


class ChildReaper:
    """Reaps one loop's children as they end, with no thread: through
    their pidfds in the loop's poller, or (``uses_pidfd`` false) by polling
    ``waitid(WNOHANG)`` on a timer that backs off from 1 ms to 100 ms and
    is quickened whenever a child is started or signalled."""

    _FIRST_POLL_DELAY = 0.001
    _MAX_POLL_DELAY = 0.1

    def __init__(self, loop, uses_pidfd):
        self._loop = loop
        self.uses_pidfd = uses_pidfd
        # pid -> (popen or None, callback(returncode) or None, pidfd)
        self._children = {}
        self._poll_handle = None
        self._poll_delay = self._FIRST_POLL_DELAY

    def watch(self, popen, callback):
        """Calls ``callback(returncode)`` soon after ``popen``'s child ends."""
        self._add(popen.pid, popen, callback, popen.pidfd)
        popen.pidfd = -1  # now the reaper's to close

    def discard(self, pid, pidfd):
        """Reaps a child nobody waits for (one that failed to exec)."""
        self._add(pid, None, None, pidfd)

    def _add(self, pid, popen, callback, pidfd):
        self._children[pid] = (popen, callback, pidfd)
        if pidfd >= 0:
            self._loop._add_reader(pidfd, self._reap, pid)
        else:
            self.quicken()

    def quicken(self):
        """Polls soon: a child was started or signalled."""
        if self.uses_pidfd and not self._polled():
            return
        self._poll_delay = self._FIRST_POLL_DELAY
        if self._poll_handle is not None:
            self._poll_handle.cancel()
        self._poll_handle = self._loop.call_later(self._poll_delay,
                                                  self._poll)

    def _polled(self):
        return any(pidfd < 0 for _, _, pidfd in self._children.values())

    def _poll(self):
        self._poll_handle = None
        for pid in [pid for pid, (_, _, pidfd) in self._children.items()
                    if pidfd < 0]:
            self._reap(pid)
        if self._polled():
            self._poll_delay = min(self._poll_delay * 2, self._MAX_POLL_DELAY)
            self._poll_handle = self._loop.call_later(self._poll_delay,
                                                      self._poll)

    def reap_ended(self):
        """Reaps now every child that has ended (before a SIGCHLD handler
        of user code runs, which might reap them with ``waitpid(-1)``)."""
        for pid in list(self._children):
            self._reap(pid)

    def _reap(self, pid):
        entry = self._children.get(pid)
        if entry is None:
            return
        popen, callback, pidfd = entry
        try:
            returncode = reap(pid, pidfd)
        except ChildProcessError:
            # Reaped elsewhere: by the Popen itself (poll(), wait(),
            # send_signal()), which kept the status, or by other code, as
            # asyncio's watchers report it.
            returncode = None if popen is None else popen.returncode
            if returncode is None:
                returncode = 255
                if callback is not None:
                    logger.warning('Unknown child process pid %d, will '
                                   'report returncode 255', pid)
        if returncode is None:
            return
        del self._children[pid]
        if pidfd >= 0:
            self._loop._remove_reader(pidfd)
            os.close(pidfd)
        if callback is not None:
            self._loop.call_soon(callback, returncode)

    def close(self):
        """The loop closes: let go of the children still running (the
        ``Popen`` objects of those still referenced reap them as
        ``subprocess`` does for its own)."""
        if self._poll_handle is not None:
            self._poll_handle.cancel()
            self._poll_handle = None
        for popen, _, pidfd in self._children.values():
            if pidfd >= 0:
                os.close(pidfd)
        self._children.clear()


class SubprocessTransport(base_subprocess.BaseSubprocessTransport):
    """asyncio's subprocess transport over a natively started child."""

    def _start(self, args, shell, stdin, stdout, stderr, bufsize, **kwargs):
        reaper = self._loop._child_reaper()
        self._proc = NativePopen(
            args, shell=shell, stdin=stdin, stdout=stdout, stderr=stderr,
            universal_newlines=False, bufsize=bufsize, reaper=reaper,
            **kwargs)
        reaper.watch(self._proc, self._process_exited)

    # A signal is likely to end the child: look for its exit soon (the
    # polling path; 3.11 and 3.12 kill and terminate through Popen, not
    # through send_signal).
    def send_signal(self, signal):
        super().send_signal(signal)
        self._loop._child_reaper().quicken()

    def terminate(self):
        super().terminate()
        self._loop._child_reaper().quicken()

    def kill(self):
        super().kill()
        self._loop._child_reaper().quicken()

    def _process_exited(self, returncode):
        super()._process_exited(returncode)
        for waiter in self._exec_failure_waiters:
            if not waiter.done():
                waiter.set_result(None)

    _exec_failure_waiters = ()

    async def _connect_pipes(self, waiter):
        proc = self._proc
        errpipe = proc.exec_errpipe
        if errpipe is not None:
            proc.exec_errpipe = None
            try:
                await self._exec_outcome(*errpipe)
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                await self._failed_child_reaped(proc)
                if waiter is not None and not waiter.cancelled():
                    waiter.set_exception(exc)
                return
        await super()._connect_pipes(waiter)

    async def _failed_child_reaped(self, proc):
        """After a failed exec: close the pipes Popen made, and wait until
        the child (which exits at once) is reaped, so that the caller's
        ``_wait()`` has its return code."""
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
        self._exec_failure_waiters = []
        while self._returncode is None:
            exited = self._loop.create_future()
            self._exec_failure_waiters = [exited]
            await exited

    async def _exec_outcome(self, errpipe, orig_executable, cwd):
        """Reads what a ``preexec_fn`` child reported, without blocking:
        nothing if it exec'd; otherwise raises what ``Popen`` would."""
        loop = self._loop
        data = bytearray()
        try:
            while True:
                readable = loop.create_future()
                loop._add_reader(errpipe, readable.set_result, None)
                try:
                    await readable
                finally:
                    loop._remove_reader(errpipe)
                try:
                    part = os.read(errpipe, _ERRPIPE_LIMIT)
                except (BlockingIOError, InterruptedError):
                    continue
                data += part
                if not part or len(data) > _ERRPIPE_LIMIT:
                    break
        finally:
            os.close(errpipe)
        if data:
            raise child_exception(data, orig_executable, cwd)
