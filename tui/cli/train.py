"""``fmlab train``: one run through the job service, with its progress on
stderr and a summary (or ``--json``) on stdout."""

from __future__ import annotations

import threading
from dataclasses import asdict
from pathlib import Path
from typing import Optional

import typer

from fmlab.trainer.config import ConfigError, RunConfig
from fmlab.trainer.events import RunFinished
from fmlab.tui.cli.options import (
    SaveWarnings,
    data_dir_option,
    json_option,
    load_data,
    model_option,
    parse_threads,
    quiet_option,
    require_writable_dir,
    resolve_sessions_dir,
    run_field_options,
    session_ref_option,
    sessions_dir_option,
    threads_option,
    with_model,
)
from fmlab.tui.cli.output import FAILURE, absolute, config_usage_error, fail, percent, plural, print_json
from fmlab.tui.cli.progress import ProgressPrinter
from fmlab.tui.cli.signals import StopOnSignal


def resumable_job(sessions_dir: Path, ref: str, module=None):
    """The job continuing session ``ref`` from its checkpoint, or a one-line
    exit; ``module``: the user's module named with --model, loaded."""
    from fmlab.trainer.jobs import JobError, resume_job
    from fmlab.trainer.sessions import SessionError, find_session

    try:
        return resume_job(find_session(sessions_dir, ref), module)
    except (SessionError, JobError) as exc:
        fail(str(exc))


def run_training(
    config: RunConfig,
    data_dir: Path | None,
    sessions_dir: Path,
    *,
    json_output: bool,
    quiet: bool,
    resume_ref: str | None = None,
    threads: int | None = None,
) -> None:
    from fmlab.trainer.jobs import Job, JobError, JobService, LocalStacks

    module = config.model if config.model.module is not None else None
    job = resumable_job(sessions_dir, resume_ref, module) if resume_ref else Job(config)
    config = job.config
    service = JobService(sessions_dir, load_data(data_dir, config.device), on_warning=SaveWarnings(),
                         stacks=LocalStacks(threads))  # fmt: skip
    try:
        service.check_resumed(job)
    except JobError as exc:
        fail(str(exc))
    if job.resume and not (quiet or json_output):
        typer.echo(f"resuming {job.resume.record.id} after epoch {job.resume.checkpoint.epoch}", err=True)
    progress = ProgressPrinter([config], quiet=quiet or json_output)
    cancel = threading.Event()
    finished: RunFinished | None = None
    with StopOnSignal(cancel) as stop:
        try:
            for position, event in service.run([job], cancel):
                progress(position, event)
                if isinstance(event, RunFinished):
                    finished = event
        except JobError as exc:
            fail(str(exc))
        finally:
            progress.close()
    assert finished is not None
    _summary(config, finished, service.recorders[0], json_output)
    stop.exit_if_stopped()


def _summary(config: RunConfig, finished: RunFinished, recorder, json_output: bool) -> None:
    from fmlab.trainer.fields import config_json

    results = finished.results
    if recorder.save_error:
        recorder.finish()  # the disk may have room again by now
    saved = recorder.save_error is None
    if json_output:
        print_json(
            {
                "session": recorder.record.id if recorder.record else None,
                "path": str(absolute(recorder.path)) if saved else None,
                "config": config_json(config),
                "results": asdict(results),
                "epochs": [asdict(e) for e in recorder.record.epochs] if recorder.record else [],
            }
        )
    else:
        line = f"{results.status}: final test accuracy {percent(results.final_test_acc)}"
        line += f", best {percent(results.best_test_acc)}"
        if results.converged_epoch is not None:
            line += f", converged at epoch {results.converged_epoch}"
        line += f", {plural(results.epochs_done, 'epoch')} in {results.seconds:.1f} s"
        if results.message:
            line += f" ({results.message})"
        typer.echo(line)
        if saved:
            typer.echo(f"session saved: {absolute(recorder.path)}")
        else:
            typer.echo(f"session NOT saved: {recorder.save_error}", err=True)
    if results.status == "failed" or not saved:
        raise typer.Exit(FAILURE)


@run_field_options()
def train(
    data_dir: Optional[Path] = data_dir_option(),
    sessions_dir: Optional[Path] = sessions_dir_option(),
    json_output: bool = json_option("Print one JSON object with the results instead of text."),
    quiet: bool = quiet_option("No progress display, just the summary."),
    resume: Optional[str] = session_ref_option(
        "--resume",
        "Continue a stopped or interrupted session from its last finished epoch (its own settings "
        "are used); latest or -1 is the newest session.",
    ),
    model: Optional[str] = model_option(),
    threads: Optional[str] = threads_option(),
    **fields: object,
) -> None:
    """Train one run and save it as a session.

    The reference experiment: fmlab train --lr 0.1 --epochs 10 (base MLP, batch
    64, plain SGD, no shuffle) reaches about 87% test accuracy. Ctrl+C or
    SIGTERM stops the run at its next step and saves it as stopped (exit
    status 130 or 143).

    Other networks: --arch cnn (a small LeNet-like net), a layer stack such as
    --arch "conv(16,5,pad=2) relu maxpool(2) flatten fc(10)" (fmlab params
    --help lists the layers), or your own module: --model my_net.py:build.
    """
    from fmlab.trainer.fields import parse_run_config

    pinned = parse_threads(threads)
    try:
        config = parse_run_config(**with_model(fields, model))
    except ConfigError as exc:
        config_usage_error(exc)
    directory = resolve_sessions_dir(sessions_dir)
    require_writable_dir(directory, "sessions-dir")
    run_training(config, data_dir, directory, json_output=json_output, quiet=quiet, resume_ref=resume,
                 threads=pinned)  # fmt: skip
