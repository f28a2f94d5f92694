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
from fmlab.trainer.training.threads import (
    Load,
    Sample,
    ThreadGovernor,
    load_between,
    niced_compete,
    threads_for,
)
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


def test_the_load_is_each_counter_over_the_wall_time():
    before = Sample(busy=10.0, niced=3.0, own=4.0, waited=1.0, at=100.0)
    after = Sample(busy=12.0, niced=3.5, own=5.5, waited=1.25, at=102.0)
    assert load_between(before, after) == Load(competing=0.25, niced=0.25, waited=0.125)
    assert load_between(after, after) == Load(0.0, 0.0, 0.0)
    # own time read a little after the machine's, a waiting thread that ended: never below zero
    later = Sample(busy=10.5, niced=3.0, own=5.0, waited=0.5, at=101.0)
    assert load_between(before, later) == Load(0.0, 0.0, 0.0)


@pytest.mark.parametrize(
    "niced, waited, before, fits, expected",
    [
        (1.0, 0.0, False, True, False),  # niced programs busy, training threads not kept waiting
        (1.0, 0.3, False, True, False),  # a little waiting: a niced program's rare turn
        (1.0, 0.9, False, True, True),  # kept waiting: they compete (another terminal's autogroup)
        (1.0, 0.9, False, False, False),  # too many threads for the normal programs: they explain it
        (1.0, 0.0, True, True, True),  # still there, no longer waited for once counted: still counted
        (0.2, 0.9, True, True, False),  # gone from the cores
    ],
)
def test_niced_programs_count_once_they_keep_training_waiting(niced, waited, before, fits, expected):
    assert niced_compete(Load(competing=0.0, niced=niced, waited=waited), before, fits) is expected


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


def quiet_machine(seconds: float = 20.0, niced_too: bool = True) -> bool:
    """Wait for other programs (niced ones too, unless not asked) to leave both
    cores free: processes of an earlier test."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        before = threads.sample(niced=niced_too)
        time.sleep(0.5)
        if load_between(before, threads.sample(niced=niced_too)).competing < 0.3:
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


def autogroups() -> bool:
    try:
        with open("/proc/sys/kernel/sched_autogroup_enabled", encoding="ascii") as handle:
            return handle.read().strip() == "1"
    except OSError:
        return False


@TWO_CORES
@pytest.mark.skipif(not autogroups(), reason="the kernel's autogroups are off: nice works across sessions")
def test_a_niced_neighbour_from_another_terminal_takes_a_thread_and_gives_it_back(two_threads):
    # a session of its own: the kernel weighs its autogroup as an equal of this one,
    # whatever its niceness, so it does take a core
    if not quiet_machine():
        pytest.skip("other programs kept a core busy for 20 s: no idle state to return to")
    spinner = subprocess.Popen(["nice", "-n", "19", sys.executable, "-c", SPIN], start_new_session=True)
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
    assert torch.get_num_threads() == 2
    governor.close()


@TWO_CORES
@pytest.mark.parametrize("spinner", [19], indirect=True)
def test_a_niced_neighbour_is_not_counted(spinner):
    if not quiet_machine(niced_too=False):
        pytest.skip("other programs kept a core busy for 20 s")
    time.sleep(0.2)
    start = threads.sample(niced=False), threads.sample(niced=True)
    time.sleep(1.0)
    normal = load_between(start[0], threads.sample(niced=False))
    everything = load_between(start[1], threads.sample(niced=True))
    assert everything.competing > 0.8 and everything.niced == 0  # seen by a niced governor
    assert normal.competing < 0.5 and normal.niced > 0.8  # and apart by one at normal priority


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
