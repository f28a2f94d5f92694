"""The ``fmlab`` command line.

Every command imports torch, Textual or matplotlib inside its own body, so
``fmlab --help`` and the listing commands start fast. Values are validated by
trainer.config; a bad one ends the command with one line and exit status 2,
a failure (missing data, unreadable file) with one line and status 1.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer
from fmlab.tui.cli.output import fail, optional, percent, print_json, text_table, usage_error

app = typer.Typer(
    name="fmlab",
    help=(
        "fmlab: train and compare small image classifiers on Fashion-MNIST.\n\n"
        "Run with no command to open the app.\n\n"
        "\b\nExamples:\n"
        "  fmlab train --lr 0.1 --epochs 10     the reference run (about 87% test accuracy)\n"
        "  fmlab params --arch deeper           parameter counts per layer\n"
        "  fmlab sessions list                  saved runs\n"
        "  fmlab COMMAND --help                 every option of a command"
    ),
    no_args_is_help=False,
    # plain click help and errors: they need no rich import, so --help is instant
    rich_markup_mode=None,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
sessions_app = typer.Typer(help="List and inspect saved sessions.", no_args_is_help=True)
app.add_typer(sessions_app, name="sessions")

DATA_DIR_HELP = "Folder holding the four Fashion-MNIST IDX files (plain or .gz). [env: FMLAB_DATA]"
SESSIONS_HELP = "Where session files are saved. [default: ./sessions] [env: FMLAB_SESSIONS]"


def sessions_dir_option() -> Path:
    return typer.Option(None, "--sessions-dir", help=SESSIONS_HELP, show_default=False)


def resolve_sessions_dir(value: Optional[Path]) -> Path:
    from fmlab.trainer.sessions.format import default_sessions_dir

    return value if value is not None else default_sessions_dir()


def require_writable_dir(path: Path, option: str) -> None:
    """Refuse up front a folder runs could not save into."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        usage_error(option, f"cannot create {path} ({exc.strerror or exc})")
    if not path.is_dir():
        usage_error(option, f"{path} is not a folder")
    if not os.access(path, os.W_OK | os.X_OK):
        usage_error(option, f"{path} is not writable")


@app.callback(invoke_without_command=True)
def main_callback(ctx: typer.Context) -> None:
    if ctx.invoked_subcommand is None:
        open_app(replay=None, sessions_dir=None, data_dir=None)


@app.command("tui")
def tui_command(
    replay: Optional[str] = typer.Option(
        None, "--replay", help="Open straight into the replay of this session id.", metavar="REPLAY"
    ),
    sessions_dir: Optional[Path] = sessions_dir_option(),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help=DATA_DIR_HELP, metavar="DIR"),
) -> None:
    """Open the app (the same as running fmlab with no command)."""
    open_app(replay, sessions_dir, data_dir)


def open_app(replay: Optional[str], sessions_dir: Optional[Path], data_dir: Optional[Path]) -> None:
    from fmlab.trainer.sessions.format import SessionError, find_session, load

    directory = resolve_sessions_dir(sessions_dir)
    replay_record = None
    if replay is not None:
        try:
            replay_record = load(find_session(directory, replay))
        except SessionError as exc:
            fail(str(exc))
    from fmlab.tui.app import make_app

    make_app(sessions_dir=directory, data_dir=data_dir, replay=replay_record).run()


