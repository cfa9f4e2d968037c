"""The loop's lifecycle and everything that is not I/O: running, stopping,
closing, tasks and futures, exception handling, executors, async
generators, debug mode.

The hot scheduling methods (``call_soon``, ``call_later``, ``call_at``,
``call_soon_threadsafe``, ``time``, ``get_debug``) and the iteration itself
are native, inherited from :class:`ferroloop._ferroloop.LoopCore`. What is
here runs a few times per program (``run_until_complete``, ``close``) or
on error paths, and follows asyncio's ``base_events`` behaviour for each
supported Python version.
"""

import asyncio
import concurrent.futures
import os
import signal
import sys
import threading
import time
import traceback
import warnings
import weakref
from asyncio import coroutines, events, futures, timeouts
from asyncio.base_events import BaseEventLoop
from asyncio.log import logger

from . import _callbacks
from ._ferroloop import LoopCore

_CONTEXT_RUNS_EXCEPTION_HANDLER = sys.version_info >= (3, 12)


class BaseLoop(LoopCore, asyncio.AbstractEventLoop):
    """An asyncio event loop whose engine is written in Rust."""

    def __init__(self):
        self._exception_handler = None
        self._default_executor = None
        self._executor_shutdown_called = False
        self._asyncgens = weakref.WeakSet()
        self._asyncgens_shutdown_called = False
        self._coroutine_origin_tracking_enabled = False
        self._coroutine_origin_tracking_saved_depth = None
        # Callbacks running longer than this are logged in debug mode.
        self.slow_callback_duration = 0.1
        self._clock_resolution = time.get_clock_info('monotonic').resolution
        self.set_debug(coroutines._is_debug_mode())
        self._set_time_overridden(type(self).time is not LoopCore.time)

    # A replaced ``time`` (``loop.time = fake``, ``mock.patch.object(loop,
    # 'time')``, as clock-faking test tools do) is what the native timers
    # read from then on, as asyncio's do.

    def __setattr__(self, name, value):
        object.__setattr__(self, name, value)
        if name == 'time':
            self._set_time_overridden(True)

    def __delattr__(self, name):
        object.__delattr__(self, name)
        if name == 'time':
            self._set_time_overridden(type(self).time is not LoopCore.time)

    def __repr__(self):
        return (f'<{self.__class__.__name__} running={self.is_running()} '
                f'closed={self.is_closed()} debug={self.get_debug()}>')

    def __del__(self, _warn=warnings.warn):
        if not self.is_closed():
            _warn(f"unclosed event loop {self!r}", ResourceWarning,
                  source=self)
            if not self.is_running():
                self.close()

    # Running and stopping.

    _check_running = BaseEventLoop._check_running

    def run_forever(self):
        """Run until stop() is called."""
        self._check_closed()
        self._check_running()
        self._set_coroutine_origin_tracking(self.get_debug())
        old_hooks = sys.get_asyncgen_hooks()
        try:
            sys.set_asyncgen_hooks(firstiter=self._asyncgen_firstiter_hook,
                                   finalizer=self._asyncgen_finalizer_hook)
            events._set_running_loop(self)
            self._run()
        finally:
            events._set_running_loop(None)
            self._set_coroutine_origin_tracking(False)
            sys.set_asyncgen_hooks(*old_hooks)

    run_until_complete = BaseEventLoop.run_until_complete

    def close(self):
        """Close the loop: drop pending callbacks, release its descriptors,
        and shut the default executor down without waiting for it."""
        if self.is_running():
            raise RuntimeError("Cannot close a running event loop")
        if self.is_closed():
            return
        if self.get_debug():
            logger.debug("Close %r", self)
        self._close_core()
        self._executor_shutdown_called = True
        executor = self._default_executor
        if executor is not None:
            self._default_executor = None
            executor.shutdown(wait=False)

    # Debug mode.

    def set_debug(self, enabled):
        self._set_debug_flag(enabled)
        if self.is_running():
            self.call_soon_threadsafe(self._set_coroutine_origin_tracking,
                                      enabled)

    _set_coroutine_origin_tracking = (
        BaseEventLoop._set_coroutine_origin_tracking)

    # Exception handling.

    get_exception_handler = BaseEventLoop.get_exception_handler
    set_exception_handler = BaseEventLoop.set_exception_handler

    def default_exception_handler(self, context):
        """Log the error described by ``context`` as asyncio does."""
        message = context.get('message') or 'Unhandled exception in event loop'
        exception = context.get('exception')
        if exception is not None:
            exc_info = (type(exception), exception, exception.__traceback__)
        else:
            exc_info = False
        current = self._current_handle
        if ('source_traceback' not in context and current is not None
                and current._source_traceback):
            context['handle_traceback'] = current._source_traceback
        lines = [message]
        for key in sorted(context):
            if key in {'message', 'exception'}:
                continue
            value = context[key]
            if key == 'source_traceback':
                value = _format_stack('Object created at', value)
            elif key == 'handle_traceback':
                value = _format_stack('Handle created at', value)
            else:
                value = repr(value)
            lines.append(f'{key}: {value}')
        logger.error('\n'.join(lines), exc_info=exc_info)

    def call_exception_handler(self, context):
        """Pass ``context`` to the handler set with set_exception_handler(),
        or to default_exception_handler(); an error in a custom handler is
        logged by the default one."""
        if self._exception_handler is None:
            try:
                self.default_exception_handler(context)
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException:
                logger.error('Exception in default exception handler',
                             exc_info=True)
            return
        try:
            self._run_custom_exception_handler(context)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            try:
                self.default_exception_handler({
                    'message': 'Unhandled error in exception handler',
                    'exception': exc,
                    'context': context,
                })
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException:
                logger.error('Exception in default exception handler '
                             'while handling an unexpected error '
                             'in custom exception handler',
                             exc_info=True)

    def _run_custom_exception_handler(self, context):
        handler = self._exception_handler
        if _CONTEXT_RUNS_EXCEPTION_HANDLER:
            # From 3.12 the handler runs in the context of the task, future
            # or handle the error came from.
            thing = context.get('task')
            if thing is None:
                thing = context.get('future')
            if thing is None:
                thing = context.get('handle')
            ctx = thing.get_context() if hasattr(thing, 'get_context') else None
            if ctx is not None and hasattr(ctx, 'run'):
                ctx.run(handler, self, context)
                return
        handler(self, context)

    # Executors.

    _check_default_executor = BaseEventLoop._check_default_executor

    def run_in_executor(self, executor, func, *args):
        self._check_closed()
        _callbacks.check_callback(func, 'run_in_executor')
        if executor is None:
            executor = self._default_executor
            self._check_default_executor()
            if executor is None:
                executor = concurrent.futures.ThreadPoolExecutor(
                    thread_name_prefix='asyncio')
                self._default_executor = executor
        return futures.wrap_future(executor.submit(func, *args), loop=self)

    set_default_executor = BaseEventLoop.set_default_executor

    if sys.version_info >= (3, 12):
        async def shutdown_default_executor(self, timeout=None):
            """Shut the default executor down and wait for its threads, at
            most ``timeout`` seconds (None: as long as it takes)."""
            thread, future = self._start_executor_shutdown()
            if thread is None:
                return
            try:
                async with timeouts.timeout(timeout):
                    await future
            except TimeoutError:
                warnings.warn("The executor did not finishing joining "
                              f"its threads within {timeout} seconds.",
                              RuntimeWarning, stacklevel=2)
                self._default_executor.shutdown(wait=False)
            else:
                thread.join()
    else:
        async def shutdown_default_executor(self):
            """Shut the default executor down and wait for its threads
            (3.11 takes no timeout)."""
            thread, future = self._start_executor_shutdown()
            if thread is None:
                return
            try:
                await future
            finally:
                thread.join()

    def _start_executor_shutdown(self):
        """Starts shutting the default executor down in a thread of its own;
        (thread, future set when done), or (None, None) if there is none."""
        self._executor_shutdown_called = True
        if self._default_executor is None:
            return None, None
        future = self.create_future()
        thread = threading.Thread(target=self._shutdown_executor_in_thread,
                                  args=(future,))
        thread.start()
        return thread, future

    def _shutdown_executor_in_thread(self, future):
        """asyncio's ``_do_shutdown`` as 3.13 has it, on every version: 3.11
        and 3.12's sets the result of the future even when the wait for it
        was cancelled (an InvalidStateError in the loop's handler)."""
        try:
            self._default_executor.shutdown(wait=True)
            if not self.is_closed():
                self.call_soon_threadsafe(futures._set_result_unless_cancelled,
                                          future, None)
        except Exception as ex:
            if not self.is_closed() and not future.cancelled():
                self.call_soon_threadsafe(future.set_exception, ex)

    # Asynchronous generators.

    _asyncgen_finalizer_hook = BaseEventLoop._asyncgen_finalizer_hook
    _asyncgen_firstiter_hook = BaseEventLoop._asyncgen_firstiter_hook

    shutdown_asyncgens = BaseEventLoop.shutdown_asyncgens


if sys.version_info < (3, 12):
    def _leave_loop_in_forked_child():
        """A child forked by a callback is not running its parent's loop
        (which it cannot use) and may run a new one: asyncio does this reset
        itself from 3.12 on, for every loop."""
        if isinstance(events._get_running_loop(), BaseLoop):
            events._set_running_loop(None)
            # The wakeup fd is the parent loop's signal socket.
            signal.set_wakeup_fd(-1)

    os.register_at_fork(after_in_child=_leave_loop_in_forked_child)


def _format_stack(title, frames):
    text = ''.join(traceback.format_list(frames)).rstrip()
    return f'{title} (most recent call last):\n{text}'
