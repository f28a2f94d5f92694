"""Two or more sessions overlaid on the same charts (loss, accuracy and the
gradients), with their settings in a table.

Each run's curves are labelled by what differs between the runs (``lr 0.1``
against ``lr 0.01``), and the table's columns whose values differ are
highlighted."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import DataTable, Header

from fmlab.trainer.config import RunConfig
from fmlab.trainer.fields import RUN_FIELDS
from fmlab.trainer.sessions import SessionRecord
from fmlab.trainer.text import visible
from fmlab.tui.literal import cell
from fmlab.tui.screens.chart_keys import CHART_KEYS, ChartKeys
from fmlab.tui.screens.terminal_sized import TerminalSized
from fmlab.tui.widgets.accuracy_chart import AccuracyChart
from fmlab.tui.widgets.gradient_chart import GradientChart
from fmlab.tui.widgets.key_footer import KeyFooter
from fmlab.tui.widgets.loss_chart import LossChart
from fmlab.tui.widgets.metric_chart import MetricChart, RunSeries

DIFFERS = "bold underline"  # how a setting that differs between the runs is shown (any theme)
# Short names for labels, where the form's label is long
SHORT = {
    "batch_size": "bs",
    "optimizer": "",
    "stop_on_converge": "stop",
    "full_steps": "steps",
    "step_every": "every",
}


def percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def differing_fields(configs: list[RunConfig]) -> list[str]:
    """The fields (by name) whose values are not the same in every config."""
    return [f.name for f in RUN_FIELDS if len({f.text(f.read(c)) for c in configs}) > 1]


def run_labels(configs: list[RunConfig]) -> list[str]:
    """A label per run from what differs: ``lr 0.1`` against ``lr 0.01``,
    ``base adam`` against ``wider sgd``; ``#1``, ``#2`` where nothing does."""
    fields = {f.name: f for f in RUN_FIELDS}
    names = differing_fields(configs)
    labels = []
    for index, config in enumerate(configs):
        parts = []
        for name in names:
            field = fields[name]
            text = field.text(field.read(config))
            prefix = SHORT.get(name, "" if name == "arch" else field.label)
            parts.append(f"{prefix} {text}".strip())
        labels.append(" ".join(parts) or f"#{index + 1}")
    if len(set(labels)) < len(labels):  # the same settings twice: number them
        labels = [f"{label} #{i + 1}" for i, label in enumerate(labels)]
    return labels


# the table's columns: a header and how a config shows in it, with the fields it stands for
SETTINGS = (
    ("arch", lambda c: c.model.name, ("arch",)),
    ("lr", lambda c: f"{c.optimizer.lr:g}", ("lr",)),
    ("opt", lambda c: c.optimizer.name + (f" m={c.optimizer.momentum:g}" if c.optimizer.momentum else ""),
     ("optimizer", "momentum")),
    ("bs", lambda c: str(c.batch_size), ("batch_size",)),
    ("seed", lambda c: str(c.seed), ("seed",)),
)  # fmt: skip


class CompareScreen(TerminalSized, ChartKeys, Screen):
    CSS_PATH = "compare.tcss"
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back", tooltip="Back to the sessions browser"),
        *CHART_KEYS,
    ]

    def __init__(self, records: list[SessionRecord]) -> None:
        super().__init__()
        self.records = records
        self.labels = run_labels([r.config for r in records])

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="compare-charts"):
            yield LossChart(id="compare-loss")
            yield AccuracyChart(id="compare-accuracy")
        yield GradientChart(id="compare-gradients")
        yield DataTable(cursor_type="row", id="compare-table")
        yield KeyFooter()

    def on_mount(self) -> None:
        differ = differing_fields([r.config for r in self.records])
        self.sub_title = f"comparing {len(self.records)} sessions" + (
            f" · they differ in {', '.join(d.replace('_', ' ') for d in differ)}" if differ else ""
        )
        # plotext draws labels as they are: visible() keeps control characters out
        series = [RunSeries.from_record(r, visible(label)) for r, label in zip(self.records, self.labels)]
        for chart in self.query(MetricChart):
            chart.x_axis = "epoch"
            chart.show(series)
        table = self.query_one(DataTable)
        table.add_column("run", key="run")
        for header, _, fields in SETTINGS:
            table.add_column(cell(header, DIFFERS if set(fields) & set(differ) else ""), key=header)
        table.add_columns("epochs", "final", "best", "conv", "status", "id")
        for label, record in zip(self.labels, self.records):
            config, results = record.config, record.results
            settings = [
                cell(show(config), DIFFERS if set(fields) & set(differ) else "")
                for _, show, fields in SETTINGS
            ]
            table.add_row(
                cell(label),
                *settings,
                f"{len(record.epochs)}/{config.epochs}",
                percent(results.final_test_acc if results else None),
                percent(results.best_test_acc if results else None),
                "-" if results is None or results.converged_epoch is None else str(results.converged_epoch),
                cell(record.status),
                cell(record.id),
            )
