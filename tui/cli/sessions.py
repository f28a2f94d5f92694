"""``fmlab sessions list|show|schema`` and ``fmlab export``.

Everything shown here was read from files: it is printed through
``output.say``/``text_table``, which escape control characters.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from fmlab.tui.cli.options import json_option, resolve_sessions_dir, session_ref_argument, sessions_dir_option
from fmlab.tui.cli.output import (
    absolute,
    fail,
    optional,
    percent,
    print_json,
    say,
    text_table,
    usage_error,
    warn,
)


def sessions_list(
    sessions_dir: Optional[Path] = sessions_dir_option(),
    json_output: bool = json_option("Print JSON instead of a table."),
) -> None:
    """List saved sessions, newest first; unreadable files get a warning line.

    Sessions in study folders (a reproduction's sessions/lr/, ...) are listed
    too, with their study."""
    from dataclasses import asdict

    from fmlab.trainer.sessions import list_sessions

    directory = resolve_sessions_dir(sessions_dir)
    if directory.exists() and not directory.is_dir():
        usage_error("sessions-dir", f"{directory} is not a folder")
    good, bad = list_sessions(directory)
    for problem in bad:
        warn(problem)
    if json_output:
        print_json(
            [{**asdict(s), "path": str(absolute(s.path)), "partial_data": s.partial_data} for s in good]
        )
        return
    if not good:
        say(f"no sessions in {absolute(directory)}")
        return
    studies = any(s.study for s in good)
    rows = [
        (
            *((s.study or "-",) if studies else ()),
            s.id,
            s.created[:16].replace("T", " "),
            s.arch,
            f"{s.lr:g}",
            f"{s.epochs_done}/{s.epochs}",
            percent(s.best_test_acc),
            percent(s.final_test_acc),
            optional(s.converged_epoch),
            s.train_data.short() if s.train_data else "?",
            s.status,
        )
        for s in good
    ]
    headers = (
        *(("study",) if studies else ()),
        "id",
        "when",
        "arch",
        "lr",
        "epochs",
        "best",
        "final",
        "conv",
        "data",
        "status",
    )
    right = {3, 4, 5, 6, 7}
    say_lines(text_table(headers, rows, right={i + 1 for i in right} if studies else right))


def say_lines(text: str) -> None:
    """A table: its cells are escaped already; escaping again would change nothing."""
    for line in text.splitlines():
        say(line)


def sessions_show(
    session: str = session_ref_argument(),
    sessions_dir: Optional[Path] = sessions_dir_option(),
    json_output: bool = json_option("Print the whole session file as JSON, with its analysis."),
) -> None:
    """Show one session: config, environment, results, per-epoch metrics and
    what its curves say (lowest test loss, best accuracy, stability, trend)."""
    import json

    from fmlab.trainer.analysis import analysis_lines, analyze_record
    from fmlab.trainer.sessions import SessionError, encode, find_session, load

    try:
        record = load(find_session(resolve_sessions_dir(sessions_dir), session))
    except SessionError as exc:
        fail(str(exc))
    for warning in record.warnings:
        warn(warning)
    analysis = analyze_record(record)
    if json_output:
        print_json({**json.loads(encode(record)), "analysis": analysis.to_dict()})
        return
    results = record.results
    say(f"session {record.id}  ({absolute(record.path)})")
    say(
        f"config:  {record.config.describe()}, seed {record.config.seed}, shuffle {'on' if record.config.shuffle else 'off'}"
    )
    env = record.environment
    say(
        f"ran on:  {env.get('device', '?')} ({env.get('device_name', '?')}), torch {env.get('torch', '?')}, created {record.created}"
    )
    say(f"status:  {record.status}" + (f" ({results.message})" if results and results.message else ""))
    if record.train_data is not None:
        say(f"data:    {record.train_data.describe()}")
    if results:
        say(
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
        say_lines(
            text_table(
                ("epoch", "train loss", "train acc", "test loss", "test acc", "seconds"),
                rows,
                right=set(range(6)),
            )
        )
    say("analysis:")
    for line in analysis_lines(analysis):
        say(f"  {line}")


def export(
    sessions: list[str] = session_ref_argument(
        "Session ids, unique prefixes of them, paths, or latest (also -1), -2... counted from the newest."
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
    for warning in (w for record in records for w in record.warnings):
        warn(warning)
    try:
        written = export_sessions(records, out)
    except ExportError as exc:
        fail(str(exc))
    say(f"wrote {absolute(written)} ({len(records)} session{'s' if len(records) > 1 else ''})")


def sessions_schema() -> None:
    """Print the JSON Schema of a session file.

    It is made from the declarations fmlab reads session files with; fmlab
    also checks what a schema cannot say (its description lists it)."""
    from fmlab.trainer.sessions.schema import session_schema

    print_json(session_schema())
