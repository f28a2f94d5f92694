"""A checkpoint in a sessions folder is data, never code, and belongs to its
session: anything else is one line and nothing is loaded."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
from one_run import train_one
from typer.testing import CliRunner

from fmlab.trainer.fields import parse_run_config
from fmlab.trainer.jobs import JobError, resume_job
from fmlab.trainer.sessions import SessionRecorder, checkpoint_path
from fmlab.trainer.sessions.lock import SessionLock
from fmlab.trainer.training.checkpoint import Checkpoint, CheckpointError
from fmlab.tui.cli import app

REPO = Path(__file__).resolve().parents[1]


def stopped_session(dataset, folder: Path, **config) -> SessionRecorder:
    """A session stopped after its first epoch, with its checkpoint."""
    config = parse_run_config(**{"epochs": 3, "arch": "8", **config})
    recorder = SessionRecorder(folder)
    cancel = threading.Event()
    for event in train_one(config, dataset, cancel, on_checkpoint=recorder.save_checkpoint):
        recorder(event)
        if type(event).__name__ == "EpochMetrics":
            cancel.set()
    assert recorder.record.status == "stopped"
    return recorder


def resume(folder: Path, session_id: str, data_dir: Path):
    return CliRunner().invoke(app, ["train", "--resume", session_id, "--sessions-dir", str(folder),
                                    "--data-dir", str(data_dir)])  # fmt: skip


def one_line_error(result) -> str:
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


class WritesMarker:
    """What a hostile checkpoint would hold: unpickling it runs a command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_that_runs_code_is_refused_and_runs_nothing(
    tiny_dataset, tiny_data_dir, sessions_dir, tmp_path
):
    recorder = stopped_session(tiny_dataset, sessions_dir)
    marker = tmp_path / "marker"
    hostile = {"format": "fmlab.checkpoint", "version": 2, "payload": WritesMarker(marker)}
    buffer = io.BytesIO()
    torch.save(hostile, buffer)
    checkpoint_path(recorder.path).write_bytes(buffer.getvalue())
    line = one_line_error(resume(sessions_dir, recorder.record.id, tiny_data_dir))
    assert "not a plain-data fmlab checkpoint" in line
    assert not marker.exists()
    # the same file, read the way fmlab 0.1 read it, would have run the command
    torch.load(checkpoint_path(recorder.path), weights_only=False)
    assert marker.exists()


def test_a_checkpoint_of_another_run_is_refused(tiny_dataset, tiny_data_dir, sessions_dir, tmp_path):
    mine = stopped_session(tiny_dataset, sessions_dir, epochs=3)
    other_width = stopped_session(tiny_dataset, tmp_path / "a", arch="16")
    same_width = stopped_session(tiny_dataset, tmp_path / "b", optimizer="adam", lr=0.01, epochs=4)
    for other, why in (
        (other_width, "belongs to another session"),
        (same_width, "belongs to another session"),
    ):
        checkpoint_path(mine.path).write_bytes(checkpoint_path(other.path).read_bytes())
        line = one_line_error(resume(sessions_dir, mine.record.id, tiny_data_dir))
        assert why in line
    # the session's own id on another run's state: the settings do not match
    config = same_width.record.config
    Checkpoint.load(checkpoint_path(same_width.path), same_width.record.id, config).save(
        checkpoint_path(mine.path), mine.record.id, config
    )
    assert "other settings" in one_line_error(resume(sessions_dir, mine.record.id, tiny_data_dir))


@pytest.mark.parametrize(
    "damage, why",
    [
        (lambda c: c.params.__setitem__(0, torch.zeros(3, 3)), "params[0] is (3, 3)"),
        (lambda c: c.params.__setitem__(1, torch.zeros(8, dtype=torch.float64)), "params[1]"),
        (lambda c: c.history.pop(), "history does not hold 1 epochs"),
        (lambda c: setattr(c, "shuffle_state", torch.zeros(3)), "shuffle state"),
        (lambda c: setattr(c, "epoch", 9), "do not fit a run of 3 epochs"),
    ],
)
def test_a_damaged_checkpoint_is_one_line(tiny_dataset, tiny_data_dir, sessions_dir, damage, why):
    recorder = stopped_session(tiny_dataset, sessions_dir)
    path = checkpoint_path(recorder.path)
    checkpoint = Checkpoint.load(path, recorder.record.id, recorder.record.config)
    damage(checkpoint)
    checkpoint.save(path, recorder.record.id, recorder.record.config)
    assert why in one_line_error(resume(sessions_dir, recorder.record.id, tiny_data_dir))


