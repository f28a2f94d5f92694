"""Gradients per step: global norm and mean, or the norm of each layer (``v``)."""

from __future__ import annotations

from textual.binding import Binding
from textual.reactive import reactive

from fmlab.tui.widgets.metric_chart import RUN_COLORS, MetricChart


class GradientChart(MetricChart):
    BINDINGS = [
        Binding("v", "toggle_view", "Layers/global"),
        Binding("l", "toggle_log", "Log scale"),
    ]
    TITLE = "gradients"

    per_layer: reactive[bool] = reactive(False)
    log_scale: reactive[bool] = reactive(False)

    def action_toggle_view(self) -> None:
        self.per_layer = not self.per_layer

    def action_toggle_log(self) -> None:
        self.log_scale = not self.log_scale

    def watch_per_layer(self) -> None:
        self.replot()

    def watch_log_scale(self) -> None:
        self.replot()

    def replot(self) -> None:
        view = "per layer" if self.per_layer else "global"
        self.begin(view + (", log" if self.log_scale else ""))
        if self.runs:
            run = self.runs[0]
            xs = run.step_x(self.x_axis)
            if self.per_layer:
                self._layers(xs, run.layer_norms)
            else:
                self._global(xs, run.grad_norm, run.grad_mean)
        self.plt.yscale("log" if self.log_scale else "linear")
        self.refresh()

    def _global(self, xs: list[float], norms: list[float], means: list[float]) -> None:
        self.line(xs, norms, "norm", RUN_COLORS[0], log=self.log_scale)
        if not self.log_scale:  # the mean goes negative; it has no place on a log axis
            self.line(xs, means, "mean", RUN_COLORS[1])

    def _layers(self, xs: list[float], layer_norms: list[tuple[float, ...]]) -> None:
        count = max((len(row) for row in layer_norms), default=0)
        for layer in range(count):
            ys = [row[layer] if layer < len(row) else float("nan") for row in layer_norms]
            color = RUN_COLORS[layer % len(RUN_COLORS)]
            self.line(xs, ys, f"fc{layer + 1}", color, log=self.log_scale)
