"""The sweep view: a grid of runs trained together, filling a table and
overlaid charts as the runs go.

The form goes through fmlab.trainer.studies.sweep.parse_grid, the door ``fmlab sweep`` uses,
and the table's columns and finished cells come from fmlab.trainer.studies.sweep as the
CLI's do. The sweep trains in a thread worker that wraps every ``(index,
event)`` in a message (never touching widgets); handlers update the
SweepMember of that run and its table row, and a timer redraws the progress
line and the charts at most REDRAWS_PER_SECOND times: plotext is pure Python
and holds the GIL the trainer needs.
"""

from __future__ import annotations

import threading
import time

from fmlab.trainer.config import ConfigError
from fmlab.trainer.events import RunFinished, StepMetrics
from fmlab.trainer.studies.grid import PRESETS
from fmlab.trainer.studies.sweep import Sweep
from fmlab.trainer.studies.tables import COLUMNS
from fmlab.tui.literal import literal, notify_literally, with_values
from fmlab.tui.messages import RunRefused, SaveFailed, SweepEnded, SweepEventRecorded
from fmlab.tui.screens.live import DatasetCache
from fmlab.tui.screens.sweep_run import SweepPlan, SweepRun, check_form
from fmlab.tui.screens.training_job import TrainingJob
from fmlab.tui.widgets.accuracy_chart import AccuracyChart
from fmlab.tui.widgets.loss_chart import LossChart
from fmlab.tui.widgets.metric_chart import MetricChart
from fmlab.tui.widgets.run_progress import RunProgress
from fmlab.tui.widgets.validates_soon import ValidatesSoon
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Checkbox, DataTable, Footer, Header, Input, Label, Select, Static
from textual.worker import Worker, WorkerState, get_current_worker

REDRAWS_PER_SECOND = 4
CHART_SHARE = 0.03  # charts may take at most this share of the time while training (as live.py)
CUSTOM = "custom"
# the form's text fields: parse_grid keyword -> label, and what they start with
TEXT_FIELDS = {"lr": "lrs", "arch": "archs", "epochs": "epochs"}
START_VALUES = {"lr": "0.1", "arch": "base", "epochs": "10"}
PLACEHOLDERS = {"lr": "e.g. 1,0.1,0.01", "arch": "e.g. base,wider or 128;64,32", "epochs": "e.g. 10"}
# narrower headers than the CLI's Markdown ones: the table shares 80 columns with the form
HEADERS = {"structure": "arch", "accuracy": "test %", "epoch": "conv", "params": "params", "optimizer": "opt"}
TABLE_SHARE = 0.4  # of the screen's height the table may grow to, with many runs


