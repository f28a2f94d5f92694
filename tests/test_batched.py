"""Stacked training: every member matches its own sequential engine run."""

from __future__ import annotations

import threading

import pytest
import torch
from fmlab.trainer.config import parse_run_config
from fmlab.trainer.events import EpochMetrics, RunFinished, RunStarted, StepMetrics
from fmlab.trainer.models import build_mlp
from fmlab.trainer.sessions import SessionRecorder, load
from fmlab.trainer.training import loop as engine
from fmlab.trainer.training import stack as batched
from fmlab.trainer.training.stack import StackedStepper, can_batch, group_key, run_batched

SMALL = "48,32"  # a small net keeps these tests fast; the math is the same


def configs_for(lrs, seeds=None, **extra):
    seeds = seeds or list(range(len(lrs)))
    return [
        parse_run_config(arch=SMALL, lr=lr, seed=seed, device="cpu", **extra) for lr, seed in zip(lrs, seeds)
    ]


def split_events(configs, dataset, cancel=None):
    streams = [[] for _ in configs]
    for index, event in run_batched(configs, dataset, cancel):
        streams[index].append(event)
    return streams


def of(kind, events):
    return [e for e in events if isinstance(e, kind)]


def test_each_member_matches_its_sequential_run(tiny_dataset):
    configs = configs_for([0.3, 0.05, 0.01], seeds=[0, 7, 3], epochs=3)
    batched = split_events(configs, tiny_dataset)
    for config, stream in zip(configs, batched):
        sequential = list(engine.run(config, tiny_dataset))
        assert isinstance(stream[0], RunStarted) and isinstance(stream[-1], RunFinished)
        assert stream[0].model == sequential[0].model and stream[0].config == config
        seq_epochs, bat_epochs = of(EpochMetrics, sequential), of(EpochMetrics, stream)
        assert len(seq_epochs) == len(bat_epochs) == 3
        for s, b in zip(seq_epochs, bat_epochs):
            assert b.train_loss == pytest.approx(s.train_loss, rel=1e-4)
            assert b.test_loss == pytest.approx(s.test_loss, rel=1e-4)
            assert b.test_acc == pytest.approx(s.test_acc, abs=1.0)  # one test image at most
            assert b.train_acc == pytest.approx(s.train_acc, abs=0.5)
        seq_steps, bat_steps = of(StepMetrics, sequential), of(StepMetrics, stream)
        assert [e.step for e in seq_steps] == [e.step for e in bat_steps]
        for s, b in zip(seq_steps, bat_steps):
            assert b.loss == pytest.approx(s.loss, rel=1e-4)
            assert b.grad_norm == pytest.approx(s.grad_norm, rel=1e-3)
            assert b.layer_norms == pytest.approx(s.layer_norms, rel=1e-3, abs=1e-7)
            assert b.grad_mean == pytest.approx(s.grad_mean, rel=1e-2, abs=1e-7)
        finished = stream[-1].results
        assert finished.status == sequential[-1].results.status == "completed"
        assert finished.steps_done == sequential[-1].results.steps_done


def test_final_weights_match_the_engine_stepper(tiny_dataset):
    configs = configs_for([0.2, 0.02], seeds=[1, 2])
    stacked = StackedStepper(configs, torch.device("cpu"))
    singles = [engine.MLPStepper(build_mlp(c.model, c.seed), c) for c in configs]
    for position, single in enumerate(singles):  # initial weights come from build_mlp(seed)
        for mine, theirs in zip(stacked.member_weights(position), single.params):
            assert torch.equal(mine, theirs)
    x, y = tiny_dataset.train_x, tiny_dataset.train_y
    onehot = torch.nn.functional.one_hot(y, 10).float()
    for _epoch in range(2):
        for start in range(0, len(x), 64):
            batch = slice(start, start + 64)
            stacked.step(x[batch], y[batch], onehot[batch].t(), want_stats=start == 0)
            for single in singles:
                single.step(x[batch], y[batch], onehot[batch])
    for position, single in enumerate(singles):
        for mine, theirs in zip(stacked.member_weights(position), single.params):
            torch.testing.assert_close(mine, theirs, rtol=1e-4, atol=1e-5)


