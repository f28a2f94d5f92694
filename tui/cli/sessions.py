"""``fmlab sessions list|show`` and ``fmlab export``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from fmlab.tui.cli.options import resolve_sessions_dir, sessions_dir_option
from fmlab.tui.cli.output import fail, optional, percent, print_json, text_table, usage_error


def sessions_list(
    sessions_dir: Optional[Path] = sessions_dir_option(),
    json_output: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List saved sessions, newest first; unreadable files get a warning line."""
    from dataclasses import asdict

    from fmlab.trainer.sessions import list_sessions

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


def sessions_show(
    session: str = typer.Argument(..., help="Session id (or a unique prefix of it, or a path)."),
    sessions_dir: Optional[Path] = sessions_dir_option(),
    json_output: bool = typer.Option(False, "--json", help="Print the whole session file as JSON."),
) -> None:
    """Show one session: config, environment, results and per-epoch metrics."""
    import json

    from fmlab.trainer.sessions import SessionError, encode, find_session, load

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
    from fmlab.trainer.sessions import SessionError, find_session, load

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
