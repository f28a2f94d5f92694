"""``fmlab grads``: the mean gradient over the first training steps."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from fmlab.tui.cli.options import (
    SESSIONS_HELP,
    SaveWarnings,
    check_format,
    check_out_file,
    choice_option,
    complete_from,
    data_dir_option,
    format_option,
    json_option,
    load_data,
    quiet_option,
    sessions_dir_option,
    write_out,
)
from fmlab.tui.cli.output import absolute, config_usage_error, fail, usage_error
from fmlab.tui.cli.progress import follow_sweep
from fmlab.tui.cli.signals import interrupted_status


def _steps(text: str) -> int:
    try:
        value = int(str(text).strip())
    except ValueError:
        usage_error("steps", f"{text!r} is not a whole number")
    if not 1 <= value <= 100_000:
        usage_error("steps", f"{value} is out of range (1 to 100000)")
    return value


def grads(
    lr: str = typer.Option(
        "0.01",
        "--lr",
        help="Learning rates, e.g. 0.01 (the notebook's) or 1,0.1,0.01,0.001.",
        metavar="LRS",
    ),
    arch: str = typer.Option(
        "base",
        help="A preset or widths like 128,64.",
        metavar="[base|deeper|wider|WIDTHS]",
        autocompletion=complete_from(("base", "deeper", "wider")),
    ),
    steps: str = typer.Option(
        "100", help="How many training steps to record (every one of them).", metavar="STEPS"
    ),
    batch_size: str = typer.Option("64", "--batch-size", help="Samples per step.", metavar="BATCH_SIZE"),
    seed: str = typer.Option("0", help="Seed for the initial weights.", metavar="SEED"),
    device: str = choice_option("auto", "--device", ("auto", "cpu", "cuda"), "auto: CUDA when available."),
    fmt: str = format_option(),
    json_output: bool = json_option("Print the per-step table as JSON (the same as --format json)."),
    out: Optional[Path] = typer.Option(
        None, "--out", help="Also write the per-step table to this file.", metavar="FILE"
    ),
    figure: Optional[Path] = typer.Option(
        None, "--figure", help="Write the gradient curve as a PNG here.", metavar="FILE"
    ),
    data_dir: Optional[Path] = data_dir_option(),
    sessions_dir: Optional[Path] = sessions_dir_option(SESSIONS_HELP),
    quiet: bool = quiet_option(),
) -> None:
    """The mean gradient over the first training steps, as numbers and curves.

    Trains the first STEPS batches of epoch 1 (every step recorded) and prints
    both definitions of the mean gradient, the notebook's (the sum of each
    parameter tensor's mean) and the mean over all parameters: a summary, how
    they differ, then both per step. Example: fmlab grads --figure grads.png
    """
    from fmlab.trainer.config import ConfigError
    from fmlab.trainer.studies.grads import HOW_THEY_DIFFER, grad_summary_text, grad_table
    from fmlab.trainer.studies.grid import parse_grid
    from fmlab.trainer.studies.reproduce import grad_configs

    fmt = check_format(fmt, json_output)
    check_out_file(out)
    check_out_file(figure, "figure")
    if figure is not None and figure.suffix.lower() != ".png":
        usage_error("figure", f"{figure} does not end in .png")
    try:
        count = _steps(steps)
        grid = parse_grid(lr=lr, arch=arch, batch_size=batch_size, seed=seed, device=device)
        axes = grid.axes
        if len(axes["arch"]) > 1 or len(axes["batch_size"]) > 1 or len(axes["seed"]) > 1:
            raise ConfigError(
                "arch", "grads takes one architecture, batch size and seed (learning rates may be several)"
            )
        batch = axes["batch_size"][0]
        configs = grad_configs(axes["lr"], arch, count, batch, axes["seed"][0], grid.fixed["device"])
    except ConfigError as exc:
        config_usage_error(exc)
    from fmlab.trainer.studies.sweep import Sweep, finished_rows, records_of
    from fmlab.tui.cli.options import require_writable_dir, resolve_sessions_dir

    directory = resolve_sessions_dir(sessions_dir)
    require_writable_dir(directory, "sessions-dir")
    datasets = load_data(data_dir, device)
    train_limit = count * batch
    available = len(datasets.get(device).train_x)
    if train_limit > available:
        usage_error(
            "steps",
            f"{count} steps of {batch} need {train_limit:,} images; there are {available:,}",
        )
    runner = Sweep.new(configs, directory, preset="grads", on_warning=SaveWarnings())
    stopped_by = follow_sweep(runner, datasets, quiet=quiet, label="grads", train_limit=train_limit)
    records = records_of(finished_rows(runner.rows))
    if not records:
        if stopped_by is not None:
            typer.echo("stopped: no run finished", err=True)
            raise typer.Exit(interrupted_status(stopped_by))
        fail("no run finished")
    text = grad_table(records, fmt, count)
    if fmt == "markdown":
        typer.echo(grad_summary_text(records, count) + "\n\n" + HOW_THEY_DIFFER + "\n")
    typer.echo(text, nl=False)
    write_out(out, text)
    if figure is not None:
        from fmlab.trainer.figures import gradient_figure

        title = (
            f"mean gradients, first {count} steps ({configs[0].model.name}, batch {configs[0].batch_size})"
        )
        typer.echo(f"figure saved: {absolute(gradient_figure(records, figure, title))}", err=True)
    typer.echo(f"sessions saved in {absolute(directory)}", err=True)
    if stopped_by is not None:
        raise typer.Exit(interrupted_status(stopped_by))
