"""What the live view knows about the run it shows, and how it reads in words.

Fed by the same events whether the run trains now or is a replay; the view
only asks it for text and counts. The status is Content: a replayed run's
message and a failure's text come from files and are shown literally.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from textual.content import Content

from fmlab.trainer.events import EpochMetrics, Event, RunFinished, RunResults, RunStarted, StepMetrics
from fmlab.trainer.replay import speed_label
from fmlab.tui.literal import literal, with_values
from fmlab.tui.widgets.metric_chart import RunSeries


def clock_text(seconds: float) -> str:
    seconds = max(int(seconds), 0)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


@dataclass
class LiveRun:
    replay: bool = False
    started: RunStarted | None = None
    series: RunSeries = field(default_factory=RunSeries)
    last_step: int = 0
    last_epoch: EpochMetrics | None = None
    results: RunResults | None = None
    session_path: Path | None = None
    problem: str = ""  # why the run could not start or the worker failed
    stopping: bool = False
    began_at: float = 0.0  # monotonic time of RunStarted
    ended_at: float | None = None

    def add(self, event: Event, session_path: Path | None = None) -> None:
        """Take the run's next event; ``session_path`` names its file at the end."""
        if isinstance(event, StepMetrics):
            self.add_step(event)
        elif isinstance(event, EpochMetrics):
            self.add_epoch(event)
        elif isinstance(event, RunStarted):
            self.begin(event)
        elif isinstance(event, RunFinished):
            self.finish(event.results, session_path)

    def begin(self, event: RunStarted, now: float | None = None) -> None:
        self.started = event
        self.series = RunSeries(name="run", steps_per_epoch=event.steps_per_epoch)
        self.began_at = time.monotonic() if now is None else now

    def add_step(self, event: StepMetrics) -> None:
        self.series.add_step(event)
        self.last_step = event.step

    def add_epoch(self, event: EpochMetrics) -> None:
        self.series.add_epoch(event)
        self.last_epoch = event
        if self.started:
            self.last_step = max(self.last_step, event.epoch * self.started.steps_per_epoch)

    def finish(self, results: RunResults, path: Path | None, now: float | None = None) -> None:
        self.results = results
        self.session_path = path
        self.stopping = False
        self.ended_at = time.monotonic() if now is None else now

    @property
    def active(self) -> bool:
        return self.started is not None and self.results is None and not self.problem

    # --------------------------------------------------------------- words

    def status(self, paused: bool = False, speed: float = 1.0) -> Content:
        prefix = Content(f"replay {speed_label(speed)} · " if self.replay else "")
        if self.problem:
            return prefix + with_values("[red]✗ $problem[/red]", problem=self.problem)
        if self.started is None:
            return prefix + ("loading…" if self.replay else "no run yet: F2 to configure one")
        if self.results is not None:
            return prefix + finished_text(self.results)
        if self.stopping:
            return prefix + Content.from_markup("[yellow]stopping…[/yellow]")
        text = Content("⏸ paused") if paused else Content.from_markup("[green]● running[/green]")
        converged = self.last_epoch.converged_epoch if self.last_epoch else None
        if converged is not None:
            text += f" · converged at epoch {converged}"
        return prefix + text

    def counts(self) -> tuple[int, int | None]:
        """Steps done and steps in the whole run."""
        if self.started is None:
            return 0, None
        return self.last_step, self.started.config.epochs * self.started.steps_per_epoch

    def detail(self, now: float | None = None) -> str:
        if self.started is None:
            return ""
        now = time.monotonic() if now is None else now
        config, spe = self.started.config, max(self.started.steps_per_epoch, 1)
        done, total = self.counts()
        epoch = min(done // spe + 1, config.epochs) if self.results is None else self.results.epochs_done
        epoch = min(epoch, config.epochs)  # a session file's count is checked, but never show 5/1
        parts = [f"epoch {epoch}/{config.epochs}", f"step {done:,}/{total:,}"]
        rate = self.samples_per_s(now)
        if rate:
            parts.append(f"{rate:,.0f} samples/s")
        elapsed = (self.ended_at or now) - self.began_at
        if self.results is None and done and total:
            parts.append(f"ETA {clock_text(elapsed * (total - done) / done)}")
        elif self.results is not None:
            parts.append(f"took {clock_text(self.results.seconds)}")
        return " · ".join(parts)

    def samples_per_s(self, now: float) -> float | None:
        if self.last_epoch is not None:
            return self.last_epoch.samples_per_s
        if self.started is None or self.replay or not self.last_step:
            return None
        elapsed = now - self.began_at
        return self.last_step * self.started.config.batch_size / elapsed if elapsed > 0 else None


def finished_text(results: RunResults) -> Content:
    status = results.status
    if status == "converged" or (status == "completed" and results.converged_epoch is not None):
        text = with_values("[green]✓ $status[/green]", status=status)
        text += f" · converged at epoch {results.converged_epoch}"
    elif status == "completed":
        text = Content.from_markup("[green]✓ completed[/green]")
    elif status == "stopped":
        text = Content.from_markup(f"[yellow]■ stopped[/yellow] after {results.epochs_done} epochs")
    else:
        text = with_values("[red]✗ $status[/red]", status=status)
        if results.message:
            text += literal(f": {results.message}")
    if results.final_test_acc is not None:
        text += f" · test {results.final_test_acc:.2f}%"
    return text
