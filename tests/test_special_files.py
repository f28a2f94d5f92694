"""Only regular files of a bounded size are read from a sessions folder: a
FIFO, a device, a link loop or a huge file is one warning line, quickly."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest
from session_files import make_record, write_record
from typer.testing import CliRunner

from fmlab.trainer.regular_files import NotRegularFile, read_regular_file
from fmlab.trainer.sessions import MAX_SESSION_BYTES, SessionError, list_sessions, load
from fmlab.tui.cli import app

runner = CliRunner()


def within(seconds: float, function, *args):
    """``function(*args)``, failing the test if it has not returned in time
    (a blocked open would otherwise hang the suite)."""
    outcome = {}

    def call():
        try:
            outcome["value"] = function(*args)
        except BaseException as exc:  # handed to the test below
            outcome["error"] = exc

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"{function.__name__} blocked for {seconds} s"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


@pytest.fixture
def special_folder(sessions_dir):
    """One good session beside a FIFO, a link to /dev/zero, a link loop, a
    dangling link, a folder and a file over the size limit, all named *.json."""
    write_record(sessions_dir, make_record("good-one"))
    os.mkfifo(sessions_dir / "fifo.json")
    os.symlink("/dev/zero", sessions_dir / "zero.json")
    os.symlink("loop.json", sessions_dir / "loop.json")
    os.symlink("nowhere", sessions_dir / "dangling.json")
    (sessions_dir / "folder.json").mkdir()
    with open(sessions_dir / "huge.json", "wb") as handle:
        handle.truncate(MAX_SESSION_BYTES + 1)  # sparse: no disk used
    yield sessions_dir
    # should anything have opened the FIFO blocking, let it go
    descriptor = os.open(sessions_dir / "fifo.json", os.O_RDWR | os.O_NONBLOCK)
    os.close(descriptor)


EXPECTED = {
    "fifo.json": "is a FIFO (named pipe), not a regular file",
    "zero.json": "is a character device, not a regular file",
    "loop.json": "cannot be read (Too many levels of symbolic links)",
    "dangling.json": "no such file",
    "folder.json": "is a directory, not a session file",
    "huge.json": f"is too large ({MAX_SESSION_BYTES + 1:,} bytes; the limit is 64 MiB)",
}


def test_listing_skips_every_special_file_with_one_line(special_folder):
    good, bad = within(10, list_sessions, special_folder)
    assert [s.id for s in good] == ["good-one"]
    assert {p.path.name: p.split(": ", 1)[1] for p in bad} == EXPECTED
    for name, problem in EXPECTED.items():
        with pytest.raises(SessionError, match="^" + str(special_folder / name)) as info:
            within(10, load, special_folder / name)
        assert str(info.value).endswith(problem)


def test_the_cli_lists_a_folder_with_a_fifo_without_waiting(special_folder):
    """The example: a FIFO named *.json used to hang ``fmlab sessions list``."""
    result = subprocess.run(
        [sys.executable, "-m", "fmlab", "sessions", "list", "--sessions-dir", str(special_folder)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0 and "good-one" in result.stdout
    warnings = result.stderr.splitlines()
    assert len(warnings) == len(EXPECTED) and all(w.startswith("Warning: ") for w in warnings)
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("name", ["fifo", "zero", "loop", "huge"])
def test_show_and_export_refuse_a_special_file_in_one_line(special_folder, tmp_path, name):
    for args in (["sessions", "show", name], ["export", name, "--out", str(tmp_path / "x.csv")]):
        result = within(30, runner.invoke, app, [*args, "--sessions-dir", str(special_folder)])
        assert result.exit_code == 1 and result.output.count("\n") == 1
        assert result.output.startswith(f"Error: {special_folder / name}.json: ")


def test_a_file_that_grows_past_the_limit_while_read_is_refused(tmp_path):
    path = tmp_path / "small.json"
    path.write_bytes(b"x" * 100)
    assert read_regular_file(path, 100) == b"x" * 100
    with pytest.raises(NotRegularFile, match="too large"):
        read_regular_file(path, 99)
