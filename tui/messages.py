"""Messages that carry a run's (or a sweep's) events from a worker thread to the UI.

A worker wraps each engine (or replay) event in one of these and posts it;
``post_message`` does not wait for the UI, so the run never stalls on drawing.
"""

from __future__ import annotations

from pathlib import Path

from textual.message import Message

from fmlab.trainer.events import EpochMetrics, Event, RunFinished, RunStarted, StepMetrics
from fmlab.trainer.studies.tables import RunRow


class RunMessage(Message):
    """One event of the run numbered ``run_id`` (so a restarted view can drop
    the last few events of the run it replaced)."""

    def __init__(self, run_id: int) -> None:
        super().__init__()
        self.run_id = run_id


class RunBegan(RunMessage):
    def __init__(self, run_id: int, event: RunStarted) -> None:
        super().__init__(run_id)
        self.event = event


class StepRecorded(RunMessage):
    def __init__(self, run_id: int, event: StepMetrics) -> None:
        super().__init__(run_id)
        self.event = event


class EpochEnded(RunMessage):
    def __init__(self, run_id: int, event: EpochMetrics) -> None:
        super().__init__(run_id)
        self.event = event


class RunEnded(RunMessage):
    def __init__(self, run_id: int, event: RunFinished, session_path: Path | None = None) -> None:
        super().__init__(run_id)
        self.event = event
        self.session_path = session_path


class RunRefused(RunMessage):
    """The run could not start (no data, no CUDA); ``reason`` is one line."""

    def __init__(self, run_id: int, reason: str) -> None:
        super().__init__(run_id)
        self.reason = reason


class SaveFailed(RunMessage):
    """The session file could not be written; training goes on."""

    def __init__(self, run_id: int, reason: str) -> None:
        super().__init__(run_id)
        self.reason = reason


class SweepEventRecorded(RunMessage):
    """One event of the run at ``index`` (grid order) of the sweep numbered
    ``run_id``; ``row`` is that run's table row, given with its RunFinished."""

    def __init__(self, run_id: int, index: int, event: Event, row: RunRow | None = None) -> None:
        super().__init__(run_id)
        self.index = index
        self.event = event
        self.row = row


class SweepEnded(RunMessage):
    """The sweep is over (``status`` completed or stopped) and its record is
    written at ``path``."""

    def __init__(self, run_id: int, status: str, path: Path, seconds: float) -> None:
        super().__init__(run_id)
        self.status = status
        self.path = path
        self.seconds = seconds


def message_for(run_id: int, event: Event, session_path: Path | None = None) -> RunMessage:
    if isinstance(event, StepMetrics):
        return StepRecorded(run_id, event)
    if isinstance(event, EpochMetrics):
        return EpochEnded(run_id, event)
    if isinstance(event, RunStarted):
        return RunBegan(run_id, event)
    return RunEnded(run_id, event, session_path)
