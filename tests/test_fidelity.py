"""What real libraries rely on, where stock asyncio's own test suite does not
look: argument handling, descriptors, contexts, exception types and
messages. Every case runs on stock asyncio and on ferroloop and compares."""

import asyncio
import contextvars
import errno
import socket
import subprocess
import sys
import textwrap

import pytest

from conftest import assert_same_on_both

TIMEOUT = 10


def outcome(fn, *args):
    """What calling ``fn(*args)`` gives: a repr of the result, or the
    exception's type and message (and errno/strerror for an OSError)."""
    try:
        return ('ok', repr(fn(*args)))
    except OSError as exc:
        return (type(exc).__name__, exc.errno, exc.strerror, str(exc))
    except Exception as exc:
        return (type(exc).__name__, str(exc))


async def async_outcome(coro):
    try:
        return ('ok', repr(await asyncio.wait_for(coro, TIMEOUT)))
    except OSError as exc:
        return (type(exc).__name__, exc.errno, exc.strerror, str(exc))
    except Exception as exc:
        return (type(exc).__name__, str(exc))


def rss_bytes():
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * 4096


class FileNo:
    """An object whose fileno() returns (or raises) what it is given."""

    def __init__(self, value):
        self.value = value

    def fileno(self):
        if isinstance(self.value, BaseException):
            raise self.value
        return self.value

    def __repr__(self):
        return f'FileNo({self.value!r})'


# Descriptors of any number.

@pytest.mark.parametrize('fd', [2**31 - 1, 10_000_000, 65_536, 2**40, 2**70, -1,
                                FileNo(2**31 - 1), FileNo(KeyError('boom')),
                                FileNo('x'), FileNo(-5), 3.0, None])
@pytest.mark.parametrize('method', ['add_reader', 'add_writer'])
def test_watching_a_descriptor_of_any_number(method, fd):
    def attempt(loop):
        return outcome(getattr(loop, method), fd, print)
    assert_same_on_both(attempt)


@pytest.mark.parametrize('fd', [2**40, 10_000_000, -1, FileNo(-1), FileNo(KeyError('boom'))])
@pytest.mark.parametrize('method', ['remove_reader', 'remove_writer'])
def test_removing_a_descriptor_of_any_number(method, fd):
    def attempt(loop):
        return outcome(getattr(loop, method), fd)
    assert_same_on_both(attempt)


