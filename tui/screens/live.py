"""The live view: one run's progress and charts, trained now or replayed.

The run happens in a thread worker that wraps every event in a message and
posts it (never touching widgets); handlers update a LiveRun, and a timer
redraws at most REDRAWS_PER_SECOND times, so a fast run never waits on plotext.
"""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path

from fmlab.trainer.config import ConfigError, RunConfig
from fmlab.trainer.replay import ReplayControl, play
from fmlab.trainer.sessions import SessionRecord
from fmlab.trainer.text import visible
from fmlab.tui.literal import notify_literally
from fmlab.tui.messages import (
    EpochEnded,
    RunBegan,
    RunEnded,
    RunRefused,
    SaveFailed,
    StepRecorded,
    message_for,
)
from fmlab.tui.screens.live_run import LiveRun
from fmlab.tui.screens.training_job import TrainingJob
from fmlab.tui.widgets.accuracy_chart import AccuracyChart
from fmlab.tui.widgets.gradient_chart import GradientChart
from fmlab.tui.widgets.loss_chart import LossChart
from fmlab.tui.widgets.metric_chart import MetricChart
from fmlab.tui.widgets.run_progress import RunProgress
from fmlab.tui.widgets.system_line import SystemLine
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import Footer, Header
from textual.worker import Worker, WorkerState, get_current_worker

REDRAWS_PER_SECOND = 10
CHART_SHARE = 0.03
TRAINING_PROGRESS_EVERY = 0.5  # seconds


class DatasetCache:
    """Fashion-MNIST loaded once per device and kept for the next run."""

    def __init__(self, data_dir: Path | None) -> None:
        self.data_dir = data_dir
        self._loaded: dict[str, object] = {}
        self._lock = threading.Lock()

    def get(self, device_name: str):
        from fmlab.trainer import data
        from fmlab.trainer.training import loop as engine

        device = engine.resolve_device(device_name)
        with self._lock:
            if str(device) not in self._loaded:
                self._loaded[str(device)] = data.load(data.locate(self.data_dir), device)
            return self._loaded[str(device)]


