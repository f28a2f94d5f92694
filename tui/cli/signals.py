"""Ctrl+C and SIGTERM end training cleanly: every run is saved as stopped."""

from __future__ import annotations

import signal
import threading


class StopOnSignal:
    """SIGINT and SIGTERM set the cancel flag, so the run ends as ``stopped``
    and is saved; a second Ctrl+C gives up waiting."""

    def __init__(self, cancel: threading.Event) -> None:
        self.cancel = cancel
        self.previous: dict[int, object] = {}

    def __enter__(self) -> StopOnSignal:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: object) -> None:
        if self.cancel.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.cancel.set()

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
