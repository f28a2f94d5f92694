import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from one_run import train_one

from fmlab.trainer import sessions as session
from fmlab.trainer.events import StepMetrics
from fmlab.trainer.fields import parse_run_config
from fmlab.trainer.sessions import SessionError, SessionRecorder, StepCurve, encode, load
from fmlab.trainer.sessions import recorder as session_recorder
from fmlab.trainer.sessions.format import LATER_STEP_POINTS

REPO = Path(__file__).resolve().parents[1]


def record_run(tiny_dataset, directory, **config):
    recorder = SessionRecorder(directory)
    for event in train_one(parse_run_config(**config), tiny_dataset):
        recorder(event)
    return recorder


def test_round_trip_is_lossless(tiny_dataset, sessions_dir):
    recorder = record_run(tiny_dataset, sessions_dir, epochs=2, arch="16", full_steps=3, step_every=2)
    loaded = load(recorder.path)
    original = recorder.record
    assert loaded.path == original.path
    for name in ("id", "config", "status", "created", "updated", "pid", "host", "environment",
                 "model", "results", "epochs", "steps", "train_data"):  # fmt: skip
        assert getattr(loaded, name) == getattr(original, name), name
    assert encode(loaded) == encode(original)
    assert loaded.status == "completed" and len(loaded.epochs) == 2
    assert loaded.train_data.images == loaded.train_data.of == 512 and not loaded.train_data.partial
    assert loaded.steps.has_sum_of_means and len(loaded.steps.layer_grad_means[0]) == 2


def test_nan_losses_are_stored_as_null_and_read_back_as_nan(tiny_dataset, sessions_dir):
    recorder = record_run(tiny_dataset, sessions_dir, epochs=3, lr=1e5)
    text = recorder.path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    loaded = load(recorder.path)
    assert loaded.status == "diverged"
    assert any(value != value for value in loaded.steps.loss)


def test_listing_reads_the_header_line(tiny_dataset, sessions_dir):
    recorder = record_run(tiny_dataset, sessions_dir, epochs=1, arch="8")
    first_line = recorder.path.read_text().splitlines()[0]
    assert '"environment"' not in first_line and '"results"' in first_line
    good, bad = session.list_sessions(sessions_dir)
    assert bad == [] and [s.id for s in good] == [recorder.record.id]
    assert good[0].epochs_done == 1 and good[0].final_test_acc == recorder.record.results.final_test_acc
    # only the first line is read: damage past it goes unnoticed by the listing
    recorder.path.write_text(first_line + "\n" + "x" * 100)
    assert session.summarize_file(recorder.path) == good[0]


