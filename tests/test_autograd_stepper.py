"""The autograd stepper, which trains layer stacks and users' modules in the
one loop: the same numbers alone or stacked, exact resume from a checkpoint
(batch norm's statistics and dropout's masks included), and step statistics
that agree with a plain autograd step."""

from __future__ import annotations

import math

import pytest
import torch.nn.functional as F
from one_run import train_one

from fmlab.trainer.events import EpochMetrics, RunFinished, StepMetrics
from fmlab.trainer.fields import parse_run_config
from fmlab.trainer.models import build_model
from fmlab.trainer.training.checkpoint import Checkpoint
from fmlab.trainer.training.loop import Member, train

STACK = "conv(4,3) bn relu maxpool(2) dropout(0.2) flatten fc(16) relu fc(10)"


def epochs_of(events) -> list[EpochMetrics]:
    return [e for e in events if isinstance(e, EpochMetrics)]


def same_numbers(a: list[EpochMetrics], b: list[EpochMetrics]) -> bool:
    keys = ("epoch", "train_loss", "train_acc", "test_loss", "test_acc")
    return [[getattr(e, k) for k in keys] for e in a] == [[getattr(e, k) for k in keys] for e in b]


def test_members_give_the_same_numbers_alone_or_stacked(tiny_dataset):
    configs = [parse_run_config(arch=STACK, lr=lr, seed=seed, epochs=2) for lr, seed in ((0.1, 0), (0.03, 1))]
    stacked: dict[int, list] = {0: [], 1: []}
    for position, event in train([Member(c) for c in configs], tiny_dataset):
        stacked[position].append(event)
    for position, config in enumerate(configs):
        alone = list(train_one(config, tiny_dataset))
        assert same_numbers(epochs_of(stacked[position]), epochs_of(alone))
        steps = [(e.step, e.loss, e.grad_norm) for e in alone if isinstance(e, StepMetrics)]
        assert steps == [
            (e.step, e.loss, e.grad_norm) for e in stacked[position] if isinstance(e, StepMetrics)
        ]


@pytest.mark.parametrize(
    "optimizer, lr, momentum", [("sgd", 0.05, 0.0), ("sgd", 0.02, 0.9), ("adam", 0.003, 0.0)]
)
def test_a_resumed_run_ends_exactly_as_an_uninterrupted_one(tiny_dataset, tmp_path, optimizer, lr, momentum):
    config = parse_run_config(
        arch=STACK, optimizer=optimizer, lr=lr, momentum=momentum, epochs=3, shuffle=True
    )
    checkpoints = []
    whole = list(train_one(config, tiny_dataset, on_checkpoint=checkpoints.append))
    file = tmp_path / "run.ckpt"
    checkpoints[0].save(file, "some-session", config)
    checkpoint = Checkpoint.load(file, "some-session", config)  # through the checked loader
    assert len(checkpoint.buffers) == 3  # running mean, running variance, batches seen
    resumed = list(train_one(config, tiny_dataset, resume=checkpoint))
    assert same_numbers(epochs_of(whole)[1:], epochs_of(resumed))
    assert resumed[-1].results.status == "completed" and resumed[-1].results.epochs_done == 3


def test_the_first_step_statistics_are_those_of_a_plain_autograd_step(tiny_dataset):
    config = parse_run_config(arch="conv(3,5) relu maxpool(2) flatten fc(12) relu fc(10)", lr=0.1, epochs=1)
    first = next(e for e in train_one(config, tiny_dataset) if isinstance(e, StepMetrics))
    model = build_model(config.model, config.seed)
    x, y = tiny_dataset.train_x[:64].view(-1, 1, 28, 28), tiny_dataset.train_y[:64]
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    grads = [p.grad for p in model.parameters()]
    count = sum(g.numel() for g in grads)
    assert math.isclose(first.loss, loss.item(), rel_tol=1e-5)
    assert math.isclose(
        first.grad_mean, sum(g.sum().item() for g in grads) / count, rel_tol=1e-4, abs_tol=1e-9
    )
    assert math.isclose(first.grad_norm, math.sqrt(sum(g.square().sum().item() for g in grads)), rel_tol=1e-4)
    assert math.isclose(
        first.grad_sum_of_means, sum(g.mean().item() for g in grads), rel_tol=1e-4, abs_tol=1e-9
    )
    per_layer = [math.sqrt(sum(p.grad.square().sum().item() for p in m.parameters(recurse=False)))
                 for m in model if next(m.parameters(recurse=False), None) is not None]  # fmt: skip
    assert len(first.layer_norms) == 3
    assert all(math.isclose(a, b, rel_tol=1e-4) for a, b in zip(first.layer_norms, per_layer))


def test_a_stack_that_diverges_ends_diverged(tiny_dataset):
    config = parse_run_config(arch="conv(4,3) flatten fc(10)", lr=1e6, epochs=2)
    finished = [e for e in train_one(config, tiny_dataset) if isinstance(e, RunFinished)]
    assert finished[0].results.status == "diverged"