def test_huge_descriptor_numbers_neither_crash_nor_keep_memory():
    # In a child process: before the fix this aborted the interpreter
    # ("memory allocation of 85899345920 bytes failed").
    program = textwrap.dedent('''
        import errno, ferroloop
        def rss():
            with open('/proc/self/statm') as f:
                return int(f.read().split()[1]) * 4096
        loop = ferroloop.new_event_loop()
        before = rss()
        for fd in (2**31 - 1, 10_000_000, 1_000_000, 70_000):
            for method in (loop.add_reader, loop.add_writer):
                try:
                    method(fd, print)
                except OSError as exc:
                    assert exc.errno == errno.EBADF, exc
                else:
                    raise AssertionError('no error')
        grown = rss() - before
        loop.close()
        print('grown', grown)
        assert grown < 8 * 1024 * 1024, grown
    ''')
    proc = subprocess.run([sys.executable, '-c', program], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_oserrors_carry_errno_and_strerror(loop_name, loop):
    with pytest.raises(OSError) as info:
        loop.add_reader(10_000_000, print)
    assert info.value.errno == errno.EBADF
    assert info.value.strerror == 'Bad file descriptor'
    assert str(info.value) == '[Errno 9] Bad file descriptor'


# Registrations are found by the object they were made with.

@pytest.mark.parametrize('direction', ['reader', 'writer'])
def test_removing_the_watch_of_a_closed_socket(direction):
    def attempt(loop):
        a, b = socket.socketpair()
        getattr(loop, f'add_{direction}')(a, print)
        a.close()
        removed = getattr(loop, f'remove_{direction}')(a)
        again = outcome(getattr(loop, f'remove_{direction}'), a)
        b.close()
        return removed, again
    assert assert_same_on_both(attempt)[0] is True


def test_a_reused_descriptor_gets_a_new_transport(loop_name, loop):
    import os

    async def main():
        a, b = socket.socketpair()
        old, _ = await loop.create_connection(asyncio.Protocol, sock=a)
        number = a.fileno()
        os.close(number)          # behind the transport's back
        c, d = socket.socketpair()
        new_sock = c if c.fileno() == number else d
        other = d if new_sock is c else c
        if new_sock.fileno() != number:
            pytest.skip('the kernel did not reuse the number')
        new, proto = await loop.create_connection(asyncio.Protocol, sock=new_sock)
        in_use = outcome(loop.add_reader, new_sock, print)
        new.close()
        other.close()
        b.close()
        a.detach()
        old.abort()
        return in_use[0], 'is used by transport' in in_use[1]

    assert loop.run_until_complete(main()) == ('RuntimeError', True)


# Values asyncio accepts as they are.

@pytest.mark.parametrize('value', [1, 0, None, 'yes', True, False])
def test_set_debug_takes_any_value(value):
    def attempt(loop):
        loop.set_debug(value)
        return loop.get_debug(), bool(loop.get_debug())
    assert_same_on_both(attempt)


def test_runner_with_a_debug_number():
    import ferroloop

    async def main():
        return asyncio.get_running_loop().get_debug()

    with asyncio.Runner(debug=1, loop_factory=ferroloop.new_event_loop) as runner:
        assert runner.run(main()) is True or runner.get_loop().get_debug()


# sock_* arguments, read as Python's socket methods read them.

def _sock_pair():
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    return a, b


def _released():
    view = memoryview(bytearray(4))
    view.release()
    return view


@pytest.mark.parametrize('n', [0, -1, -2**70, 2**63, 2.5, 'x', None])
def test_sock_recv_sizes(n):
    def attempt(loop):
        a, b = _sock_pair()
        try:
            return loop.run_until_complete(async_outcome(loop.sock_recv(a, n)))
        finally:
            a.close()
            b.close()
    assert_same_on_both(attempt)


@pytest.mark.parametrize('make_buffer', [
    lambda: bytearray(0), lambda: b'xx', lambda: memoryview(b'xx'),
    lambda: memoryview(bytearray(8))[::2], _released, lambda: 'text', lambda: None,
    lambda: memoryview(bytearray(6)).cast('B', (2, 3)),
], ids=['empty', 'bytes', 'readonly', 'noncontiguous', 'released', 'str', 'none',
        'multidim'])
def test_sock_recv_into_buffers(make_buffer):
    def attempt(loop):
        a, b = _sock_pair()
        b.send(b'abc')
        try:
            return loop.run_until_complete(async_outcome(loop.sock_recv_into(a, make_buffer())))
        finally:
            a.close()
            b.close()
    assert_same_on_both(attempt)


@pytest.mark.parametrize('make_data', [
    lambda: 'text', lambda: 5, lambda: None, lambda: memoryview(bytearray(8))[::2],
    _released, lambda: __import__('array').array('b', [1, 2, 3]), lambda: b'',
], ids=['str', 'int', 'none', 'noncontiguous', 'released', 'array', 'empty'])
def test_sock_sendall_data(make_data):
    def attempt(loop):
        a, b = _sock_pair()
        try:
            return loop.run_until_complete(async_outcome(loop.sock_sendall(a, make_data())))
        finally:
            a.close()
            b.close()
    assert_same_on_both(attempt)


def test_sock_recv_of_a_huge_size_does_not_abort(loop_name, loop):
    a, b = _sock_pair()
    try:
        result = loop.run_until_complete(async_outcome(loop.sock_recv(a, 2**40)))
    finally:
        a.close()
        b.close()
    assert result[0] == 'MemoryError'
