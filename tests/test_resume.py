import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
from one_run import train_one
from typer.testing import CliRunner

from fmlab.trainer.events import EpochMetrics, RunFinished
from fmlab.trainer.fields import parse_run_config
from fmlab.trainer.sessions import SessionRecorder, checkpoint_path, load
from fmlab.trainer.training.checkpoint import Checkpoint
from fmlab.tui.cli import app

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "kw", [{}, {"shuffle": True, "optimizer": "adam", "lr": 0.01}, {"precision": "bf16"}], ids=str
)
def test_resumed_run_equals_an_uninterrupted_one(tiny_dataset, kw):
    config = parse_run_config(epochs=4, arch="32", **kw)
    whole = [e for e in train_one(config, tiny_dataset) if isinstance(e, EpochMetrics)]

    checkpoints = []
    cancel = threading.Event()
    for event in train_one(config, tiny_dataset, cancel, on_checkpoint=checkpoints.append):
        if isinstance(event, EpochMetrics) and event.epoch == 2:
            cancel.set()
    assert [c.epoch for c in checkpoints] == [1, 2]
    resumed = list(train_one(config, tiny_dataset, resume=checkpoints[-1]))
    epochs = [e for e in resumed if isinstance(e, EpochMetrics)]
    assert [e.epoch for e in epochs] == [3, 4]
    for ours, theirs in zip(epochs, whole[2:]):  # the same arithmetic: the same numbers
        assert (ours.train_loss, ours.test_loss, ours.test_acc) == (
            theirs.train_loss,
            theirs.test_loss,
            theirs.test_acc,
        )
    results = resumed[-1].results
    assert results.epochs_done == 4 and results.best_test_acc == max(e.test_acc for e in whole)


def test_checkpoint_round_trips_through_a_file(tiny_dataset, tmp_path):
    saved = []
    config = parse_run_config(epochs=1, arch="8", optimizer="adam", lr=0.01)
    list(train_one(config, tiny_dataset, on_checkpoint=saved.append))
    path = tmp_path / "x.state.pt"
    saved[0].save(path, "x", config)
    loaded = Checkpoint.load(path, "x", config)
    assert loaded.epoch == 1 and loaded.history == saved[0].history and loaded.step == saved[0].step
    assert all(torch.equal(a, b) for a, b in zip(loaded.params, saved[0].params))
    assert loaded.optimizer["steps"] == saved[0].optimizer["steps"] == 8
    assert all(torch.equal(a, b) for a, b in zip(loaded.optimizer["exp_avg"], saved[0].optimizer["exp_avg"]))


def test_cli_resumes_a_killed_run_to_the_uninterrupted_result(tiny_data_dir, tmp_path):
    args = ["train", "--epochs", "6", "--arch", "64", "--data-dir", str(tiny_data_dir)]
    runner = CliRunner()
    straight = runner.invoke(app, [*args, "--sessions-dir", str(tmp_path / "a"), "--json"])
    expected = __import__("json").loads(straight.stdout)["results"]["final_test_acc"]

    killed_dir = tmp_path / "b"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    code = "import torch; torch.set_num_threads(1); from fmlab.tui.cli import main; main()"
    process = subprocess.Popen(
        [sys.executable, "-c", code, *args, "--sessions-dir", str(killed_dir)],
        cwd=REPO, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env,
    )  # fmt: skip
    try:
        for line in process.stderr:
            if line.startswith("epoch   3"):
                break
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    [path] = killed_dir.glob("*.json")
    assert load(path).status == "interrupted" and checkpoint_path(path).exists()
    result = runner.invoke(app, ["train", "--resume", path.stem, "--sessions-dir", str(killed_dir),
                                 "--data-dir", str(tiny_data_dir)])  # fmt: skip
    assert result.exit_code == 0, result.output
    record = load(path)
    assert record.status == "completed"
    assert [e.epoch for e in record.epochs] == [1, 2, 3, 4, 5, 6]
    assert record.results.final_test_acc == pytest.approx(expected, abs=1e-9)


def test_resume_refuses_finished_or_bad_sessions(tiny_dataset, tiny_data_dir, sessions_dir):
    recorder = SessionRecorder(sessions_dir)
    for event in train_one(parse_run_config(epochs=1, arch="8"), tiny_dataset):
        recorder(event)
    runner = CliRunner()
    done = runner.invoke(app, ["train", "--resume", recorder.record.id, "--sessions-dir", str(sessions_dir)])
    assert done.exit_code == 1 and "is completed" in done.output
    (sessions_dir / "bad.json").write_text("{")
    bad = runner.invoke(app, ["train", "--resume", "bad", "--sessions-dir", str(sessions_dir)])
    assert bad.exit_code == 1 and bad.output.startswith("Error:") and bad.output.count("\n") == 1


def test_resume_without_checkpoint_is_one_line(tiny_dataset, sessions_dir):
    recorder = SessionRecorder(sessions_dir)
    cancel = threading.Event()
    cancel.set()
    for event in train_one(parse_run_config(epochs=2, arch="8"), tiny_dataset, cancel):
        recorder(event)
    assert isinstance(event, RunFinished) and event.status == "stopped"
    result = CliRunner().invoke(
        app, ["train", "--resume", recorder.record.id, "--sessions-dir", str(sessions_dir)]
    )
    assert result.exit_code == 1 and "no checkpoint" in result.output
