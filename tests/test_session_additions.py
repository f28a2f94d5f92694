"""What session files gained with the study's analysis: the notebook's
gradient and the mean per layer in the step curves, the lowest test loss's
epoch in the results, and how much of the training split a run used. Files
from before load as they did; runs on part of the data say so everywhere."""

from __future__ import annotations

import csv
import io
import json
import math

import pytest
from session_files import document_of, make_record, write_document
from typer.testing import CliRunner

from fmlab.trainer.sessions import SessionError, encode, load, summarize_file
from fmlab.tui.cli import app

runner = CliRunner()


def invoke(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


def older(document: dict) -> dict:
    """A document as fmlab wrote it before these fields existed."""
    document.pop("train_data", None)
    document["results"].pop("lowest_test_loss_epoch")
    for column in ("grad_sum_of_means", "layer_grad_means"):
        document["steps"].pop(column)
    return document


def test_files_from_before_load_as_not_recorded(tmp_path):
    path = write_document(tmp_path, older(document_of(make_record())), "old.json")
    record = load(path)
    assert record.train_data is None and record.results.lowest_test_loss_epoch is None
    steps = record.steps
    assert len(steps.grad_sum_of_means) == len(steps.step) and all(
        math.isnan(v) for v in steps.grad_sum_of_means
    )
    assert steps.layer_grad_means == [[] for _ in steps.step] and not steps.has_sum_of_means
    assert [e.step for e in steps.events()] == steps.step and record.warnings == []
    summary = summarize_file(path)
    assert summary.train_data is None and not summary.partial_data and summary.lowest_test_loss_epoch is None
    # written back (a resumed old run is), it reads the same
    again = tmp_path / "again.json"
    again.write_text(encode(record))
    assert encode(load(again)) == encode(record)


@pytest.mark.parametrize(
    "train_data, problem",
    [({"images": 600, "of": 512}, "600 images of 512"), ({"images": 0, "of": 512}, "0 images of 512"),
     ({"images": "all", "of": 512}, "wrong type"), ({"images": 64}, "missing field 'of'")],
)  # fmt: skip
def test_train_data_that_cannot_be_is_refused_in_one_line(tmp_path, train_data, problem):
    document = document_of(make_record())
    document["train_data"] = train_data
    with pytest.raises(SessionError, match=problem) as caught:
        load(write_document(tmp_path, document, "bad.json"))
    assert "\n" not in str(caught.value)


def test_train_data_must_agree_with_the_environment(tmp_path):
    document = document_of(make_record())
    document["train_data"] = {"images": 320, "of": 512}
    document["environment"]["train_size"] = "512"
    with pytest.raises(SessionError, match="train_data says 320 images, the environment '512'"):
        load(write_document(tmp_path, document, "disagree.json"))


def test_a_run_on_part_of_the_data_says_so_everywhere(tiny_data_dir, tmp_path):
    sessions = tmp_path / "s"
    invoke(
        "grads", "--arch", "16", "--steps", 5, "--data-dir", tiny_data_dir, "--sessions-dir", sessions, "-q"
    )
    invoke(
        "train", "--arch", "16", "--epochs", 1, "--data-dir", tiny_data_dir, "--sessions-dir", sessions, "-q"
    )
    listed = json.loads(invoke("sessions", "list", "--json", "--sessions-dir", sessions))
    by_part = {item["partial_data"]: item for item in listed}
    assert by_part[True]["train_data"] == {"images": 320, "of": 512}
    assert by_part[False]["train_data"] == {"images": 512, "of": 512}
    table = invoke("sessions", "list", "--sessions-dir", sessions)
    assert "320/512" in table and " all " in table and "data" in table.splitlines()[0]

    partial = by_part[True]["id"]
    shown = invoke("sessions", "show", partial, "--sessions-dir", sessions)
    assert "data:    the first 320 of 512 training images" in shown
    document = json.loads(invoke("sessions", "show", partial, "--json", "--sessions-dir", sessions))
    assert document["train_data"] == {"images": 320, "of": 512}
    assert (
        len(document["steps"]["grad_sum_of_means"]) == 5
        and len(document["steps"]["layer_grad_means"][0]) == 2
    )

    out = tmp_path / "both.csv"
    invoke("export", partial, by_part[False]["id"], "--out", out, "--sessions-dir", sessions)
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert {(r["session"], r["train_images"], r["train_images_of"]) for r in rows} == {
        (partial, "320", "512"), (by_part[False]["id"], "512", "512")}  # fmt: skip
    assert all(r["grad_sum_of_means"] for r in rows if r["kind"] == "step")
    out = tmp_path / "both.json"
    invoke("export", partial, "--out", out, "--sessions-dir", sessions)
    exported = json.loads(out.read_text())["sessions"][0]
    assert exported["train_data"] == {"images": 320, "of": 512, "partial": True}


def test_sessions_show_prints_the_analysis(tiny_data_dir, tmp_path):
    sessions = tmp_path / "s"
    invoke(
        "train", "--arch", "16", "--epochs", 3, "--data-dir", tiny_data_dir, "--sessions-dir", sessions, "-q"
    )
    session = json.loads(invoke("sessions", "list", "--json", "--sessions-dir", sessions))[0]["id"]
    shown = invoke("sessions", "show", session, "--sessions-dir", sessions)
    analysis = shown.split("analysis:\n", 1)[1]
    for label in ("lowest test loss", "best test acc", "train-test gap", "stability", "first reached",
                  "last 3 epochs", "converged"):  # fmt: skip
        assert label in analysis, label
    document = json.loads(invoke("sessions", "show", session, "--json", "--sessions-dir", sessions))
    record = load(next(sessions.glob("*.json")))
    assert document["analysis"]["lowest_test_loss_epoch"] == record.results.lowest_test_loss_epoch
    assert document["analysis"]["epochs"] == 3 and set(document["analysis"]["epochs_to_accuracy"]) == {
        "85",
        "88",
    }
