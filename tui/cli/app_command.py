"""``fmlab tui`` (and bare ``fmlab``): open the app."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from fmlab.tui.cli.options import data_dir_option, resolve_sessions_dir, sessions_dir_option
from fmlab.tui.cli.output import fail


def tui_command(
    replay: Optional[str] = typer.Option(
        None, "--replay", help="Open straight into the replay of this session id.", metavar="REPLAY"
    ),
    sessions_dir: Optional[Path] = sessions_dir_option(),
    data_dir: Optional[Path] = data_dir_option(),
) -> None:
    """Open the app (the same as running fmlab with no command)."""
    open_app(replay, sessions_dir, data_dir)


def open_app(replay: Optional[str], sessions_dir: Optional[Path], data_dir: Optional[Path]) -> None:
    from fmlab.trainer.sessions import SessionError, find_session, load

    directory = resolve_sessions_dir(sessions_dir)
    replay_record = None
    if replay is not None:
        try:
            replay_record = load(find_session(directory, replay))
        except SessionError as exc:
            fail(str(exc))
    from fmlab.tui.app import make_app

    make_app(sessions_dir=directory, data_dir=data_dir, replay=replay_record).run()
