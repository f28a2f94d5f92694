"""Accuracy: train and test accuracy (%) per epoch."""

from __future__ import annotations

from fmlab.tui.widgets.metric_chart import RUN_COLORS, MetricChart


class AccuracyChart(MetricChart):
    TITLE = "accuracy %"

    def data_key(self, run) -> tuple:
        return (len(run.epoch),)  # per-epoch points only

    def replot(self) -> None:
        self.begin()
        many = len(self.runs) > 1
        for index, run in enumerate(self.runs):
            xs = run.epoch_x(self.x_axis)
            if many:
                color = RUN_COLORS[index % len(RUN_COLORS)]
                self.points(xs, run.test_acc, f"{run.name} test", color)
            else:
                self.points(xs, run.train_acc, "train", RUN_COLORS[0])
                self.points(xs, run.test_acc, "test", RUN_COLORS[1])
        self.frame_x()
        self.refresh()
