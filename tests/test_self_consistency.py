"""A session whose parts disagree is refused, or repaired with a warning that
says so; the listing and a full read never tell two different stories."""

from __future__ import annotations

import json

import pytest
from session_files import document_of, layout, make_record, write_document
from typer.testing import CliRunner

from fmlab.trainer.sessions import SessionError, list_sessions, load, summarize_file
from fmlab.tui.cli import app

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def refused_everywhere(directory, name: str, problem: str) -> None:
    """Refused by a full read, by the listing and by the CLI, with the same line."""
    path = directory / name
    with pytest.raises(SessionError, match=problem) as info:
        load(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    with pytest.raises(SessionError) as listed:
        summarize_file(path)
    assert str(listed.value) == message
    good, bad = list_sessions(directory)
    assert path not in [s.path for s in good] and message in bad
    shown = invoke("sessions", "show", path)
    assert shown.exit_code == 1 and shown.output == f"Error: {message}\n"
    listing = invoke("sessions", "list", "--sessions-dir", directory)
    assert f"Warning: {message}\n" in listing.output


# ------------------------------------------------------------- epochs_done


def test_more_epochs_done_than_configured_is_refused(sessions_dir):
    """The example: the app showed "epoch 5/1"."""
    document = document_of(make_record("five-of-one", epochs=1))
    document["results"]["epochs_done"] = 5
    write_document(sessions_dir, document, "five-of-one.json")
    refused_everywhere(sessions_dir, "five-of-one.json", "5 epochs done, more than the 1 configured")


@pytest.mark.parametrize("field, value", [("best_epoch", 4), ("converged_epoch", 3), ("best_epoch", 0)])
def test_an_epoch_the_results_name_must_have_been_done(sessions_dir, field, value):
    document = document_of(make_record("named", epochs=5))
    document["results"].update(epochs_done=2, best_epoch=2)
    document["results"][field] = value
    document["epochs"] = document["epochs"][:2]
    write_document(sessions_dir, document, "named.json")
    refused_everywhere(sessions_dir, "named.json", f"{field} {value} is not one of the 2 epochs done")


def test_results_counting_other_epochs_than_the_rows_are_recomputed_with_a_warning(sessions_dir):
    record = make_record("resumed", epochs=5)
    document = document_of(record)
    document["epochs"] = document["epochs"][:3]  # a resume from an older checkpoint, killed early
    path = write_document(sessions_dir, document, "resumed.json")
    loaded = load(path)
    assert loaded.results.epochs_done == 3 and loaded.results.best_epoch == 3
    assert loaded.results.final_test_acc == loaded.epochs[-1].test_acc
    assert loaded.warnings == [
        f"{path}: the results count 5 epochs done but the file holds 3 epoch rows; "
        "the results were recomputed from the rows"
    ]
    shown = invoke("sessions", "show", path)
    assert shown.exit_code == 0
    assert shown.stderr == f"Warning: {loaded.warnings[0]}\n"
    assert "(epoch 3)" in shown.stdout


# ------------------------------------------------------------- epoch rows


@pytest.mark.parametrize(
    "numbers, problem",
    [
        ([1, 2, 2], "epoch 2 appears twice in the epoch rows"),
        ([1, 1], "epoch 1 appears twice in the epoch rows"),
        ([1, 3], "not numbered 1, 2, 3…: row 2 is epoch 3"),
        ([2, 1], "not numbered 1, 2, 3…: row 1 is epoch 2"),
        ([0], "not numbered 1, 2, 3…: row 1 is epoch 0"),
    ],
)
def test_duplicate_or_missing_epoch_rows_are_refused(sessions_dir, numbers, problem):
    document = document_of(make_record("rows", epochs=3))
    rows = document["epochs"]
    document["epochs"] = [{**rows[min(n, 3) - 1 if n else 0], "epoch": n} for n in numbers]
    document["results"]["epochs_done"] = len(numbers)
    document["results"]["best_epoch"] = None
    path = write_document(sessions_dir, document, "rows.json")
    with pytest.raises(SessionError, match=problem):
        load(path)
    result = invoke("sessions", "show", path)
    assert result.exit_code == 1 and problem in result.output


def test_more_epoch_rows_than_configured_are_refused(sessions_dir):
    document = document_of(make_record("long", epochs=3))
    document["config"]["epochs"] = 2
    document["results"].update(epochs_done=2, best_epoch=2)
    path = write_document(sessions_dir, document, "long.json")
    with pytest.raises(SessionError, match="3 epoch rows, more than the 2 epochs configured"):
        load(path)


def test_step_epochs_that_go_backwards_are_refused(sessions_dir):
    document = document_of(make_record("steps", epochs=2))
    document["steps"]["epoch"][-1] = 1
    document["steps"]["epoch"][0] = 2
    path = write_document(sessions_dir, document, "steps.json")
    with pytest.raises(SessionError, match="the steps' epoch numbers go backwards"):
        load(path)


# ------------------------------------------------------------- repeated keys


def test_a_header_member_repeated_later_in_the_file_is_refused_by_list_and_show(sessions_dir):
    """The example: list read the first copy of "status", show the last."""
    text = layout(document_of(make_record("twice")))
    text = text.replace('"steps":{', '"status":"diverged","steps":{')
    (sessions_dir / "twice.json").write_text(text)
    refused_everywhere(sessions_dir, "twice.json", "the key 'status' appears twice in one object")


@pytest.mark.parametrize(
    "edit, listed",
    [
        (
            lambda text: text.replace(
                '"status": "completed"', '"status": "completed", "status": "running"', 1
            ),
            False,
        ),
        (lambda text: text.replace('"steps":{', '"\\u0069d":"other","steps":{'), False),  # "id", escaped
        # past the header a repeat cannot change what the listing shows: it
        # reads line one only (for speed) and the full read refuses the file
        (lambda text: text.replace('{"epoch":1,', '{"epoch":1,"test_acc":99.0,', 1), True),
    ],
    ids=["in-the-header-line", "escaped-header-key-later", "in-an-epoch-row"],
)
def test_any_repeated_key_is_refused(sessions_dir, edit, listed):
    text = edit(layout(document_of(make_record("twice"))))
    assert text != layout(document_of(make_record("twice")))
    (sessions_dir / "twice.json").write_text(text)
    with pytest.raises(SessionError, match="appears twice in one object"):
        load(sessions_dir / "twice.json")
    good, bad = list_sessions(sessions_dir)
    assert (len(good), len(bad)) == ((1, 0) if listed else (0, 1))


def test_a_one_line_session_is_read_whole_by_the_listing(sessions_dir):
    document = document_of(make_record("one-line"))
    (sessions_dir / "one-line.json").write_text(json.dumps(document))
    assert summarize_file(sessions_dir / "one-line.json").id == "one-line"
