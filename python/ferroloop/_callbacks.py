"""Cold-path helpers the native loop calls: handle reprs, callback error
reports, debug-mode checks and warnings.

They produce exactly the text asyncio produces (tests and log scrapers
compare it), so they reuse asyncio's own formatting functions instead of
imitating them.
"""

import sys
from asyncio import base_events, coroutines, format_helpers
from asyncio.log import logger

_FORMAT_TAKES_DEBUG = sys.version_info >= (3, 13)


def format_callback(callback, args, debug):
    """asyncio's text for a callback and its arguments (3.13 shows the
    arguments only in debug mode)."""
    if _FORMAT_TAKES_DEBUG:
        return format_helpers._format_callback_source(callback, args,
                                                      debug=debug)
    return format_helpers._format_callback_source(callback, args)


def handle_repr(handle):
    """``repr()`` of a Handle or TimerHandle, as asyncio writes it."""
    info = [type(handle).__name__]
    cancelled = handle.cancelled()
    if cancelled:
        info.append('cancelled')
    when = getattr(handle, '_when', None)
    if when is not None:
        info.insert(2 if cancelled else 1, f'when={when}')
    if handle._callback is not None:
        info.append(format_callback(handle._callback, handle._args,
                                    handle._debug))
    if handle._source_traceback:
        frame = handle._source_traceback[-1]
        info.append(f'created at {frame[0]}:{frame[1]}')
    return '<{}>'.format(' '.join(info))


def report_callback_error(loop, handle, exc):
    """Hands an exception raised by a callback to the loop's handler."""
    source = format_callback(handle._callback, handle._args,
                             loop.get_debug())
    context = {
        'message': f'Exception in callback {source}',
        'exception': exc,
        'handle': handle,
    }
    if handle._source_traceback:
        context['source_traceback'] = handle._source_traceback
    loop.call_exception_handler(context)


def report_io_error(loop, transport, exc):
    """Hands an exception raised while a transport (or a pending sock_*
    call: ``transport`` None) handled readiness to the loop's handler,
    worded as asyncio words one from its reader or writer handle."""
    name = type(transport).__name__ if transport is not None else 'sock_op'
    loop.call_exception_handler({
        'message': f'Exception in callback {name}._read_ready()',
        'exception': exc,
    })


def check_callback(callback, method):
    """asyncio's debug-mode check of what is passed as a callback, which
    asyncio has as a method of its loop (``BaseEventLoop._check_callback``);
    the native core calls this one with no loop at hand."""
    if (coroutines.iscoroutine(callback) or
            coroutines.iscoroutinefunction(callback)):
        raise TypeError(f"coroutines cannot be used with {method}()")
    if not callable(callback):
        raise TypeError(
            f'a callable object was expected by {method}(), '
            f'got {callback!r}')


def extract_stack():
    """The stack of the code calling into the loop, for a debug-mode
    handle's ``_source_traceback``."""
    return format_helpers.extract_stack(sys._getframe(1))


def warn_slow_callback(handle, seconds):
    logger.warning('Executing %s took %.3f seconds',
                   base_events._format_handle(handle), seconds)
