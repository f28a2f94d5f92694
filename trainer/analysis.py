"""What a run's epoch curves say, computed: pure functions, no torch.

``analyze(epochs)`` reads one run's per-epoch metrics and returns a
``RunAnalysis``: where the test loss bottoms out and how far it rises after,
the best test accuracy and how far the final one is below it, the train-test
gap at the end, how stable the test accuracy is after the lowest test loss,
how many epochs it takes to reach given accuracies, and whether it is still
rising at the end. ``analyze_record`` does it for a session, ``analysis_lines``
says it in words (``fmlab sessions show``, the app), ``to_dict`` gives it as
JSON. Every threshold is a named constant below, so a sentence built from an
analysis can name it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from fmlab.trainer.events import EpochMetrics
from fmlab.trainer.metrics import lowest_test_loss_epoch

ACCURACY_MARKS = (85.0, 88.0)  # the accuracies "epochs to reach" is counted for (%)
DROP_POINTS = 1.0  # a fall in test accuracy from one epoch to the next bigger than this is a drop
SLOPE_EPOCHS = 5  # the trend is the slope over this many last epochs
FLAT_SLOPE = 0.1  # points per epoch: a slope no steeper than this either way is flat
FINAL_BELOW_BEST = 1.0  # a final accuracy more than this under the best is marked


@dataclass(frozen=True)
class RunAnalysis:
    """One run's curves in numbers; accuracies in %, differences in points.

    Fields are None where the run has no epoch to say it from (or, for the
    loss, no finite test loss).
    """

    epochs: int  # epoch rows analysed
    status: str
    final_epoch: int | None
    final_test_acc: float | None
    final_train_acc: float | None
    best_test_acc: float | None
    best_test_acc_epoch: int | None  # the first epoch at the best accuracy
    final_below_best: float | None  # best - final test accuracy
    lowest_test_loss: float | None
    lowest_test_loss_epoch: int | None  # the first epoch at the lowest test loss
    final_test_loss: float | None
    test_loss_rise: float | None  # final - lowest test loss (0 when the lowest is the last)
    train_test_gap: float | None  # final train - final test accuracy
    # after the lowest test loss: falls of more than DROP_POINTS from one epoch to the next
    drops_after_lowest_loss: int
    largest_drop_after_lowest_loss: float | None  # points, None without a drop
    largest_drop_epoch: int | None  # the epoch the largest drop falls to
    epochs_to_accuracy: tuple[tuple[float, int | None], ...]  # (accuracy, first epoch at or above it)
    slope: float | None  # test accuracy, points per epoch, least squares over the last slope_epochs
    slope_epochs: int
    trend: str  # "rising", "flat", "falling", or "" with fewer than 2 epochs
    converged_epoch: int | None

    @property
    def final_marked(self) -> bool:
        """The final accuracy is more than FINAL_BELOW_BEST under the best."""
        return self.final_below_best is not None and self.final_below_best > FINAL_BELOW_BEST

    def epochs_to(self, accuracy: float) -> int | None:
        return dict(self.epochs_to_accuracy).get(accuracy)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["epochs_to_accuracy"] = {f"{acc:g}": epoch for acc, epoch in self.epochs_to_accuracy}
        data["final_marked"] = self.final_marked
        return {key: _json_number(value) for key, value in data.items()}


def _json_number(value):
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _finite(value: float) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def slope(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """The least-squares slope of ys over xs; None for fewer than two points."""
    if len(xs) < 2:
        return None
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    if spread == 0:
        return None
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / spread


def trend_of(value: float | None) -> str:
    """Rising, flat or falling, judged on the slope as printed (2 decimals); "" without one."""
    if value is None:
        return ""
    value = round(value, 2)
    if value > FLAT_SLOPE:
        return "rising"
    if value < -FLAT_SLOPE:
        return "falling"
    return "flat"


def analyze(
    epochs: Sequence[EpochMetrics],
    *,
    status: str = "completed",
    converged_epoch: int | None = None,
    marks: Sequence[float] = ACCURACY_MARKS,
) -> RunAnalysis:
    """The analysis of one run's epoch rows (in order); see RunAnalysis.

    Non-finite values (a run that diverged) are left out of the extremes,
    the drops and the slope rather than taken as numbers.
    """
    rows = list(epochs)
    last = rows[-1] if rows else None
    accs = [e for e in rows if _finite(e.test_acc)]
    best = max(accs, key=lambda e: e.test_acc, default=None)  # the first maximum
    lowest_epoch = lowest_test_loss_epoch(rows)
    lowest = next((e for e in rows if e.epoch == lowest_epoch), None)
    final_acc = last.test_acc if last is not None and _finite(last.test_acc) else None
    final_loss = last.test_loss if last is not None and _finite(last.test_loss) else None

    drops = []  # (size, epoch it falls to), after the lowest test loss
    if lowest is not None:
        after = [e for e in accs if e.epoch >= lowest.epoch]
        drops = [(a.test_acc - b.test_acc, b.epoch) for a, b in zip(after, after[1:])
                 if a.test_acc - b.test_acc > DROP_POINTS]  # fmt: skip
    largest = max(drops, default=None)

    tail = accs[-SLOPE_EPOCHS:]
    fitted = slope([e.epoch for e in tail], [e.test_acc for e in tail])
    train_acc = last.train_acc if last is not None and _finite(last.train_acc) else None
    return RunAnalysis(
        epochs=len(rows),
        status=status,
        final_epoch=last.epoch if last else None,
        final_test_acc=final_acc,
        final_train_acc=train_acc,
        best_test_acc=best.test_acc if best else None,
        best_test_acc_epoch=best.epoch if best else None,
        final_below_best=best.test_acc - final_acc if best and final_acc is not None else None,
        lowest_test_loss=lowest.test_loss if lowest else None,
        lowest_test_loss_epoch=lowest.epoch if lowest else None,
        final_test_loss=final_loss,
        test_loss_rise=final_loss - lowest.test_loss if lowest and final_loss is not None else None,
        train_test_gap=train_acc - final_acc if train_acc is not None and final_acc is not None else None,
        drops_after_lowest_loss=len(drops),
        largest_drop_after_lowest_loss=largest[0] if largest else None,
        largest_drop_epoch=largest[1] if largest else None,
        epochs_to_accuracy=tuple(
            (mark, next((e.epoch for e in accs if e.test_acc >= mark), None)) for mark in marks
        ),
        slope=fitted,
        slope_epochs=len(tail) if fitted is not None else 0,
        trend=trend_of(fitted),
        converged_epoch=converged_epoch,
    )


def analyze_record(record) -> RunAnalysis:
    """The analysis of a session (fmlab.trainer.sessions.SessionRecord)."""
    results = record.results
    converged = results.converged_epoch if results else None
    return analyze(record.epochs, status=record.status, converged_epoch=converged)


# ----------------------------------------------------------------- in words


def points(value: float) -> str:
    """A difference in accuracy points, signed: "+1.23", "-0.40"."""
    return f"{value:+.2f}"


def analysis_lines(a: RunAnalysis) -> list[str]:
    """The analysis as short lines of text (what ``fmlab sessions show`` prints)."""
    if not a.epochs:
        return ["no finished epoch: nothing to analyse yet" if a.status == "running"
                else f"no finished epoch ({a.status}): nothing to analyse"]  # fmt: skip
    lines = []
    if a.lowest_test_loss_epoch is not None:
        if a.lowest_test_loss_epoch == a.final_epoch:
            lines.append(f"lowest test loss  {a.lowest_test_loss:.4f} at the last epoch ({a.final_epoch})")
        else:
            rise = (
                f"{a.test_loss_rise:+.4f} by epoch {a.final_epoch}" if a.test_loss_rise is not None else "?"
            )
            lines.append(
                f"lowest test loss  {a.lowest_test_loss:.4f} at epoch {a.lowest_test_loss_epoch}, then {rise}"
            )
    else:
        lines.append("lowest test loss  none finite")
    if a.best_test_acc is not None:
        final = "-" if a.final_test_acc is None else f"{a.final_test_acc:.2f}%"
        below = ""
        if a.final_below_best is not None and a.final_below_best > 0:
            below = f", {a.final_below_best:.2f} points below the best"
            below += f" (more than {FINAL_BELOW_BEST:g})" if a.final_marked else ""
        lines.append(
            f"best test acc     {a.best_test_acc:.2f}% at epoch {a.best_test_acc_epoch}; final {final}{below}"
        )
    if a.train_test_gap is not None:
        lines.append(f"train-test gap    {points(a.train_test_gap)} points at the end "
                     f"(train {a.final_train_acc:.2f}%, test {a.final_test_acc:.2f}%)")  # fmt: skip
    if a.lowest_test_loss_epoch is not None:
        if a.drops_after_lowest_loss:
            lines.append(
                f"stability         {a.drops_after_lowest_loss} test-accuracy drop"
                f"{'s' if a.drops_after_lowest_loss > 1 else ''} of more than {DROP_POINTS:g} point after "
                f"epoch {a.lowest_test_loss_epoch}, the largest {a.largest_drop_after_lowest_loss:.2f}"
                f" (to epoch {a.largest_drop_epoch})"
            )
        else:
            lines.append(f"stability         no test-accuracy drop of more than {DROP_POINTS:g} point "
                         f"after epoch {a.lowest_test_loss_epoch}")  # fmt: skip
    reach = "; ".join(
        f"{acc:g}% at epoch {epoch}" if epoch is not None else f"{acc:g}% not reached"
        for acc, epoch in a.epochs_to_accuracy
    )
    if reach:
        lines.append(f"first reached     {reach}")
    if a.slope is not None:
        lines.append(
            f"last {a.slope_epochs} epochs     test accuracy {a.slope:+.2f} points per epoch ({a.trend})"
        )
    lines.append(
        f"converged         at epoch {a.converged_epoch}"
        if a.converged_epoch is not None
        else "converged         no"
    )
    return lines
