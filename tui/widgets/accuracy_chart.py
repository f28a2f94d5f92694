"""Accuracy: train and test accuracy (%) per epoch, with the test accuracy at
each run's lowest test loss marked as on the loss chart."""

from __future__ import annotations

from fmlab.tui.widgets.metric_chart import RUN_COLORS, MetricChart


class AccuracyChart(MetricChart):
    TITLE = "accuracy %"

    def data_key(self, run) -> tuple:
        return (len(run.epoch),)  # per-epoch points only

    def replot(self) -> None:
        self.begin()
        many = len(self.runs) > 1
        test_colors = self.test_colors()
        for run, color in zip(self.runs, test_colors):
            xs = run.epoch_x(self.x_axis)
            if many:
                self.points(xs, run.test_acc, f"{run.name} test", color)
            else:
                self.points(xs, run.train_acc, "train", RUN_COLORS[0])
                self.points(xs, run.test_acc, "test", color)
        # the test accuracy where the test loss was lowest (the best accuracy
        # may be elsewhere), over every run's points
        for run, color in zip(self.runs, test_colors):
            self.mark_lowest_test_loss(run, run.test_acc, color, line=not many)
        self.frame_x()
        self.border_subtitle = self.mark_note()
        self.refresh()
