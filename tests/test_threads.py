"""The thread governor: torch's thread count follows the cores other programs
leave free, pinned counts stay, and the policy is written into the session."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import torch
from typer.testing import CliRunner

from fmlab.trainer.events import RunStarted
from fmlab.trainer.fields import parse_run_config
from fmlab.trainer.sessions.decode import load
from fmlab.trainer.training import threads
from fmlab.trainer.training.loop import Member, train
from fmlab.trainer.training.threads import Sample, ThreadGovernor, competing_cores, threads_for
from fmlab.tui.cli import app

SPIN = "while True: pass"
TWO_CORES = pytest.mark.skipif(
    len(os.sched_getaffinity(0)) < 2 or not os.path.exists("/proc/stat"), reason="needs Linux and 2 cores"
)


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def spinner(request):
    """A process keeping one core busy, at the niceness the test names."""
    process = subprocess.Popen(["nice", "-n", str(request.param), sys.executable, "-c", SPIN])
    yield process
    process.kill()
    process.wait()


def test_competing_cores_are_the_others_busy_time_over_the_wall_time():
    before, after = Sample(busy=10.0, own=4.0, at=100.0), Sample(busy=12.0, own=5.5, at=101.0)
    assert competing_cores(before, after) == pytest.approx(0.5)
    assert competing_cores(after, after) == 0.0
    # own time read a little after the machine's: never below zero
    assert competing_cores(before, Sample(busy=10.5, own=5.0, at=101.0)) == 0.0


@pytest.mark.parametrize(
    "cores, competing, most, expected",
    [
        (2, 0.0, 2, 2),
        (2, 0.1, 2, 2),
        (2, 0.7, 2, 1),
        (2, 1.0, 2, 1),
        (2, 3.0, 2, 1),
        (8, 2.0, 8, 6),
        (8, 0.0, 4, 4),
    ],
)
def test_threads_fit_the_free_cores(cores, competing, most, expected):
    assert threads_for(cores, competing, most) == expected


def until(condition, governor: ThreadGovernor, seconds: float = 15.0) -> bool:
    """Tick the governor while this thread works, until ``condition`` holds."""
    a, b = torch.randn(256, 256), torch.randn(256, 256)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        a @ b
        governor.tick()
        if condition():
            return True
    return False


def quiet_machine(seconds: float = 20.0) -> bool:
    """Wait for other programs to leave both cores free (processes of an earlier test)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        before = Sample(threads._busy_seconds(False), threads._own_seconds(), time.monotonic())
        time.sleep(0.5)
        after = Sample(threads._busy_seconds(False), threads._own_seconds(), time.monotonic())
        if competing_cores(before, after) < 0.3:
            return True
    return False


@TWO_CORES
def test_a_busy_neighbour_takes_a_thread_and_gives_it_back(two_threads):
    if not quiet_machine():
        pytest.skip("other programs kept a core busy for 20 s: no idle state to return to")
    spinner = subprocess.Popen([sys.executable, "-c", SPIN])
    try:
        governor_follows_the_spinner(spinner)
    finally:
        spinner.kill()
        spinner.wait()


def governor_follows_the_spinner(spinner: subprocess.Popen) -> None:
    governor = ThreadGovernor(None, adaptive=True)
    assert governor.adaptive and governor.current == 2
    assert until(lambda: governor.current == 1, governor)
    assert torch.get_num_threads() == 1
    spinner.kill()
    spinner.wait()
    assert until(lambda: governor.current == 2, governor)
    assert torch.get_num_threads() == 2 and governor.lowest == 1
    governor.close()


@TWO_CORES
@pytest.mark.parametrize("spinner", [19], indirect=True)
def test_a_niced_neighbour_is_not_counted(spinner):
    if not quiet_machine():
        pytest.skip("other programs kept a core busy for 20 s")
    time.sleep(0.2)
    start = threads._busy_seconds(niced=False), threads._busy_seconds(niced=True), time.monotonic()
    time.sleep(1.0)
    wall = time.monotonic() - start[2]
    normal = (threads._busy_seconds(niced=False) - start[0]) / wall
    everything = (threads._busy_seconds(niced=True) - start[1]) / wall
    assert everything > 0.8  # the spinner's core, seen by a niced governor
    assert normal < 0.5  # and not by one at normal priority


def test_pinned_and_thread_dependent_counts_stay(two_threads):
    pinned = ThreadGovernor(1, adaptive=True)
    assert not pinned.adaptive and torch.get_num_threads() == 1
    assert pinned.describe() == "1 thread"
    pinned.close()
    assert torch.get_num_threads() == 2
    autograd = ThreadGovernor(None, adaptive=False)
    assert not autograd.adaptive and autograd.describe() == "2 threads"
    autograd.close()


def started(config, dataset, threads=None) -> RunStarted:
    return next(e for _, e in train([Member(config)], dataset, threads=threads) if isinstance(e, RunStarted))


def test_the_policy_is_in_the_device_name(tiny_dataset, two_threads):
    mlp = parse_run_config(epochs=1, device="cpu")
    assert started(mlp, tiny_dataset).device_name.endswith(
        ", 2 threads, fewer while other programs keep cores busy"
    )
    assert started(mlp, tiny_dataset, threads=1).device_name.endswith(", 1 thread")
    cnn = parse_run_config(arch="conv(4,3) relu flatten fc(10)", epochs=1, device="cpu")
    assert started(cnn, tiny_dataset).device_name.endswith(", 2 threads")
    assert torch.get_num_threads() == 2  # training gave the count back


def test_the_cli_pins_threads_and_the_session_says_so(tiny_data_dir, tmp_path, two_threads):
    result = CliRunner().invoke(
        app,
        [
            "train",
            "--epochs",
            "1",
            "--threads",
            "1",
            "--data-dir",
            str(tiny_data_dir),
            "--sessions-dir",
            str(tmp_path),
            "--json",
        ],  # fmt: skip
    )
    assert result.exit_code == 0, result.output
    (path,) = tmp_path.glob("*.json")
    assert load(path).environment["device_name"].endswith(", 1 thread")


@pytest.mark.parametrize("value", ["0", "-1", "two", "1025", ""])
def test_bad_thread_counts_are_one_line(value, tiny_data_dir, tmp_path):
    result = CliRunner().invoke(app, ["train", "--threads", value, "--sessions-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        f"Error: --threads: a whole number from 1 to 1024, not {value!r}"
    ]
    assert not list(tmp_path.iterdir())
