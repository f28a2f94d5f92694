"""Keys that act on every chart of a screen: ``s`` smooths them (an EMA
over the raw curve, TensorBoard-style), ``[`` and ``]`` make the smoothing
lighter or heavier (its weight shows in each chart's title), ``x`` switches
the x axis between steps and epochs. The choices are kept for the next
launch (tui.settings)."""

from __future__ import annotations

from textual.binding import Binding

from fmlab.tui.settings import SMOOTHING_WEIGHTS
from fmlab.tui.widgets.metric_chart import MetricChart

CHART_KEYS = [
    Binding("s", "toggle_smooth", "Smooth", tooltip="Smooth the curves (EMA over the raw curve)"),
    Binding("left_square_bracket", "smoothing(-1)", "EMA-", show=False, tooltip="Lighter smoothing"),
    Binding("right_square_bracket", "smoothing(1)", "EMA+", show=False, tooltip="Heavier smoothing"),
    Binding("x", "toggle_axis", "Axis", tooltip="x axis in steps or in epochs"),
]


class ChartKeys:
    """The actions behind CHART_KEYS, for a screen holding MetricCharts."""

    def charts(self) -> list[MetricChart]:
        return list(self.query(MetricChart))

    def action_toggle_smooth(self) -> None:
        charts = self.charts()
        if not charts:
            return
        smooth = not charts[0].smooth
        weight = charts[0].smoothing or SMOOTHING_WEIGHTS[2]
        self._set_smoothing(smooth, weight)

    def action_smoothing(self, step: int) -> None:
        charts = self.charts()
        if not charts:
            return
        now = charts[0].smoothing if charts[0].smooth else 0.0
        index = min(range(len(SMOOTHING_WEIGHTS)), key=lambda i: abs(SMOOTHING_WEIGHTS[i] - now))
        weight = SMOOTHING_WEIGHTS[max(0, min(len(SMOOTHING_WEIGHTS) - 1, index + step))]
        self._set_smoothing(weight > 0, weight if weight > 0 else charts[0].smoothing)
        self.notify(f"smoothing {'off' if weight == 0 else f'EMA weight {weight:g}'}", timeout=2)

    def _set_smoothing(self, smooth: bool, weight: float) -> None:
        for chart in self.charts():
            chart.smoothing = weight
            chart.smooth = smooth
        settings = getattr(self.app, "settings", None)
        if settings is not None:
            settings.update(charts={"smooth": smooth, "smoothing": weight})

    def action_toggle_axis(self) -> None:
        charts = self.charts()
        axis = "epoch" if charts and charts[0].x_axis == "step" else "step"
        for chart in charts:
            chart.x_axis = axis
        self.axis_changed(axis)

    def axis_changed(self, axis: str) -> None:
        """A screen that keeps its axis between launches saves it here."""
