"""A sweep or a reproduction killed (SIGKILL) in the middle of a run, run
again, continues every run from its last finished epoch and ends with the
numbers of an uninterrupted one."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from fmlab.trainer.sessions import load
from fmlab.trainer.studies.sweep import load_sweep

REPO = Path(__file__).resolve().parents[1]
FMLAB = "import torch; torch.set_num_threads(1); from fmlab.tui.cli import main; main()"
# the quick plan of the reproduction, on a small net and the tiny data
SMALL_REPRODUCE = """
import sys, torch
torch.set_num_threads(1)
sys.path.insert(0, sys.argv.pop(1))
import fmlab.trainer.studies.reproduce as reproduce
from test_reproduce import small_studies
reproduce.plan_studies = lambda quick, threshold: small_studies(epochs=12)
reproduce.Reproduction._figures = lambda self, study: None
from fmlab.tui.cli import main
main()
"""


def start(code: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip


def kill_mid_run(process: subprocess.Popen, sessions: Path, rng: random.Random) -> None:
    """SIGKILL once some run has finished a random number of epochs, a moment
    into the next one."""
    wanted = rng.randint(2, 8)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if any(_epochs(p) >= wanted for p in sessions.rglob("*.json") if "sweeps" not in p.parts):
            break
        time.sleep(0.005)
    time.sleep(rng.uniform(0.0, 0.05))
    os.kill(process.pid, signal.SIGKILL)
    process.wait()


def _epochs(path: Path) -> int:
    try:
        return len(json.loads(path.read_text())["epochs"])
    except (OSError, ValueError, KeyError):
        return 0


def epochs_by_session(folder: Path) -> dict[str, list[dict]]:
    return {
        p.stem: json.loads(p.read_text())["epochs"] for p in folder.rglob("*.json") if "sweeps" not in p.parts
    }


def check_continued(before: dict[str, list[dict]], after_folder: Path) -> None:
    """Every epoch on disk at the kill is still there unchanged (not trained
    again: an epoch's time would differ), and every run's epochs are contiguous."""
    for session, epochs in before.items():
        final = load(after_folder.rglob(f"{session}.json").__next__()).epochs
        assert [e.epoch for e in final] == list(range(1, len(final) + 1))
        assert [e["seconds"] for e in epochs] == [e.seconds for e in final[: len(epochs)]], session


def test_a_killed_sweep_resumes_to_the_uninterrupted_result(tiny_data_dir, tmp_path):
    grid = ["sweep", "--lr", "0.1,0.03", "--arch", "64,32", "--epochs", "20", "--data-dir", str(tiny_data_dir),
            "--format", "json", "--quiet"]  # fmt: skip
    straight = subprocess.run([sys.executable, "-c", FMLAB, *grid, "--sessions-dir", str(tmp_path / "straight")],
                              cwd=REPO, capture_output=True, text=True)  # fmt: skip
    assert straight.returncode == 0, straight.stderr
    expected = [(row["lr"], row["accuracy"]) for row in json.loads(straight.stdout)]

    sessions = tmp_path / "killed"
    kill_mid_run(start(FMLAB, *grid, "--sessions-dir", str(sessions)), sessions, random.Random(7))
    [record_path] = (sessions / "sweeps").glob("*.json")
    killed = load_sweep(record_path)
    assert killed.status == "interrupted" and killed.pending()
    before = epochs_by_session(sessions)
    assert before and all(len(epochs) < 20 for epochs in before.values())

    resumed = subprocess.run([sys.executable, "-c", FMLAB, "sweep", "--resume", killed.id, "--sessions-dir",
                              str(sessions), "--data-dir", str(tiny_data_dir), "--format", "json", "--quiet"],
                             cwd=REPO, capture_output=True, text=True)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert [(row["lr"], row["accuracy"]) for row in json.loads(resumed.stdout)] == expected
    assert load_sweep(record_path).status == "completed"
    check_continued(before, sessions)
    assert len(epochs_by_session(sessions)) == 2  # each run kept its session file


def test_a_killed_reproduction_resumes_to_the_uninterrupted_result(tiny_data_dir, tmp_path):
    tests = str(Path(__file__).parent)
    args = ["reproduce", "--quick", "--data-dir", str(tiny_data_dir), "-q"]
    straight = subprocess.run([sys.executable, "-c", SMALL_REPRODUCE, tests, *args, "--out", str(tmp_path / "a")],
                              cwd=REPO, capture_output=True, text=True)  # fmt: skip
    assert straight.returncode == 0, straight.stderr

    out = tmp_path / "b"
    kill_mid_run(start(SMALL_REPRODUCE, tests, *args, "--out", str(out)), out / "sessions", random.Random(11))
    before = epochs_by_session(out / "sessions")
    assert before
    again = subprocess.run([sys.executable, "-c", SMALL_REPRODUCE, tests, *args, "--out", str(out)],
                           cwd=REPO, capture_output=True, text=True)  # fmt: skip
    assert again.returncode == 0, again.stderr
    check_continued(before, out / "sessions")
    for study in ("lr", "convergence", "architectures", "grads"):
        mine, theirs = (
            load_sweep(out / "sweeps" / f"{study}.json"),
            load_sweep(tmp_path / "a" / "sweeps" / f"{study}.json"),
        )
        assert mine.status == "completed"
        assert [(r.status, r.final_test_acc, r.epochs_done) for r in mine.rows] == [
            (r.status, r.final_test_acc, r.epochs_done) for r in theirs.rows
        ], study
