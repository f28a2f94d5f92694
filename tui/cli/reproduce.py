"""``fmlab reproduce``: every study of the reference, resumable, with a report."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from fmlab.tui.cli.options import DATA_DIR_HELP, load_data
from fmlab.tui.cli.output import FAILURE, plural, usage_error
from fmlab.tui.cli.progress import SweepProgress


def reproduce(
    out: Path = typer.Option(
        ..., "--out", help="Folder for REPORT.md, figures, sessions and the resume state.", metavar="DIR"
    ),
    quick: bool = typer.Option(False, "--quick", help="A reduced version (fewer epochs) for a fast look."),
    threshold: str = typer.Option(
        "0.1", help="Convergence threshold in accuracy points.", metavar="THRESHOLD"
    ),
    sequential: bool = typer.Option(
        False, "--sequential", help="Train runs one after another instead of stacked."
    ),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help=DATA_DIR_HELP, metavar="DIR"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress display."),
) -> None:
    """Run all four studies of the reference and write OUT/REPORT.md.

    Interrupted? Run the same command again: finished runs are kept. The full
    reproduction takes about an hour on a 2-core CPU; --quick a few minutes.
    """
    import threading
    import time

    from fmlab.trainer.config import ConfigError, parse_run_config
    from fmlab.trainer.studies.reproduce import Reproduction, describe_machine
    from fmlab.tui.cli.options import require_writable_dir
    from fmlab.tui.cli.train import StopOnSignal

    try:
        rule = parse_run_config(threshold=threshold).convergence.threshold
    except ConfigError as exc:
        usage_error(exc.field, exc.message)
    require_writable_dir(out, "out")
    dataset = load_data(data_dir, "auto")
    repro = Reproduction(out, quick=quick, batched=not sequential, threshold=rule)
    repro.environment = describe_machine()
    cancel = threading.Event()
    started = time.perf_counter()
    with StopOnSignal(cancel):
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
            progress = SweepProgress(study.configs, quiet=quiet or not pending, label=study.name)
            try:
                for index, event in repro.run_study(study, dataset, cancel):
                    progress(index, event)
            finally:
                progress.close()
    report = repro.write_report()
    typer.echo(f"report: {report} ({time.perf_counter() - started:.0f} s this time)")
    if cancel.is_set():
        typer.echo("stopped: run the same command again to resume", err=True)
        raise typer.Exit(FAILURE)