class SweepScreen(ValidatesSoon, TrainingJob, Screen):
    CSS_PATH = "sweep.tcss"
    BINDINGS = [
        Binding("ctrl+r", "start", "Start", priority=True),
        Binding("c", "stop_sweep", "Stop"),
        Binding("x", "toggle_axis", "x step/epoch", show=False),  # the footer has no room at 80 columns
    ]

    def __init__(self) -> None:
        super().__init__()
        self.sweep_id = 0
        self.cancel = threading.Event()
        self.job: Worker | None = None
        self.plan: SweepPlan | None = None  # the form's, while every field is good
        self.errors: dict[str, str] = {}
        self.cuda_available: bool | None = None  # None until probed
        self.shown: SweepRun | None = None
        self._dirty = True
        self._charts_next = 0.0  # when charts may be rebuilt next (perf_counter)
        self._build_mark = 0.0  # MetricChart.build_seconds at the last rebuild

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="sweep-top"):
            with Vertical(id="sweep-form"):
                presets = [(name, name) for name in PRESETS] + [("custom grid", CUSTOM)]
                yield from self._field(
                    "preset",
                    "preset",
                    Select(presets, value=CUSTOM, allow_blank=False, compact=True, id="sw-preset"),
                )
                for name, label in TEXT_FIELDS.items():
                    field_input = Input(
                        START_VALUES[name], placeholder=PLACEHOLDERS[name], compact=True, id=f"sw-{name}"
                    )
                    yield from self._field(name, label, field_input)
                devices = [("auto", "auto"), ("cpu", "cpu"), ("cuda", "cuda")]
                device = Select(devices, value="auto", allow_blank=False, compact=True, id="sw-device")
                yield from self._field("device", "device", device)
                stacked = Checkbox("by shape", True, compact=True, id="sw-stacked")
                yield from self._field("stacked", "stacked", stacked)
                yield Static("", id="sweep-hint")
            yield DataTable(cursor_type="row", zebra_stripes=True, id="sweep-table")
        yield RunProgress(id="sweep-progress")
        with Horizontal(id="sweep-charts"):
            yield LossChart(id="sweep-loss")
            yield AccuracyChart(id="sweep-accuracy")
        yield Footer()

    def _field(self, name: str, label: str, widget) -> ComposeResult:
        with Horizontal(classes="field-row", id=f"row-{name}"):
            yield Label(label, classes="field-label")
            yield widget
        yield Static("", id=f"error-{name}", classes="field-error")

    def on_mount(self) -> None:
        self.sub_title = "sweep a grid of runs"
        self.query_one("#sweep-form").border_title = "grid"
        self.query_one(DataTable).border_title = "runs"
        for chart in self.query(MetricChart):
            chart.x_axis = "epoch"  # runs of a grid line up by epoch
        self.validate()
        self.set_interval(1 / REDRAWS_PER_SECOND, self.redraw)
        self.probe_cuda()

    def on_screen_resume(self) -> None:
        self._dirty = True
        self.redraw()

    @work(thread=True, exit_on_error=False, group="probe")
    def probe_cuda(self) -> None:
        available, _ = self.app.probe.cuda_status()
        self.app.call_from_thread(self.set_cuda, available)

    def set_cuda(self, available: bool) -> None:
        self.cuda_available = available
        self.validate()

    # ------------------------------------------------------------ the form

    def form_values(self) -> dict[str, object]:
        """The fields as parse_grid keywords."""
        values: dict[str, object] = {name: self.query_one(f"#sw-{name}", Input).value for name in TEXT_FIELDS}
        values["device"] = self.query_one("#sw-device", Select).value
        return values

    def validate(self) -> SweepPlan | None:
        """Check the form, show each refusal at its field, plan the table."""
        stacked = self.query_one("#sw-stacked", Checkbox).value
        preset = str(self.query_one("#sw-preset", Select).value)
        values = self.form_values()
        self.plan, self.errors = check_form(preset, values, stacked)
        if self.cuda_available is False and values["device"] == "cuda" and "device" not in self.errors:
            self.plan, self.errors["device"] = None, "no CUDA device here; use auto or cpu"
        for name in (*TEXT_FIELDS, "device"):
            message = self.errors.get(name, "")
            error = self.query_one(f"#error-{name}", Static)
            error.update(literal(f"↳ {message}") if message else "")  # messages quote what was typed
            error.set_class(bool(message), "-shown")
            self.query_one(f"#row-{name}").set_class(bool(message), "-invalid")
        hint = self.query_one("#sweep-hint", Static)
        if self.plan is not None:
            runs = len(self.plan.configs)
            hint.update(f"{runs} run{'s' if runs != 1 else ''}" + ("" if stacked else " · one by one"))
        else:
            hint.update(with_values("[red]$error[/red]", error=self.errors.get("", "fix the flagged fields")))
        if self.plan is not None and (self.shown is None or self.shown.state == "planned"):
            self.show(SweepRun.of(self.plan))
        self._dirty = True
        return self.plan

    def on_select_changed(self, event: Select.Changed) -> None:
        event.stop()
        chosen = PRESETS.get(str(event.value)) if event.select.id == "sw-preset" else None
        if chosen is not None:
            for name in TEXT_FIELDS:
                if name in chosen.options:
                    self.query_one(f"#sw-{name}", Input).value = str(chosen.options[name])
        self.validate_soon()

    # ------------------------------------------------------------ the table

    def show(self, shown: SweepRun) -> None:
        """Show this sweep (planned or started) in the table and charts."""
        self.shown = shown
        table = self.query_one(DataTable)
        table.clear(columns=True)
        for name in shown.columns:
            table.add_column(HEADERS.get(name, COLUMNS[name].header), key=name)
        for index, member in enumerate(shown.members):
            table.add_row(*member.cells(shown.columns, shown.ended), key=str(index))
        self.fit_table()
        self._dirty = True

    def fit_table(self) -> None:
        """Let the top row grow to show every run, up to TABLE_SHARE of the
        screen. The form column sets the row's height (it also grows with its
        error lines) and the table fills it: CSS cannot take the larger of two
        heights."""
        runs = len(self.shown.members) if self.shown else 0
        most = int(self.size.height * TABLE_SHARE)
        self.query_one("#sweep-form").styles.min_height = min(runs + 3, most)  # + header and borders

    def on_resize(self) -> None:
        self.fit_table()

    def update_row(self, index: int) -> None:
        assert self.shown is not None
        table = self.query_one(DataTable)
        cells = self.shown.members[index].cells(self.shown.columns, self.shown.ended)
        for name, cell in zip(self.shown.columns, cells):
            table.update_cell(str(index), name, cell, update_width=True)

    def update_unfinished_rows(self) -> None:
        """Once the sweep has ended, runs that never started read "not run"."""
        assert self.shown is not None
        for index, member in enumerate(self.shown.members):
            if member.row is None:
                self.update_row(index)

    # ------------------------------------------------------------ starting

    def start_sweep(self, plan: SweepPlan) -> None:
        """Train ``plan`` here; a sweep still going is stopped (and saved) first."""
        self.cancel.set()
        self.cancel = threading.Event()
        self.sweep_id += 1
        sweep_id = self.sweep_id
        runner = Sweep(
            plan.configs,
            self.app.sessions_dir,
            table=plan.table,
            preset=plan.preset,
            grid=plan.grid,
            batched=plan.batched,
            on_save_error=lambda message: self.post_message(SaveFailed(sweep_id, message)),
        )
        shown = SweepRun.of(plan)
        shown.state, shown.record_path, shown.began_at = "running", runner.record.path, time.monotonic()
        self.show(shown)
        self.query_one(DataTable).focus()  # so that c stops the sweep rather than typing into a field
        self.job = self._train(sweep_id, runner, self.app.datasets, self.cancel)
        self.refresh_bindings()

    @work(thread=True, exclusive=True, exit_on_error=False, group="sweep")
    def _train(self, sweep_id: int, runner: Sweep, datasets: DatasetCache, cancel: threading.Event) -> None:
        from fmlab.trainer import data

        worker = get_current_worker()
        try:
            dataset = datasets.get(runner.record.configs[0].device)
        except (data.DataError, ConfigError) as exc:
            self.post_message(RunRefused(sweep_id, str(exc)))
            return
        if worker.is_cancelled:
            cancel.set()
        for index, event in runner.run(dataset, cancel):
            if worker.is_cancelled:  # the app is closing: end as "stopped", saved
                cancel.set()
            row = runner.rows[index] if isinstance(event, RunFinished) else None
            self.post_message(SweepEventRecorded(sweep_id, index, event, row))
        record = runner.record
        self.post_message(SweepEnded(sweep_id, record.status, record.path, record.seconds))

    def request_stop(self) -> None:
        self.action_stop_sweep()

    # ------------------------------------------------------------ events

    def _current(self, message) -> bool:
        message.stop()
        self._dirty = True
        return message.run_id == self.sweep_id and self.shown is not None

    def on_sweep_event_recorded(self, message: SweepEventRecorded) -> None:
        if not self._current(message):
            return
        member = self.shown.members[message.index]
        member.add(message.event)
        if isinstance(message.event, RunFinished):
            member.row = message.row
        if not isinstance(message.event, StepMetrics):
            self.update_row(message.index)

    def on_sweep_ended(self, message: SweepEnded) -> None:
        if not self._current(message):
            return
        shown = self.shown
        shown.state, shown.seconds, shown.stopping = message.status, message.seconds, False
        self.update_unfinished_rows()
        notify_literally(self, f"sweep {message.status}: record saved to {message.path}", timeout=8)

    def on_run_refused(self, message: RunRefused) -> None:
        if self._current(message):
            self.shown.state, self.shown.problem = "refused", message.reason
            self.update_unfinished_rows()
            notify_literally(
                self, message.reason, title="Cannot start the sweep", severity="error", timeout=10
            )

    def on_save_failed(self, message: SaveFailed) -> None:
        if self._current(message):
            notify_literally(self, f"{message.reason}; training goes on", severity="warning", timeout=8)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        self._dirty = True
        self.refresh_bindings()
        if event.worker is self.job and event.state == WorkerState.ERROR and self.shown is not None:
            error = event.worker.error
            self.shown.state = "failed"
            self.shown.problem = f"failed: {type(error).__name__}: {error}".splitlines()[0]
            self.update_unfinished_rows()
            notify_literally(self, self.shown.problem, severity="error", timeout=10)

    # ------------------------------------------------------------ drawing

    def redraw(self) -> None:
        """Runs on a timer. While training, the charts are rebuilt so that
        building them takes at most CHART_SHARE of the time: every rebuild is
        pure Python holding the GIL the training thread needs."""
        if not self._dirty or self.shown is None or not self.is_current:
            return
        now = time.perf_counter()
        charts_due = not self.busy or now >= self._charts_next
        self._dirty = not charts_due  # come back for the charts
        shown = self.shown
        done, total = shown.counts()
        if shown.state == "planned":
            runs = len(shown.members)
            status = f"{runs} run{'s' if runs != 1 else ''} planned · ctrl+r starts the sweep"
            if self.plan is None:
                status = "[red]fix the flagged fields to plan a sweep[/red]"
        else:
            status = shown.status(time.monotonic())
        with self.app.batch_update():
            detail = shown.detail(self.query_one("#run-detail").size.width)
            self.query_one(RunProgress).show(status, done, total, detail)
            if charts_due:
                last_cost = MetricChart.build_seconds - self._build_mark
                self._build_mark = MetricChart.build_seconds
                self._charts_next = now + max(1 / REDRAWS_PER_SECOND, last_cost / CHART_SHARE)
                series = [member.series for member in shown.members]
                for chart in self.query(MetricChart):
                    chart.show(series)

    # ------------------------------------------------------------ actions

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "stop_sweep":
            return self.busy
        return True

    def action_start(self) -> None:
        plan = self.validate()
        if plan is None:
            fields = ", ".join(TEXT_FIELDS.get(name, name) for name in self.errors if name)
            self.notify(f"fix the flagged fields first: {fields or 'see the form'}", severity="error")
            return
        self.app.start_sweep(plan)

    def action_stop_sweep(self) -> None:
        if self.busy and self.shown is not None:
            self.cancel.set()
            self.shown.stopping = True
            self._dirty = True

    def action_toggle_axis(self) -> None:
        for chart in self.query(MetricChart):
            chart.x_axis = "epoch" if chart.x_axis == "step" else "step"
