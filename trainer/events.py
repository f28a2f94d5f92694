"""The typed events one training run emits, in order:

``RunStarted``, then ``StepMetrics`` and ``EpochMetrics`` as training goes,
then exactly one ``RunFinished``. Live training, replay and sweeps all speak
this stream, so every consumer (CLI progress, the app, the session recorder)
is written once. Events are frozen and hold plain Python values only.
Accuracies are percentages (0-100).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from fmlab.trainer.config import RunConfig
from fmlab.trainer.summary import LayerSummary, ModelSummary  # noqa: F401  (RunStarted carries them)

# How a run ended ("running" only appears in files still being written).
STATUSES = ("running", "completed", "converged", "diverged", "stopped", "failed", "interrupted")
# A run that ended on its own: nothing is left to train or resume.
FINISHED = ("completed", "converged", "diverged")


@dataclass(frozen=True)
class RunStarted:
    config: RunConfig
    model: ModelSummary
    device: str  # "cpu" or "cuda"
    device_name: str
    torch_version: str
    train_size: int  # training images the run trains on
    test_size: int
    steps_per_epoch: int
    notes: tuple[str, ...] = ()  # e.g. why the CUDA graph is not used
    train_total: int | None = None  # the training split's size, when the run uses only its first train_size


@dataclass(frozen=True)
class StepMetrics:
    """One training step's loss and gradient statistics.

    Two means of the gradient, not to be confused: ``grad_mean`` weighs every
    parameter alike (the sum of all gradients over the parameter count), while
    ``grad_sum_of_means`` adds each parameter tensor's own mean, weights and
    biases alike (the notebook's ``for p in model.parameters(): g +=
    p.grad.mean()``), so a 10-value bias counts as much as a weight matrix.
    The last two default to "not recorded" (NaN, none) for files that predate them.
    """

    step: int  # 1-based, counted over the whole run
    epoch: int  # 1-based epoch the step belongs to
    loss: float
    grad_mean: float  # mean over every trainable parameter's gradient
    grad_norm: float  # global L2 norm
    layer_norms: tuple[float, ...]  # L2 norm per Linear layer (weight and bias)
    grad_sum_of_means: float = math.nan  # sum over parameter tensors of each one's mean gradient
    layer_grad_means: tuple[float, ...] = ()  # mean gradient per Linear layer (weight and bias)


@dataclass(frozen=True)
class EpochMetrics:
    epoch: int
    train_loss: float
    train_acc: float
    test_loss: float
    test_acc: float
    seconds: float
    samples_per_s: float
    converged_epoch: int | None = None  # set once the convergence rule holds


@dataclass(frozen=True)
class RunResults:
    status: str
    epochs_done: int = 0
    steps_done: int = 0
    final_test_acc: float | None = None
    best_test_acc: float | None = None
    best_epoch: int | None = None  # of the best test accuracy
    converged_epoch: int | None = None
    seconds: float = 0.0
    message: str = ""  # why it diverged or failed
    lowest_test_loss_epoch: int | None = None  # None in files that predate it


@dataclass(frozen=True)
class RunFinished:
    results: RunResults

    @property
    def status(self) -> str:
        return self.results.status


Event = RunStarted | StepMetrics | EpochMetrics | RunFinished
