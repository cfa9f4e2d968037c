"""gunicorn worker classes that serve ASGI applications with uvicorn on
ferroloop loops, one loop per worker process::

    gunicorn app:app --worker-class ferroloop.workers.UvicornWorker --workers 4

They are uvicorn's own workers (the ``uvicorn-worker`` package; install it
with ``pip install ferroloop[gunicorn]``) with the loop set to ferroloop's.
"""

import uvicorn_worker

LOOP = 'ferroloop:new_event_loop'


class UvicornWorker(uvicorn_worker.UvicornWorker):
    """uvicorn's worker (HTTP by httptools if installed, else h11) on ferroloop."""

    CONFIG_KWARGS = {**uvicorn_worker.UvicornWorker.CONFIG_KWARGS, 'loop': LOOP}


class UvicornH11Worker(uvicorn_worker.UvicornH11Worker):
    """uvicorn's pure-Python h11 worker on ferroloop."""

    CONFIG_KWARGS = {**uvicorn_worker.UvicornH11Worker.CONFIG_KWARGS, 'loop': LOOP}
