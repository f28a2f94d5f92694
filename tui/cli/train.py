"""``fmlab train``'s body: load data, run the engine, feed the consumers."""

from __future__ import annotations

import signal
import threading
from dataclasses import asdict
from pathlib import Path
from typing import Optional

import typer
from fmlab.trainer.config import ConfigError, RunConfig
from fmlab.trainer.events import RunFinished
from fmlab.tui.cli.options import (
    DATA_DIR_HELP,
    require_writable_dir,
    resolve_sessions_dir,
    run_field_options,
    sessions_dir_option,
)
from fmlab.tui.cli.output import FAILURE, config_usage_error, fail, percent, print_json, usage_error
from fmlab.tui.cli.progress import ProgressPrinter


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


def load_resumable(sessions_dir: Path, ref: str):
    """The session and checkpoint to resume, or a one-line exit."""
    from fmlab.trainer.sessions import SessionError, checkpoint_path, find_session, load
    from fmlab.trainer.training.loop import Checkpoint

    try:
        record = load(find_session(sessions_dir, ref))
    except SessionError as exc:
        fail(str(exc))
    if record.status not in ("stopped", "interrupted", "failed"):
        fail(f"session {record.id} is {record.status}; only stopped or interrupted runs can be resumed")
    sidecar = checkpoint_path(record.path)
    if not sidecar.exists():
        fail(f"{sidecar}: no checkpoint to resume from (it is written after each finished epoch)")
    try:
        checkpoint = Checkpoint.load(sidecar)
    except Exception as exc:  # torch raises many kinds for a damaged file
        fail(
            f"{sidecar}: unreadable checkpoint ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
        )
    return record, checkpoint


def run_training(
    config: RunConfig,
    data_dir: Path | None,
    sessions_dir: Path,
    *,
    json_output: bool,
    quiet: bool,
    resume_ref: str | None = None,
) -> None:
    from fmlab.trainer import data
    from fmlab.trainer.sessions import SessionRecorder
    from fmlab.trainer.training import loop as engine

    resumed = load_resumable(sessions_dir, resume_ref) if resume_ref else None
    if resumed:
        config = resumed[0].config
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
    checkpoint = None
    if resumed:
        record, checkpoint = resumed
        recorder.resume(record, checkpoint.history, checkpoint.step)
        if not (quiet or json_output):
            typer.echo(f"resuming {record.id} after epoch {checkpoint.epoch}", err=True)
    progress = ProgressPrinter(quiet=quiet or json_output)
    cancel = threading.Event()
    finished: RunFinished | None = None
    with StopOnSignal(cancel):
        try:
            events = engine.run(
                config, dataset, cancel, resume=checkpoint, on_checkpoint=recorder.save_checkpoint
            )
            for event in events:
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


@run_field_options()
def train(
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help=DATA_DIR_HELP, metavar="DIR"),
    sessions_dir: Optional[Path] = sessions_dir_option(),
    json_output: bool = typer.Option(
        False, "--json", help="Print one JSON object with the results instead of text."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress display, just the summary."),
    resume: Optional[str] = typer.Option(
        None,
        "--resume",
        metavar="ID",
        help="Continue a stopped or interrupted session from its last finished epoch (its own settings are used).",
    ),
    **fields: object,
) -> None:
    """Train one run and save it as a session.

    The reference experiment: fmlab train --lr 0.1 --epochs 10 (base MLP, batch
    64, plain SGD, no shuffle) reaches about 87% test accuracy.
    """
    from fmlab.trainer.config import parse_run_config

    try:
        config = parse_run_config(**fields)
    except ConfigError as exc:
        config_usage_error(exc)
    directory = resolve_sessions_dir(sessions_dir)
    require_writable_dir(directory, "sessions-dir")
    run_training(config, data_dir, directory, json_output=json_output, quiet=quiet, resume_ref=resume)
