"""The base of every chart: one or more runs' series drawn with plotext.

``RunSeries`` holds what a chart draws for one run, filled from live events or
a saved session. ``MetricChart`` subclasses implement ``replot()``; the screen
calls it at most ~10 times a second, and every line is downsampled to the
chart's width first, because plotext's build time grows with the points.

A chart is drawn at any size: one too small to hold a plot shows a short
note instead, and so does one plotext fails to draw (its axis and tick code
breaks at some small sizes: log10 of a non-positive tick, an index past a
short row).

The epoch of a run's lowest test loss is marked on the charts that draw it
(``mark_lowest_test_loss``): MARK on the run's point there and, for a single
run, a vertical line across the chart; the bottom border says the epoch.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from rich.text import Text
from textual.app import RenderResult
from textual.reactive import reactive
from textual_plotext import PlotextPlot

from fmlab.tui.widgets.curves import RunSeries, downsample, ema, finite_points, nice_ticks, tick_label

__all__ = ["MARK", "MIN_PLOT_SIZE", "RUN_COLORS", "EpochMark", "MetricChart", "RunSeries"]

RUN_COLORS = ("cyan", "orange", "green", "magenta", "red", "blue", "yellow")
# Smallest content area drawn as a plot: the y labels take ~8 columns, the
# x axis and its labels 2 rows, and a plot needs a few cells of its own.
MIN_PLOT_SIZE = (20, 5)
# What plotext has been seen to raise at small sizes; anything else is a bug of ours.
PLOTEXT_FAILURES = (ArithmeticError, LookupError, TypeError, ValueError)
RAW_COLOR = "gray"  # the unsmoothed curve, kept visible under the smoothed one
MARK = "◆"  # a run's point at the epoch of its lowest test loss


@dataclass(frozen=True)
class EpochMark:
    """A mark a chart drew: ``run``'s lowest test loss is at ``epoch``, which
    is at ``x`` on the chart's x axis."""

    run: str
    epoch: int
    x: float


class MetricChart(PlotextPlot):
    """A focusable plotext chart. Its screen sets ``smooth`` and
    ``smoothing`` (the EMA weight) and the ``x_axis`` for all its charts; a
    chart's own keys (a log scale, a view) are in its BINDINGS."""

    can_focus = True
    TITLE = ""

    smooth: reactive[bool] = reactive(False)
    smoothing: reactive[float] = reactive(0.6)
    x_axis: reactive[str] = reactive("step")

    build_seconds = 0.0  # time all charts have spent building plots; paces live redraws

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.runs: list[RunSeries] = []
        self.marks: list[EpochMark] = []  # what the last replot marked
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

    def on_mount(self) -> None:
        charts = self.chart_settings()
        if charts is not None:
            self.smooth, self.smoothing = charts.smooth, charts.smoothing

    def chart_settings(self):
        """The app's chart settings (tui.settings.ChartSettings), if it keeps any."""
        settings = getattr(self.app, "settings", None)
        return settings.current.charts if settings is not None else None

    def remember(self, **charts: object) -> None:
        """Keep chart settings for the next launch."""
        settings = getattr(self.app, "settings", None)
        if settings is not None:
            settings.update(charts=charts)

    def watch_smooth(self) -> None:
        self.replot()

    def watch_smoothing(self) -> None:
        if self.smooth:
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
            flags.append(f"EMA {self.smoothing:g}")
        if extra:
            flags.append(extra)
        return f"{self.TITLE} ({', '.join(flags)})"

    def begin(self, extra: str = "") -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        self.marks = []
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
        yside: str = "left",
    ) -> None:
        """Plot one series (its min/max envelope where it has more points
        than the chart has room for), smoothed over its raw curve when
        smoothing is on. ``yside`` "right" draws it on the right axis."""
        xs, ys = finite_points(xs, ys, positive=log)
        if not xs:
            return
        limit = self.point_limit()
        if self.smooth and smooth and self.smoothing > 0 and len(ys) > 2:
            raw_x, raw_y = downsample(xs, ys, limit)
            self.plt.plot(raw_x, raw_y, color=RAW_COLOR, marker="braille", yside=yside)
            ys = ema(ys, self.smoothing)
        xs, ys = downsample(xs, ys, limit)
        self.plt.plot(xs, ys, label=label, color=color, marker="braille", yside=yside)

    def points(self, xs: list[float], ys: list[float], label: str, color: str, *, log: bool = False) -> None:
        """Per-epoch values: few points, drawn with visible markers."""
        xs, ys = finite_points(xs, ys, positive=log)
        if xs:
            # a long run has thousands of epochs: as many points as the width holds
            xs, ys = downsample(xs, ys, self.point_limit())
            self.plt.plot(xs, ys, label=label, color=color, marker="dot")

    def test_colors(self) -> list[str]:
        """Each run's colour for its per-epoch test points: its own where
        several runs are drawn, the second colour beside a lone run's train curve."""
        if len(self.runs) == 1:
            return [RUN_COLORS[1]]
        return [RUN_COLORS[i % len(RUN_COLORS)] for i in range(len(self.runs))]

    def mark_lowest_test_loss(
        self, run: RunSeries, ys: list[float], color: str, *, line: bool, log: bool = False
    ) -> None:
        """Mark the epoch of ``run``'s lowest test loss: MARK on its point of
        ``ys`` there and, with ``line``, a vertical line across the chart
        (plotext draws it under the curves). Called after every run's points,
        so that none covers a mark. A run without a finite test loss has none."""
        epoch = run.lowest_test_loss_epoch()
        if epoch is None:
            return
        index = run.epoch.index(epoch)
        x = run.epoch_x(self.x_axis)[index]
        if line:
            self.plt.vline(x, color)
        y = ys[index]
        if math.isfinite(y) and (y > 0 or not log):
            self.plt.scatter([x], [y], marker=MARK, color=color)
        self.marks.append(EpochMark(run.name, epoch, x))

    def mark_note(self) -> str:
        """The marks in words, for the bottom border: the epoch where one run
        is drawn, what MARK means where several are (their epochs differ)."""
        if not self.marks:
            return ""
        if len(self.runs) == 1:
            return f"{MARK} lowest test loss: epoch {self.marks[0].epoch}"
        return f"{MARK} lowest test loss"

    def frame_x(self) -> None:
        """The x axis from 0 to the furthest point of any run, with round
        ticks: a run of one epoch reads 0-938, not 469-1407 around its one
        accuracy point."""
        end = max((run.x_end(self.x_axis) for run in self.runs), default=0.0)
        if end <= 0:
            return
        self.plt.xlim(0, end)
        ticks = nice_ticks(0, end, most=max(2, min(6, (self.size.width - 8) // 10)))
        self.plt.xticks(ticks, [tick_label(t) for t in ticks])

    def replot(self) -> None:
        raise NotImplementedError
