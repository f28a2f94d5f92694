"""Text from session files and their names reaches the terminal literally:
control characters shown as escapes, markup never parsed, unsafe ids refused."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import pytest
from session_files import document_of, make_record, write_document, write_record
from typer.testing import CliRunner

from fmlab.trainer.export import export_sessions
from fmlab.trainer.sessions import (
    SessionError,
    UnsafeSessionId,
    check_session_id,
    is_safe_session_id,
    list_sessions,
    load,
    new_session_id,
)
from fmlab.trainer.text import display_width, visible
from fmlab.tui.cli import app

runner = CliRunner()
CLEAR_SCREEN = "\x1b[2J"
HYPERLINK = "\x1b]8;;https://example.com\x07click\x1b]8;;\x07"  # OSC 8
LINK_IN_A_NAME = "\x1b]8;;evil\x07click\x1b]8;;\x07"  # OSC 8 with no slash in it


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def assert_no_hidden_characters(output: str) -> None:
    for line in output.split("\n"):
        assert visible(line) == line, repr(line)


# ------------------------------------------------------------- the helper


@pytest.mark.parametrize(
    "text, shown",
    [
        (CLEAR_SCREEN + "x", "\\x1b[2Jx"),
        (HYPERLINK, "\\x1b]8;;https://example.com\\x07click\\x1b]8;;\\x07"),
        ("[bold red]X[/]", "[bold red]X[/]"),  # markup is not this helper's business
        ("a\nb\tc\r", "a\\nb\\tc\\r"),
        ("left\u202eright", "left\\u202eright"),  # a bidi override
        ("lone \ud800 surrogate", "lone \\ud800 surrogate"),
        ("zero\u200bwidth\u2028line", "zero\\u200bwidth\\u2028line"),
        ("café 中文 ✓", "café 中文 ✓"),
    ],
)
def test_visible_escapes_what_acts_on_a_terminal(text, shown):
    assert visible(text) == shown
    assert visible(shown) == shown  # applying it twice changes nothing


def test_display_width_counts_terminal_cells():
    assert display_width("abc") == 3
    assert display_width("中文") == 4
    assert display_width("e\u0301") == 1  # e and a combining accent


# ------------------------------------------------------------- session ids


@pytest.mark.parametrize(
    "session_id",
    ["20250101-000000-base-lr0.1-abcd", "[bold]X", "[link=evil]click", "中文-run", "cost$5", "a b"],
)
def test_safe_ids(session_id):
    assert is_safe_session_id(session_id) and check_session_id(session_id) == session_id


@pytest.mark.parametrize(
    "session_id",
    [
        "[bold red]X[/]",  # a slash: a folder in the path
        "[/bold]",
        "../../etc/passwd",
        "a\\b",
        "run*",
        "what?",
        CLEAR_SCREEN + "x",
        "tab\there",
        "",
        ".hidden",
        "-rf",
        " padded ",
        "trailing.",
        "x" * 201,
        "NUL",
        "com1.backup",
    ],
)
def test_ids_that_cannot_name_a_file_are_refused(session_id, sessions_dir):
    assert not is_safe_session_id(session_id)
    with pytest.raises(UnsafeSessionId):
        check_session_id(session_id)
    path = write_record(sessions_dir, make_record(session_id), name="some.json")
    with pytest.raises(SessionError, match="cannot name a session file") as info:
        load(path)
    assert str(path) in str(info.value) and visible(str(info.value)) == str(info.value)
    good, bad = list_sessions(sessions_dir)
    assert good == [] and len(bad) == 1 and bad[0].path == path


@pytest.mark.parametrize("arch", ["base", "64,32", "", "../[b]x/y z", CLEAR_SCREEN, "中文" * 40, "." * 300])
def test_new_ids_are_safe_whatever_the_arch_is_called(arch):
    config = SimpleNamespace(model=SimpleNamespace(name=arch), optimizer=SimpleNamespace(lr=1e-5))
    assert is_safe_session_id(new_session_id(config))


# ------------------------------------------------------------- the CLI


def test_list_and_show_print_ids_and_file_names_literally(sessions_dir):
    markup = make_record("[link=evil]click")
    markup.environment["device_name"] = HYPERLINK
    markup.results = replace(markup.results, message="[bold red]X[/] " + CLEAR_SCREEN)
    write_record(sessions_dir, markup)
    write_record(sessions_dir, make_record("[bold]X"))
    write_record(sessions_dir, make_record(CLEAR_SCREEN + "gone"), name=f"{CLEAR_SCREEN}gone.json")
    (sessions_dir / f"not json {LINK_IN_A_NAME}.json").write_text("nope")

    listing = invoke("sessions", "list", "--sessions-dir", sessions_dir)
    assert listing.exit_code == 0
    assert_no_hidden_characters(listing.output)
    assert "[link=evil]click" in listing.output and "[bold]X" in listing.output
    warnings = [line for line in listing.output.splitlines() if line.startswith("Warning:")]
    assert len(warnings) == 2
    assert any("\\x1b[2Jgone.json" in w and "cannot name a session file" in w for w in warnings)
    assert any(visible(LINK_IN_A_NAME) in w for w in warnings)

    shown = invoke("sessions", "show", "[link=evil]", "--sessions-dir", sessions_dir)
    assert shown.exit_code == 0
    assert_no_hidden_characters(shown.output)
    assert "session [link=evil]click" in shown.output
    assert visible(HYPERLINK) in shown.output and "[bold red]X[/] \\x1b[2J" in shown.output


def test_errors_quote_names_literally(sessions_dir):
    (sessions_dir / f"{CLEAR_SCREEN}[").mkdir()
    bad = sessions_dir / f"{CLEAR_SCREEN}[/bold].json"  # a file in that folder
    bad.write_text("{")
    result = invoke("sessions", "show", bad, "--sessions-dir", sessions_dir)
    assert result.exit_code == 1 and result.output.count("\n") == 1
    assert result.output.startswith("Error: ") and "\\x1b[2J[/bold].json: truncated JSON" in result.output
    refused = invoke("sessions", "show", "x\x1b[31m", "--sessions-dir", sessions_dir)
    assert refused.exit_code == 1 and "\\x1b[31m" in refused.output
    assert_no_hidden_characters(refused.output)


def test_export_writes_and_reports_the_name_it_was_given(sessions_dir, tmp_path):
    write_record(sessions_dir, make_record("[bold red]X"))
    out = tmp_path / "exports" / "[bold red]X.csv"
    result = invoke("export", "[bold red]X", "--out", out, "--sessions-dir", sessions_dir)
    assert result.exit_code == 0 and result.output == f"wrote {out} (1 session)\n"
    assert out.exists() and list(out.parent.iterdir()) == [out]


@pytest.mark.parametrize("session_id", ["$x^{$", "$}$", "cost $5 or $6"])
def test_a_figure_shows_dollar_signs_literally(session_id, sessions_dir, tmp_path):
    """matplotlib reads $...$ as math markup; a malformed formula fails the figure."""
    record = load(write_record(sessions_dir, make_record(session_id)))
    out = export_sessions([record], tmp_path / "figure.png")
    assert out.read_bytes()[:4] == b"\x89PNG"


def test_arch_text_stored_in_a_file_is_not_shown(sessions_dir):
    """The arch shown is derived from the widths; whatever the file says is ignored."""
    document = document_of(make_record("plain"))
    document["config"]["arch"] = "[/bold]" + CLEAR_SCREEN
    write_document(sessions_dir, document, "plain.json")
    result = invoke("sessions", "list", "--sessions-dir", sessions_dir)
    assert result.exit_code == 0 and "plain" in result.output and "16" in result.output
    assert_no_hidden_characters(result.output)
