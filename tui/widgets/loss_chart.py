"""Loss: per-step training loss and per-epoch test loss, optionally on a log
axis, with each run's lowest test loss marked (MetricChart.mark_lowest_test_loss)."""

from __future__ import annotations

from textual.binding import Binding
from textual.reactive import reactive

from fmlab.tui.widgets.metric_chart import RUN_COLORS, MetricChart


class LossChart(MetricChart):
    BINDINGS = [
        Binding("l", "toggle_log", "Log", tooltip="The focused chart (loss or gradients) on a log scale")
    ]
    TITLE = "loss"

    log_scale: reactive[bool] = reactive(False)

    def on_mount(self) -> None:
        charts = self.chart_settings()
        if charts is not None:
            self.log_scale = charts.loss_log

    def action_toggle_log(self) -> None:
        self.log_scale = not self.log_scale
        self.remember(loss_log=self.log_scale)

    def watch_log_scale(self) -> None:
        self.replot()

    def replot(self) -> None:
        self.begin("log" if self.log_scale else "")
        log = self.log_scale
        many = len(self.runs) > 1
        test_colors = self.test_colors()
        for index, run in enumerate(self.runs):
            color = RUN_COLORS[index % len(RUN_COLORS)]
            # several runs: one legend entry each (the colour ties its test
            # points to it), or the legend covers the chart
            train_label = run.name if many else "train (step)"
            test_label = "" if many else "test (epoch)"
            self.line(run.step_x(self.x_axis), run.loss, train_label, color, log=log)
            self.points(run.epoch_x(self.x_axis), run.test_loss, test_label, test_colors[index], log=log)
        # after every run's points, so no later run's cover a mark; one line
        # per run would bar the chart when several are compared
        for run, test_color in zip(self.runs, test_colors):
            self.mark_lowest_test_loss(run, run.test_loss, test_color, line=not many, log=log)
        self.plt.yscale("log" if log else "linear")
        self.frame_x()
        self.border_subtitle = self.mark_note()
        self.refresh()
