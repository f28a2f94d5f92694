"""Ids are matched literally, and every problem with a file's format is one
line naming the file: no traceback, whatever the input."""

from __future__ import annotations

import gzip
import struct
import zlib

import pytest
from idx_files import idx_bytes, write_dataset
from session_files import make_record, write_record
from typer.testing import CliRunner

from fmlab.trainer import data
from fmlab.trainer.data import FILES, IMAGE_MAGIC, LABEL_MAGIC, DataError
from fmlab.trainer.sessions import SessionError, find_session
from fmlab.tui.cli import app

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def one_line_error(result, code: int = 1) -> str:
    assert result.exit_code == code, result.output
    assert result.output.startswith("Error: ") and result.output.count("\n") == 1, result.output
    return result.output


# ------------------------------------------------------------- session refs


@pytest.fixture
def two_sessions(sessions_dir):
    for session_id in ("run-a", "run-b"):
        write_record(sessions_dir, make_record(session_id))
    return sessions_dir


@pytest.mark.parametrize("ref", ["/etc/passwd-not-a-session", "/", "/nowhere/run-a.json", "../run-a"])
def test_a_path_is_read_as_a_path(two_sessions, ref):
    output = one_line_error(invoke("sessions", "show", ref, "--sessions-dir", two_sessions))
    assert "no session file" in output or "is a directory, not a session file" in output


def test_an_absolute_path_to_a_session_opens_it(two_sessions):
    result = invoke("sessions", "show", two_sessions / "run-a.json", "--sessions-dir", "/nowhere")
    assert result.exit_code == 0 and "session run-a" in result.output


@pytest.mark.parametrize("ref", ["*", "run-*", "[", "run-[b]", "run-?", "**/*"])
def test_glob_characters_are_matched_literally(two_sessions, ref):
    result = invoke("sessions", "show", ref, "--sessions-dir", two_sessions)
    if "/" in ref:
        assert "no session file" in one_line_error(result)
    else:
        assert f"no session {ref!r}" in one_line_error(result)


def test_an_id_holding_glob_characters_is_found_by_itself(two_sessions):
    write_record(two_sessions, make_record("run-[b]"))
    assert find_session(two_sessions, "run-[b]") == two_sessions / "run-[b].json"
    assert find_session(two_sessions, "run-[") == two_sessions / "run-[b].json"  # a literal prefix
    assert find_session(two_sessions, "run-b") == two_sessions / "run-b.json"
    with pytest.raises(SessionError, match="matches 3 sessions"):
        find_session(two_sessions, "run-")


@pytest.mark.parametrize("ref", ["", "   ", "run\x00a", "run\x1b[2J", "x" * 5000, "y" * 300 + ".json"])
def test_refs_that_name_nothing_are_one_line(two_sessions, ref):
    with pytest.raises(SessionError) as info:
        find_session(two_sessions, ref)
    assert "\n" not in str(info.value) and "\x00" not in str(info.value) and "\x1b" not in str(info.value)


# ------------------------------------------------------------- data files


def replace_file(directory, key, contents: bytes):
    """Put ``contents`` in place of one of the four files, as its .gz."""
    for path in directory.glob(f"{FILES[key]}*"):
        path.unlink()
    path = directory / f"{FILES[key]}.gz"
    path.write_bytes(contents)
    return path


def corrupt_deflate(raw: bytes) -> bytes:
    """A gzip file whose header is fine but whose deflate stream is not."""
    packed = bytearray(gzip.compress(raw, mtime=0))
    for index in range(12, min(len(packed) - 8, 40)):
        packed[index] ^= 0x5A
    return bytes(packed)


IMAGES = idx_bytes(IMAGE_MAGIC, (8, 28, 28), bytes(8 * 784))
LABELS = idx_bytes(LABEL_MAGIC, (8,), bytes(8))


@pytest.mark.parametrize(
    "key, contents, problem",
    [
        ("train_images", corrupt_deflate(IMAGES), "cannot read"),
        ("train_images", gzip.compress(idx_bytes(IMAGE_MAGIC, (0, 28, 28), b"")), "holds no items"),
        ("test_labels", gzip.compress(idx_bytes(LABEL_MAGIC, (0,), b"")), "holds no items"),
        ("train_images", gzip.compress(struct.pack(">IIII", IMAGE_MAGIC, 2**31, 28, 28)), "promises"),
        ("train_labels", gzip.compress(LABELS)[:-6], "cannot read"),
        ("train_labels", gzip.compress(LABELS + b"\0"), "truncated or padded"),
        ("test_images", b"\x1f\x8b" + bytes(30), "cannot read"),
    ],
    ids=["corrupt-deflate", "zero-images", "zero-labels", "huge-header", "cut-gzip", "padded", "bad-header"],
)
def test_a_broken_data_file_is_one_line_naming_it(tmp_path, key, contents, problem):
    directory = write_dataset(tmp_path / "d", train=8, test=8)
    path = replace_file(directory, key, contents)
    with pytest.raises(DataError, match=problem) as info:
        data.load(data.locate(directory))
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    assert problem in one_line_error(invoke("data", "--data-dir", directory))


def test_corrupt_deflate_is_what_zlib_refuses(tmp_path):
    """The case above really is a zlib.error underneath, not a gzip header error."""
    with pytest.raises(zlib.error):
        gzip.decompress(corrupt_deflate(IMAGES))