@app.command()
def train(
    arch: str = typer.Option(
        "base",
        help="base (256,512), deeper (256,512,1024,2048), wider (1024,2048) or widths like 128,64.",
        metavar="ARCH",
    ),
    lr: str = typer.Option("0.1", "--lr", help="Learning rate (> 0).", metavar="LR"),
    epochs: str = typer.Option("10", help="Epochs to train (1 to 10000).", metavar="N"),
    batch_size: str = typer.Option("64", "--batch-size", help="Samples per step.", metavar="N"),
    optimizer: str = typer.Option("sgd", help="sgd or adam.", metavar="sgd|adam"),
    momentum: str = typer.Option("0", help="SGD momentum (0 to 0.999).", metavar="M"),
    seed: str = typer.Option("0", help="Seed for the initial weights (and the shuffle order).", metavar="N"),
    shuffle: bool = typer.Option(
        False, "--shuffle/--no-shuffle", help="Shuffle the training set every epoch."
    ),
    device: str = typer.Option(
        "auto", help="auto (CUDA when available), cpu or cuda.", metavar="auto|cpu|cuda"
    ),
    threshold: str = typer.Option(
        "0.1",
        help="Convergence: test accuracy moves less than this many points...",
        metavar="POINTS",
    ),
    patience: str = typer.Option("3", help="...for this many epochs in a row.", metavar="N"),
    stop_on_converge: bool = typer.Option(
        False, "--stop-on-converge", help="End the run once it has converged."
    ),
    full_steps: str = typer.Option(
        "100",
        "--full-steps",
        help="Keep every step's metrics for this many steps, then one in --step-every.",
        metavar="N",
    ),
    step_every: str = typer.Option(
        "10", "--step-every", help="Step-metric interval after --full-steps.", metavar="N"
    ),
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
) -> None:
    """Train one run and save it as a session.

    The reference experiment: fmlab train --lr 0.1 --epochs 10 (base MLP, batch
    64, plain SGD, no shuffle) reaches about 87% test accuracy.
    """
    from fmlab.trainer.config import ConfigError, parse_run_config

    try:
        config = parse_run_config(
            arch=arch,
            lr=lr,
            epochs=epochs,
            batch_size=batch_size,
            optimizer=optimizer,
            momentum=momentum,
            seed=seed,
            shuffle=shuffle,
            device=device,
            threshold=threshold,
            patience=patience,
            stop_on_converge=stop_on_converge,
            full_steps=full_steps,
            step_every=step_every,
        )
    except ConfigError as exc:
        usage_error(exc.field, exc.message)
    directory = resolve_sessions_dir(sessions_dir)
    require_writable_dir(directory, "sessions-dir")
    from fmlab.tui.cli.train import run_training

    run_training(config, data_dir, directory, json_output=json_output, quiet=quiet, resume_ref=resume)


@app.command()
def data(
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help=DATA_DIR_HELP, metavar="DIR"),
    json_output: bool = typer.Option(False, "--json", help="Print JSON instead of text."),
) -> None:
    """Find Fashion-MNIST and show where it is, its split sizes and classes."""
    from fmlab.trainer.data import CLASS_NAMES, DataError, load, locate

    try:
        source = locate(data_dir)
        dataset = load(source)
    except DataError as exc:
        fail(str(exc))
    info = {
        "directory": str(source.directory),
        "found_by": source.how,
        "files": {key: str(path) for key, path in source.files.items()},
        "train": len(dataset.train_y),
        "test": len(dataset.test_y),
        "classes": list(CLASS_NAMES),
    }
    if json_output:
        print_json(info)
        return
    typer.echo(f"Fashion-MNIST in {source.directory} (found by {source.how})")
    typer.echo(f"train: {info['train']:,} images, test: {info['test']:,} images, 28x28 grey")
    typer.echo("classes: " + ", ".join(f"{i} {name}" for i, name in enumerate(CLASS_NAMES)))


