"""The base of every chart: one or more runs' series drawn with plotext.

``RunSeries`` holds what a chart draws for one run, filled from live events or
a saved session. ``MetricChart`` subclasses implement ``replot()``; the screen
calls it at most ~10 times a second, and every line is downsampled to the
chart's width first, because plotext's build time grows with the points.

A chart is drawn at any size: one too small to hold a plot shows a short
note instead, and so does one plotext fails to draw (its axis and tick code
breaks at some small sizes: log10 of a non-positive tick, an index past a
short row).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from rich.text import Text
from textual.app import RenderResult
from textual.binding import Binding
from textual.reactive import reactive
from textual_plotext import PlotextPlot

from fmlab.trainer.events import EpochMetrics, StepMetrics
from fmlab.trainer.sessions import SessionRecord
from fmlab.trainer.text import visible

RUN_COLORS = ("cyan", "orange", "green", "magenta", "red", "blue", "yellow")
# Smallest content area drawn as a plot: the y labels take ~8 columns, the
# x axis and its labels 2 rows, and a plot needs a few cells of its own.
MIN_PLOT_SIZE = (20, 5)
# What plotext has been seen to raise at small sizes; anything else is a bug of ours.
PLOTEXT_FAILURES = (ArithmeticError, LookupError, TypeError, ValueError)
RAW_COLOR = "gray"  # the unsmoothed curve, kept visible under the smoothed one


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


def finite_points(xs: list[float], ys: list[float], positive: bool = False) -> tuple[list, list]:
    """Drop NaN/inf points (a diverged loss), and non-positive ones for a log axis."""
    keep = [i for i, y in enumerate(ys) if math.isfinite(y) and (y > 0 or not positive)]
    return [xs[i] for i in keep], [ys[i] for i in keep]


def downsample(xs: list[float], ys: list[float], limit: int) -> tuple[list[float], list[float]]:
    """At most ``limit`` points: each bucket of neighbours becomes its mean."""
    count = len(xs)
    if count <= limit or limit < 2:
        return xs, ys
    size = count / limit
    out_x, out_y = [], []
    for index in range(limit):
        start, end = int(index * size), max(int((index + 1) * size), int(index * size) + 1)
        bucket = ys[start:end]
        out_x.append(xs[end - 1])
        out_y.append(sum(bucket) / len(bucket))
    return out_x, out_y


def moving_average(ys: list[float], window: int) -> list[float]:
    """Trailing mean over ``window`` points (fewer at the start)."""
    out, total = [], 0.0
    for index, value in enumerate(ys):
        total += value
        if index >= window:
            total -= ys[index - window]
        out.append(total / min(index + 1, window))
    return out


class MetricChart(PlotextPlot):
    """A focusable plotext chart; ``s`` toggles smoothing for this chart."""

    can_focus = True
    BINDINGS = [Binding("s", "toggle_smooth", "Smooth")]
    TITLE = ""

    smooth: reactive[bool] = reactive(False)
    x_axis: reactive[str] = reactive("step")

    build_seconds = 0.0  # time all charts have spent building plots; paces live redraws

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.runs: list[RunSeries] = []
        self._shown: tuple = ()

    def data_key(self, run: RunSeries) -> tuple:
        """What this chart draws of a run changes exactly when this does."""
        return (len(run.step), len(run.epoch))

    def show(self, runs: list[RunSeries]) -> None:
        shown = tuple((id(run), *self.data_key(run)) for run in runs)
        if shown == self._shown and runs == self.runs:
            return  # nothing new to draw
        self.runs, self._shown = runs, shown
        self.replot()

    def render(self) -> RenderResult:
        width, height = self.size
        if width < MIN_PLOT_SIZE[0] or height < MIN_PLOT_SIZE[1]:
            return self.note("too small")
        try:
            return super().render()
        except PLOTEXT_FAILURES:
            return self.note("cannot draw at this size")

    def note(self, text: str) -> Text:
        """A one-line note in place of the plot (cut to the width, never wrapped)."""
        return Text(f"{self.TITLE}: {text}", style="dim", no_wrap=True, overflow="ellipsis", end="")

    def render_lines(self, crop):
        # timed here, not in render(): turning plotext's text into strips
        # after render() returns costs about as much as building the plot
        start = time.perf_counter()
        try:
            return super().render_lines(crop)
        finally:
            MetricChart.build_seconds += time.perf_counter() - start

    def action_toggle_smooth(self) -> None:
        self.smooth = not self.smooth

    def watch_smooth(self) -> None:
        self.replot()

    def watch_x_axis(self) -> None:
        self.replot()

    def on_resize(self) -> None:
        self.replot()

    def point_limit(self) -> int:
        # braille markers put two points in a cell; the y labels take ~8 cells
        return max(2 * (self.size.width - 8), 16)

    def title_text(self, extra: str = "") -> str:
        flags = [f"x: {self.x_axis}"]
        if self.smooth:
            flags.append("smoothed")
        if extra:
            flags.append(extra)
        return f"{self.TITLE} ({', '.join(flags)})"

    def begin(self, extra: str = "") -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        # the title goes on the widget's border: it costs no plot row there
        self.border_title = self.title_text(extra)
        plt.xaxes(True, False)
        plt.yaxes(True, False)

    def line(
        self,
        xs: list[float],
        ys: list[float],
        label: str,
        color: str,
        *,
        log: bool = False,
        smooth: bool = True,
    ) -> None:
        """Plot one series, smoothed over its raw curve when smoothing is on."""
        xs, ys = finite_points(xs, ys, positive=log)
        if not xs:
            return
        limit = self.point_limit()
        if self.smooth and smooth and len(ys) > 4:
            raw_x, raw_y = downsample(xs, ys, limit)
            self.plt.plot(raw_x, raw_y, color=RAW_COLOR, marker="braille")
            ys = moving_average(ys, max(3, len(ys) // 15))
        xs, ys = downsample(xs, ys, limit)
        self.plt.plot(xs, ys, label=label, color=color, marker="braille")

    def points(self, xs: list[float], ys: list[float], label: str, color: str, *, log: bool = False) -> None:
        """Per-epoch values: few points, drawn with visible markers."""
        xs, ys = finite_points(xs, ys, positive=log)
        if xs:
            # a long run has thousands of epochs: as many points as the width holds
            xs, ys = downsample(xs, ys, self.point_limit())
            self.plt.plot(xs, ys, label=label, color=color, marker="dot")

    def replot(self) -> None:
        raise NotImplementedError
