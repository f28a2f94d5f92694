"""Stacks: a member gives the same numbers alone and in a stack, drops out
alone when it diverges, and ends at its own epoch."""

from __future__ import annotations

import threading
from dataclasses import replace

import pytest
import torch

from fmlab.trainer.events import EpochMetrics, RunFinished, RunStarted, StepMetrics
from fmlab.trainer.fields import parse_run_config
from fmlab.trainer.training.loop import Member, can_stack, train
from fmlab.trainer.training.plan import MAX_STACK, plan_stacks, stack_key

SMALL = "48,32"  # a small net keeps these tests fast; the math is the same


def untimed(event):
    """The event without the times it took, which no two runs share."""
    if isinstance(event, EpochMetrics):
        return replace(event, seconds=0.0, samples_per_s=0.0)
    if isinstance(event, RunFinished):
        return RunFinished(replace(event.results, seconds=0.0))
    return event


def streams(configs, dataset, cancel=None):
    out = [[] for _ in configs]
    for position, event in train([Member(c) for c in configs], dataset, cancel):
        out[position].append(untimed(event))
    return out


def of(kind, events):
    return [e for e in events if isinstance(e, kind)]


@pytest.fixture
def two_threads():
    """The numbers must hold at the thread count people train with, where the
    math library splits work between threads."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


CASES = {
    "base": dict(arch="base"),
    "small layers": dict(arch=SMALL),
    "adam": dict(arch="base", optimizer="adam"),
    "momentum": dict(arch="base", momentum=0.9),
    "small batches": dict(arch="base", batch_size=10),
    "shuffled, deeper": dict(arch="deeper", shuffle=True, epochs=1),
    "bf16": dict(arch="base", precision="bf16"),
    "bf16, adam, small batches": dict(arch="base", precision="bf16", optimizer="adam", batch_size=10),
}


@pytest.mark.parametrize("case", CASES)
def test_a_member_gives_the_same_numbers_alone_and_stacked(tiny_dataset, two_threads, case):
    kw = {"epochs": 2, **CASES[case]}
    lrs = (0.001, 0.01, 0.0003) if kw.get("optimizer") == "adam" else (0.1, 0.01, 0.5)
    seeds = (0, 0, 0) if kw.get("shuffle") else (0, 7, 3)
    configs = [parse_run_config(lr=lr, seed=seed, device="cpu", **kw) for lr, seed in zip(lrs, seeds)]
    stacked = streams(configs, tiny_dataset)
    for config, stream in zip(configs, stacked):
        alone = streams([config], tiny_dataset)[0]
        assert isinstance(stream[0], RunStarted) and isinstance(stream[-1], RunFinished)
        assert len(of(StepMetrics, stream)) >= 8 * kw["epochs"]  # every step of the tiny set
        assert stream == alone  # every step and epoch metric, to the last bit


def test_a_diverging_member_drops_out_and_the_others_go_on(tiny_dataset):
    configs = [parse_run_config(arch=SMALL, lr=lr, seed=s, epochs=3, device="cpu")
               for lr, s in ((0.1, 0), (1e6, 1), (0.02, 2))]  # fmt: skip
    stacked = streams(configs, tiny_dataset)
    assert [s[-1].results.status for s in stacked] == ["completed", "diverged", "completed"]
    assert "non-finite" in stacked[1][-1].results.message
    assert len(of(EpochMetrics, stacked[1])) < 3
    for position in (0, 2):  # the survivors are unchanged by the loss of the middle member
        assert stacked[position] == streams([configs[position]], tiny_dataset)[0]


def test_members_end_at_their_own_epoch_or_convergence(tiny_dataset):
    short = parse_run_config(arch=SMALL, lr=0.1, epochs=1, device="cpu")
    converging = parse_run_config(arch=SMALL, lr=0.1, epochs=4, threshold=100, patience=1,
                                  stop_on_converge=True, seed=1, device="cpu")  # fmt: skip
    full = parse_run_config(arch=SMALL, lr=0.05, epochs=4, seed=2, device="cpu")
    stacked = streams([short, converging, full], tiny_dataset)
    results = [s[-1].results for s in stacked]
    assert [r.status for r in results] == ["completed", "converged", "completed"]
    assert [r.epochs_done for r in results] == [1, 2, 4]
    assert results[1].converged_epoch == 1
    assert stacked[2] == streams([full], tiny_dataset)[0]


def test_cancel_stops_every_member(tiny_dataset):
    cancel = threading.Event()
    configs = [parse_run_config(arch=SMALL, lr=lr, epochs=5, device="cpu") for lr in (0.1, 0.01)]
    ends = {}
    for position, event in train([Member(c) for c in configs], tiny_dataset, cancel):
        if isinstance(event, StepMetrics) and event.step >= 3:
            cancel.set()
        if isinstance(event, RunFinished):
            ends[position] = event.status
    assert ends == {0: "stopped", 1: "stopped"}


def test_what_may_share_a_stack():
    base = parse_run_config(arch=SMALL, lr=0.1, device="cpu")
    assert stack_key(base) == stack_key(parse_run_config(arch=SMALL, lr=0.5, seed=4, epochs=3, device="cpu"))
    assert stack_key(base) != stack_key(parse_run_config(arch="base", lr=0.1, device="cpu"))
    assert stack_key(base) != stack_key(parse_run_config(arch=SMALL, batch_size=32, device="cpu"))
    assert stack_key(base) != stack_key(parse_run_config(arch=SMALL, optimizer="adam", device="cpu"))
    assert stack_key(base) != stack_key(parse_run_config(arch=SMALL, momentum=0.9, device="cpu"))
    shuffled = [parse_run_config(arch=SMALL, shuffle=True, seed=s, device="cpu") for s in (0, 1)]
    assert stack_key(shuffled[0]) != stack_key(shuffled[1])  # different data order
    assert not can_stack([Member(base), Member(parse_run_config(arch="base", device="cpu"))])
    with pytest.raises(ValueError):
        list(train([Member(base), Member(parse_run_config(arch="base", device="cpu"))], None))


def test_plans_group_equal_keys_in_order():
    keys = ["a", "a", "b", "a", "c"]
    assert plan_stacks(keys) == [[0, 1, 3], [2], [4]]
    assert plan_stacks(keys, stacked=False) == [[0], [1], [2], [3], [4]]
    assert [len(s) for s in plan_stacks(["k"] * (MAX_STACK + 2))] == [MAX_STACK, 2]


@pytest.mark.parametrize("case", CASES)
def test_the_thread_count_changes_no_number(tiny_dataset, case):
    """The thread count follows the machine's load (training.threads), so it
    must not change a bit: stacked members at 1, 2 and 3 threads."""
    kw = {"epochs": 2, **CASES[case]}
    lrs = (0.001, 0.01) if kw.get("optimizer") == "adam" else (0.1, 0.5)
    configs = [parse_run_config(lr=lr, seed=seed, device="cpu", full_steps=10**6, **kw)
               for lr, seed in zip(lrs, (0, 0) if kw.get("shuffle") else (0, 7))]  # fmt: skip
    before = torch.get_num_threads()
    try:
        runs = {}
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            # device_name says how many threads ran; nothing else may
            runs[threads] = [[replace(e, device_name="") if isinstance(e, RunStarted) else e for e in stream]
                             for stream in streams(configs, tiny_dataset)]  # fmt: skip
    finally:
        torch.set_num_threads(before)
    assert len(of(StepMetrics, runs[1][0])) >= 8 * kw["epochs"]  # statistics at every step
    assert runs[1] == runs[2] == runs[3]
