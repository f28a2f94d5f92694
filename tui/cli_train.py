"""``fmlab train``'s body: load data, run the engine, feed the consumers."""

from __future__ import annotations

import signal
import threading
from dataclasses import asdict
from pathlib import Path

import typer

from trainer.config import ConfigError, RunConfig
from trainer.events import RunFinished
from tui.cli_output import FAILURE, fail, percent, print_json, usage_error
from tui.cli_progress import ProgressPrinter


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


def run_training(
    config: RunConfig, data_dir: Path | None, sessions_dir: Path, *, json_output: bool, quiet: bool
) -> None:
    from trainer import data, engine
    from trainer.session import SessionRecorder

    try:
        device = engine.resolve_device(config.device)
    except ConfigError as exc:
        usage_error(exc.field, exc.message)
    try:
        dataset = data.load(data.locate(data_dir), device)
    except data.DataError as exc:
        fail(str(exc))
    warnings: list[str] = []

    def warn(message: str) -> None:
        warnings.append(message)
        typer.echo(f"Warning: {message}; training goes on", err=True)

    recorder = SessionRecorder(sessions_dir, on_error=warn)
    progress = ProgressPrinter(quiet=quiet or json_output)
    cancel = threading.Event()
    finished: RunFinished | None = None
    with StopOnSignal(cancel):
        try:
            for event in engine.run(config, dataset, cancel):
                recorder(event)
                progress(event)
                if isinstance(event, RunFinished):
                    finished = event
        finally:
            progress.close()
    assert finished is not None
    results = finished.results
    if recorder.save_error:
        recorder.save()  # the disk may have room again by now
    saved = recorder.save_error is None
    if json_output:
        print_json(
            {
                "session": recorder.record.id if recorder.record else None,
                "path": str(recorder.path) if saved else None,
                "config": config.describe(),
                "results": asdict(results),
                "epochs": [asdict(e) for e in recorder.record.epochs] if recorder.record else [],
            }
        )
    else:
        line = f"{results.status}: final test accuracy {percent(results.final_test_acc)}"
        line += f", best {percent(results.best_test_acc)}"
        if results.converged_epoch is not None:
            line += f", converged at epoch {results.converged_epoch}"
        line += f", {results.epochs_done} epochs in {results.seconds:.1f} s"
        if results.message:
            line += f" ({results.message})"
        typer.echo(line)
        if saved:
            typer.echo(f"session saved: {recorder.path}")
        else:
            typer.echo(f"session NOT saved: {recorder.save_error}", err=True)
    if results.status == "failed":
        raise typer.Exit(FAILURE)
    if not saved:
        raise typer.Exit(FAILURE)
