"""``fmlab sweep``: a grid of runs and its results table."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from fmlab.trainer.events import FINISHED
from fmlab.trainer.studies.grid import PRESETS
from fmlab.tui.cli.options import (
    SESSIONS_HELP,
    LiveStdout,
    SaveWarnings,
    check_format,
    check_out_file,
    choice_option,
    data_dir_option,
    format_option,
    json_option,
    load_data,
    model_option,
    parse_threads,
    quiet_option,
    ray_address_option,
    ray_option,
    run_field_options,
    session_ref_option,
    sessions_dir_option,
    stack_runner,
    threads_option,
    wants_ray,
    with_model,
    write_out,
)
from fmlab.tui.cli.output import FAILURE, absolute, config_usage_error, fail, usage_error
from fmlab.tui.cli.progress import follow_sweep
from fmlab.tui.cli.signals import interrupted_status

# A field a preset sets is None until given, so that the preset's value stands.
PRESET_FIELDS = frozenset(name for preset in PRESETS.values() for name in preset.options)


@run_field_options(lists=True, unset=PRESET_FIELDS, after="preset")
def sweep(
    preset: Optional[str] = choice_option(
        None, "--preset", tuple(PRESETS), "The reference study's questions."
    ),
    stack: bool = typer.Option(
        True,
        "--stack/--no-stack",
        help="Train runs of one shape together as one stack (the default), or one by one.",
    ),
    resume: Optional[str] = session_ref_option(
        "--resume",
        "Continue a stopped or killed sweep (its own grid is used): finished runs are kept, "
        "runs cut off continue from their last finished epoch; latest or -1 is the newest sweep.",
        metavar="SWEEP_ID",
        sweeps=True,
    ),
    fmt: str = format_option(),
    json_output: bool = json_option("Print the table as JSON (the same as --format json)."),
    out: Optional[Path] = typer.Option(
        None, "--out", help="Also write the finished table to this file.", metavar="FILE"
    ),
    figures: Optional[Path] = typer.Option(
        None, "--figures", help="Write PNG figures (per run and overlaid) into this folder.", metavar="DIR"
    ),
    data_dir: Optional[Path] = data_dir_option(),
    sessions_dir: Optional[Path] = sessions_dir_option(SESSIONS_HELP),
    quiet: bool = quiet_option("No progress display, just the table."),
    model: Optional[str] = model_option(),
    ray: bool = ray_option(),
    ray_address: Optional[str] = ray_address_option(),
    threads: Optional[str] = threads_option(),
    **fields: object,
) -> None:
    """Train every combination of a grid and print a results table as runs finish.

    Runs that share an architecture and batch size train together as one
    stacked model (each with its own learning rate and seed). Examples:

      fmlab sweep --preset lr

      fmlab sweep --lr 0.1,0.01 --arch base,wider --epochs 5 --format csv

    Ctrl+C or SIGTERM stops it (its runs are saved as stopped; exit status
    130 or 143); fmlab sweep --resume latest continues it.

    With --ray every stack trains as a Ray task, all at once (on a Ray
    instance started for the sweep, or on a cluster: --ray-address auto);
    the sessions are saved here, as without it.
    """
    from fmlab.trainer.config import ConfigError
    from fmlab.trainer.studies.grid import expand, grid_to_dict, parse_grid
    from fmlab.trainer.studies.tables import table_columns

    fmt = check_format(fmt, json_output)
    check_out_file(out)
    on_ray = wants_ray(ray, ray_address, model)
    pinned = parse_threads(threads)
    chosen = None
    if preset is not None:
        chosen = PRESETS.get(preset.strip().lower())
        if chosen is None:
            usage_error("preset", f"{preset!r} is not one of {', '.join(PRESETS)}")
    options: dict[str, object] = dict(chosen.options) if chosen else {}
    options.update({name: value for name, value in fields.items() if value is not None})
    options = with_model(options, model)
    try:
        grid = parse_grid(**options)
        configs = expand(grid)
    except ConfigError as exc:
        config_usage_error(exc)
    from fmlab.trainer.studies.sweep import Sweep, SweepError, find_sweep
    from fmlab.tui.cli.options import require_writable_dir, resolve_sessions_dir

    directory = resolve_sessions_dir(sessions_dir)
    require_writable_dir(directory, "sessions-dir")
    if figures is not None:
        require_writable_dir(figures, "figures")
    if resume is not None:
        try:
            runner = Sweep.resume(find_sweep(directory, resume), directory, SaveWarnings())
        except SweepError as exc:
            fail(str(exc))
        if not runner.record.pending():
            typer.echo(f"sweep {runner.record.id} has no run left to train", err=True)
    else:
        table = chosen.table if chosen else "grid"
        runner = Sweep.new(configs, directory, table=table, preset=chosen.name if chosen else None,
                           grid=grid_to_dict(grid), stacked=stack, on_warning=SaveWarnings())  # fmt: skip
    columns = table_columns(runner.record.table, runner.record.configs)
    # on Ray the driver holds the data on the CPU; each task moves it to its device
    datasets = load_data(data_dir, "cpu" if on_ray else runner.record.configs[0].device)
    with stack_runner(ray, ray_address, pinned) as stacks:
        stopped_by = _run_sweep(runner, datasets, columns, fmt, quiet, stacks)
    _finish_sweep(runner, columns, fmt, out, figures)
    if stopped_by is not None:
        raise typer.Exit(interrupted_status(stopped_by))


def _run_sweep(runner, datasets, columns: list[str], fmt: str, quiet: bool, stacks=None) -> int | None:
    """Train the sweep, its table on stdout; the signal that stopped it, if one did."""
    import threading

    from fmlab.trainer.events import RunFinished
    from fmlab.trainer.jobs import JobError
    from fmlab.trainer.studies.tables import TableWriter

    writer = TableWriter(columns, fmt, LiveStdout())  # the header comes with the first row
    for row in runner.rows:  # finished in an earlier attempt
        if row is not None and row.status in FINISHED:
            writer.row(row)

    def table_row(index: int, event) -> None:
        if isinstance(event, RunFinished):
            writer.row(runner.rows[index])

    cancel = threading.Event()
    lost = None
    try:
        stopped_by = follow_sweep(runner, datasets, quiet=quiet, label="sweep", on_event=table_row,
                                  cancel=cancel, events=runner.run(datasets, cancel, stacks=stacks))  # fmt: skip
    except JobError as exc:  # a stack that could not train at all (its Ray task failed)
        stopped_by, lost = None, exc
    if fmt == "json":
        # JSON is one document: the rows, in grid order
        writer.rows = [row for row in runner.rows if row is not None]
    trained = any(runner.record.sessions)
    if lost is None or trained:  # a sweep that could not train at all prints no empty table
        writer.close()
    if lost is not None:
        fail(f"{lost}; the runs that trained are saved, fmlab sweep --resume {runner.record.id} continues"
             if trained else lost)  # fmt: skip
    if stopped_by is not None:
        typer.echo(f"stopped: unfinished runs are saved as stopped sessions; continue with "
                   f"fmlab sweep --resume {runner.record.id}", err=True)  # fmt: skip
    return stopped_by


def _finish_sweep(runner, columns: list[str], fmt: str, out: Optional[Path], figures: Optional[Path]) -> None:
    from fmlab.trainer.studies.sweep import records_of
    from fmlab.trainer.studies.tables import table_text

    rows = [row for row in runner.rows if row is not None]  # stopped and failed runs too, marked
    write_out(out, table_text(columns, rows, fmt))
    typer.echo(f"sweep saved: {absolute(runner.record.path)} ({runner.record.seconds:.1f} s)", err=True)
    if figures is not None and rows:
        from fmlab.trainer.export import ExportError
        from fmlab.trainer.figures import run_figures, sweep_figures

        try:
            records = records_of(rows)
            paths = sweep_figures(records, figures, runner.record.id) + run_figures(records, figures)
        except (ExportError, OSError) as exc:
            fail(str(exc))
        typer.echo(f"figures: {len(paths)} PNG files in {absolute(figures)}", err=True)
    for problem in runner.unsaved:
        typer.echo(f"Error: not saved: {problem}", err=True)
    if any(row.status == "failed" for row in rows) or runner.unsaved:
        raise typer.Exit(FAILURE)
