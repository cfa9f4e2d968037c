"""Pipe transports (connect_read_pipe/connect_write_pipe): the same programs
on stock asyncio and on ferroloop, with the protocol events, errors and
transport states compared. Pipes, FIFOs, ptys and character devices; every
wait has a timeout."""

import asyncio
import contextvars
import gc
import os
import socket
import tempfile

import pytest

from conftest import assert_same_on_both, open_fd_count, run_program_on_both

TIMEOUT = 10


def run(loop, coro):
    return loop.run_until_complete(asyncio.wait_for(coro, TIMEOUT))


def name_of(transport):
    """A transport's class name without the implementation's prefix, so
    reprs compare across the two loops."""
    return type(transport).__name__.replace('_Unix', '')


def same_repr(transport):
    return repr(transport).replace(type(transport).__name__, name_of(transport))


class Reader(asyncio.Protocol):
    def __init__(self, raise_on_data=False):
        self.events = []
        self.data = bytearray()
        self.raise_on_data = raise_on_data
        self.lost = asyncio.get_running_loop().create_future()

    def connection_made(self, transport):
        self.transport = transport
        self.events.append('made')

    def data_received(self, data):
        self.data += data
        if not self.events or self.events[-1] != 'data':
            self.events.append('data')
        if self.raise_on_data:
            raise ZeroDivisionError('from data_received')

    def eof_received(self):
        self.events.append('eof')
        return True  # ignored by pipe transports: they close anyway

    def connection_lost(self, exc):
        self.events.append(('lost', type(exc).__name__ if exc else None,
                            getattr(exc, 'errno', None)))
        self.lost.set_result(None)


class Writer(asyncio.BaseProtocol):
    def __init__(self):
        self.events = []
        self.lost = asyncio.get_running_loop().create_future()

    def connection_made(self, transport):
        self.events.append('made')

    def pause_writing(self):
        self.events.append('pause')

    def resume_writing(self):
        self.events.append('resume')

    def connection_lost(self, exc):
        self.events.append(('lost', type(exc).__name__ if exc else None,
                            exc.args if exc else None))
        self.lost.set_result(None)


def collect_errors(loop):
    errors = []
    loop.set_exception_handler(lambda loop, ctx: errors.append(
        (ctx['message'].replace('_UnixReadPipeTransport', 'ReadPipeTransport'),
         type(ctx.get('exception')).__name__)))
    return errors


def test_read_and_write_through_a_pipe():
    def program(loop):
        async def main():
            rfd, wfd = os.pipe()
            rpipe, wpipe = open(rfd, 'rb', 0), open(wfd, 'wb', 0)
            rt, reader = await loop.connect_read_pipe(Reader, rpipe)
            wt, writer = await loop.connect_write_pipe(Writer, wpipe)
            states = [same_repr(rt), same_repr(wt),
                      rt.get_extra_info('pipe') is rpipe,
                      wt.get_extra_info('pipe') is wpipe,
                      isinstance(rt, asyncio.ReadTransport),
                      isinstance(wt, asyncio.WriteTransport),
                      wt.can_write_eof(), wt.get_write_buffer_limits(),
                      os.get_blocking(rfd), os.get_blocking(wfd)]
            wt.write(b'abc')
            wt.write(bytearray(b'def'))
            wt.write(memoryview(b'ghi'))
            wt.writelines([b'jk', b'l'])
            payload = os.urandom(3 * 1024 * 1024)
            wt.write(payload)
            states.append(wt.get_write_buffer_size() > 0)
            wt.write_eof()
            states += [wt.is_closing(), same_repr(wt).split()[:2]]
            wt.write(b'dropped after closing')
            await writer.lost
            await reader.lost
            states += [bytes(reader.data) == b'abcdefghijkl' + payload,
                       reader.events, writer.events, same_repr(rt), same_repr(wt),
                       rpipe.closed, wpipe.closed]
            return states
        return run(loop, main())
    assert_same_on_both(program)


def test_write_buffer_limits_and_flow_control():
    def program(loop):
        async def main():
            rfd, wfd = os.pipe()
            os.set_blocking(rfd, False)
            wt, writer = await loop.connect_write_pipe(Writer, open(wfd, 'wb', 0))
            wt.set_write_buffer_limits(high=1000, low=100)
            limits = wt.get_write_buffer_limits()
            with pytest.raises(ValueError) as bad:
                wt.set_write_buffer_limits(high=1, low=2)
            wt.write(b'x' * 200_000)
            paused = list(writer.events)
            drained = 0
            while drained < 200_000:
                try:
                    drained += len(os.read(rfd, 65536))
                except BlockingIOError:
                    await asyncio.sleep(0.001)
            for _ in range(20):
                if 'resume' in writer.events:
                    break
                await asyncio.sleep(0.01)
            wt.close()
            await writer.lost
            os.close(rfd)
            return limits, str(bad.value), paused, writer.events, wt.get_write_buffer_size()
        return run(loop, main())
    assert_same_on_both(program)


