"""``ferroloop.trace()``: records a timeline of every task of every
ferroloop loop while it is open, and writes it out when it closes."""

import contextlib
import os

from . import instruments


class trace(instruments.Session, contextlib.ContextDecorator):
    """Records the task timeline while open (a context manager, or a
    decorator; or call :meth:`start` and :meth:`stop`), then writes
    ``path``: Chrome trace-event JSON for a ``.json`` name (Perfetto and
    chrome://tracing open it), a self-contained HTML page otherwise.
    ``json=`` and ``html=`` write either format, or both, by name."""

    traces = True

    def __init__(self, path=None, *, json=None, html=None):
        super().__init__()
        if path is not None:
            if os.fspath(path).endswith('.json'):
                json = json or path
            else:
                html = html or path
        self.json_path, self.html_path = json, html
        self.timeline = None

    def start(self):
        instruments.open_session(self)
        return self

    def stop(self):
        """Stops recording, writes the files, and returns the timeline."""
        instruments.close_session(self)
        return self.timeline

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()
        return False

    def finish(self):
        from ._trace import Timeline
        self.timeline = Timeline.from_recordings(self.recordings)
        if self.json_path is not None:
            self.timeline.write_json(self.json_path)
        if self.html_path is not None:
            self.timeline.write_html(self.html_path)
