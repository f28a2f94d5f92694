"""The live view: one run's progress and charts, trained now or replayed.

What the view shares with the sweep view (the worker, dropping stale
messages, the paced redraw) is TrainingView's; here is what it trains (one
run through the job service, or a saved session through replay) and how it
shows it (a LiveRun).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import Header

from fmlab.trainer.config import ConfigError, RunConfig
from fmlab.trainer.data import DataError, DatasetCache
from fmlab.trainer.events import RunFinished, RunStarted
from fmlab.trainer.jobs import Job, JobError, JobService, resume_job
from fmlab.trainer.replay import ReplayControl, play
from fmlab.trainer.sessions import SessionRecord
from fmlab.trainer.text import visible
from fmlab.tui.literal import notify_literally
from fmlab.tui.messages import RunRefused, TrainingEvent, TrainingMessage
from fmlab.tui.screens.live_run import LiveRun
from fmlab.tui.screens.training_view import TrainingView
from fmlab.tui.widgets.accuracy_chart import AccuracyChart
from fmlab.tui.widgets.gradient_chart import GradientChart
from fmlab.tui.widgets.key_footer import KeyFooter
from fmlab.tui.widgets.loss_chart import LossChart
from fmlab.tui.widgets.metric_chart import RunSeries
from fmlab.tui.widgets.run_progress import RunProgress
from fmlab.tui.widgets.system_line import SystemLine


class LiveScreen(TrainingView):
    CSS_PATH = "live.tcss"
    BINDINGS = [
        Binding("escape", "back", "Back", tooltip="Back to the sessions browser"),
        Binding("c", "stop", "Stop run", tooltip="Stop the run (it is saved as stopped)"),
        Binding("space", "toggle_pause", "Play/pause", tooltip="Pause or play the replay"),
        Binding("f", "faster", "Speed", tooltip="Replay speed: 1x, 2x, 5x, 10x, instant"),
        Binding("r", "restart", "Restart", tooltip="Replay from the start"),
    ]
    STOP_QUESTION = "A run is training. Stop it (it is saved as stopped) and start this one?"
    QUIT_NOTICE = "Stopping the run and saving it…"
    REFUSED_TITLE = "Cannot start the run"

    def __init__(self, replay: SessionRecord | None = None, speed: float = 1.0) -> None:
        super().__init__()
        self.record = replay
        self.control = ReplayControl(speed)
        self.live = LiveRun(replay=replay is not None)

    def compose(self) -> ComposeResult:
        yield Header()
        yield RunProgress(id="progress")
        with Horizontal(id="top-charts"):
            yield LossChart(id="loss-chart")
            yield AccuracyChart(id="accuracy-chart")
        yield GradientChart(id="gradient-chart")
        yield SystemLine(self.app.probe.line, id="system")
        yield KeyFooter()

    def on_mount(self) -> None:
        # the header shows titles literally; visible() keeps control characters out
        self.sub_title = f"replay {visible(self.record.id)}" if self.record else "live run"
        settings = getattr(self.app, "settings", None)
        if settings is not None:
            for chart in self.charts():
                chart.x_axis = settings.current.charts.x_axis
        if self.record is not None:
            self.start_replay()
        self.redraw()

    def on_unmount(self) -> None:
        # a paused replay's worker waits inside play() until the control
        # changes: without this, closing the app would wait for it forever
        self.control.stop()

    # ------------------------------------------------------------ starting

    def start_training(self, config: RunConfig) -> None:
        """Train ``config`` here; a run still going is stopped (and saved) first."""
        run_id = self.next_run()
        self.live = LiveRun()
        training = self._trained(run_id, config, self.app.sessions_dir, self.app.datasets, self.cancel)
        self.start_job(training, device=config.device)

    def start_resume(self, session_path: Path) -> None:
        """Continue the stopped or interrupted session at ``session_path``
        from its last finished epoch; its earlier epochs show at once."""
        run_id = self.next_run()
        self.live = LiveRun()
        training = self._resumed(run_id, session_path, self.app.sessions_dir, self.app.datasets, self.cancel)
        self.start_job(training)

    def start_replay(self) -> None:
        assert self.record is not None
        run_id = self.next_run()
        self.live = LiveRun(replay=True)
        self.control.stop()
        self.control = ReplayControl(self.control.speed, paused=False)
        self.start_job(self._replayed(run_id, self.record, self.control), stop=self.control.stop)

    def _trained(
        self,
        run_id: int,
        config: RunConfig,
        sessions_dir: Path,
        datasets: DatasetCache,
        cancel: threading.Event,
    ) -> Iterator[TrainingMessage]:
        service = JobService(sessions_dir, datasets, on_warning=self.save_warning(run_id))
        for position, event in service.run([Job(config)], cancel):
            yield TrainingEvent(run_id, position, event, service.session_path(position))

    def _resumed(
        self,
        run_id: int,
        session_path: Path,
        sessions_dir: Path,
        datasets: DatasetCache,
        cancel: threading.Event,
    ) -> Iterator[TrainingMessage]:
        """Read the session and its checkpoint (in the worker: the folder is
        untrusted and may be slow), then train on; what was trained before
        follows the run's RunStarted, so the charts hold the whole run."""
        job: Job | None = None
        try:
            job = resume_job(session_path)
            service = JobService(sessions_dir, datasets, on_warning=self.save_warning(run_id))
            service.check_resumed(job)
        except (JobError, DataError, ConfigError) as exc:
            if job is not None and job.resume is not None:
                job.resume.lock.release()
            yield RunRefused(run_id, str(exc))
            return
        record = job.resume.record
        before = job.resume.checkpoint.step
        history = [s for s in record.steps.events() if s.step <= before] + list(job.resume.checkpoint.history)
        for position, event in service.run([job], cancel):
            yield TrainingEvent(run_id, position, event, service.session_path(position))
            if isinstance(event, RunStarted):
                for earlier in history:
                    yield TrainingEvent(run_id, position, earlier)

    def _replayed(
        self, run_id: int, record: SessionRecord, control: ReplayControl
    ) -> Iterator[TrainingMessage]:
        for event in play(record, control):
            yield TrainingEvent(run_id, 0, event, record.path)

    # ------------------------------------------------------------ what it shows

    @property
    def training(self) -> bool:
        return self.record is None and self.busy

    def record_event(self, message: TrainingEvent) -> None:
        event = message.event
        self.live.add(event, message.session_path)
        if isinstance(event, RunStarted):
            self.query_one(SystemLine).device = event.device
        elif isinstance(event, RunFinished) and not self.live.replay and message.session_path is not None:
            notify_literally(self, f"{event.status}: session saved to {message.session_path}", timeout=6)

    def record_problem(self, state: str, problem: str) -> None:
        self.live.problem = problem

    def record_stopping(self) -> None:
        self.live.stopping = True

    def progress(self) -> tuple[str, int, int | None, str]:
        done, total = self.live.counts()
        status = self.live.status(paused=self.control.paused, speed=self.control.speed)
        return status, done, total, self.live.detail()

    def chart_series(self) -> list[RunSeries]:
        return [self.live.series]

    # ------------------------------------------------------------ actions

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("toggle_pause", "faster", "restart"):
            return self.record is not None
        if action == "back":
            return len(self.app.screen_stack) > 1
        return super().check_action(action, parameters)

    def axis_changed(self, axis: str) -> None:
        settings = getattr(self.app, "settings", None)
        if settings is not None and self.record is None:
            settings.update(charts={"x_axis": axis})

    def action_back(self) -> None:
        self.control.stop()
        if self.job is not None and self.record is not None:
            self.job.cancel()
        self.dismiss()

    def action_toggle_pause(self) -> None:
        if self.live.results is not None:
            self.start_replay()
            return
        self.control.toggle_pause()
        self.dirty = True

    def action_faster(self) -> None:
        speed = self.control.next_speed()
        self.notify(f"replay speed {'instant' if math.isinf(speed) else f'{speed:g}x'}", timeout=2)
        self.dirty = True

    def action_restart(self) -> None:
        self.start_replay()
