"""Real libraries on ferroloop: an aiohttp server and client (HTTP and a
websocket), and uvicorn started with ``--loop ferroloop:new_event_loop``
serving an ASGI app to a client in another process."""

import asyncio
import subprocess
import sys
import textwrap
import urllib.request

import aiohttp
from aiohttp import web

import ferroloop
from conftest import free_port, wait_for_port

TIMEOUT = 30


def test_aiohttp_server_and_client_with_websocket():
    async def hello(request):
        loop_kind = type(asyncio.get_running_loop()).__module__.split('.')[0]
        return web.json_response({'hello': request.query.get('name'), 'loop': loop_kind})

    async def upload(request):
        body = await request.read()
        return web.Response(body=body[::-1])

    async def websocket(request):
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                await ws.send_str(msg.data.upper())
        return ws

    async def main():
        app = web.Application()
        app.add_routes([web.get('/hello', hello), web.post('/upload', upload),
                        web.get('/ws', websocket)])
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, '127.0.0.1', 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        base = f'http://127.0.0.1:{port}'
        try:
            async with aiohttp.ClientSession() as session:
                async with session.get(f'{base}/hello', params={'name': 'ferro'}) as resp:
                    greeting = await resp.json()
                payload = bytes(range(256)) * 4096
                async with session.post(f'{base}/upload', data=payload) as resp:
                    reversed_ok = (await resp.read()) == payload[::-1]
                async with session.ws_connect(f'{base}/ws') as ws:
                    echoes = []
                    for word in ('ping', 'pong'):
                        await ws.send_str(word)
                        echoes.append((await ws.receive()).data)
                concurrent = await asyncio.gather(*[
                    session.get(f'{base}/hello', params={'name': str(i)}) for i in range(50)])
                statuses = {r.status for r in concurrent}
                for r in concurrent:
                    r.release()
        finally:
            await runner.cleanup()
        return greeting, reversed_ok, echoes, statuses

    greeting, reversed_ok, echoes, statuses = ferroloop.run(asyncio.wait_for(main(), TIMEOUT))
    assert greeting == {'hello': 'ferro', 'loop': 'ferroloop'}
    assert reversed_ok
    assert echoes == ['PING', 'PONG']
    assert statuses == {200}


ASGI_APP = '''
import asyncio

async def app(scope, receive, send):
    if scope['type'] == 'lifespan':
        while True:
            message = await receive()
            if message['type'] == 'lifespan.startup':
                await send({'type': 'lifespan.startup.complete'})
            elif message['type'] == 'lifespan.shutdown':
                await send({'type': 'lifespan.shutdown.complete'})
                return
    body = b''
    while True:
        message = await receive()
        body += message.get('body', b'')
        if not message.get('more_body'):
            break
    loop = type(asyncio.get_running_loop())
    text = f"{loop.__module__}.{loop.__name__} {scope['path']} {len(body)}".encode()
    await send({'type': 'http.response.start', 'status': 200,
                'headers': [(b'content-type', b'text/plain')]})
    await send({'type': 'http.response.body', 'body': text})
'''


def test_uvicorn_serves_on_ferroloop(tmp_path):
    (tmp_path / 'asgi_app.py').write_text(textwrap.dedent(ASGI_APP))
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, '-m', 'uvicorn', 'asgi_app:app', '--host', '127.0.0.1',
         '--port', str(port), '--loop', 'ferroloop:new_event_loop', '--no-access-log'],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_port(port, proc, TIMEOUT)
        replies = []
        for path, body in (('/first', None), ('/second', b'x' * 100_000)):
            request = urllib.request.Request(f'http://127.0.0.1:{port}{path}', data=body)
            with urllib.request.urlopen(request, timeout=TIMEOUT) as resp:
                replies.append(resp.read().decode())
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=TIMEOUT)
    assert replies == ['ferroloop.loop.Loop /first 0', 'ferroloop.loop.Loop /second 100000']
    # uvicorn shuts down cleanly, then re-raises SIGTERM (as on asyncio).
    assert proc.returncode == -15, stderr
    assert 'Application shutdown complete' in stderr
    assert 'Finished server process' in stderr