class LiveScreen(TrainingJob, Screen):
    CSS_PATH = "live.tcss"
    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("c", "stop_run", "Stop run"),
        Binding("x", "toggle_axis", "x step/epoch"),
        Binding("space", "toggle_pause", "Play/pause"),
        Binding("f", "faster", "Speed"),
        Binding("r", "restart", "Restart"),
    ]

    def __init__(self, replay: SessionRecord | None = None, speed: float = 1.0) -> None:
        super().__init__()
        self.record = replay
        self.control = ReplayControl(speed)
        self.live = LiveRun(replay=replay is not None)
        self.run_id = 0
        self.cancel = threading.Event()
        self.job: Worker | None = None
        self._dirty = True
        self._charts_next = 0.0  # when charts may be rebuilt next (perf_counter)
        self._progress_next = 0.0  # when the progress line may be redrawn next, while training
        self._build_mark = 0.0  # MetricChart.build_seconds at the last rebuild

    def compose(self) -> ComposeResult:
        yield Header()
        yield RunProgress(id="progress")
        with Horizontal(id="top-charts"):
            yield LossChart(id="loss-chart")
            yield AccuracyChart(id="accuracy-chart")
        yield GradientChart(id="gradient-chart")
        yield SystemLine(self.app.probe.line, id="system")
        yield Footer()

    def on_mount(self) -> None:
        # the header shows titles literally; visible() keeps control characters out
        self.sub_title = f"replay {visible(self.record.id)}" if self.record else "live run"
        self.set_interval(1 / REDRAWS_PER_SECOND, self.redraw)
        if self.record is not None:
            self.start_replay()
        self.redraw()

    def on_unmount(self) -> None:
        # a paused replay's worker waits inside play() until the control
        # changes: without this, closing the app would wait for it forever
        self.control.stop()

    # ------------------------------------------------------------ starting

    def _reset(self) -> int:
        self.run_id += 1
        self.live = LiveRun(replay=self.record is not None)
        self._dirty = True
        return self.run_id

    def start_training(self, config: RunConfig) -> None:
        """Train ``config`` here; a run still going is stopped (and saved) first."""
        self.cancel.set()
        self.cancel = threading.Event()
        self.job = self._train(self._reset(), config, self.app.datasets, self.cancel, self.app.sessions_dir)

    def start_replay(self) -> None:
        assert self.record is not None
        self.control.stop()
        self.control = ReplayControl(self.control.speed, paused=False)
        self.job = self._replay(self._reset(), self.record, self.control)

    @work(thread=True, exclusive=True, exit_on_error=False, group="run")
    def _train(
        self,
        run_id: int,
        config: RunConfig,
        datasets: DatasetCache,
        cancel: threading.Event,
        sessions_dir: Path,
    ) -> None:
        from fmlab.trainer import data
        from fmlab.trainer.sessions import SessionRecorder
        from fmlab.trainer.training import loop as engine

        worker = get_current_worker()
        try:
            dataset = datasets.get(config.device)
        except (data.DataError, ConfigError) as exc:
            self.post_message(RunRefused(run_id, str(exc)))
            return
        recorder = SessionRecorder(sessions_dir, on_error=lambda m: self.post_message(SaveFailed(run_id, m)))
        events = engine.run(config, dataset, cancel, on_checkpoint=recorder.save_checkpoint)
        for event in events:
            if worker.is_cancelled:  # the app is closing: end as "stopped", saved
                cancel.set()
            recorder(event)
            self.post_message(message_for(run_id, event, recorder.path))

    @work(thread=True, exclusive=True, exit_on_error=False, group="run")
    def _replay(self, run_id: int, record: SessionRecord, control: ReplayControl) -> None:
        worker = get_current_worker()
        for event in play(record, control):
            if worker.is_cancelled:
                control.stop()
                return
            self.post_message(message_for(run_id, event, record.path))

    def request_stop(self) -> None:
        self.action_stop_run()

    # ------------------------------------------------------------ events

    def _current(self, message) -> bool:
        message.stop()
        self._dirty = True
        return message.run_id == self.run_id

    def on_run_began(self, message: RunBegan) -> None:
        if self._current(message):
            self.live.begin(message.event)
            self.query_one(SystemLine).device = message.event.device

    def on_step_recorded(self, message: StepRecorded) -> None:
        if self._current(message):
            self.live.add_step(message.event)

    def on_epoch_ended(self, message: EpochEnded) -> None:
        if self._current(message):
            self.live.add_epoch(message.event)

    def on_run_ended(self, message: RunEnded) -> None:
        if not self._current(message):
            return
        self.live.finish(message.event.results, message.session_path)
        if not self.live.replay and message.session_path is not None:
            notify_literally(
                self, f"{message.event.status}: session saved to {message.session_path}", timeout=6
            )

    def on_run_refused(self, message: RunRefused) -> None:
        if self._current(message):
            self.live.problem = message.reason
            notify_literally(self, message.reason, title="Cannot start the run", severity="error", timeout=10)

    def on_save_failed(self, message: SaveFailed) -> None:
        if self._current(message):
            notify_literally(self, f"{message.reason}; training goes on", severity="warning", timeout=8)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        self._dirty = True
        self.refresh_bindings()
        if event.worker is self.job and event.state == WorkerState.ERROR:
            error = event.worker.error
            self.live.problem = f"failed: {type(error).__name__}: {error}".splitlines()[0]
            notify_literally(self, self.live.problem, severity="error", timeout=10)

    # ------------------------------------------------------------ drawing

    def redraw(self) -> None:
        """Runs on a ~10/s timer. While training, the screen is drawn less
        often: every redraw reflows the layout and rebuilds plots in pure
        Python, holding the GIL the training thread needs. The progress line
        then updates twice a second, and the charts so that building them takes
        at most CHART_SHARE of the time."""
        now = time.perf_counter()
        training = self.record is None and self.busy
        if not self._dirty or (training and now < self._progress_next):
            return
        self._progress_next = now + TRAINING_PROGRESS_EVERY
        charts_due = not training or now >= self._charts_next
        self._dirty = not charts_due  # come back for the charts
        done, total = self.live.counts()
        with self.app.batch_update():
            status = self.live.status(paused=self.control.paused, speed=self.control.speed)
            self.query_one(RunProgress).show(status, done, total, self.live.detail())
            if charts_due:
                last_cost = MetricChart.build_seconds - self._build_mark
                self._build_mark = MetricChart.build_seconds
                self._charts_next = now + max(1 / REDRAWS_PER_SECOND, last_cost / CHART_SHARE)
                for chart in self.query(MetricChart):
                    chart.show([self.live.series])

    # ------------------------------------------------------------ actions

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        replaying = self.record is not None
        if action in ("toggle_pause", "faster", "restart"):
            return replaying
        if action == "stop_run":
            return not replaying and self.busy
        if action == "back":
            return len(self.app.screen_stack) > 1
        return True

    def action_back(self) -> None:
        self.control.stop()
        if self.job is not None and self.record is not None:
            self.job.cancel()
        self.dismiss()

    def action_stop_run(self) -> None:
        if self.record is None and self.busy:
            self.cancel.set()
            self.live.stopping = True
            self._dirty = True

    def action_toggle_axis(self) -> None:
        for chart in self.query(MetricChart):
            chart.x_axis = "epoch" if chart.x_axis == "step" else "step"

    def action_toggle_pause(self) -> None:
        if self.live.results is not None:
            self.start_replay()
            return
        self.control.toggle_pause()
        self._dirty = True

    def action_faster(self) -> None:
        speed = self.control.next_speed()
        self.notify(f"replay speed {'instant' if math.isinf(speed) else f'{speed:g}x'}", timeout=2)
        self._dirty = True

    def action_restart(self) -> None:
        self.start_replay()
