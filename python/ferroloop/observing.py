"""The loop's instruments as methods: ``detect_blocking``, ``task_stats``
(and the native ``stats``), and the hand-over of recordings at close."""

from . import instruments


class ObservingLoop:
    """Mixed into :class:`ferroloop.Loop` (see :mod:`ferroloop.instruments`)."""

    def __init__(self):
        super().__init__()
        self._blocking_handler = None
        instruments.attach(self)

    def detect_blocking(self, threshold, handler=None):
        """Report every callback that holds the loop ``threshold`` seconds
        or more (0 or None: stop). ``handler(report)`` gets a
        :class:`ferroloop.BlockingReport`; by default it is logged as a
        warning on the ``ferroloop`` logger."""
        if handler is not None and not callable(handler):
            raise TypeError(f'handler must be callable or None, got {handler!r}')
        if threshold is None:
            threshold = 0
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
            raise TypeError(f'threshold must be a number of seconds, got {threshold!r}')
        self._blocking_handler = handler
        self._set_blocking_threshold(float(threshold))

    def task_stats(self):
        """Per-task statistics (steps, busy, scheduled and idle time, the
        slowest step), or None unless they are being recorded (see
        ``ferroloop.run(task_stats=True)``)."""
        return self._task_stats()

    def close(self):
        if not self.is_running() and not self.is_closed():
            instruments.loop_closing(self)
        super().close()
