"""Gradients per step, in three views (``v``):

- global: the norm on the left axis and, for one run, the mean on its own
  right axis (the mean is about 1e-4 where the norm is about 1: on one axis
  it would be a flat line at 0); it is drawn times a power of ten, which its
  label gives;
- mean: each run's mean alone;
- layers: the norm of each layer (of the first run).

``l`` puts the norms on a log scale (the mean goes negative: it stays linear).
"""

from __future__ import annotations

from textual.binding import Binding
from textual.reactive import reactive

from fmlab.tui.widgets.curves import nice_ticks, scale_of, tick_label
from fmlab.tui.widgets.metric_chart import RUN_COLORS, MetricChart

VIEWS = ("global", "mean", "layers")


class GradientChart(MetricChart):
    BINDINGS = [
        Binding("v", "next_view", "View", tooltip="Gradients: norm and mean, the mean alone, per layer"),
        Binding("l", "toggle_log", "Log", tooltip="The focused chart (loss or gradients) on a log scale"),
    ]
    TITLE = "gradients"

    view: reactive[str] = reactive("global")
    log_scale: reactive[bool] = reactive(False)

    def on_mount(self) -> None:
        charts = self.chart_settings()
        if charts is not None:
            self.view, self.log_scale = charts.gradient_view, charts.gradient_log

    def action_next_view(self) -> None:
        self.view = VIEWS[(VIEWS.index(self.view) + 1) % len(VIEWS)]
        self.remember(gradient_view=self.view)

    def action_toggle_log(self) -> None:
        self.log_scale = not self.log_scale
        self.remember(gradient_log=self.log_scale)

    def watch_view(self) -> None:
        self.replot()

    def watch_log_scale(self) -> None:
        self.replot()

    def replot(self) -> None:
        log = self.log_scale and self.view != "mean"
        self.begin(self.view + (", log" if log else ""))
        many = len(self.runs) > 1
        for index, run in enumerate(self.runs):
            xs = run.step_x(self.x_axis)
            color = RUN_COLORS[index % len(RUN_COLORS)]
            if self.view == "layers":
                if index == 0:
                    self._layers(xs, run.layer_norms, f" {run.name}" if many else "")
            elif self.view == "mean":
                self._mean(xs, run.grad_mean, run.name if many else "mean", color, "left")
            else:
                self.line(xs, run.grad_norm, run.name if many else "norm ←", color, log=log)
                if not many:
                    self._mean(xs, run.grad_mean, "mean", RUN_COLORS[1], "right")
        self.plt.yscale("log" if log else "linear", yside="left")
        self.frame_x()
        self.refresh()

    def _mean(self, xs: list[float], means: list[float], label: str, color: str, side: str) -> None:
        """The mean times 10^-k so it reads near 1, on its own axis."""
        power = scale_of(means)
        scaled = [m / 10**power for m in means]
        if power:
            label += f" ×1e{power}"
        self.line(xs, scaled, label + (" →" if side == "right" else ""), color, yside=side)
        finite = [v for v in scaled if v == v and abs(v) != float("inf")]
        if side == "right":
            self.plt.yaxes(True, True)  # the right axis and its numbers
        if side == "right" and finite:
            low, high = min(finite), max(finite)
            if high > low:
                ticks = nice_ticks(low, high, most=max(2, min(5, self.size.height // 3)))
                self.plt.yticks(ticks, [tick_label(t) for t in ticks], yside="right")

    def _layers(self, xs: list[float], layer_norms: list[tuple[float, ...]], of: str) -> None:
        count = max((len(row) for row in layer_norms), default=0)
        for layer in range(count):
            ys = [row[layer] if layer < len(row) else float("nan") for row in layer_norms]
            color = RUN_COLORS[layer % len(RUN_COLORS)]
            self.line(xs, ys, f"fc{layer + 1}{of if layer == 0 else ''}", color, log=self.log_scale)