def test_reader_gone_with_data_buffered_is_a_broken_pipe():
    def program(loop):
        async def main():
            rfd, wfd = os.pipe()
            wt, writer = await loop.connect_write_pipe(Writer, open(wfd, 'wb', 0))
            wt.write(b'x' * 1_000_000)  # more than the pipe holds
            os.close(rfd)
            await writer.lost
            return writer.events, wt.is_closing()
        return run(loop, main())
    assert_same_on_both(program)


def test_reader_gone_with_nothing_buffered_closes_cleanly():
    def program(loop):
        async def main():
            rfd, wfd = os.pipe()
            wt, writer = await loop.connect_write_pipe(Writer, open(wfd, 'wb', 0))
            os.close(rfd)
            await writer.lost
            return writer.events
        return run(loop, main())
    assert_same_on_both(program)


def test_write_to_a_socket_whose_peer_is_gone():
    def program(loop):
        async def main():
            a, b = socket.socketpair()
            wt, writer = await loop.connect_write_pipe(Writer, a)
            b.close()
            await writer.lost
            a.close()
            return writer.events
        return run(loop, main())
    assert_same_on_both(program)


def test_epipe_from_write_itself():
    def program(loop):
        async def main():
            rfd, wfd = os.pipe()
            wt, writer = await loop.connect_write_pipe(Writer, open(wfd, 'wb', 0))
            os.close(rfd)
            wt.write(b'first write sees EPIPE')  # before the loop notices
            await writer.lost
            for _ in range(7):
                wt.write(b'more')
            return writer.events
        return run(loop, main())
    assert_same_on_both(program)


def test_abort_drops_buffered_data():
    def program(loop):
        async def main():
            rfd, wfd = os.pipe()
            wt, writer = await loop.connect_write_pipe(Writer, open(wfd, 'wb', 0))
            wt.write(b'x' * 1_000_000)
            wt.abort()
            await writer.lost
            os.close(rfd)
            return writer.events, wt.get_write_buffer_size()
        return run(loop, main())
    assert_same_on_both(program)


def test_pause_and_resume_reading():
    def program(loop):
        async def main():
            rfd, wfd = os.pipe()
            rt, reader = await loop.connect_read_pipe(Reader, open(rfd, 'rb', 0))
            rt.pause_reading()
            states = [rt.is_reading(), same_repr(rt)]
            rt.pause_reading()
            os.write(wfd, b'while paused')
            await asyncio.sleep(0.05)
            states.append(bytes(reader.data))
            rt.resume_reading()
            rt.resume_reading()
            states.append(rt.is_reading())
            os.close(wfd)
            await reader.lost
            states += [bytes(reader.data), reader.events, rt.is_reading()]
            return states
        return run(loop, main())
    assert_same_on_both(program)


def test_close_of_the_read_end():
    def program(loop):
        async def main():
            rfd, wfd = os.pipe()
            rt, reader = await loop.connect_read_pipe(Reader, open(rfd, 'rb', 0))
            rt.close()
            rt.close()
            await reader.lost
            os.close(wfd)
            return reader.events, same_repr(rt), rt.is_closing()
        return run(loop, main())
    assert_same_on_both(program)


def test_protocol_error_in_data_received_goes_to_the_handler():
    def program(loop):
        errors = collect_errors(loop)

        async def main():
            rfd, wfd = os.pipe()
            rt, reader = await loop.connect_read_pipe(
                lambda: Reader(raise_on_data=True), open(rfd, 'rb', 0))
            os.write(wfd, b'boom')
            await asyncio.sleep(0.05)
            os.write(wfd, b'again')
            os.close(wfd)
            await reader.lost
            return bytes(reader.data), reader.events, errors
        return run(loop, main())
    assert_same_on_both(program)


def test_a_fifo():
    def program(loop):
        async def main():
            with tempfile.TemporaryDirectory() as tmp:
                path = os.path.join(tmp, 'fifo')
                os.mkfifo(path)
                rfd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
                wfd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
                rt, reader = await loop.connect_read_pipe(Reader, open(rfd, 'rb', 0))
                wt, writer = await loop.connect_write_pipe(Writer, open(wfd, 'wb', 0))
                wt.write(b'through a fifo')
                wt.close()
                await writer.lost
                await reader.lost
                return bytes(reader.data), reader.events, writer.events
        return run(loop, main())
    assert_same_on_both(program)


