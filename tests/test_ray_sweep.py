"""Sweeps on a real Ray (``--ray``): a Ray sweep writes the sessions a local
one does, metric by metric; a node lost mid-sweep costs at most an epoch and
leaves every session whole; a cancel stops every run, resumably; the
commands and their one-line errors."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from collections import defaultdict
from contextlib import suppress
from dataclasses import replace
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'fmlab[ray]')")

from typer.testing import CliRunner  # noqa: E402

from fmlab.trainer.cluster import connected, interruptible_workers  # noqa: E402
from fmlab.trainer.events import EpochMetrics, RunStarted  # noqa: E402
from fmlab.trainer.fields import parse_run_config  # noqa: E402
from fmlab.trainer.jobs import Job, JobService  # noqa: E402
from fmlab.trainer.remote import RayStacks, cpus_per_task  # noqa: E402
from fmlab.trainer.sessions import checkpoint_path, load  # noqa: E402
from fmlab.trainer.studies.sweep import Sweep, load_sweep  # noqa: E402
from fmlab.tui.cli import app  # noqa: E402

runner = CliRunner()


@pytest.fixture(scope="module")
def cluster():
    """Ray on this machine for the module, shut down at its end: a head of 2
    CPUs (the driver's node, as a plain ``--ray`` starts), to which a test
    may add a node."""
    from ray.cluster_utils import Cluster

    with interruptible_workers():
        cluster = Cluster(initialize_head=True,
                          head_node_args={"num_cpus": 2, "num_gpus": 0, "resources": {"head": 1},
                                          "include_dashboard": False})  # fmt: skip
    try:
        with connected(cluster.address):
            yield cluster
    finally:
        cluster.shutdown()


def grid(epochs: int, archs=("16", "8"), lrs=(0.5, 0.1, 0.01), batch_size=64):
    """One stack per arch, one member per lr."""
    return [parse_run_config(arch=a, lr=lr, epochs=epochs, batch_size=batch_size, device="cpu")
            for a in archs for lr in lrs]  # fmt: skip


# Stacks that train for a second or two (50-75 ms an epoch on a 2-core machine), so that a
# node lost or a cancel sent after the first epoch finds them training.
SLOW = {"archs": ("256,256", "256,128"), "lrs": (0.1, 0.01), "batch_size": 8}


def train(configs, sessions, datasets, stacks=None, on_event=None, warnings=None):
    """Train ``configs`` through a JobService; their sessions, as saved."""
    service = JobService(
        sessions, datasets, stacks=stacks, on_warning=None if warnings is None else warnings.append
    )
    for position, event in service.run([Job(c) for c in configs]):
        if on_event:
            on_event(position, event)
    return [load(service.session_path(p)) for p in range(len(configs))]


def untimed(record):
    """A session's numbers: everything but times, ids, dates and the process."""
    epochs = [replace(e, seconds=0.0, samples_per_s=0.0) for e in record.epochs]
    return (record.config, record.status, replace(record.results, seconds=0.0), epochs,
            record.steps.events(), record.environment["device"], record.model)  # fmt: skip


def lose(cluster, node) -> None:
    """``node`` lost at once, as in a crash: its workers freeze (one that outlived
    its raylet would still finish its task and report), then the node goes."""
    workers = workers_of(node)
    for pid in workers:
        os.kill(pid, signal.SIGSTOP)
    cluster.remove_node(node)
    for pid in workers:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def workers_of(node) -> list[int]:
    """The processes ``node``'s raylet started (Linux)."""
    raylet = str(node.all_processes["raylet"][0].process.pid)
    return [int(stat.parent.name) for stat in Path("/proc").glob("[0-9]*/stat") if _parent(stat) == raylet]


def _parent(stat: Path) -> str | None:
    try:
        return stat.read_text().rsplit(")", 1)[1].split()[1]
    except (OSError, IndexError):
        return None


def assert_whole(record, epochs: int):
    assert record.status == "completed"
    assert [e.epoch for e in record.epochs] == list(range(1, epochs + 1))
    steps = record.steps.step
    assert steps == sorted(set(steps)), "a step recorded twice or out of order"


def test_a_ray_sweep_writes_the_sessions_a_local_one_does(cluster, tiny_datasets, tmp_path):
    configs = grid(epochs=3)
    here = train(configs, tmp_path / "here", tiny_datasets)
    on_ray = train(configs, tmp_path / "ray", tiny_datasets, RayStacks(cpus_per_task=1))
    for local, remote in zip(here, on_ray):
        assert untimed(remote) == untimed(local)  # every step and epoch, to the last bit
        assert remote.path.parent == tmp_path / "ray"
    assert sorted(p.suffix for p in (tmp_path / "ray").iterdir()) == [".json"] * len(configs)


def test_a_node_lost_mid_sweep_costs_at_most_an_epoch(cluster, tiny_datasets, tmp_path):
    from ray.util.placement_group import placement_group, remove_placement_group

    # long enough that the node dies mid-run (the driver hears of an epoch a moment after it ends)
    configs = grid(epochs=20, **SLOW)
    head_busy = placement_group([{"CPU": 2, "head": 1}])  # so that every stack starts on the doomed node
    ray.get(head_busy.ready())
    with interruptible_workers():
        doomed = cluster.add_node(num_cpus=2)
    seen: dict[int, list[int]] = defaultdict(list)  # epochs per run, in the order they came
    starts: dict[int, int] = defaultdict(int)

    def kill_after_the_first_epoch(position, event):
        nonlocal doomed
        if isinstance(event, RunStarted):
            starts[position] += 1
        if isinstance(event, EpochMetrics):
            seen[position].append(event.epoch)
            if doomed is not None:
                lose(cluster, doomed)
                doomed = None
                remove_placement_group(head_busy)  # the head takes the stacks that were lost

    warnings: list[str] = []
    try:
        sessions = train(configs, tmp_path / "ray", tiny_datasets, RayStacks(cpus_per_task=1),
                         kill_after_the_first_epoch, warnings)  # fmt: skip
    finally:
        if doomed is not None:
            cluster.remove_node(doomed)
            remove_placement_group(head_busy)
    assert max(starts.values()) >= 2 and warnings, "no stack was trained again"
    # the runs trained again went on from the last epoch the driver had: none came twice or went missing
    assert all(epochs == list(range(1, 21)) for epochs in seen.values()), dict(seen)
    for record in sessions:
        assert_whole(record, 20)
    # runs that continued from a checkpoint end with the numbers of runs never interrupted
    continued = {w.split(":", 1)[0] for w in warnings if int(w.rsplit(" ", 1)[1]) > 1}
    resumed = [record for record in sessions if record.id in continued]
    assert resumed, warnings
    here = train([record.config for record in resumed], tmp_path / "here", tiny_datasets)
    for local, remote in zip(here, resumed):
        assert untimed(remote) == untimed(local)


def test_a_cancel_stops_every_run_and_resume_completes_them(cluster, tiny_datasets, tmp_path):
    configs = grid(epochs=20, **SLOW)
    sweep = Sweep.new(configs, tmp_path)
    cancel = threading.Event()
    # two CPUs a stack: the second waits for the first, and the cancel finds it not begun
    for _, event in sweep.run(tiny_datasets, cancel, stacks=RayStacks(cpus_per_task=2)):
        if isinstance(event, EpochMetrics):
            cancel.set()
    assert sweep.record.status == "stopped"
    assert [row.status if row else None for row in sweep.rows] == ["stopped", "stopped", None, None]
    for index in (0, 1):
        record = load(sweep.session_path(index))
        assert record.status == "stopped" and 1 <= len(record.epochs) < 20
        assert checkpoint_path(record.path).exists()
    assert sweep.session_path(2) is None and sweep.session_path(3) is None  # never started

    resumed = Sweep.resume(sweep.record.path, tmp_path)
    list(resumed.run(tiny_datasets, stacks=RayStacks(cpus_per_task=1)))
    assert load_sweep(sweep.record.path).status == "completed"
    for index in range(len(configs)):
        assert_whole(load(resumed.session_path(index)), 20)


def test_a_stack_lost_for_good_ends_its_runs_failed_and_resumable(cluster, tiny_datasets, tmp_path):
    configs = grid(epochs=20, **{**SLOW, "archs": ("256,256",)})
    sweep = Sweep.new(configs, tmp_path)
    killed = []
    for _, event in sweep.run(tiny_datasets, stacks=RayStacks(cpus_per_task=1, max_retries=0)):
        if isinstance(event, EpochMetrics) and not killed:
            killed = [int(p.parent.name) for p in Path("/proc").glob("[0-9]*/cmdline")
                      if _read(p).startswith(b"ray::_train_stack")]  # fmt: skip
            for pid in killed:
                os.kill(pid, signal.SIGKILL)
    assert killed
    assert [row.status for row in sweep.rows] == ["failed", "failed"] and sweep.record.status == "stopped"
    for index in range(len(configs)):
        record = load(sweep.session_path(index))
        assert record.status == "failed" and record.results.message.startswith("its Ray task failed: ")
        assert [e.epoch for e in record.epochs] == list(range(1, len(record.epochs) + 1))
        assert record.results.epochs_done == len(record.epochs) >= 1
        assert checkpoint_path(record.path).exists()
    resumed = Sweep.resume(sweep.record.path, tmp_path)
    list(resumed.run(tiny_datasets, stacks=RayStacks(cpus_per_task=1)))
    for index in range(len(configs)):
        assert_whole(load(resumed.session_path(index)), 20)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""


def test_the_sweep_command_on_ray(cluster, tiny_data_dir, tmp_path):
    args = ["sweep", "--lr", "0.1,0.01", "--arch", "16/8", "--epochs", "2", "--json", "--quiet",
            "--data-dir", str(tiny_data_dir)]  # fmt: skip
    here = runner.invoke(app, [*args, "--sessions-dir", str(tmp_path / "here")])
    on_ray = runner.invoke(app, [*args, "--ray", "--sessions-dir", str(tmp_path / "ray")])
    assert on_ray.exit_code == 0, on_ray.output
    rows = json.loads(on_ray.stdout)  # nothing but the table on stdout
    assert [row["status"] for row in rows] == ["completed"] * 4
    assert rows == [{**row, "session": r["session"]} for row, r in zip(json.loads(here.stdout), rows)]


def test_reproduce_passes_ray_on(cluster, monkeypatch, tiny_data_dir, tmp_path):
    from fmlab.trainer.studies import reproduce
    from fmlab.trainer.studies.reproduce import Reproduction, Study

    study = Study("lr", "learning rates", "lr", tuple(grid(epochs=2, archs=("16",), lrs=(0.1, 0.01))), "note")
    monkeypatch.setattr(reproduce, "plan_studies", lambda quick=False, threshold=0.1: [study])
    monkeypatch.setattr(Reproduction, "_figures", lambda self, study: None)
    used = []
    real_run = RayStacks.run
    monkeypatch.setattr(RayStacks, "run", lambda self, *a: used.append(1) or real_run(self, *a))
    result = runner.invoke(app, ["reproduce", "--out", str(tmp_path), "--data-dir", str(tiny_data_dir),
                                 "-q", "--ray"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert used and (tmp_path / "REPORT.md").exists()
    assert [row.status for row in load_sweep(tmp_path / "sweeps" / "lr.json").rows] == ["completed"] * 2


@pytest.mark.parametrize(
    "args, status, message",
    [
        (["--ray-address", "127.0.0.1:1"], 1, "Error: cannot reach a Ray cluster at 127.0.0.1:1 ("),
        (["--ray-address", "somewhere"], 1, "Error: Ray address 'somewhere' is not auto or HOST:PORT"),
        (
            ["--ray", "--model", "net.py:build"],
            2,
            "Error: --model: a module of your own trains without --ray",
        ),
    ],
)
def test_what_cannot_train_on_ray_is_one_line(tiny_data_dir, tmp_path, args, status, message):
    result = runner.invoke(app, ["sweep", "--lr", "0.1", "--epochs", "1", "--data-dir", str(tiny_data_dir),
                                 "--sessions-dir", str(tmp_path), *args])  # fmt: skip
    assert result.exit_code == status, result.output
    assert result.output.startswith(message) and result.output.count("\n") == 1, result.output


def test_runs_on_cuda_need_a_gpu_in_the_cluster(cluster, tiny_data_dir, tmp_path):
    result = runner.invoke(app, ["sweep", "--lr", "0.1", "--epochs", "1", "--device", "cuda", "--ray", "-q",
                                 "--data-dir", str(tiny_data_dir), "--sessions-dir", str(tmp_path)])  # fmt: skip
    assert result.exit_code == 1
    assert result.stderr == "Error: runs on cuda need a GPU, and the Ray cluster has none\n"
    assert result.stdout == ""  # no empty table before the error: nothing trained


def test_without_ray_installed_is_one_line(monkeypatch, tiny_data_dir, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails as it does where it is not installed
    result = runner.invoke(app, ["sweep", "--lr", "0.1", "--epochs", "1", "--ray", "--data-dir",
                                 str(tiny_data_dir), "--sessions-dir", str(tmp_path)])  # fmt: skip
    assert result.exit_code == 1
    assert result.output == "Error: Ray is not installed: pip install 'fmlab[ray]'\n"


def test_each_stack_gets_the_most_cpus_that_let_all_run_at_once():
    assert cpus_per_task([8, 8], 1) == 8
    assert cpus_per_task([8, 8], 3) == 4  # 5 each would leave the third waiting
    assert cpus_per_task([8, 8], 16) == 1
    assert cpus_per_task([2], 5) == 1  # more stacks than CPUs: they take turns
    assert cpus_per_task([0, 4], 2) == 2  # a head without CPUs trains nothing
    assert cpus_per_task([], 2) == 1


def test_a_cancel_before_the_sweep_starts_trains_nothing(tiny_datasets, tmp_path):
    cancel = threading.Event()
    cancel.set()
    service = JobService(tmp_path, tiny_datasets, stacks=RayStacks(cpus_per_task=1))
    assert list(service.run([Job(c) for c in grid(epochs=2)], cancel)) == []
    assert list(tmp_path.iterdir()) == []


def test_ray_processes_hear_ctrl_c_when_fmlab_was_started_ignoring_it():
    # Ray cancels a running task by interrupting it as Ctrl-C would; a job started with
    # "&" from a script ignores Ctrl-C, and every process it starts used to inherit that
    import subprocess

    handler = [
        sys.executable,
        "-c",
        "import signal; print(signal.getsignal(signal.SIGINT) == signal.SIG_IGN)",
    ]
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        outside = subprocess.run(handler, capture_output=True, text=True, check=True).stdout.strip()
        with interruptible_workers():
            inside = subprocess.run(handler, capture_output=True, text=True, check=True).stdout.strip()
        after = signal.getsignal(signal.SIGINT)
    finally:
        signal.signal(signal.SIGINT, before)
    assert (outside, inside, after) == ("True", "False", signal.SIG_IGN)