@pytest.mark.parametrize(
    "make",
    [lambda p: p.write_bytes(b"PK\x03\x04 not really"), lambda p: p.write_bytes(b""), os.mkfifo, os.mkdir],
)
def test_a_checkpoint_that_is_not_one_is_one_line(tiny_dataset, tiny_data_dir, sessions_dir, make):
    recorder = stopped_session(tiny_dataset, sessions_dir)
    path = checkpoint_path(recorder.path)
    path.unlink()
    make(path)
    line = one_line_error(resume(sessions_dir, recorder.record.id, tiny_data_dir))
    assert str(path) in line


def test_one_session_is_resumed_by_one_process_at_a_time(tiny_dataset, tiny_data_dir, sessions_dir):
    recorder = stopped_session(tiny_dataset, sessions_dir)
    holder = SessionLock(recorder.path).acquire()  # as a process training it would
    try:
        line = one_line_error(resume(sessions_dir, recorder.record.id, tiny_data_dir))
        assert "is being trained by another process" in line and f"pid {os.getpid()}" in line
        with pytest.raises(JobError, match="another process"):
            resume_job(recorder.path)
    finally:
        holder.release()
    job = resume_job(recorder.path)  # free again
    job.resume.lock.release()


def test_two_resume_commands_at_once_train_it_once(tiny_dataset, tiny_data_dir, sessions_dir):
    recorder = stopped_session(tiny_dataset, sessions_dir, epochs=10_000, arch="64")
    code = "import torch; torch.set_num_threads(1); from fmlab.tui.cli import main; main()"
    args = ["train", "--resume", recorder.record.id, "--sessions-dir", str(sessions_dir),
            "--data-dir", str(tiny_data_dir)]  # fmt: skip
    first = subprocess.Popen([sys.executable, "-c", code, *args], cwd=REPO, stderr=subprocess.PIPE, text=True,
                             stdout=subprocess.DEVNULL)  # fmt: skip
    try:
        for line in first.stderr:
            if line.startswith("epoch"):
                break
        second = subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, capture_output=True, text=True)
        assert second.returncode == 1
        assert (
            second.stderr.strip().startswith("Error: ")
            and "being trained by another process" in second.stderr
        )
        assert len(second.stderr.strip().splitlines()) == 1
    finally:
        first.terminate()
        first.wait(timeout=60)


def test_checkpoint_errors_name_the_file(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint to resume from"):
        Checkpoint.load(tmp_path / "missing.state.pt", "x", parse_run_config())


def test_a_checkpoint_resumes_only_on_the_data_it_was_trained_on(tiny_dataset, sessions_dir, tmp_path):
    from idx_files import write_dataset

    recorder = stopped_session(tiny_dataset, sessions_dir)
    other_data = write_dataset(tmp_path / "other", train=256)
    line = one_line_error(resume(sessions_dir, recorder.record.id, other_data))
    assert "8 steps per epoch, this data gives 4" in line


def test_a_sweep_trains_again_a_run_it_cannot_resume(tiny_datasets, sessions_dir, tmp_path):
    from idx_files import write_dataset

    from fmlab.trainer.events import EpochMetrics
    from fmlab.trainer.studies.sweep import Sweep, load_sweep

    configs = [parse_run_config(arch="8", lr=lr, epochs=3, device="cpu") for lr in (0.1, 0.05)]
    sweep = Sweep.new(configs, sessions_dir)
    cancel = threading.Event()
    for _, event in sweep.run(tiny_datasets, cancel):
        if isinstance(event, EpochMetrics):
            cancel.set()
    assert load_sweep(sweep.record.path).status == "stopped"
    other_data = write_dataset(tmp_path / "other", train=256)
    again = CliRunner().invoke(app, ["sweep", "--resume", sweep.record.id, "--sessions-dir", str(sessions_dir),
                                     "--data-dir", str(other_data), "-q"])  # fmt: skip
    assert again.exit_code == 0, again.output
    warnings = [line for line in again.stderr.splitlines() if line.startswith("Warning:")]
    assert len(warnings) == 2 and all("training that run again from the start" in w for w in warnings)
    record = load_sweep(sweep.record.path)
    assert record.status == "completed" and all(r.epochs_done == 3 for r in record.rows)


def test_a_session_being_trained_is_not_deleted(tiny_dataset, sessions_dir):
    from fmlab.trainer.sessions import delete_session
    from fmlab.trainer.sessions.lock import SessionBusy

    recorder = stopped_session(tiny_dataset, sessions_dir)
    holder = SessionLock(recorder.path).acquire()
    try:
        with pytest.raises(SessionBusy, match="stop that run first"):
            delete_session(recorder.path)
        assert recorder.path.exists() and checkpoint_path(recorder.path).exists()
    finally:
        holder.release()
    delete_session(recorder.path)
    assert list(sessions_dir.iterdir()) == []
