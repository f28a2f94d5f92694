"""A full disk never ends a run: training goes on, the user is told once, and
everything is saved once space returns.

The sessions folder is a small tmpfs, really filled up, where the test can
mount one (root); elsewhere writes fail with ENOSPC by injection instead.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent / "tui"))

from pilot_helpers import wait_for  # noqa: E402
from sessions_fixture import FixedProbe  # noqa: E402

from fmlab.trainer import atomic  # noqa: E402
from fmlab.trainer.events import EpochMetrics  # noqa: E402
from fmlab.trainer.fields import parse_run_config  # noqa: E402
from fmlab.trainer.sessions import checkpoint_path, list_sessions, load  # noqa: E402
from fmlab.tui.cli import app  # noqa: E402
from fmlab.tui.cli import progress as cli_progress  # noqa: E402


class SmallDisk:
    """A folder on a 2 MiB filesystem that ``fill`` fills up and ``free`` frees."""

    def __init__(self, path: Path, monkeypatch) -> None:
        self.path = path
        self.monkeypatch = monkeypatch
        self.real = _mount_tmpfs(path)
        self.filler = path / "filler"

    def fill(self) -> None:
        if not self.real:
            self.monkeypatch.setattr(atomic, "_write_temp", _no_space)
            return
        with open(self.filler, "ab") as handle:
            chunk = b"\0" * 65536
            try:
                while True:
                    handle.write(chunk)
                    handle.flush()
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
        while True:  # the last, smaller blocks too
            try:
                with open(self.filler, "ab") as handle:
                    handle.write(b"\0" * 512)
            except OSError:
                break

    def free(self) -> None:
        if self.real:
            self.filler.unlink()
        else:
            self.monkeypatch.undo()

    def close(self) -> None:
        if self.real:
            subprocess.run(["umount", "-l", str(self.path)], capture_output=True)


def _mount_tmpfs(path: Path) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(path)], capture_output=True
    )
    return result.returncode == 0


def _no_space(tmp, data) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.fixture
def small_disk(tmp_path, monkeypatch):
    disk = SmallDisk(tmp_path / "small", monkeypatch)
    print("real tmpfs" if disk.real else "ENOSPC injected (no tmpfs here)")
    yield disk
    disk.close()


def fill_and_free_at(monkeypatch, disk: SmallDisk | None, full_from: int, free_from: int | None) -> None:
    """Fill the disk after epoch ``full_from`` of the first run, free it after
    epoch ``free_from``, watching the command's own progress consumer. With no
    disk, every write fails from ``full_from`` on (a disk that stays full,
    whatever the run deletes)."""
    original = cli_progress.ProgressPrinter.__call__

    def watching(self, position, event):
        if isinstance(event, EpochMetrics) and position == 0:
            if event.epoch == full_from and disk is not None:
                disk.fill()
            elif event.epoch == full_from:
                monkeypatch.setattr(atomic, "_write_temp", _no_space)
            elif event.epoch == free_from:
                disk.free()
        original(self, position, event)

    monkeypatch.setattr(cli_progress.ProgressPrinter, "__call__", watching)


def warnings_in(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("Warning:")]


def test_train_goes_on_tells_once_and_saves_when_space_returns(tiny_data_dir, small_disk, monkeypatch):
    fill_and_free_at(monkeypatch, small_disk, full_from=2, free_from=5)
    result = CliRunner().invoke(app, ["train", "--epochs", "8", "--arch", "64", "--data-dir", str(tiny_data_dir),
                                      "--sessions-dir", str(small_disk.path), "-q"])  # fmt: skip
    assert result.exit_code == 0, result.output
    [warning] = warnings_in(result.stderr)
    assert "No space left on device" in warning and "training goes on" in warning
    [path] = small_disk.path.glob("*.json")
    record = load(path)
    assert record.status == "completed" and [e.epoch for e in record.epochs] == list(range(1, 9))
    assert not checkpoint_path(path).exists()  # a finished run keeps no checkpoint


def test_train_says_what_was_not_saved_when_space_never_returns(tiny_data_dir, sessions_dir, monkeypatch):
    fill_and_free_at(monkeypatch, None, full_from=2, free_from=None)
    result = CliRunner().invoke(app, ["train", "--epochs", "4", "--arch", "64", "--data-dir", str(tiny_data_dir),
                                      "--sessions-dir", str(sessions_dir)])  # fmt: skip
    assert result.exit_code == 1
    assert result.stdout.startswith("completed: final test accuracy")  # the results are still shown
    assert "session NOT saved" in result.stderr and len(warnings_in(result.stderr)) == 1
    [path] = sessions_dir.glob("*.json")
    assert [e.epoch for e in load(path).epochs] == [1, 2]  # what was saved before the disk filled


def test_a_sweep_goes_on_tells_once_and_saves_every_run(tiny_data_dir, small_disk, monkeypatch):
    fill_and_free_at(monkeypatch, small_disk, full_from=2, free_from=5)
    result = CliRunner().invoke(app, ["sweep", "--lr", "0.1,0.05,0.02", "--arch", "64", "--epochs", "8",
                                      "--data-dir", str(tiny_data_dir), "--sessions-dir", str(small_disk.path),
                                      "-q", "--format", "csv"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert len(warnings_in(result.stderr)) == 1  # three runs and the sweep record met one full disk
    good, bad = list_sessions(small_disk.path)
    assert bad == [] and len(good) == 3
    assert all(s.status == "completed" and s.epochs_done == 8 for s in good)


def test_a_sweep_that_could_not_save_exits_1(tiny_data_dir, sessions_dir, monkeypatch):
    fill_and_free_at(monkeypatch, None, full_from=1, free_from=None)
    result = CliRunner().invoke(app, ["sweep", "--lr", "0.1,0.05", "--arch", "64", "--epochs", "3",
                                      "--data-dir", str(tiny_data_dir), "--sessions-dir", str(sessions_dir),
                                      "-q"])  # fmt: skip
    assert result.exit_code == 1
    assert "Error: not saved: cannot save" in result.stderr


async def test_the_app_goes_on_tells_once_and_saves(tiny_data_dir, small_disk):
    from fmlab.trainer.events import RunFinished
    from fmlab.tui.app import make_app
    from fmlab.tui.messages import SaveFailed, TrainingEvent

    messages = []

    def epoch_of(message) -> int | None:
        if isinstance(message, TrainingEvent) and isinstance(message.event, EpochMetrics):
            return message.event.epoch
        return None

    def hook(message) -> None:
        messages.append(message)
        if epoch_of(message) == 2:
            small_disk.fill()
        elif epoch_of(message) == 8 and small_disk.filler.exists():
            small_disk.free()

    app_ = make_app(small_disk.path, tiny_data_dir, probe=FixedProbe())
    config = parse_run_config(epochs=14, arch="64", device="cpu")
    async with app_.run_test(size=(100, 30), message_hook=hook) as pilot:
        app_.start_training(config)

        def ended() -> bool:
            return any(isinstance(m, TrainingEvent) and isinstance(m.event, RunFinished) for m in messages)

        await wait_for(pilot, ended, timeout=120)
        await wait_for(pilot, lambda: not app_.live_view.busy)
    assert len([m for m in messages if isinstance(m, SaveFailed)]) == 1
    [path] = small_disk.path.glob("*.json")
    record = load(path)
    assert record.status == "completed" and len(record.epochs) == 14
