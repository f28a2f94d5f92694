"""Small pure helpers the engine and its consumers share (no torch)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from fmlab.trainer.config import ConvergenceRule
from fmlab.trainer.events import EpochMetrics, RunResults


@dataclass
class ConvergenceTracker:
    """Finds the first epoch after which test accuracy moved less than the rule's
    threshold for ``patience`` consecutive epochs.

    Feed it one accuracy per epoch; ``converged_epoch`` is set (and never
    changes again) on the epoch that completes the quiet streak.
    """

    rule: ConvergenceRule
    accuracies: list[float] = field(default_factory=list)
    converged_epoch: int | None = None

    def update(self, test_acc: float) -> int | None:
        self.accuracies.append(test_acc)
        if self.converged_epoch is None and len(self.accuracies) > self.rule.patience:
            recent = self.accuracies[-self.rule.patience - 1 :]
            if all(abs(b - a) < self.rule.threshold for a, b in zip(recent, recent[1:])):
                self.converged_epoch = len(self.accuracies) - self.rule.patience
        return self.converged_epoch


def is_metric_step(step: int, full_steps: int, step_every: int) -> bool:
    """Every step up to ``full_steps``, then one in ``step_every``."""
    return step <= full_steps or step % step_every == 0


def converged_epoch_of(accuracies: list[float], rule: ConvergenceRule) -> int | None:
    tracker = ConvergenceTracker(rule)
    for acc in accuracies:
        tracker.update(acc)
    return tracker.converged_epoch


def lowest_test_loss_epoch(epochs: Sequence[EpochMetrics]) -> int | None:
    """The epoch of the lowest finite test loss (the first, on a tie); None without one."""
    return lowest_loss_epoch([e.epoch for e in epochs], [e.test_loss for e in epochs])


def results_after(
    history: Sequence[EpochMetrics],
    *,
    status: str,
    steps_done: int,
    seconds: float,
    converged_epoch: int | None,
    message: str = "",
) -> RunResults:
    """A run's results after the epochs of ``history``: its last and best test
    accuracy, the best one's epoch and that of the lowest test loss."""
    best = max(history, key=lambda m: m.test_acc, default=None)
    return RunResults(
        status=status,
        epochs_done=len(history),
        steps_done=steps_done,
        final_test_acc=history[-1].test_acc if history else None,
        best_test_acc=best.test_acc if best else None,
        best_epoch=best.epoch if best else None,
        converged_epoch=converged_epoch,
        seconds=seconds,
        message=message,
        lowest_test_loss_epoch=lowest_test_loss_epoch(history),
    )


def lowest_loss_epoch(epochs: Sequence[int], losses: Sequence[float]) -> int | None:
    """``lowest_test_loss_epoch`` over columns (the charts keep a run's
    epochs that way): the epoch of the lowest finite loss, the first on a tie."""
    finite = [(loss, epoch) for epoch, loss in zip(epochs, losses, strict=True) if math.isfinite(loss)]
    return min(finite, key=lambda pair: pair[0])[1] if finite else None
