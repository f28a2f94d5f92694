"""Ctrl+C and SIGTERM end training cleanly: every run is saved as stopped,
and the command then exits the way an interrupted program does (130 for
Ctrl+C, 143 for SIGTERM: 128 plus the signal's number)."""

from __future__ import annotations

import signal
import threading

import typer


def interrupted_status(signum: int) -> int:
    """The exit status of a command stopped by signal ``signum``."""
    return 128 + signum


class StopOnSignal:
    """SIGINT and SIGTERM set the cancel flag, so the run ends as ``stopped``
    and is saved; ``signum`` is the first signal that came. A second Ctrl+C
    gives up waiting: the command exits at once with status 130."""

    def __init__(self, cancel: threading.Event) -> None:
        self.cancel = cancel
        self.signum: int | None = None
        self.previous: dict[int, object] = {}

    def __enter__(self) -> StopOnSignal:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: object) -> None:
        if self.cancel.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        if self.signum is None:
            self.signum = signum
        self.cancel.set()

    def __exit__(self, kind, error, trace) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        if kind is KeyboardInterrupt:
            typer.echo("interrupted again: not waiting for the run to be saved", err=True)
            raise typer.Exit(interrupted_status(signal.SIGINT)) from None

    def exit_if_stopped(self) -> None:
        """Exit with 130 or 143 if a signal stopped the training."""
        if self.signum is not None:
            raise typer.Exit(interrupted_status(self.signum))
