"""What several commands share: the data and sessions folders, table formats,
output files, loading the data with one-line errors."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer

from fmlab.tui.cli.output import fail, usage_error

DATA_DIR_HELP = "Folder holding the four Fashion-MNIST IDX files (plain or .gz). [env: FMLAB_DATA]"


SESSIONS_HELP = "Where session files are saved. [default: ./sessions] [env: FMLAB_SESSIONS]"


def sessions_dir_option() -> Path:
    return typer.Option(None, "--sessions-dir", help=SESSIONS_HELP, show_default=False)


def resolve_sessions_dir(value: Optional[Path]) -> Path:
    from fmlab.trainer.sessions import default_sessions_dir

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


FORMAT_HELP = "Table format: markdown, csv or json."


class LiveStdout:
    """Writes to whatever sys.stdout is at the time, so rich's live display
    (which swaps sys.stdout while it runs) keeps table lines above the bar."""

    def write(self, text: str) -> int:
        import sys

        return sys.stdout.write(text)

    def flush(self) -> None:
        import sys

        sys.stdout.flush()


def check_format(fmt: str) -> str:
    from fmlab.trainer.studies.tables import FORMATS

    value = fmt.strip().lower()
    if value not in FORMATS:
        usage_error("format", f"{fmt!r} is not one of {', '.join(FORMATS)}")
    return value


def check_out_file(out: Optional[Path], option: str = "out") -> None:
    if out is None:
        return
    if out.is_dir():
        usage_error(option, f"{out} is a folder; give a file name")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        usage_error(option, f"folder {parent} does not exist")


def load_data(data_dir: Optional[Path], device: str):
    """A DatasetCache holding the data on ``device``, or a one-line exit."""
    from fmlab.trainer.config import ConfigError
    from fmlab.trainer.data import DataError, DatasetCache

    datasets = DatasetCache(data_dir)
    try:
        datasets.get(device)
    except ConfigError as exc:
        usage_error(exc.field, exc.message)
    except DataError as exc:
        fail(str(exc))
    return datasets


def write_out(out: Optional[Path], text: str) -> None:
    if out is None:
        return
    from fmlab.trainer.atomic import write_atomic

    try:
        write_atomic(out, text)
    except OSError as exc:
        fail(f"cannot write {out}: {exc.strerror or exc}")
    typer.echo(f"table saved: {out}", err=True)


def warn_and_go_on(message: str) -> None:
    typer.echo(f"Warning: {message}; training goes on", err=True)
