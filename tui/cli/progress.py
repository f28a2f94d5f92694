"""The command line's consumer of training events: a rich progress bar and a
line per epoch on stderr, so stdout stays clean for ``--json``."""

from __future__ import annotations

from fmlab.trainer.events import EpochMetrics, Event, RunFinished, RunStarted, StepMetrics
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)


def epoch_line(e: EpochMetrics) -> str:
    text = (
        f"epoch {e.epoch:>3}  train loss {e.train_loss:.4f} acc {e.train_acc:6.2f}%  "
        f"test loss {e.test_loss:.4f} acc {e.test_acc:6.2f}%  {e.seconds:5.2f} s  "
        f"{e.samples_per_s:,.0f} samples/s"
    )
    if e.converged_epoch is not None:
        text += f"  (converged at epoch {e.converged_epoch})"
    return text


class ProgressPrinter:
    """Shows a run's progress; call it with each event, ``close()`` at the end."""

    def __init__(self, console: Console | None = None, quiet: bool = False) -> None:
        self.console = console or Console(stderr=True)
        self.quiet = quiet
        self.progress: Progress | None = None
        self.task = None
        self.total_steps = 0
        self.last_loss = float("nan")
        self.last_acc: float | None = None

    def __call__(self, event: Event) -> None:
        if self.quiet:
            return
        if isinstance(event, RunStarted):
            self._start(event)
        elif isinstance(event, StepMetrics):
            self.last_loss = event.loss
            self._update(event.step, event.epoch)
        elif isinstance(event, EpochMetrics):
            self.last_acc = event.test_acc
            self.console.print(epoch_line(event), highlight=False)
            self._update(event.epoch * self.steps_per_epoch, event.epoch + 1)
        elif isinstance(event, RunFinished):
            self.close()

    def _start(self, event: RunStarted) -> None:
        config = event.config
        self.steps_per_epoch = event.steps_per_epoch
        self.epochs = config.epochs
        self.batch_size = config.batch_size
        self.total_steps = event.steps_per_epoch * config.epochs
        self.console.print(
            f"training {config.describe()} on {event.device} ({event.device_name}), "
            f"{event.model.total_params:,} parameters, {event.train_size:,} train / "
            f"{event.test_size:,} test images",
            highlight=False,
        )
        for note in event.notes:
            self.console.print(f"note: {note}", highlight=False)
        self.progress = Progress(
            TextColumn("[bold]{task.fields[where]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("steps  loss {task.fields[loss]}  test acc {task.fields[acc]}"),
            TextColumn("{task.fields[rate]}"),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
        )
        self.progress.start()
        self.task = self.progress.add_task(
            "train", total=self.total_steps, where=f"epoch 1/{self.epochs}", loss="-", acc="-", rate=""
        )

    def _update(self, step: int, epoch: int) -> None:
        if self.progress is None or self.task is None:
            return
        speed = self.progress.tasks[0].speed  # steps per second, smoothed by rich
        rate = f"{speed * self.batch_size:,.0f} samples/s" if speed else ""
        self.progress.update(
            self.task,
            completed=min(step, self.total_steps),
            where=f"epoch {min(epoch, self.epochs)}/{self.epochs}",
            loss=f"{self.last_loss:.4f}",
            acc="-" if self.last_acc is None else f"{self.last_acc:.2f}%",
            rate=rate,
        )

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


class SweepProgress:
    """One rich progress bar on stderr for a whole sweep, counted in epochs
    over every run (steps move it within an epoch); call it with each
    ``(index, event)``, ``close()`` at the end."""

    def __init__(self, configs, quiet: bool = False, label: str = "sweep") -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        self.epochs = [c.epochs for c in configs]
        self.names = [f"{c.model.name} lr={c.optimizer.lr:g}" for c in configs]
        self.done = [0.0] * len(configs)  # epochs done (fractional) per run
        self.steps_per_epoch = [1] * len(configs)
        self.finished = 0
        self.progress = None
        if quiet:
            return
        self.progress = Progress(
            TextColumn(f"[bold]{label}"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            TextColumn("{task.fields[runs]} runs done  {task.fields[now]}"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self.progress.start()
        self.task = self.progress.add_task(
            label, total=max(1, sum(self.epochs)), runs=f"0/{len(configs)}", now=""
        )

    def __call__(self, index: int, event) -> None:
        from fmlab.trainer.events import EpochMetrics, RunFinished, RunStarted, StepMetrics

        if isinstance(event, RunStarted):
            self.steps_per_epoch[index] = max(1, event.steps_per_epoch)
        elif isinstance(event, StepMetrics):
            self.done[index] = max(self.done[index], event.step / self.steps_per_epoch[index])
        elif isinstance(event, EpochMetrics):
            self.done[index] = float(event.epoch)
            self._show(
                f"{self.names[index]}: {event.test_acc:.2f}% at epoch {event.epoch}/{self.epochs[index]}"
            )
            return
        elif isinstance(event, RunFinished):
            self.done[index] = float(self.epochs[index])
            self.finished += 1
        self._show(None)

    def _show(self, now: str | None) -> None:
        if self.progress is None:
            return
        fields = {"now": now} if now is not None else {}
        self.progress.update(
            self.task,
            completed=sum(min(d, e) for d, e in zip(self.done, self.epochs)),
            runs=f"{self.finished}/{len(self.epochs)}",
            **fields,
        )

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