def test_step_curve_stays_bounded():
    curve = StepCurve(full_steps=100)
    for step in range(1, 200_001):
        curve.add(StepMetrics(step, 1 + step // 1000, 1.0, 0.0, 1.0, (1.0,)))
    assert curve.step[:100] == list(range(1, 101))
    later = curve.step[100:]
    assert len(later) <= LATER_STEP_POINTS
    gaps = {b - a for a, b in zip(later, later[1:])}
    assert gaps == {curve.stride}  # evenly spaced
    assert later[-1] > 199_000  # reaches the end of the run


BAD_FILES = {
    "truncated.json": lambda good: good[: len(good) // 2],
    "notjson.json": lambda good: "this is not json",
    "empty.json": lambda good: "",
    "other.json": lambda good: json.dumps({"schema": "something.else", "version": 1}),
    "newer.json": lambda good: good.replace('"version": 1', '"version": 99', 1),
    "wrongtype.json": lambda good: good.replace('"epochs_done": ', '"epochs_done": "x", "_": ', 1),
    "missing.json": lambda good: good.replace('"config": ', '"konfig": ', 1),
    "badlr.json": lambda good: good.replace('"lr": 0.1', '"lr": -3', 1),
    "huge.json": lambda good: good.replace('"test_acc":', '"test_acc":1e999,"x":', 1),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_strict_loading_names_file_and_problem(tiny_dataset, sessions_dir, tmp_path, name):
    good = record_run(tiny_dataset, sessions_dir, epochs=1, arch="8").path.read_text()
    path = tmp_path / name
    path.write_text(BAD_FILES[name](good))
    with pytest.raises(SessionError) as info:
        load(path)
    message = str(info.value)
    assert message.startswith(str(path)) and "\n" not in message
    if name == "truncated.json":
        assert "truncated JSON" in message


def test_directory_and_binary_named_json(tmp_path):
    (tmp_path / "dir.json").mkdir()
    (tmp_path / "bin.json").write_bytes(bytes(range(256)))
    with pytest.raises(SessionError, match="is a directory"):
        load(tmp_path / "dir.json")
    with pytest.raises(SessionError, match="not a text file"):
        load(tmp_path / "bin.json")
    good, bad = session.list_sessions(tmp_path)
    assert good == [] and len(bad) == 2


def test_listing_skips_bad_files_with_one_warning_each(tiny_dataset, sessions_dir):
    record_run(tiny_dataset, sessions_dir, epochs=1, arch="8")
    (sessions_dir / "broken.json").write_text("{")
    good, bad = session.list_sessions(sessions_dir)
    assert len(good) == 1 and len(bad) == 1 and "broken.json" in bad[0]
    assert session.list_sessions(sessions_dir / "missing") == ([], [])


def test_find_session_by_prefix(tiny_dataset, sessions_dir):
    path = record_run(tiny_dataset, sessions_dir, epochs=1, arch="8").path
    assert session.find_session(sessions_dir, path.stem[:-2]) == path
    with pytest.raises(SessionError, match="no session"):
        session.find_session(sessions_dir, "nope")


def test_failed_save_keeps_training_and_reports_once(tiny_dataset, tmp_path, monkeypatch):
    messages = []
    recorder = SessionRecorder(tmp_path / "s", on_error=messages.append)
    real_write = session_recorder.write_atomic
    calls = {"n": 0}

    def flaky(path, text):
        calls["n"] += 1
        if 2 <= calls["n"] <= 3:
            raise OSError(28, "No space left on device")
        real_write(path, text)

    monkeypatch.setattr(session_recorder, "write_atomic", flaky)
    for event in train_one(parse_run_config(epochs=3, arch="8"), tiny_dataset):
        recorder(event)
    assert len(messages) == 1 and "No space left" in messages[0]
    assert recorder.save_error is None  # space came back
    assert len(load(recorder.path).epochs) == 3


def test_two_recorders_never_share_a_file(tiny_dataset, sessions_dir, monkeypatch):
    monkeypatch.setattr(session, "new_session_id", lambda config: "same-id-0000")
    a = record_run(tiny_dataset, sessions_dir, epochs=1, arch="8")
    b = record_run(tiny_dataset, sessions_dir, epochs=1, arch="8")
    assert a.path != b.path and load(a.path).id != load(b.path).id


def test_running_file_of_a_dead_process_reads_as_interrupted(tiny_dataset, sessions_dir):
    path = record_run(tiny_dataset, sessions_dir, epochs=1, arch="8").path
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    data = json.loads(path.read_text())
    data.update(status="running", pid=dead.pid)
    path.write_text(json.dumps(data))
    assert load(path).status == "interrupted"
    assert session.list_sessions(sessions_dir)[0][0].status == "interrupted"


TRAIN_FOREVER = """
import sys, torch
torch.set_num_threads(1)
from fmlab.trainer import data
from fmlab.trainer.training.loop import Member, train
from fmlab.trainer.fields import parse_run_config
from fmlab.trainer.sessions import SessionRecorder
ds = data.load(data.locate(sys.argv[1]))
recorder = SessionRecorder(sys.argv[2])
for _, event in train([Member(parse_run_config(epochs=10_000, arch="64"))], ds):
    recorder(event)
    if type(event).__name__ == "EpochMetrics":
        print(event.epoch, flush=True)
"""


def test_sigkill_mid_epoch_leaves_a_valid_file_with_every_finished_epoch(tiny_data_dir, sessions_dir):
    process = subprocess.Popen(
        [sys.executable, "-c", TRAIN_FOREVER, str(tiny_data_dir), str(sessions_dir)],
        cwd=REPO, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        for _ in range(3):
            finished = int(process.stdout.readline())
        time.sleep(0.01)  # into the next epoch
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    [path] = sessions_dir.glob("*.json")
    record = load(path)
    assert record.status == "interrupted"
    assert len(record.epochs) >= finished >= 3
    assert [e.epoch for e in record.epochs] == list(range(1, len(record.epochs) + 1))


def test_listing_cache_reuses_an_unchanged_folder(tiny_dataset, sessions_dir):
    record_run(tiny_dataset, sessions_dir, epochs=1, arch="8")
    cache = session.ListingCache()
    first = cache.listing(sessions_dir)
    assert cache.listing(sessions_dir) is first and len(first[0]) == 1
    record_run(tiny_dataset, sessions_dir, epochs=1, arch="8")
    second = cache.listing(sessions_dir)
    assert second is not first and len(second[0]) == 2