def test_a_pty_ends_with_eio():
    def program(loop):
        async def main():
            master, slave = os.openpty()
            rt, reader = await loop.connect_read_pipe(Reader, open(master, 'rb', 0))
            wt, writer = await loop.connect_write_pipe(Writer, open(slave, 'wb', 0))
            wt.write(b'to the terminal\n')
            await asyncio.sleep(0.05)
            wt.close()
            await writer.lost
            await reader.lost
            return bytes(reader.data), reader.events, writer.events
        errors = collect_errors(loop)
        return run(loop, main()), errors
    assert_same_on_both(program)


def test_one_pty_descriptor_read_and_written_by_two_transports():
    def program(loop):
        async def main():
            master, slave = os.openpty()
            os.set_blocking(slave, False)
            import tty
            tty.setraw(slave)
            rt, reader = await loop.connect_read_pipe(Reader, open(master, 'rb', 0))
            wt, writer = await loop.connect_write_pipe(Writer, open(os.dup(master), 'wb', 0))
            wt.write(b'to the child side')
            got = b''
            for _ in range(100):
                try:
                    got += os.read(slave, 100)
                except BlockingIOError:
                    pass
                if got == b'to the child side':
                    break
                await asyncio.sleep(0.01)
            os.write(slave, b'from the child side')
            for _ in range(100):
                if bytes(reader.data) == b'from the child side':
                    break
                await asyncio.sleep(0.01)
            wt.close()
            await writer.lost
            rt.close()
            await reader.lost
            os.close(slave)
            return got, bytes(reader.data), reader.events, writer.events
        return run(loop, main())
    assert_same_on_both(program)


def test_a_character_device():
    def program(loop):
        async def main():
            wt, writer = await loop.connect_write_pipe(Writer, open('/dev/null', 'wb', 0))
            wt.write(b'into the void')
            wt.close()
            await writer.lost
            return writer.events
        return run(loop, main())
    assert_same_on_both(program)


@pytest.mark.parametrize('direction', ['read', 'write'])
def test_regular_files_are_refused(direction):
    def program(loop):
        async def main():
            with tempfile.TemporaryFile() as f:
                connect = (loop.connect_read_pipe if direction == 'read'
                           else loop.connect_write_pipe)
                with pytest.raises(ValueError) as raised:
                    await connect(Reader if direction == 'read' else Writer, f)
                return str(raised.value), f.closed
        return run(loop, main())
    assert_same_on_both(program)


def test_write_refuses_non_bytes():
    def program(loop):
        async def main():
            rfd, wfd = os.pipe()
            wt, writer = await loop.connect_write_pipe(Writer, open(wfd, 'wb', 0))
            with pytest.raises(AssertionError) as raised:
                wt.write('text')
            wt.close()
            await writer.lost
            os.close(rfd)
            return str(raised.value)
        return run(loop, main())
    assert_same_on_both(program)


def test_callbacks_run_in_the_context_the_transport_was_made_in():
    var = contextvars.ContextVar('var', default='outside')

    def program(loop):
        seen = []

        class P(Reader):
            def data_received(self, data):
                seen.append(('data', var.get()))
                super().data_received(data)

            def connection_lost(self, exc):
                seen.append(('lost', var.get()))
                super().connection_lost(exc)

        async def connect(rpipe):
            var.set('inside')
            return await loop.connect_read_pipe(P, rpipe)

        async def main():
            rfd, wfd = os.pipe()
            rt, reader = await loop.create_task(connect(open(rfd, 'rb', 0)))
            os.write(wfd, b'x')
            os.close(wfd)
            await reader.lost
            return seen
        return run(loop, main())
    assert_same_on_both(program)


def test_unclosed_pipe_transport_warns_and_closes_its_pipe():
    source = '''
import asyncio, gc, os, warnings
warnings.simplefilter('always')

async def main():
    loop = asyncio.get_running_loop()
    rfd, wfd = os.pipe()
    rt, _ = await loop.connect_read_pipe(asyncio.Protocol, open(rfd, 'rb', 0))
    os.close(wfd)
    return rfd

loop = asyncio.new_event_loop()
rfd = loop.run_until_complete(main())
loop.close()
gc.collect()
try:
    os.fstat(rfd)
    print('pipe still open')
except OSError:
    print('pipe closed')
'''
    runs = run_program_on_both(source)
    for name, result in runs.items():
        assert 'pipe closed' in result.stdout, (name, result.stdout, result.stderr)
        assert 'ResourceWarning: unclosed transport' in result.stderr, (name, result.stderr)


def test_many_pipes_leave_no_descriptor_behind(loop):
    async def main():
        for _ in range(200):
            rfd, wfd = os.pipe()
            rt, reader = await loop.connect_read_pipe(Reader, open(rfd, 'rb', 0))
            wt, writer = await loop.connect_write_pipe(Writer, open(wfd, 'wb', 0))
            wt.write(b'x')
            wt.close()
            await writer.lost
            await reader.lost
    before = open_fd_count()
    run(loop, main())
    gc.collect()
    assert open_fd_count() == before
