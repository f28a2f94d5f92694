"""Experiment commands (sweep, grads, reproduce), added to the main CLI.

Heavy imports (torch, matplotlib) stay inside the command bodies so ``fmlab
--help`` starts fast. The results table goes to stdout as runs finish;
progress goes to stderr.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from fmlab.tui.cli.output import FAILURE, fail, plural, usage_error

DATA_DIR_HELP = "Folder holding the four Fashion-MNIST IDX files (plain or .gz). [env: FMLAB_DATA]"
SESSIONS_HELP = (
    "Where session files are saved; the sweep record goes in its sweeps/ folder. [default: ./sessions]"
)
FORMAT_HELP = "Table format: markdown, csv or json."


def register(app: typer.Typer) -> None:
    """Add the experiment commands to ``app``."""
    app.command("sweep")(sweep)
    app.command("grads")(grads)
    app.command("reproduce")(reproduce)


# ----------------------------------------------------------------- helpers


class _Stdout:
    """Writes to whatever sys.stdout is at the time, so rich's live display
    (which swaps sys.stdout while it runs) keeps table lines above the bar."""

    def write(self, text: str) -> int:
        import sys

        return sys.stdout.write(text)

    def flush(self) -> None:
        import sys

        sys.stdout.flush()


def _check_format(fmt: str) -> str:
    from fmlab.trainer.studies.sweep import FORMATS

    value = fmt.strip().lower()
    if value not in FORMATS:
        usage_error("format", f"{fmt!r} is not one of {', '.join(FORMATS)}")
    return value


def _check_out_file(out: Optional[Path], option: str = "out") -> None:
    if out is None:
        return
    if out.is_dir():
        usage_error(option, f"{out} is a folder; give a file name")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        usage_error(option, f"folder {parent} does not exist")


def _load_data(data_dir: Optional[Path], device: str):
    from fmlab.trainer import data
    from fmlab.trainer.config import ConfigError
    from fmlab.trainer.training import loop as engine

    try:
        where = engine.resolve_device(device)
    except ConfigError as exc:
        usage_error(exc.field, exc.message)
    try:
        return data.load(data.locate(data_dir), where)
    except data.DataError as exc:
        fail(str(exc))


def _write_out(out: Optional[Path], text: str) -> None:
    if out is None:
        return
    from fmlab.trainer.sessions.format import write_atomic

    try:
        write_atomic(out, text)
    except OSError as exc:
        fail(f"cannot write {out}: {exc.strerror or exc}")
    typer.echo(f"table saved: {out}", err=True)


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


def _steps(text: str) -> int:
    try:
        value = int(str(text).strip())
    except ValueError:
        usage_error("steps", f"{text!r} is not a whole number")
    if not 1 <= value <= 100_000:
        usage_error("steps", f"{value} is out of range (1 to 100000)")
    return value


# ----------------------------------------------------------------- sweep


def sweep(
    preset: Optional[str] = typer.Option(
        None, help="lr, convergence or architectures: the reference study's questions.", metavar="NAME"
    ),
    lr: Optional[str] = typer.Option(
        None, "--lr", help="Learning rates, e.g. 1,0.1,0.01,0.001.", metavar="LRS"
    ),
    arch: Optional[str] = typer.Option(
        None,
        help="Architectures: base,deeper,wider, or widths separated by ';' like 'base;128,64'.",
        metavar="ARCHS",
    ),
    epochs: Optional[str] = typer.Option(
        None, help="Epochs per run (the most, with --stop-on-converge).", metavar="EPOCHS"
    ),
    batch_size: Optional[str] = typer.Option(
        None, "--batch-size", help="Batch sizes, e.g. 32,64.", metavar="BATCH_SIZE"
    ),
    optimizer: Optional[str] = typer.Option(None, help="Optimizers: sgd, adam or both.", metavar="OPTIMIZER"),
    seed: Optional[str] = typer.Option(None, help="Seeds, e.g. 0,1,2.", metavar="SEED"),
    momentum: str = typer.Option(
        "0", help="SGD momentum for every sgd run (momentum runs train one by one).", metavar="MOMENTUM"
    ),
    shuffle: bool = typer.Option(
        False, "--shuffle/--no-shuffle", help="Shuffle the training set every epoch."
    ),
    device: str = typer.Option("auto", help="auto (CUDA when available), cpu or cuda.", metavar="DEVICE"),
    threshold: Optional[str] = typer.Option(
        None, help="Convergence: test accuracy moves less than this many points...", metavar="THRESHOLD"
    ),
    patience: Optional[str] = typer.Option(
        None, help="...for this many epochs in a row.", metavar="PATIENCE"
    ),
    stop_on_converge: Optional[bool] = typer.Option(
        None, "--stop-on-converge/--no-stop-on-converge", help="End each run once it has converged."
    ),
    sequential: bool = typer.Option(
        False, "--sequential", help="Train runs one after another instead of stacked."
    ),
    fmt: str = typer.Option("markdown", "--format", help=FORMAT_HELP, metavar="FORMAT"),
    out: Optional[Path] = typer.Option(
        None, "--out", help="Also write the finished table to this file.", metavar="FILE"
    ),
    figures: Optional[Path] = typer.Option(
        None, "--figures", help="Write PNG figures (per run and overlaid) into this folder.", metavar="DIR"
    ),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help=DATA_DIR_HELP, metavar="DIR"),
    sessions_dir: Optional[Path] = typer.Option(
        None, "--sessions-dir", help=SESSIONS_HELP, show_default=False, metavar="DIR"
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress display, just the table."),
) -> None:
    """Train every combination of a grid and print a results table as runs finish.

    Runs that share an architecture and batch size train together as one
    stacked model (each with its own learning rate and seed). Examples:

      fmlab sweep --preset lr

      fmlab sweep --lr 0.1,0.01 --arch base,wider --epochs 5 --format csv
    """
    from fmlab.trainer.config import ConfigError
    from fmlab.trainer.studies.sweep import PRESETS, expand, grid_to_dict, parse_grid, table_columns

    fmt = _check_format(fmt)
    _check_out_file(out)
    chosen = None
    if preset is not None:
        chosen = PRESETS.get(preset.strip().lower())
        if chosen is None:
            usage_error("preset", f"{preset!r} is not one of {', '.join(PRESETS)}")
    options: dict[str, object] = dict(chosen.options) if chosen else {}
    given = dict(lr=lr, arch=arch, epochs=epochs, batch_size=batch_size, optimizer=optimizer, seed=seed,
                 threshold=threshold, patience=patience, stop_on_converge=stop_on_converge)  # fmt: skip
    options.update({k: v for k, v in given.items() if v is not None})
    options.update(momentum=momentum, shuffle=shuffle, device=device)
    try:
        grid = parse_grid(**options)
        configs = expand(grid)
    except ConfigError as exc:
        usage_error(exc.field, exc.message)
    table = chosen.table if chosen else "grid"
    columns = table_columns(table, configs)
    from fmlab.tui.cli import require_writable_dir, resolve_sessions_dir

    directory = resolve_sessions_dir(sessions_dir)
    require_writable_dir(directory, "sessions-dir")
    if figures is not None:
        require_writable_dir(figures, "figures")
    dataset = _load_data(data_dir, device)
    from fmlab.trainer.studies.sweep import Sweep

    runner = Sweep(configs, directory, table=table, preset=chosen.name if chosen else None,
                   grid=grid_to_dict(grid), batched=not sequential, on_save_error=_warn)  # fmt: skip
    _run_sweep(runner, dataset, columns, fmt, quiet)
    _finish_sweep(runner, columns, fmt, out, figures)


def _warn(message: str) -> None:
    typer.echo(f"Warning: {message}; training goes on", err=True)


def _run_sweep(runner, dataset, columns: list[str], fmt: str, quiet: bool) -> None:
    import threading

    from fmlab.trainer.events import RunFinished
    from fmlab.trainer.studies.sweep import TableWriter
    from fmlab.tui.cli.train import StopOnSignal

    writer = TableWriter(columns, fmt, _Stdout())
    writer.header()
    progress = SweepProgress(runner.record.configs, quiet=quiet)
    cancel = threading.Event()
    with StopOnSignal(cancel):
        try:
            for index, event in runner.run(dataset, cancel):
                progress(index, event)
                if isinstance(event, RunFinished):
                    writer.row(runner.rows[index])
        finally:
            progress.close()
    if fmt == "json":
        # JSON is one document: the finished rows, in grid order
        writer.rows = [row for row in runner.rows if row is not None]
    writer.close()
    if cancel.is_set():
        typer.echo("stopped: unfinished runs are saved as stopped sessions", err=True)


def _finish_sweep(runner, columns: list[str], fmt: str, out: Optional[Path], figures: Optional[Path]) -> None:
    from fmlab.trainer.studies.sweep import records_of, table_text

    rows = [row for row in runner.rows if row is not None]  # stopped and failed runs too, marked
    _write_out(out, table_text(columns, rows, fmt))
    typer.echo(f"sweep saved: {runner.record.path} ({runner.record.seconds:.1f} s)", err=True)
    if figures is not None and rows:
        from fmlab.trainer.export import ExportError
        from fmlab.trainer.figures import run_figures, sweep_figures

        try:
            records = records_of(rows)
            paths = sweep_figures(records, figures, runner.record.id) + run_figures(records, figures)
        except (ExportError, OSError) as exc:
            fail(str(exc))
        typer.echo(f"figures: {len(paths)} PNG files in {figures}", err=True)
    if any(row.status == "failed" for row in rows):
        raise typer.Exit(FAILURE)


# ----------------------------------------------------------------- grads


def grads(
    lr: str = typer.Option(
        "0.1", "--lr", help="Learning rates, e.g. 0.1 or 1,0.1,0.01,0.001.", metavar="LRS"
    ),
    arch: str = typer.Option(
        "base", help="A preset (base, deeper, wider) or widths like 128,64.", metavar="ARCHS"
    ),
    steps: str = typer.Option(
        "100", help="How many training steps to record (every one of them).", metavar="STEPS"
    ),
    batch_size: str = typer.Option("64", "--batch-size", help="Samples per step.", metavar="BATCH_SIZE"),
    seed: str = typer.Option("0", help="Seed for the initial weights.", metavar="SEED"),
    device: str = typer.Option("auto", help="auto (CUDA when available), cpu or cuda.", metavar="DEVICE"),
    fmt: str = typer.Option("markdown", "--format", help=FORMAT_HELP, metavar="FORMAT"),
    out: Optional[Path] = typer.Option(
        None, "--out", help="Also write the per-step table to this file.", metavar="FILE"
    ),
    figure: Optional[Path] = typer.Option(
        None, "--figure", help="Write the gradient curve as a PNG here.", metavar="FILE"
    ),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help=DATA_DIR_HELP, metavar="DIR"),
    sessions_dir: Optional[Path] = typer.Option(
        None, "--sessions-dir", help=SESSIONS_HELP, show_default=False, metavar="DIR"
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress display."),
) -> None:
    """The mean gradient over the first training steps, as numbers and a curve.

    Trains the first STEPS batches of epoch 1 (every step recorded) and prints
    a summary, then the mean gradient per step. Example: fmlab grads --figure grads.png
    """
    from fmlab.trainer.config import ConfigError
    from fmlab.trainer.studies.reproduce import grad_configs, grad_summary_text, grad_table, limit_train
    from fmlab.trainer.studies.sweep import parse_grid

    fmt = _check_format(fmt)
    _check_out_file(out)
    _check_out_file(figure, "figure")
    if figure is not None and figure.suffix.lower() != ".png":
        usage_error("figure", f"{figure} does not end in .png")
    try:
        count = _steps(steps)
        grid = parse_grid(lr=lr, arch=arch, batch_size=batch_size, seed=seed, device=device)
        if len(grid.archs) > 1 or len(grid.batch_sizes) > 1 or len(grid.seeds) > 1:
            raise ConfigError(
                "arch", "grads takes one architecture, batch size and seed (learning rates may be several)"
            )
        configs = grad_configs(grid.lrs, arch, count, grid.batch_sizes[0], grid.seeds[0], grid.device)
    except ConfigError as exc:
        usage_error(exc.field, exc.message)
    from fmlab.trainer.studies.sweep import Sweep, finished_rows, records_of
    from fmlab.tui.cli import require_writable_dir, resolve_sessions_dir

    directory = resolve_sessions_dir(sessions_dir)
    require_writable_dir(directory, "sessions-dir")
    dataset = _load_data(data_dir, device)
    train_limit = count * grid.batch_sizes[0]
    if train_limit > len(dataset.train_x):
        usage_error(
            "steps",
            f"{count} steps of {grid.batch_sizes[0]} need {train_limit:,} images; there are {len(dataset.train_x):,}",
        )
    runner = Sweep(configs, directory, preset="grads", on_save_error=_warn)
    _run_quietly(runner, limit_train(dataset, train_limit), quiet)
    records = records_of(finished_rows(runner.rows))
    if not records:
        fail("no run finished")
    text = grad_table(records, fmt, count)
    if fmt == "markdown":
        typer.echo(grad_summary_text(records, count) + "\n")
    typer.echo(text, nl=False)
    _write_out(out, text)
    if figure is not None:
        from fmlab.trainer.figures import gradient_figure

        title = f"mean gradient, first {count} steps ({configs[0].model.name}, batch {configs[0].batch_size})"
        typer.echo(f"figure saved: {gradient_figure(records, figure, title)}", err=True)
    typer.echo(f"sessions saved in {directory}", err=True)


def _run_quietly(runner, dataset, quiet: bool) -> None:
    import threading

    from fmlab.tui.cli.train import StopOnSignal

    progress = SweepProgress(runner.record.configs, quiet=quiet)
    cancel = threading.Event()
    with StopOnSignal(cancel):
        try:
            for index, event in runner.run(dataset, cancel):
                progress(index, event)
        finally:
            progress.close()


# ----------------------------------------------------------------- reproduce


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
    from fmlab.tui.cli import require_writable_dir
    from fmlab.tui.cli.train import StopOnSignal

    try:
        rule = parse_run_config(threshold=threshold).convergence.threshold
    except ConfigError as exc:
        usage_error(exc.field, exc.message)
    require_writable_dir(out, "out")
    dataset = _load_data(data_dir, "auto")
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
