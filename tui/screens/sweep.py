"""The sweep view: a grid of runs trained together, filling a table and
overlaid charts as the runs go.

The form's fields come from the fields table (fmlab.trainer.fields) and go
through fmlab.trainer.studies.grid.parse_grid, the door ``fmlab sweep`` uses,
which reports every refused field at once; the table's columns and finished
cells come from fmlab.trainer.studies.sweep as the CLI's do. What the view
shares with the live view (the worker, dropping stale messages, the paced
redraw) is TrainingView's; here each ``(index, event)`` of the sweep updates
the SweepMember of that run and its table row.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Checkbox, DataTable, Header, Input, Label, Select, Static

from fmlab.trainer.data import DatasetCache
from fmlab.trainer.events import RunFinished, StepMetrics
from fmlab.trainer.fields import FIELDS, Choice, Field
from fmlab.trainer.sessions import SessionRecord
from fmlab.trainer.studies.grid import PRESETS
from fmlab.trainer.studies.saved import SavedRun, saved_runs
from fmlab.trainer.studies.sweep import Sweep, SweepError, SweepRecord, load_sweep
from fmlab.trainer.studies.tables import COLUMNS
from fmlab.tui.literal import literal, notify_literally, with_values
from fmlab.tui.messages import SweepEnded, TrainingEvent, TrainingMessage
from fmlab.tui.screens.saved_sweeps import SavedSweepChoice
from fmlab.tui.screens.sweep_run import ANALYSIS_COLUMNS, SweepPlan, SweepRun, check_form
from fmlab.tui.screens.training_view import TrainingView
from fmlab.tui.widgets.accuracy_chart import AccuracyChart
from fmlab.tui.widgets.key_footer import KeyFooter
from fmlab.tui.widgets.loss_chart import LossChart
from fmlab.tui.widgets.metric_chart import MetricChart, RunSeries
from fmlab.tui.widgets.run_progress import RunProgress
from fmlab.tui.widgets.validates_soon import ValidatesSoon

CUSTOM = "custom"
# The fields of a run the form shows, in its order; the others take the
# preset's values or their defaults.
FORM_FIELDS = ("lr", "arch", "epochs", "device")
# narrower headers than the CLI's Markdown ones: the table shares 80 columns with the form
HEADERS = {"structure": "arch", "accuracy": "test %", "epoch": "conv", "params": "params", "optimizer": "opt"}
TABLE_SHARE = 0.4  # of the screen's height the table may grow to, with many runs
FOLLOW_SECONDS = 2.0  # how often a reopened sweep still training elsewhere is read again


class SweepScreen(ValidatesSoon, TrainingView):
    CSS_PATH = "sweep.tcss"
    BINDINGS = [
        Binding("ctrl+r", "start", "Start", priority=True, tooltip="Train the sweep"),
        Binding("c", "stop", "Stop", tooltip="Stop the sweep (its runs are saved as stopped)"),
        Binding(
            "ctrl+o",
            "open_saved",
            "Open",
            priority=True,
            tooltip="Reopen a saved sweep or a reproduce folder's study",
        ),
        Binding("escape", "back_to_form", "Form", tooltip="From a reopened sweep back to the grid form"),
    ]
    REDRAWS_PER_SECOND = 4
    TRAINING_PROGRESS_EVERY = 0.0  # every redraw: the timer is slower than the live view's
    STOP_QUESTION = "A sweep is training. Stop it (its runs are saved as stopped) and start this one?"
    QUIT_NOTICE = "Stopping the sweep and saving it…"
    REFUSED_TITLE = "Cannot start the sweep"

    def __init__(self) -> None:
        super().__init__()
        self.plan: SweepPlan | None = None  # the form's, while every field is good
        self.errors: dict[str, str] = {}
        self.cuda_available: bool | None = None  # None until probed
        self.shown: SweepRun | None = None
        self.saved_records: dict[int, SessionRecord] = {}  # the runs of a reopened sweep, by row
        self.followed: SavedSweepChoice | None = None  # a reopened sweep still training elsewhere

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
                for name in FORM_FIELDS:
                    yield from self._field(name, form_label(name), _form_widget(FIELDS[name]))
                stacked = Checkbox("by shape", True, compact=True, id="sw-stacked")
                yield from self._field("stacked", "stacked", stacked)
                # a box of fixed height: a refusal shown there moves no row under the pointer
                with VerticalScroll(id="sweep-notes", can_focus=False):
                    yield Static("", id="sweep-hint")
                    for name in FORM_FIELDS:
                        yield Static("", id=f"error-{name}", classes="field-error", name=form_label(name))
            yield DataTable(cursor_type="row", zebra_stripes=True, id="sweep-table")
        yield RunProgress(id="sweep-progress")
        with Horizontal(id="sweep-charts"):
            yield LossChart(id="sweep-loss")
            yield AccuracyChart(id="sweep-accuracy")
        yield KeyFooter()

    def _field(self, name: str, label: str, widget) -> ComposeResult:
        with Horizontal(classes="field-row", id=f"row-{name}"):
            yield Label(label, classes="field-label")
            yield widget

    def on_mount(self) -> None:
        self.sub_title = "sweep a grid of runs"
        self.query_one("#sweep-form").border_title = "grid"
        self.query_one(DataTable).border_title = "runs"
        for chart in self.query(MetricChart):
            chart.x_axis = "epoch"  # runs of a grid line up by epoch
        self.validate()
        self.probe_cuda()

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
        return {name: self.query_one(f"#sw-{name}").value for name in FORM_FIELDS}

    def validate(self) -> SweepPlan | None:
        """Check the form, show each refusal at its field, plan the table."""
        stacked = self.query_one("#sw-stacked", Checkbox).value
        preset = str(self.query_one("#sw-preset", Select).value)
        values = self.form_values()
        self.plan, self.errors = check_form(preset, values, stacked)
        if self.cuda_available is False and values["device"] == "cuda" and "device" not in self.errors:
            self.plan, self.errors["device"] = None, "no CUDA device here; use auto or cpu"
        for name in FORM_FIELDS:
            message = self.errors.get(name, "")
            error = self.query_one(f"#error-{name}", Static)
            error.update(
                literal(f"{error.name}: {message}") if message else ""
            )  # messages quote what was typed
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
        self.dirty = True
        return self.plan

    def on_select_changed(self, event: Select.Changed) -> None:
        event.stop()
        chosen = PRESETS.get(str(event.value)) if event.select.id == "sw-preset" else None
        if chosen is not None:
            for name in FORM_FIELDS:
                if name in chosen.options:
                    self.query_one(f"#sw-{name}", Input).value = str(chosen.options[name])
        self.validate_soon()

    # ------------------------------------------------------------ the table

    def show(self, shown: SweepRun) -> None:
        """Show this sweep (planned or started) in the table and charts."""
        self.shown = shown
        self.set_class(shown.reopened, "-reopened")  # a saved sweep takes the form's place: its table is wide
        table = self.query_one(DataTable)
        table.clear(columns=True)
        for name in shown.columns:
            table.add_column(column_header(name), key=name)
        for index, member in enumerate(shown.members):
            table.add_row(*member.cells(shown.columns, shown.ended), key=str(index))
        self.fit_table()
        self.dirty = True

    def fit_table(self) -> None:
        """Let the top row grow to show every run, up to TABLE_SHARE of the
        screen. The form column sets the row's height (it also grows with its
        error lines) and the table fills it: CSS cannot take the larger of two
        heights."""
        runs = len(self.shown.members) if self.shown else 0
        most = int(self.size.height * TABLE_SHARE)
        height = min(runs + 3, most)  # + header and borders
        if self.shown is not None and self.shown.reopened:
            self.query_one(DataTable).styles.height = max(height + 1, 4)  # + a scroll bar for long names
        else:
            self.query_one(DataTable).styles.height = "100%"
            self.query_one("#sweep-form").styles.min_height = height

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
        self.followed = None
        run_id = self.next_run()
        runner = Sweep.new(
            plan.configs,
            self.app.sessions_dir,
            table=plan.table,
            preset=plan.preset,
            grid=plan.grid,
            stacked=plan.stacked,
            on_warning=self.save_warning(run_id),
        )
        shown = SweepRun.of(plan)
        shown.state, shown.record_path, shown.began_at = "running", runner.record.path, time.monotonic()
        self.show(shown)
        self.query_one(DataTable).focus()  # so that c stops the sweep rather than typing into a field
        training = self._trained(run_id, runner, self.app.datasets, self.cancel)
        self.start_job(training, device=plan.configs[0].device)

    def _trained(
        self, run_id: int, runner: Sweep, datasets: DatasetCache, cancel: threading.Event
    ) -> Iterator[TrainingMessage]:
        for index, event in runner.run(datasets, cancel):
            if isinstance(event, RunFinished):
                yield TrainingEvent(run_id, index, event, runner.session_path(index), runner.rows[index])
            else:
                yield TrainingEvent(run_id, index, event)
        record = runner.record
        yield SweepEnded(run_id, record.status, record.path, record.seconds)

    # ------------------------------------------------------------ what it shows

    def record_event(self, message: TrainingEvent) -> None:
        assert self.shown is not None
        member = self.shown.members[message.index]
        member.add(message.event)
        if isinstance(message.event, RunFinished):
            member.row = message.row
        if not isinstance(message.event, StepMetrics):
            self.update_row(message.index)

    def on_sweep_ended(self, message: SweepEnded) -> None:
        if not self.takes(message):
            return
        assert self.shown is not None
        shown = self.shown
        shown.state, shown.seconds, shown.stopping = message.status, message.seconds, False
        self.update_unfinished_rows()
        notify_literally(self, f"sweep {message.status}: record saved to {message.path}", timeout=8)
        self.redraw(at_once=True)

    def record_problem(self, state: str, problem: str) -> None:
        assert self.shown is not None
        self.shown.state, self.shown.problem = state, problem
        self.update_unfinished_rows()

    def record_stopping(self) -> None:
        assert self.shown is not None
        self.shown.stopping = True

    def progress(self) -> tuple[str, int, int | None, str]:
        shown = self.shown
        if shown is None:  # the form is checked (and a sweep planned) as the view mounts
            return "", 0, None, ""
        if shown.state == "planned":
            runs = len(shown.members)
            status = f"{runs} run{'s' if runs != 1 else ''} planned · ctrl+r starts the sweep"
            if self.plan is None:
                status = "[red]fix the flagged fields to plan a sweep[/red]"
        else:
            status = shown.status(time.monotonic())
        done, total = shown.counts()
        return status, done, total, shown.detail(self.query_one("#run-detail").size.width)

    def chart_series(self) -> list[RunSeries]:
        return [member.series for member in self.shown.members] if self.shown else []

    # ------------------------------------------------------------ actions

    def action_open_saved(self) -> None:
        if self.training:
            self.notify("a sweep is training here: stop it (c) or let it finish first", severity="warning")
            return
        self.app.open_saved_sweeps(self.app.sessions_dir, self.reopen)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "back_to_form":
            return self.shown is not None and self.shown.reopened
        return super().check_action(action, parameters)

    def action_back_to_form(self) -> None:
        self.saved_records, self.followed = {}, None
        if self.plan is not None:
            self.show(SweepRun.of(self.plan))
        else:  # the form has a refused field: an empty table until it is fixed
            self.shown = None
            self.set_class(False, "-reopened")
            self.query_one(DataTable).clear(columns=True)
            self.fit_table()
        self.validate()
        self.query_one("#sw-lr").focus()

    def reopen(self, choice: SavedSweepChoice | None) -> None:
        if choice is not None:
            self.followed = None
            self.read_saved(choice)

    @work(thread=True, exclusive=True, exit_on_error=False, group="saved")
    def read_saved(self, choice: SavedSweepChoice, again: bool = False) -> None:
        """Read the sweep's runs (each session in full: not on the UI thread);
        ``again``: the sweep's record too, as it trains elsewhere."""
        sweep = choice.sweep
        if again:
            try:
                sweep = load_sweep(sweep.path)
            except SweepError as exc:
                self.app.call_from_thread(self.stop_following, choice, str(exc))
                return
        runs = saved_runs(sweep, choice.sessions_dir)
        self.app.call_from_thread(self.show_saved, choice, sweep, runs, again)

    def show_saved(
        self, choice: SavedSweepChoice, sweep: SweepRecord, runs: list[SavedRun], again: bool
    ) -> None:
        if self.training or (again and self.followed is not choice):
            return  # a sweep started here, or another one was opened, meanwhile
        table = self.query_one(DataTable)
        cursor = table.cursor_row
        self.show(SweepRun.of_saved(sweep, runs))
        self.saved_records = {index: run.record for index, run in enumerate(runs) if run.record}
        if again:
            table.move_cursor(row=cursor)
        else:
            table.focus()
            missing = [run.problem for run in runs if run.problem and run.problem != "never started"]
            if missing:
                notify_literally(
                    self, f"{len(missing)} run(s) without curves: {missing[0]}", severity="warning"
                )
        self.followed = choice if sweep.status == "running" else None
        if self.followed is not None:
            self.set_timer(FOLLOW_SECONDS, lambda: self.follow(choice))
        self.redraw(at_once=True)

    def follow(self, choice: SavedSweepChoice) -> None:
        if self.followed is not choice or not self.is_attached:
            return
        if self.is_current:
            self.read_saved(choice, again=True)
        else:  # another screen is shown: read again once this one is back
            self.set_timer(FOLLOW_SECONDS, lambda: self.follow(choice))

    def stop_following(self, choice: SavedSweepChoice, problem: str) -> None:
        if self.followed is choice:
            self.followed = None
            notify_literally(self, f"stopped following the sweep: {problem}", severity="warning")

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        """Enter on a reopened run replays it (its charts, with its analysis)."""
        if self.shown is None or not self.shown.reopened or event.data_table.id != "sweep-table":
            return
        event.stop()
        record = self.saved_records.get(int(event.row_key.value))
        if record is not None:
            self.app.open_replay(record, float("inf"))

    def action_start(self) -> None:
        plan = self.validate()
        if plan is None:
            fields = ", ".join(form_label(name) for name in self.errors if name)
            self.notify(f"fix the flagged fields first: {fields or 'see the form'}", severity="error")
            return
        self.app.start_sweep(plan)


def column_header(name: str) -> str:
    if name in ANALYSIS_COLUMNS:
        return ANALYSIS_COLUMNS[name][0]
    return HEADERS.get(name) or COLUMNS[name].header


def form_label(name: str) -> str:
    """A field's label on the form: plural for a sweep axis (``lrs``)."""
    field = FIELDS[name]
    return field.axis.label if field.axis else field.label


def _form_widget(field: Field) -> Input | Select:
    """A menu for a choice, else text: a list for an axis, one value for the rest."""
    start = field.text(field.default)
    if isinstance(field.parser, Choice):
        return Select(
            field.parser.menu(), value=start, allow_blank=False, compact=True, id=f"sw-{field.name}"
        )
    example = field.axis.example if field.axis else start
    return Input(start, placeholder=f"e.g. {example}", compact=True, id=f"sw-{field.name}")