def test_a_diverging_member_drops_out_and_the_others_go_on(tiny_dataset):
    configs = configs_for([0.1, 1e6, 0.02], seeds=[0, 1, 2], epochs=3)
    streams = split_events(configs, tiny_dataset)
    assert [s[-1].results.status for s in streams] == ["completed", "diverged", "completed"]
    diverged = streams[1]
    assert "non-finite" in diverged[-1].results.message
    assert len(of(EpochMetrics, diverged)) < 3
    for position in (0, 2):  # the survivors are unchanged by the loss of the middle member
        sequential = of(EpochMetrics, list(engine.run(configs[position], tiny_dataset)))
        mine = of(EpochMetrics, streams[position])
        assert [e.test_loss for e in mine] == pytest.approx([e.test_loss for e in sequential], rel=1e-4)
    assert list(engine.run(configs[1], tiny_dataset))[-1].results.status == "diverged"


def test_members_end_at_their_own_epoch_or_convergence(tiny_dataset):
    short = parse_run_config(arch=SMALL, lr=0.1, epochs=1, device="cpu")
    converging = parse_run_config(arch=SMALL, lr=0.1, epochs=4, threshold=100, patience=1,
                                  stop_on_converge=True, seed=1, device="cpu")  # fmt: skip
    full = parse_run_config(arch=SMALL, lr=0.05, epochs=4, seed=2, device="cpu")
    streams = split_events([short, converging, full], tiny_dataset)
    results = [s[-1].results for s in streams]
    assert [r.status for r in results] == ["completed", "converged", "completed"]
    assert [r.epochs_done for r in results] == [1, 2, 4]
    assert results[1].converged_epoch == 1
    sequential = of(EpochMetrics, list(engine.run(full, tiny_dataset)))
    assert [e.test_loss for e in of(EpochMetrics, streams[2])] == pytest.approx(
        [e.test_loss for e in sequential], rel=1e-4
    )


def test_cancel_stops_every_member(tiny_dataset):
    cancel = threading.Event()
    configs = configs_for([0.1, 0.01], epochs=5)
    streams = [[] for _ in configs]
    for index, event in run_batched(configs, tiny_dataset, cancel):
        streams[index].append(event)
        if isinstance(event, StepMetrics) and event.step >= 3:
            cancel.set()
    assert [s[-1].results.status for s in streams] == ["stopped", "stopped"]


def test_each_member_saves_as_an_ordinary_session(tiny_dataset, sessions_dir):
    configs = configs_for([0.1, 0.01], epochs=2)
    recorders = [SessionRecorder(sessions_dir) for _ in configs]
    for index, event in run_batched(configs, tiny_dataset):
        recorders[index](event)
    for config, recorder in zip(configs, recorders):
        record = load(recorder.path)
        assert record.config == config and record.status == "completed" and len(record.epochs) == 2
        assert record.steps.step[:3] == [1, 2, 3]


def test_only_plain_sgd_of_one_shape_stacks(tiny_dataset):
    base = parse_run_config(arch=SMALL, lr=0.1, device="cpu")
    assert can_batch(base)
    assert not can_batch(parse_run_config(optimizer="adam"))
    assert not can_batch(parse_run_config(momentum=0.9))
    assert group_key(base) == group_key(parse_run_config(arch=SMALL, lr=0.5, seed=4, device="cpu"))
    assert group_key(base) != group_key(parse_run_config(arch="base", lr=0.1, device="cpu"))
    assert group_key(base) != group_key(parse_run_config(arch=SMALL, batch_size=32, device="cpu"))
    shuffled = [parse_run_config(arch=SMALL, shuffle=True, seed=s, device="cpu") for s in (0, 1)]
    assert group_key(shuffled[0]) != group_key(shuffled[1])  # different data order
    with pytest.raises(ValueError):
        list(run_batched([base, parse_run_config(arch="base", device="cpu")], tiny_dataset))


class FakeCuda:
    type = "cuda"


def test_stacked_cuda_graph_falls_back_to_the_eager_step(monkeypatch):
    stepper = StackedStepper([parse_run_config(arch="8", lr=0.1, device="cpu")], torch.device("cpu"))
    assert batched.choose_stack_step(stepper, 64, torch.device("cpu")) == (stepper.step, "")

    def capture_fails(*args):
        raise RuntimeError("CUDA error: operation not supported\nmore")

    monkeypatch.setattr(batched, "GraphedStackStep", capture_fails)
    step, note = batched.choose_stack_step(stepper, 64, FakeCuda())
    assert step == stepper.step
    assert note == "CUDA graph capture failed (CUDA error: operation not supported); training eagerly"
    monkeypatch.setenv("FMLAB_CUDA_GRAPH", "0")
    assert batched.choose_stack_step(stepper, 64, FakeCuda()) == (
        stepper.step,
        "CUDA graph off (FMLAB_CUDA_GRAPH=0); training eagerly",
    )