@app.command()
def params(
    arch: str = typer.Option(
        "base", help="A preset (base, deeper, wider) or widths like 128,64.", metavar="ARCH"
    ),
    json_output: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Show each layer's parameter count and the formula behind it."""
    from dataclasses import asdict

    from fmlab.trainer.config import ConfigError, ModelSpec, parse_widths
    from fmlab.trainer.models import summarize

    try:
        spec = ModelSpec(parse_widths(arch))
    except ConfigError as exc:
        usage_error(exc.field, exc.message)
    summary = summarize(spec)
    if json_output:
        print_json({"arch": spec.name, "hidden": list(spec.hidden), **asdict(summary)})
        return
    rows = [(x.name, x.kind, x.output_shape, f"{x.params:,}", x.formula) for x in summary.layers]
    typer.echo(f"{spec.name}: 784 -> {' -> '.join(map(str, spec.hidden))} -> 10")
    typer.echo(text_table(("layer", "type", "output", "params", "formula"), rows, right={3}))
    typer.echo(f"total: {summary.total_params:,} parameters ({summary.size_mb:.2f} MB as float32)")


@sessions_app.command("list")
def sessions_list(
    sessions_dir: Optional[Path] = sessions_dir_option(),
    json_output: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List saved sessions, newest first; unreadable files get a warning line."""
    from dataclasses import asdict

    from fmlab.trainer.sessions.format import list_sessions

    directory = resolve_sessions_dir(sessions_dir)
    good, bad = list_sessions(directory)
    for problem in bad:
        typer.echo(f"Warning: {problem}", err=True)
    if json_output:
        print_json([{**asdict(s), "path": str(s.path)} for s in good])
        return
    if not good:
        typer.echo(f"no sessions in {directory}")
        return
    rows = [
        (
            s.id,
            s.created[:16].replace("T", " "),
            s.arch,
            f"{s.lr:g}",
            f"{s.epochs_done}/{s.epochs}",
            percent(s.best_test_acc),
            percent(s.final_test_acc),
            optional(s.converged_epoch),
            s.status,
        )
        for s in good
    ]
    headers = ("id", "when", "arch", "lr", "epochs", "best", "final", "conv", "status")
    typer.echo(text_table(headers, rows, right={3, 4, 5, 6, 7}))


@sessions_app.command("show")
def sessions_show(
    session: str = typer.Argument(..., help="Session id (or a unique prefix of it, or a path)."),
    sessions_dir: Optional[Path] = sessions_dir_option(),
    json_output: bool = typer.Option(False, "--json", help="Print the whole session file as JSON."),
) -> None:
    """Show one session: config, environment, results and per-epoch metrics."""
    import json

    from fmlab.trainer.sessions.format import SessionError, encode, find_session, load

    try:
        record = load(find_session(resolve_sessions_dir(sessions_dir), session))
    except SessionError as exc:
        fail(str(exc))
    if json_output:
        print_json(json.loads(encode(record)))
        return
    results = record.results
    typer.echo(f"session {record.id}  ({record.path})")
    typer.echo(
        f"config:  {record.config.describe()}, seed {record.config.seed}, shuffle {'on' if record.config.shuffle else 'off'}"
    )
    env = record.environment
    typer.echo(
        f"ran on:  {env.get('device', '?')} ({env.get('device_name', '?')}), torch {env.get('torch', '?')}, created {record.created}"
    )
    typer.echo(f"status:  {record.status}" + (f" ({results.message})" if results and results.message else ""))
    if results:
        typer.echo(
            f"results: final {percent(results.final_test_acc)}, best {percent(results.best_test_acc)}"
            f" (epoch {optional(results.best_epoch)}), converged at epoch {optional(results.converged_epoch)},"
            f" {results.steps_done:,} steps in {results.seconds:.1f} s"
        )
    if record.epochs:
        rows = [
            (
                e.epoch,
                f"{e.train_loss:.4f}",
                f"{e.train_acc:.2f}",
                f"{e.test_loss:.4f}",
                f"{e.test_acc:.2f}",
                f"{e.seconds:.2f}",
            )
            for e in record.epochs
        ]
        typer.echo(
            text_table(
                ("epoch", "train loss", "train acc", "test loss", "test acc", "seconds"),
                rows,
                right=set(range(6)),
            )
        )


@app.command()
def export(
    sessions: list[str] = typer.Argument(
        ..., metavar="ID...", help="Session ids (or unique prefixes, or paths)."
    ),
    out: Path = typer.Option(
        ...,
        "--out",
        "-o",
        help="Output file; its suffix picks the format: .png, .csv or .json.",
        metavar="FILE",
    ),
    sessions_dir: Optional[Path] = sessions_dir_option(),
) -> None:
    """Export sessions' metrics as CSV or JSON, or their curves as a PNG figure
    (loss, accuracy and gradient panels; several sessions are overlaid)."""
    from fmlab.trainer.export import FORMATS, ExportError, export_sessions
    from fmlab.trainer.sessions.format import SessionError, find_session, load

    if out.suffix.lower() not in FORMATS:
        usage_error("out", f"{out} has no known format; end it with .png, .csv or .json")
    directory = resolve_sessions_dir(sessions_dir)
    try:
        records = [load(find_session(directory, ref)) for ref in sessions]
    except SessionError as exc:
        fail(str(exc))
    try:
        written = export_sessions(records, out)
    except ExportError as exc:
        fail(str(exc))
    typer.echo(f"wrote {written} ({len(records)} session{'s' if len(records) > 1 else ''})")


def main() -> None:
    app()


def _register_more() -> None:
    from fmlab.tui.cli.experiments import register

    register(app)


_register_more()


if __name__ == "__main__":
    main()
