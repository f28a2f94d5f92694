"""What the charts draw, before any drawing: a run's series (``RunSeries``)
and the arithmetic on curves (smoothing, downsampling, axis ticks).

- Smoothing is TensorBoard's: an exponential moving average over the points
  with weight ``w`` (0: none, 0.99: heavy), debiased so that its start is not
  pulled towards 0.
- Downsampling keeps each bucket's lowest and highest point, in order (a
  min/max envelope), so a spike or a divergence stays on the chart however
  many points share a column.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from fmlab.trainer.events import EpochMetrics, StepMetrics
from fmlab.trainer.metrics import lowest_loss_epoch
from fmlab.trainer.sessions import SessionRecord
from fmlab.trainer.text import visible


@dataclass
class RunSeries:
    """Step and epoch metrics of one run, as columns."""

    name: str = ""
    steps_per_epoch: int = 0
    step: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    grad_mean: list[float] = field(default_factory=list)
    grad_norm: list[float] = field(default_factory=list)
    layer_norms: list[tuple[float, ...]] = field(default_factory=list)
    epoch: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    test_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    test_acc: list[float] = field(default_factory=list)
    epochs_planned: int = 0  # the run's length, where known: the x axis can show where it ends

    def add_step(self, event: StepMetrics) -> None:
        self.step.append(event.step)
        self.loss.append(event.loss)
        self.grad_mean.append(event.grad_mean)
        self.grad_norm.append(event.grad_norm)
        self.layer_norms.append(event.layer_norms)

    def add_epoch(self, event: EpochMetrics) -> None:
        self.epoch.append(event.epoch)
        self.train_loss.append(event.train_loss)
        self.test_loss.append(event.test_loss)
        self.train_acc.append(event.train_acc)
        self.test_acc.append(event.test_acc)

    @classmethod
    def from_record(cls, record: SessionRecord, name: str = "") -> RunSeries:
        # plotext draws labels as they are, and its output is read back as ANSI
        series = cls(name=name or visible(record.id), steps_per_epoch=record.steps_per_epoch)
        for step in record.steps.events():
            series.add_step(step)
        for epoch in record.epochs:
            series.add_epoch(epoch)
        return series

    def step_x(self, axis: str) -> list[float]:
        """Step positions on the chosen x axis ("step", or fractional "epoch")."""
        if axis == "epoch" and self.steps_per_epoch:
            return [s / self.steps_per_epoch for s in self.step]
        return [float(s) for s in self.step]

    def epoch_x(self, axis: str) -> list[float]:
        if axis == "step" and self.steps_per_epoch:
            return [float(e * self.steps_per_epoch) for e in self.epoch]
        return [float(e) for e in self.epoch]

    def lowest_test_loss_epoch(self) -> int | None:
        """The epoch of the lowest finite test loss so far (the first, on a
        tie), by the rule the session's results use; None before one."""
        return lowest_loss_epoch(self.epoch, self.test_loss)

    def x_end(self, axis: str) -> float:
        """The furthest point this run reaches on the axis so far."""
        ends = [xs[-1] for xs in (self.step_x(axis), self.epoch_x(axis)) if xs]
        return max(ends, default=0.0)


def finite_points(xs: list[float], ys: list[float], positive: bool = False) -> tuple[list, list]:
    """Drop NaN/inf points (a diverged loss), and non-positive ones for a log axis."""
    keep = [i for i, y in enumerate(ys) if math.isfinite(y) and (y > 0 or not positive)]
    return [xs[i] for i in keep], [ys[i] for i in keep]


def downsample(xs: list[float], ys: list[float], limit: int) -> tuple[list[float], list[float]]:
    """At most ``limit`` points: the points are cut into ``limit // 2``
    buckets of neighbours, and each bucket gives its lowest and its highest
    point, in their order (one, if they are the same point)."""
    count = len(xs)
    buckets = limit // 2
    if count <= limit or buckets < 1:
        return xs, ys
    size = count / buckets
    out_x, out_y = [], []
    for index in range(buckets):
        start, end = int(index * size), max(int((index + 1) * size), int(index * size) + 1)
        low = min(range(start, end), key=ys.__getitem__)
        high = max(range(start, end), key=ys.__getitem__)
        for i in sorted({low, high}):
            out_x.append(xs[i])
            out_y.append(ys[i])
    return out_x, out_y


def ema(ys: list[float], weight: float) -> list[float]:
    """TensorBoard's smoothing: each point is ``last * weight + (1 - weight) * y``
    over the points so far, divided by ``1 - weight ** n`` (n: points so far)
    so the first points are not pulled towards zero. A non-finite point is
    kept as it is and skipped by the average."""
    if weight <= 0:
        return list(ys)
    out, last, seen = [], 0.0, 0
    for y in ys:
        if not math.isfinite(y):
            out.append(y)
            continue
        last = last * weight + (1 - weight) * y
        seen += 1
        out.append(last / (1 - weight**seen))
    return out


def nice_ticks(low: float, high: float, most: int = 6) -> list[float]:
    """Round numbers (1, 2 or 5 times a power of ten apart) from ``low`` to
    ``high``, at most ``most`` of them."""
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        return [low]
    raw = (high - low) / max(most - 1, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(
        m * power
        for m in (1, 2, 5, 10)
        if math.floor(high / (m * power) + 1e-9) - math.ceil(low / (m * power) - 1e-9) + 1 <= most
    )
    first = math.ceil(low / step - 1e-9) * step
    ticks = []
    value = first
    while value <= high + 1e-9 * step:
        ticks.append(round(value, 10))
        value += step
    return ticks


def tick_label(value: float) -> str:
    """A tick as people write it: 200, 0.5, 1e+04."""
    if value == int(value) and abs(value) < 1e6:
        return str(int(value))
    return f"{value:g}"


def scale_of(values: list[float]) -> int:
    """The power of ten that brings the largest finite value near 1 (the
    gradient mean, about 1e-4, is drawn as mean x 1e4)."""
    largest = max((abs(v) for v in values if math.isfinite(v)), default=0.0)
    return math.floor(math.log10(largest)) if largest > 0 else 0
