"""Plain-text helpers the command line shares: one-line errors, tables, numbers.

Whatever these print passes fmlab.trainer.text.visible: ids, file names and
error messages quoting them come from files, and a control character in one
must show as an escape rather than act on the terminal.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import typer

from fmlab.trainer.text import display_width, pad, visible

if TYPE_CHECKING:
    from fmlab.trainer.config import ConfigError

USAGE_ERROR = 2
FAILURE = 1


def say(line: object, err: bool = False) -> None:
    """Print one line, control characters escaped (it may quote a file)."""
    typer.echo(visible(line), err=err)


def warn(message: object) -> None:
    say(f"Warning: {message}", err=True)


def fail(message: object, code: int = FAILURE) -> NoReturn:
    """Print ``Error: message`` on one line to stderr and exit."""
    say(f"Error: {str(message).strip()}", err=True)
    raise typer.Exit(code)


def usage_error(option: str, message: str) -> NoReturn:
    fail(f"--{option.lstrip('-')}: {message}", USAGE_ERROR)


def config_usage_error(error: ConfigError) -> NoReturn:
    """Every refused option on the one line: ``Error: --lr: ...; --epochs: ...``."""
    fail(
        "; ".join(f"--{option.lstrip('-')}: {reason}" for option, reason in error.errors.items()), USAGE_ERROR
    )


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, allow_nan=False, default=str)
    sys.stdout.write("\n")


def absolute(path: Path | str) -> Path:
    """``path`` as an absolute path (symbolic links left as they are), for
    printing: a path read in a log or pasted elsewhere still leads there."""
    return Path(os.path.abspath(path))


def percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}%"


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def optional(value: Any) -> str:
    return "-" if value is None else str(value)


def text_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], right: set[int] = frozenset()) -> str:
    """A plain aligned table (fits pipes and narrow terminals; no box drawing);
    cells are shown with control characters escaped, and aligned by the cells
    they take on a terminal."""
    cells = [[visible(h) for h in headers]] + [[visible(c) for c in row] for row in rows]
    widths = [max(display_width(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: list[str]) -> str:
        return "  ".join(pad(cell, widths[i], right=i in right) for i, cell in enumerate(row)).rstrip()

    return "\n".join([line(cells[0]), line(["-" * w for w in widths])] + [line(r) for r in cells[1:]])
