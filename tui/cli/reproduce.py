"""``fmlab reproduce``: every study of the reference, resumable, with a report."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from fmlab.tui.cli.options import (
    data_dir_option,
    load_data,
    parse_threads,
    quiet_option,
    ray_address_option,
    ray_option,
    stack_runner,
    threads_option,
    wants_ray,
)
from fmlab.tui.cli.output import absolute, fail, plural, usage_error
from fmlab.tui.cli.progress import follow_sweep
from fmlab.tui.cli.signals import interrupted_status


def reproduce(
    out: Path = typer.Option(
        ..., "--out", help="Folder for REPORT.md, figures, sessions and the resume state.", metavar="DIR"
    ),
    quick: bool = typer.Option(False, "--quick", help="A reduced version (fewer epochs) for a fast look."),
    threshold: str = typer.Option(
        "0.1", help="Convergence threshold in accuracy points.", metavar="THRESHOLD"
    ),
    stack: bool = typer.Option(
        True,
        "--stack/--no-stack",
        help="Train runs of one shape together as one stack (the default), or one by one.",
    ),
    data_dir: Optional[Path] = data_dir_option(),
    quiet: bool = quiet_option(),
    ray: bool = ray_option(),
    ray_address: Optional[str] = ray_address_option(),
    threads: Optional[str] = threads_option(),
) -> None:
    """Run all four studies of the reference and write OUT/REPORT.md.

    Interrupted (Ctrl+C or SIGTERM: exit status 130 or 143)? Run the same
    command again: finished runs are kept and runs cut off continue from
    their last finished epoch. The full reproduction takes over an hour on a
    2-core CPU; --quick a few minutes. With --ray each study's stacks train as
    Ray tasks, all at once (see fmlab sweep --help).
    """
    import threading
    import time

    from fmlab.trainer.config import ConfigError
    from fmlab.trainer.fields import parse_run_config
    from fmlab.trainer.jobs import JobError
    from fmlab.trainer.studies.reproduce import Reproduction, describe_machine
    from fmlab.tui.cli.options import SaveWarnings, require_writable_dir

    try:
        rule = parse_run_config(threshold=threshold).convergence.threshold
    except ConfigError as exc:
        usage_error(exc.field, exc.message)
    require_writable_dir(out, "out")
    on_ray = wants_ray(ray, ray_address)
    pinned = parse_threads(threads)
    # on Ray the driver holds the data on the CPU; each task moves it to its device
    datasets = load_data(data_dir, "cpu" if on_ray else "auto")
    repro = Reproduction(out, quick=quick, stacked=stack, threshold=rule)
    repro.on_warning = SaveWarnings()
    repro.environment = describe_machine()
    cancel = threading.Event()
    stopped_by: int | None = None
    started = time.perf_counter()
    with stack_runner(ray, ray_address, pinned) as stacks:
        for number, study in enumerate(repro.studies, start=1):
            if cancel.is_set():
                break
            pending = repro.pending_runs(study)
            done = len(study.configs) - pending
            typer.echo(
                f"[{number}/{len(repro.studies)}] {study.name}: {plural(len(study.configs), 'run')}"
                + (f" ({done} already done)" if done else ""),
                err=True,
            )
            events = repro.run_study(study, datasets, cancel, stacks=stacks)
            try:
                stopped_by = follow_sweep(repro.sweep(study), datasets, quiet=quiet, label=study.name,
                                          cancel=cancel, events=events)  # fmt: skip
            except JobError as exc:  # a stack that could not train at all (its Ray task failed)
                fail(f"{exc}; the runs that trained are saved: run the same command again to continue")
    report = repro.write_report()
    typer.echo(f"report: {absolute(report)} ({time.perf_counter() - started:.0f} s this time)")
    if stopped_by is not None:
        typer.echo("stopped: run the same command again to resume", err=True)
        raise typer.Exit(interrupted_status(stopped_by))
