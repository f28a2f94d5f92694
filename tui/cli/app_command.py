"""``fmlab tui`` (and bare ``fmlab``): open the app."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from fmlab.tui.cli.options import (
    data_dir_option,
    resolve_sessions_dir,
    session_ref_option,
    sessions_dir_option,
)
from fmlab.tui.cli.output import USAGE_ERROR, fail, usage_error, warn


def in_a_terminal() -> bool:
    """Whether the app has a terminal to read keys from and draw on (it
    draws on stderr): stdin, stdout and stderr are all one."""
    import sys

    streams = (sys.stdin, sys.stdout, sys.stderr)
    return all(stream is not None and hasattr(stream, "isatty") and stream.isatty() for stream in streams)


def tui_command(
    replay: Optional[str] = session_ref_option(
        "--replay", "Open straight into the replay of this session (an id, latest, -1, -2...)."
    ),
    sessions_dir: Optional[Path] = sessions_dir_option(),
    data_dir: Optional[Path] = data_dir_option(),
) -> None:
    """Open the app (the same as running fmlab with no command in a terminal)."""
    open_app(replay, sessions_dir, data_dir)


def open_app(replay: Optional[str], sessions_dir: Optional[Path], data_dir: Optional[Path]) -> None:
    from fmlab.trainer.sessions import SessionError, find_session, load

    directory = resolve_sessions_dir(sessions_dir)
    if directory.exists() and not directory.is_dir():
        usage_error("sessions-dir", f"{directory} is not a folder")
    if not in_a_terminal():
        fail("the app needs a terminal (stdin, stdout and stderr); see fmlab --help", USAGE_ERROR)
    replay_record = None
    if replay is not None:
        try:
            replay_record = load(find_session(directory, replay))
        except SessionError as exc:
            fail(str(exc))
        for warning in replay_record.warnings:
            warn(warning)
    from fmlab.tui.app import make_app

    run_app(make_app(sessions_dir=directory, data_dir=data_dir, replay=replay_record))


def run_app(app) -> None:
    """Run the app until it exits. A crash ends the command with status 1 and
    one line; Textual's traceback goes to a crash report named in that line
    rather than over the terminal."""
    import io

    from rich.console import Console

    details = io.StringIO()
    # Textual prints the traceback of a crash through error_console once the
    # screen is restored; captured here so the terminal gets one line
    app.error_console = Console(file=details, width=100, markup=False, highlight=False, color_system=None)
    app.run()
    text = details.getvalue()
    if not app.return_code:
        if text:
            typer.echo(text, err=True, nl=False)
        return
    last = next((line.strip() for line in reversed(text.splitlines()) if line.strip()), "")
    reason = f" ({last[:200]})" if last else ""
    report = save_crash_report(text)
    where = f"; the details are in {report}" if report else ""
    if report is None and text:
        typer.echo(text, err=True, nl=False)
    fail(f"the app stopped on an internal error{reason}{where}", code=app.return_code)


def save_crash_report(text: str) -> Path | None:
    """Write ``text`` to a new file in fmlab's cache folder; None if it cannot."""
    from datetime import datetime

    from fmlab.trainer.atomic import write_new
    from fmlab.trainer.data import default_cache_dir

    folder = default_cache_dir() / "crashes"
    path = folder / f"crash-{datetime.now():%Y%m%d-%H%M%S-%f}.txt"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        write_new(path, text)
    except OSError:
        return None
    return path
