"""The base of the views that train: the live view (one run, or a replay of
one) and the sweep view (a grid of runs).

A thread worker turns what the view trains into messages (tui.messages) and
posts them; it never touches widgets. The handlers here drop the messages of
a training the view has since replaced, hand the rest to the view and mark it
for redrawing; a timer redraws the progress line and the charts, paced while
training (see ``redraw``). A subclass says what it trains (a generator of
messages) and how it shows it (the ``record_*`` and drawing hooks).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from functools import partial
from typing import ClassVar

from textual import work
from textual.screen import Screen
from textual.worker import Worker, WorkerState, get_current_worker

from fmlab.trainer.config import ConfigError
from fmlab.trainer.data import DataError
from fmlab.trainer.events import RunFinished
from fmlab.tui.literal import notify_literally
from fmlab.tui.messages import RunRefused, SaveFailed, TrainingEvent, TrainingMessage
from fmlab.tui.screens.chart_keys import CHART_KEYS, ChartKeys
from fmlab.tui.screens.terminal_sized import TerminalSized
from fmlab.tui.widgets.metric_chart import MetricChart, RunSeries
from fmlab.tui.widgets.run_progress import RunProgress

CHART_SHARE = 0.03  # of the time, at most, that building charts may take while training


class TrainingView(TerminalSized, ChartKeys, Screen):
    """A screen with one training (or replay) at a time, shown by a
    RunProgress line and MetricCharts; never shown itself."""

    BINDINGS = CHART_KEYS

    REDRAWS_PER_SECOND: ClassVar[float] = 10
    TRAINING_PROGRESS_EVERY: ClassVar[float] = 0.5  # seconds between progress redraws while training
    # what the app and the notifications say about this view's training
    STOP_QUESTION: ClassVar[str] = ""
    QUIT_NOTICE: ClassVar[str] = ""
    REFUSED_TITLE: ClassVar[str] = ""

    def __init__(self) -> None:
        super().__init__()
        self.run_id = 0  # numbers what this view started; messages of an older one are dropped
        self.cancel = threading.Event()
        self.job: Worker | None = None
        self.dirty = True  # what the view shows has changed since it was drawn
        self._charts_next = 0.0  # when charts may be rebuilt next (perf_counter)
        self._progress_next = 0.0  # when the progress line may be redrawn next, while training
        self._build_mark = 0.0  # MetricChart.build_seconds at the last rebuild

    # Textual calls these handlers as well as a subclass's own (no super() call)
    def on_mount(self) -> None:
        self.set_interval(1 / self.REDRAWS_PER_SECOND, self.redraw)

    def on_screen_resume(self) -> None:
        self.dirty = True
        self.redraw()

    # ------------------------------------------------------------ the worker

    @property
    def busy(self) -> bool:
        """Whether the worker is running (training or replaying)."""
        return self.job is not None and self.job.state in (WorkerState.PENDING, WorkerState.RUNNING)

    @property
    def training(self) -> bool:
        """Whether the worker trains now: a replay is not paced, nor stopped."""
        return self.busy

    def next_run(self) -> int:
        """Number a new training. Whatever trained here is asked to stop (it
        is saved as stopped) and its last messages are dropped from now on."""
        self.cancel.set()
        self.cancel = threading.Event()
        self.run_id += 1
        self.dirty = True
        return self.run_id

    def start_job(
        self,
        messages: Iterator[TrainingMessage],
        *,
        device: str | None = None,
        stop: Callable[[], None] | None = None,
    ) -> None:
        """Post ``messages`` from a thread worker. ``messages`` is a generator:
        its body runs in the worker's thread and trains as it goes. With a
        ``device``, the data for it is loaded first, and a failure there (no
        data, no CUDA) is refused in one line. ``stop`` ends the training when
        the app closes: the cancel flag unless given."""
        load = partial(self.app.datasets.get, device) if device is not None else None
        self.job = self._work(self.run_id, messages, load, stop or self.cancel.set)
        self.refresh_bindings()

    @work(thread=True, exclusive=True, exit_on_error=False, group="training")
    def _work(
        self,
        run_id: int,
        messages: Iterator[TrainingMessage],
        load_data: Callable[[], object] | None,
        stop: Callable[[], None],
    ) -> None:
        worker = get_current_worker()
        if load_data is not None:
            try:
                load_data()
            except (DataError, ConfigError) as exc:
                self.post_message(RunRefused(run_id, str(exc)))
                return
        # a worker that never looks at is_cancelled keeps the app from exiting;
        # the training then ends as "stopped", and is saved
        if worker.is_cancelled:
            stop()
        for message in messages:
            if worker.is_cancelled:
                stop()
            self.post_message(message)

    def save_warning(self, run_id: int) -> Callable[[str], None]:
        """What the trainer calls, from any thread, when a file could not be written."""
        return lambda reason: self.post_message(SaveFailed(run_id, reason))

    async def stop_and_wait(self) -> None:
        """Stop the training and wait until what it trained is saved."""
        worker = self.job
        if worker is None or not self.busy:
            return
        self.action_stop()
        try:
            await worker.wait()
        except Exception:  # failed or cancelled: either way it has ended
            pass

    # ------------------------------------------------------------ messages
    # How a training ended (finished, refused, failed) is drawn at once rather
    # than at the next paced redraw: it is what the user waits to read.

    def takes(self, message: TrainingMessage) -> bool:
        """Whether ``message`` is from what this view trains now."""
        message.stop()
        self.dirty = True
        return message.run_id == self.run_id

    def on_training_event(self, message: TrainingEvent) -> None:
        if self.takes(message):
            self.record_event(message)
            if isinstance(message.event, RunFinished):
                self.redraw(at_once=True)

    def on_run_refused(self, message: RunRefused) -> None:
        if self.takes(message):
            self.record_problem("refused", message.reason)
            notify_literally(self, message.reason, title=self.REFUSED_TITLE, severity="error", timeout=10)
            self.redraw(at_once=True)

    def on_save_failed(self, message: SaveFailed) -> None:
        if self.takes(message):
            notify_literally(self, f"{message.reason}; training goes on", severity="warning", timeout=8)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        self.dirty = True
        self.refresh_bindings()
        if event.worker is self.job and event.state == WorkerState.ERROR:
            error = event.worker.error
            problem = f"failed: {type(error).__name__}: {error}".splitlines()[0]
            self.record_problem("failed", problem)
            notify_literally(self, problem, severity="error", timeout=10)
            self.redraw(at_once=True)

    # ------------------------------------------------------------ what a view does

    def record_event(self, message: TrainingEvent) -> None:
        """Take one event of the current training into what the view shows."""
        raise NotImplementedError

    def record_problem(self, state: str, problem: str) -> None:
        """The training was ``"refused"`` or has ``"failed"``, for ``problem``."""
        raise NotImplementedError

    def record_stopping(self) -> None:
        """The user asked the training to stop; it ends at its next step."""
        raise NotImplementedError

    def progress(self) -> tuple[str, int, int | None, str]:
        """The progress line: status, done and total (None: unknown), detail."""
        raise NotImplementedError

    def chart_series(self) -> list[RunSeries]:
        raise NotImplementedError

    # ------------------------------------------------------------ drawing

    def redraw(self, at_once: bool = False) -> None:
        """Runs on a timer, REDRAWS_PER_SECOND times a second. While training,
        the screen is drawn less often: every redraw reflows the layout and
        rebuilds plots in pure Python, holding the GIL the training thread
        needs. The progress line then updates every TRAINING_PROGRESS_EVERY
        seconds (or ``at_once``), and the charts so that building them takes at
        most CHART_SHARE of the time. A view that is not on screen waits until
        it shows again."""
        if not self.dirty or not self.is_current:
            return
        now = time.perf_counter()
        training = self.training
        if training and now < self._progress_next and not at_once:
            return
        self._progress_next = now + self.TRAINING_PROGRESS_EVERY
        charts_due = not training or now >= self._charts_next
        self.dirty = not charts_due  # come back for the charts
        with self.app.batch_update():
            self.query_one(RunProgress).show(*self.progress())
            if charts_due:
                last_cost = MetricChart.build_seconds - self._build_mark
                self._build_mark = MetricChart.build_seconds
                self._charts_next = now + max(1 / self.REDRAWS_PER_SECOND, last_cost / CHART_SHARE)
                series = self.chart_series()
                for chart in self.query(MetricChart):
                    chart.show(series)

    # ------------------------------------------------------------ actions

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "stop":
            return self.training
        return True

    def action_stop(self) -> None:
        """Ask the training to stop at its next step; it is saved as stopped."""
        if self.training:
            self.cancel.set()
            self.record_stopping()
            self.dirty = True
