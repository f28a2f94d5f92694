"""Property: whatever text a session file or its name holds (as its id, arch
name, environment, message or file name), ``sessions list``, ``sessions show``
and ``export`` print it literally, with control characters escaped, and end
with a status and no traceback."""

from __future__ import annotations

import csv
import tempfile
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

from hypothesis import HealthCheck, event, given, settings
from session_files import document_of, make_record, write_document
from typer.testing import CliRunner
from untrusted_strategies import file_names, session_ids, untrusted_text

from fmlab.trainer.sessions import is_safe_session_id, new_session_id
from fmlab.trainer.text import visible
from fmlab.tui.cli import app

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def assert_shown_literally(output: str) -> None:
    for line in output.split("\n"):
        assert visible(line) == line, repr(line)


def write_session(directory: Path, session_id: str, name: str, arch: str, text: str) -> Path:
    record = make_record(session_id)
    record.environment["device_name"] = text
    record.results = replace(record.results, message=text)
    document = document_of(record)
    document["config"]["arch"] = arch  # stored, never shown: the arch shown comes from the widths
    return write_document(directory, document, name)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(session_id=session_ids, arch=untrusted_text, text=untrusted_text, name=file_names)
def test_the_cli_shows_untrusted_text_literally(session_id, arch, text, name):
    with tempfile.TemporaryDirectory() as folder:
        directory = Path(folder) / "sessions"
        path = write_session(directory, session_id, name, arch, text)
        config = SimpleNamespace(model=SimpleNamespace(name=arch), optimizer=SimpleNamespace(lr=0.01))
        named_after_arch = new_session_id(config)
        assert is_safe_session_id(named_after_arch)
        write_session(directory, named_after_arch, f"{named_after_arch}.json", arch, text)
        safe = is_safe_session_id(session_id)
        event("safe id" if safe else "unsafe id")

        listing = invoke("sessions", "list", "--sessions-dir", directory)
        assert listing.exit_code == 0
        assert_shown_literally(listing.output)
        assert named_after_arch in listing.stdout
        if name.startswith("."):
            pass  # a hidden file is not listed, like a shell glob would not list it
        elif safe:
            assert visible(session_id) in listing.stdout
        else:
            warning = f"Warning: {visible(path)}: session id "
            assert warning in listing.stderr and "cannot name a session file" in listing.stderr

        shown = invoke("sessions", "show", path)
        assert_shown_literally(shown.output)
        if safe:
            assert shown.exit_code == 0
            assert f"session {visible(session_id)}  ({visible(path)})" in shown.stdout
            assert f"({visible(text)})" in shown.stdout if text else True
        else:
            assert shown.exit_code == 1 and shown.output.count("\n") == 1
            assert shown.output.startswith(f"Error: {visible(path)}: ")

        out = Path(folder) / "out" / "metrics.csv"
        exported = invoke("export", path, "--out", out)
        assert_shown_literally(exported.output)
        if safe:
            assert exported.exit_code == 0 and exported.output == f"wrote {out} (1 session)\n"
            with open(out, newline="", encoding="utf-8") as handle:
                assert {row["session"] for row in csv.DictReader(handle)} == {session_id}
        else:
            assert exported.exit_code == 1 and exported.output.startswith(f"Error: {visible(path)}: ")
