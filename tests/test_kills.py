"""Killing training processes at random moments never leaves a bad file."""

import multiprocessing
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from one_run import train_one

from fmlab.trainer import data
from fmlab.trainer.fields import parse_run_config
from fmlab.trainer.sessions import SessionError, SessionRecorder, list_sessions, load

REPO = Path(__file__).resolve().parents[1]
KILLS = 40


def train_until_killed(data_dir: str, sessions_dir: str, seed: int) -> None:
    torch.set_num_threads(1)
    dataset = data.load(data.locate(data_dir))
    recorder = SessionRecorder(Path(sessions_dir))
    config = parse_run_config(epochs=10_000, arch="32", seed=seed, step_every=1)
    for event in train_one(config, dataset, on_checkpoint=recorder.save_checkpoint):
        recorder(event)


def test_random_sigkills_leave_only_loadable_sessions(tiny_data_dir, tmp_path):
    # fork: the child starts training at once, so kills land in every phase
    # (start-up, steps, evaluation, checkpoint and session saves)
    context = multiprocessing.get_context("fork")
    # children inherit a warmed-up torch, so they reach training in milliseconds
    list(train_one(parse_run_config(epochs=1, arch="8"), data.load(data.locate(tiny_data_dir))))
    rng = random.Random(1234)
    for index in range(KILLS):
        child = context.Process(target=train_until_killed, args=(str(tiny_data_dir), str(tmp_path), index))
        child.start()
        time.sleep(rng.uniform(0.0, 0.4))
        os.kill(child.pid, signal.SIGKILL)
        child.join()
    files = sorted(tmp_path.glob("*.json"))
    failures = []
    for path in files:
        try:
            record = load(path)
        except SessionError as exc:
            failures.append(str(exc))
            continue
        assert record.status == "interrupted"
        assert [e.epoch for e in record.epochs] == list(range(1, len(record.epochs) + 1))
    print(f"{KILLS} kills, {len(files)} session files, {len(failures)} failed to load")
    assert failures == []
    assert len(files) >= KILLS // 2  # most children got far enough to create their file
    good, bad = list_sessions(tmp_path)
    assert bad == [] and len(good) == len(files)


def test_sigterm_saves_the_run_as_stopped_and_exits_143(tiny_data_dir, tmp_path):
    code = "import torch; torch.set_num_threads(1); from fmlab.tui.cli import main; main()"
    process = subprocess.Popen(
        [sys.executable, "-c", code, "train", "--epochs", "10000", "--arch", "32",
         "--data-dir", str(tiny_data_dir), "--sessions-dir", str(tmp_path)],
        cwd=REPO, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    for line in process.stderr:
        if line.startswith("epoch   2"):
            break
    process.send_signal(signal.SIGTERM)
    out, _ = process.communicate(timeout=60)
    assert process.returncode == 143  # 128 + SIGTERM, as an interrupted program exits
    assert out.startswith("stopped: final test accuracy")
    [path] = tmp_path.glob("*.json")
    record = load(path)
    assert record.status == "stopped" and len(record.epochs) >= 2
