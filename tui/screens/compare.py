"""Two or more sessions overlaid on the same charts, with their configs."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header

from fmlab.trainer.sessions import SessionRecord
from fmlab.tui.literal import cell
from fmlab.tui.widgets.accuracy_chart import AccuracyChart
from fmlab.tui.widgets.loss_chart import LossChart
from fmlab.tui.widgets.metric_chart import MetricChart, RunSeries


def percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def label_of(index: int) -> str:
    return f"#{index + 1}"


class CompareScreen(Screen):
    CSS_PATH = "compare.tcss"
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("x", "toggle_axis", "x step/epoch"),
    ]

    def __init__(self, records: list[SessionRecord]) -> None:
        super().__init__()
        self.records = records

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="compare-charts"):
            yield LossChart(id="compare-loss")
            yield AccuracyChart(id="compare-accuracy")
        yield DataTable(cursor_type="row", id="compare-table")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = f"comparing {len(self.records)} sessions"
        series = [RunSeries.from_record(r, label_of(i)) for i, r in enumerate(self.records)]
        for chart in self.query(MetricChart):
            chart.x_axis = "epoch"
            chart.show(series)
        table = self.query_one(DataTable)
        table.add_columns("", "arch", "lr", "opt", "batch", "epochs", "final", "best", "conv", "status", "id")
        for index, record in enumerate(self.records):
            config, results = record.config, record.results
            table.add_row(
                label_of(index),
                config.model.name,
                f"{config.optimizer.lr:g}",
                config.optimizer.name
                + (f" m={config.optimizer.momentum:g}" if config.optimizer.momentum else ""),
                str(config.batch_size),
                f"{len(record.epochs)}/{config.epochs}",
                percent(results.final_test_acc if results else None),
                percent(results.best_test_acc if results else None),
                "-" if results is None or results.converged_epoch is None else str(results.converged_epoch),
                cell(record.status),
                cell(record.id),
            )

    def action_toggle_axis(self) -> None:
        for chart in self.query(MetricChart):
            chart.x_axis = "epoch" if chart.x_axis == "step" else "step"
