"""Messages that carry training (or a replay) from a worker thread to its view.

Every source speaks one stream shape, ``(index, event)``: a single run and a
replay are index 0, a sweep's runs their place in the grid. A view's worker
wraps each pair in one ``TrainingEvent`` and posts it; ``post_message`` does
not wait for the UI, so training never stalls on drawing.
"""

from __future__ import annotations

from pathlib import Path

from textual.message import Message

from fmlab.trainer.events import Event
from fmlab.trainer.studies.tables import RunRow


class TrainingMessage(Message):
    """Something from the training numbered ``run_id`` in the view that
    started it (a run, a replay or a sweep): a view that has started another
    since drops the last few messages of the one it replaced."""

    def __init__(self, run_id: int) -> None:
        super().__init__()
        self.run_id = run_id


class TrainingEvent(TrainingMessage):
    """One event of the run at ``index``. ``session_path`` is the run's
    session file where it is known (with its RunFinished at least); ``row`` is
    a sweep run's table row, given with its RunFinished."""

    def __init__(
        self,
        run_id: int,
        index: int,
        event: Event,
        session_path: Path | None = None,
        row: RunRow | None = None,
    ) -> None:
        super().__init__(run_id)
        self.index = index
        self.event = event
        self.session_path = session_path
        self.row = row


class RunRefused(TrainingMessage):
    """The training could not start (no data, no CUDA); ``reason`` is one line."""

    def __init__(self, run_id: int, reason: str) -> None:
        super().__init__(run_id)
        self.reason = reason


class SaveFailed(TrainingMessage):
    """A session file could not be written; training goes on."""

    def __init__(self, run_id: int, reason: str) -> None:
        super().__init__(run_id)
        self.reason = reason


class SweepEnded(TrainingMessage):
    """The sweep is over (``status`` completed or stopped) and its record is
    written at ``path``."""

    def __init__(self, run_id: int, status: str, path: Path, seconds: float) -> None:
        super().__init__(run_id)
        self.status = status
        self.path = path
        self.seconds = seconds
