"""The command line's consumer of training events: one rich progress bar on
stderr (stdout stays clean for tables and ``--json``), whatever the number of
runs. Alone, a run also gets a line per epoch and its loss on the bar; several
runs share one bar counted in epochs over all of them."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from fmlab.trainer.config import RunConfig
from fmlab.trainer.events import EpochMetrics, Event, RunFinished, RunStarted, StepMetrics


def epoch_line(e: EpochMetrics) -> str:
    text = (
        f"epoch {e.epoch:>3}  train loss {e.train_loss:.4f} acc {e.train_acc:6.2f}%  "
        f"test loss {e.test_loss:.4f} acc {e.test_acc:6.2f}%  {e.seconds:5.2f} s  "
        f"{e.samples_per_s:,.0f} samples/s"
    )
    if e.converged_epoch is not None:
        text += f"  (converged at epoch {e.converged_epoch})"
    return text


def started_line(event: RunStarted) -> str:
    return (
        f"training {event.config.describe()} on {event.device} ({event.device_name}), "
        f"{event.model.total_params:,} parameters, {event.train_size:,} train / "
        f"{event.test_size:,} test images"
    )


class QuietControlKeys:
    """While a progress bar shows, the terminal does not echo ``^C``: the
    echo can push the bar's line down (it wraps when the bar fills the
    width), and the bar, erased where it was, would stay on the screen."""

    def __init__(self) -> None:
        self.saved: list | None = None

    def start(self) -> None:
        import sys

        try:
            import termios

            fd = sys.stdin.fileno()
            if not sys.stdin.isatty():
                return
            attributes = termios.tcgetattr(fd)
            self.saved = [list(a) if isinstance(a, list) else a for a in attributes]
            attributes[3] &= ~termios.ECHOCTL
            termios.tcsetattr(fd, termios.TCSANOW, attributes)
        except (ImportError, AttributeError, ValueError, OSError):  # no terminal, or no termios
            self.saved = None

    def stop(self) -> None:
        if self.saved is None:
            return
        import sys
        import termios

        try:
            termios.tcsetattr(sys.stdin.fileno(), termios.TCSANOW, self.saved)
        except (ValueError, OSError):
            pass
        self.saved = None


class _Quiet:
    def update(self, text: str) -> None:
        pass


@contextmanager
def spinner(text: str, console: Console | None = None) -> Iterator:
    """A spinner with ``text`` on stderr while the block runs, where stderr
    is a terminal (a pipe or a log gets nothing); ``update`` changes the text."""
    console = console or Console(stderr=True)
    if not console.is_terminal:
        yield _Quiet()
        return
    with console.status(text) as status:
        yield status


class ProgressPrinter:
    """Shows the progress of ``configs`` training; call it with each
    ``(position, event)``, ``close()`` at the end."""

    def __init__(self, configs: Sequence[RunConfig], quiet: bool = False, label: str = "train",
                 console: Console | None = None) -> None:  # fmt: skip
        self.alone = len(configs) == 1
        self.epochs = [c.epochs for c in configs]
        self.batch_size = configs[0].batch_size if configs else 1
        self.names = [f"{c.model.name} lr={c.optimizer.lr:g}" for c in configs]
        self.done = [0.0] * len(configs)  # epochs done (fractional) per run
        self.steps_per_epoch = [1] * len(configs)
        self.finished = 0
        self.now = ""  # the latest epoch of several runs, in words
        self.last_loss: float | None = None
        self.last_acc: float | None = None
        self.console = console or Console(stderr=True)
        self.progress: Progress | None = None
        self.keys = QuietControlKeys()
        if not quiet:
            self.progress = Progress(
                TextColumn(f"[bold]{label}" if not self.alone else "[bold]{task.fields[where]}"),
                BarColumn(),
                TextColumn("{task.percentage:>3.0f}%"),
                TextColumn("{task.fields[detail]}"),
                TimeRemainingColumn(),
                console=self.console,
                transient=True,
            )
            self.task = self.progress.add_task(label, total=max(1, sum(self.epochs)), where="", detail="")

    def __call__(self, position: int, event: Event) -> None:
        if self.progress is None:
            return
        if isinstance(event, RunStarted):
            self.steps_per_epoch[position] = max(1, event.steps_per_epoch)
            if self.alone:
                self.console.print(started_line(event), highlight=False, markup=False, soft_wrap=True)
                for note in event.notes:
                    self.console.print(f"note: {note}", highlight=False, markup=False, soft_wrap=True)
            if self.console.is_terminal:
                self.keys.start()
            self.progress.start()
        elif isinstance(event, StepMetrics):
            self.done[position] = max(self.done[position], event.step / self.steps_per_epoch[position])
            self.last_loss = event.loss
        elif isinstance(event, EpochMetrics):
            self.done[position] = float(event.epoch)
            self.last_acc = event.test_acc
            if self.alone:
                self.console.print(epoch_line(event), highlight=False, markup=False, soft_wrap=True)
            else:
                self.now = f"{self.names[position]}: {event.test_acc:.2f}% at epoch {event.epoch}/{self.epochs[position]}"
        elif isinstance(event, RunFinished):
            self.done[position] = float(self.epochs[position])
            self.finished += 1
        self._show()

    def _show(self) -> None:
        assert self.progress is not None
        completed = sum(min(d, e) for d, e in zip(self.done, self.epochs))
        fields: dict[str, str] = {}
        if self.alone:
            epoch = min(int(self.done[0]) + 1, self.epochs[0])
            speed = self.progress.tasks[0].speed  # epochs per second, smoothed by rich
            rate = f"  {speed * self.steps_per_epoch[0] * self.batch_size:,.0f} samples/s" if speed else ""
            loss = "-" if self.last_loss is None else f"{self.last_loss:.4f}"
            acc = "-" if self.last_acc is None else f"{self.last_acc:.2f}%"
            fields = {
                "where": f"epoch {epoch}/{self.epochs[0]}",
                "detail": f"loss {loss}  test acc {acc}{rate}",
            }
        else:
            fields = {"detail": f"{self.finished}/{len(self.epochs)} runs done  {self.now}"}
        self.progress.update(self.task, completed=completed, **fields)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
        self.keys.stop()


def follow_sweep(runner, datasets, *, quiet: bool, label: str, train_limit: int | None = None,
                 on_event=None, cancel=None, events=None) -> int | None:  # fmt: skip
    """Train ``runner``'s (a Sweep's) pending runs with one progress bar;
    Ctrl+C and SIGTERM set ``cancel`` and stop them (saved as stopped).
    ``events`` replaces ``runner.run(...)`` as the stream when given (a study
    wraps it); ``on_event(index, event)`` sees every event. Returns the
    signal that stopped the training (None: it was not stopped)."""
    import threading

    from fmlab.trainer.studies.sweep import SweepError
    from fmlab.tui.cli.output import fail
    from fmlab.tui.cli.signals import StopOnSignal

    pending = runner.record.pending()
    progress = ProgressPrinter(
        [runner.record.configs[i] for i in pending], quiet=quiet or not pending, label=label
    )
    slots = {index: slot for slot, index in enumerate(pending)}
    cancel = cancel or threading.Event()
    with StopOnSignal(cancel) as stop:
        try:
            stream = events if events is not None else runner.run(datasets, cancel, train_limit=train_limit)
            for index, event in stream:
                progress(slots[index], event)
                if on_event is not None:
                    on_event(index, event)
        except SweepError as exc:
            fail(str(exc))
        finally:
            progress.close()
    return stop.signum
