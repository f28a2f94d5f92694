"""The README says what the code does: its command table names every
command (and each one answers --help), and its key table is the keys the
app binds."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from fmlab.tui.cli import app

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def table_after(header: str) -> list[list[str]]:
    """The rows of the Markdown table whose header line is ``header``, as cells."""
    lines = README[README.index(header) :].splitlines()
    rows = []
    for line in lines[2:]:  # past the header and the --- line
        if not line.startswith("|"):
            break
        cells = re.split(r"(?<!\\)\|", line.strip().strip("|"))
        rows.append([cell.strip() for cell in cells])
    return rows


def command_of(cell: str) -> tuple[str, ...]:
    """``fmlab sessions show ID`` -> ("sessions", "show"): the words before
    the first option or placeholder."""
    code = re.match(r"`([^`]*)`", cell)
    assert code, f"no command in {cell!r}"
    words = code.group(1).split()
    assert words[0] == "fmlab", cell
    path = []
    for word in words[1:]:
        if not re.fullmatch(r"[a-z]+", word):
            break
        path.append(word)
    return tuple(path)


COMMANDS = [command_of(row[0]) for row in table_after("| command | what it does |")]


def commands_of(group, prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    found = set()
    for name, command in group.commands.items():
        if getattr(command, "commands", None):
            found |= commands_of(command, (*prefix, name))
        else:
            found.add((*prefix, name))
    return found


def test_the_command_table_names_every_command():
    assert len(COMMANDS) == len(set(COMMANDS)), "a command is in the table twice"
    assert set(COMMANDS) - {()} == commands_of(get_command(app))
    assert () in COMMANDS  # bare fmlab, the app


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(("fmlab", *c)))
def test_each_command_in_the_readme_answers_help(command):
    result = CliRunner().invoke(app, [*command, "--help"], prog_name="fmlab")
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"Usage: {' '.join(('fmlab', *command))} [OPTIONS]")


def test_the_key_table_is_the_apps_keys():
    from fmlab.tui.keys import key_table_markdown

    expected = key_table_markdown()
    assert expected in README, "README's key table differs from the code; it should read:\n" + expected
