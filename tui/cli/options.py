"""What several commands share: a run's fields as options, the data and
sessions folders, table formats, output files, loading the data with one-line
errors."""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Optional, TypeVar

import typer

from fmlab.trainer.fields import RUN_FIELDS, Field, YesNo
from fmlab.tui.cli.output import fail, usage_error

Command = TypeVar("Command", bound=Callable[..., None])


def run_field_options(
    *, lists: bool = False, unset: Collection[str] = (), after: str | None = None
) -> Callable[[Command], Command]:
    """Give a command one option per field of a run (fmlab.trainer.fields),
    right after its parameter ``after`` (or first); it takes them as
    ``**fields`` by field name and hands them to parse_run_config or
    parse_grid. Typer reads the options from the command's ``__signature__``.

    With ``lists``, an axis field takes a comma-separated list and is None
    when not given, as is every field named in ``unset`` (something else, a
    preset, may fill it); every other option has the field's default.
    """

    def decorate(command: Command) -> Command:
        signature = inspect.signature(command, eval_str=True)
        own = [
            p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
            for p in signature.parameters.values()
            if p.kind is not inspect.Parameter.VAR_KEYWORD
        ]
        at = 0 if after is None else [p.name for p in own].index(after) + 1
        options = [
            _field_option(f, listed=lists and f.axis is not None, unset=f.name in unset) for f in RUN_FIELDS
        ]
        command.__signature__ = signature.replace(parameters=[*own[:at], *options, *own[at:]])
        return command

    return decorate


def _field_option(field: Field, *, listed: bool, unset: bool) -> inspect.Parameter:
    help_text, metavar = (field.axis.help, field.axis.metavar) if listed else (field.help, field.metavar)
    if isinstance(field.parser, YesNo):
        default: object = None if unset else field.default
        option = typer.Option(default, f"{field.flag}/--no-{field.option}", help=help_text)
        annotation: object = Optional[bool] if default is None else bool
    else:
        default = None if unset or listed else field.text(field.default)
        option = typer.Option(default, field.flag, help=help_text, metavar=metavar)
        annotation = Optional[str] if default is None else str
    return inspect.Parameter(
        field.name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=annotation
    )


DATA_DIR_HELP = "Folder holding the four Fashion-MNIST IDX files (plain or .gz). [env: FMLAB_DATA]"


SESSIONS_HELP = "Where session files are saved. [default: ./sessions] [env: FMLAB_SESSIONS]"


def sessions_dir_option(help: str = SESSIONS_HELP):
    return typer.Option(None, "--sessions-dir", help=help, show_default=False, metavar="DIR")


def data_dir_option():
    return typer.Option(None, "--data-dir", help=DATA_DIR_HELP, metavar="DIR")


def format_option():
    return typer.Option("markdown", "--format", help=FORMAT_HELP, metavar="FORMAT")


def quiet_option(help: str = "No progress display."):
    return typer.Option(False, "--quiet", "-q", help=help)


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


class SaveWarnings:
    """Prints the warnings of a training command. A save that failed (a full
    disk, say) is told once per reason: under a sweep of 16 runs it is one
    line, not 16. Each command makes its own."""

    def __init__(self) -> None:
        self.reasons: set[str] = set()

    def __call__(self, message: str) -> None:
        if not message.startswith(("cannot save ", "cannot create ")):
            typer.echo(f"Warning: {message}", err=True)
            return
        reason = message.rsplit(": ", 1)[-1]  # "cannot save PATH: No space left on device"
        if reason not in self.reasons:
            self.reasons.add(reason)
            typer.echo(f"Warning: {message}; training goes on", err=True)
