"""What the sweep view knows about the sweep it shows, and how it reads in
words: the checked form (SweepPlan), each run's progress (SweepMember) and the
whole sweep's (SweepRun). The screen only asks these for text and cells.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from textual.content import Content
from textual.markup import escape

from fmlab.trainer.analysis import RunAnalysis
from fmlab.trainer.config import ConfigError, RunConfig
from fmlab.trainer.events import FINISHED, EpochMetrics, RunStarted, StepMetrics
from fmlab.trainer.fields import field_named
from fmlab.trainer.studies.grid import PRESETS, expand, grid_to_dict, parse_grid
from fmlab.trainer.studies.saved import SavedRun
from fmlab.trainer.studies.sweep import SweepRecord
from fmlab.trainer.studies.tables import COLUMNS, RunRow, table_columns, varying_axes
from fmlab.trainer.text import visible
from fmlab.tui.literal import cell, literal
from fmlab.tui.screens.live_run import clock_text
from fmlab.tui.widgets.metric_chart import RunSeries

RESULT_COLUMNS = ("accuracy", "epoch", "status")  # filled in while a run trains


def _best_at(a: RunAnalysis) -> str:
    return "-" if a.best_test_acc is None else f"{a.best_test_acc:.2f}@{a.best_test_acc_epoch}"


def _lowest_loss_at(a: RunAnalysis) -> str:
    if a.lowest_test_loss_epoch is None:
        return "-"
    rise = f" +{a.test_loss_rise:.3f}" if a.test_loss_rise else ""
    return f"{a.lowest_test_loss_epoch}{rise}"


# What a reopened run's curves say (fmlab.trainer.analysis), as columns:
# header and cell. "low loss" is the epoch of the lowest test loss and how far
# the loss rose after it.
ANALYSIS_COLUMNS = {
    "best_at": ("best@epoch", _best_at),
    "lowest_loss": ("low loss", _lowest_loss_at),
    "trend": ("trend", lambda a: a.trend or "-"),
}


@dataclass(frozen=True)
class SweepPlan:
    """A checked form: everything a Sweep is made from."""

    configs: list[RunConfig]
    table: str
    preset: str | None
    grid: dict
    stacked: bool

    @property
    def name(self) -> str:
        return self.preset or "grid"


def check_form(
    preset: str, values: dict[str, object], stacked: bool
) -> tuple[SweepPlan | None, dict[str, str]]:
    """The plan, or None and each refused field with its reason.

    The form's values go over the preset's options and parse_grid checks them
    all at once; a refusal of a field the form does not show is filed under ``""``.
    """
    chosen = PRESETS.get(preset)
    options = dict(chosen.options) if chosen else {}
    options.update(values)
    try:
        grid = parse_grid(**options)
        configs = expand(grid)
    except ConfigError as exc:
        return None, _errors_by_field(exc, values)
    table = chosen.table if chosen else "grid"
    return SweepPlan(configs, table, chosen.name if chosen else None, grid_to_dict(grid), stacked), {}


def _errors_by_field(error: ConfigError, shown: dict[str, object]) -> dict[str, str]:
    errors: dict[str, str] = {}
    elsewhere: list[str] = []
    for key, reason in error.errors.items():
        field = field_named(key)
        if field is not None and field.name in shown:
            errors[field.name] = reason
        else:
            elsewhere.append(f"{key}: {reason}")
    if elsewhere:
        errors[""] = "; ".join(elsewhere)
    return errors


def sweep_columns(table: str, configs: list[RunConfig]) -> list[str]:
    """The CLI's columns for the table, led by any axis of the grid they leave
    out (an lr preset asked for two architectures) and ending in the status."""
    columns = table_columns(table, configs)
    shown = set(columns) | ({"arch"} if "structure" in columns else set())
    columns = [axis for axis in varying_axes(configs) if axis not in shown] + columns
    return columns if "status" in columns else [*columns, "status"]


def fit_path(path: Path, width: int) -> str:
    """``path`` relative to the working folder where it is under it, and cut
    from the left to ``width`` characters: the file name is what tells sweeps apart."""
    try:
        text = str(path.resolve().relative_to(Path.cwd()))
    except (OSError, ValueError):
        text = str(path)
    return text if len(text) <= width else "…" + text[len(text) - width + 1 :]


def member_name(config: RunConfig) -> str:
    return f"lr {config.optimizer.lr:g} {config.model.name}"


@dataclass
class SweepMember:
    """One run of the grid as the view knows it."""

    config: RunConfig
    series: RunSeries
    started: bool = False
    steps_per_epoch: int = 0
    epochs_done: int = 0
    test_acc: float | None = None
    converged_epoch: int | None = None
    row: RunRow | None = None  # once the run has finished
    analysis: RunAnalysis | None = None  # of a reopened run's session
    saved: bool = False  # reopened from a file: its cells are shown literally

    def add(self, event) -> None:
        if isinstance(event, RunStarted):
            self.started = True
            self.steps_per_epoch = event.steps_per_epoch
            self.series.steps_per_epoch = event.steps_per_epoch
        elif isinstance(event, StepMetrics):
            self.series.add_step(event)
        elif isinstance(event, EpochMetrics):
            self.series.add_epoch(event)
            self.epochs_done = event.epoch
            self.test_acc = event.test_acc
            self.converged_epoch = event.converged_epoch

    def progress(self) -> float:
        """Epochs done, counting the steps of the epoch under way; a run
        that ended on its own counts as whole (it may have stopped early)."""
        if self.row is not None and self.row.status in FINISHED:
            return float(self.config.epochs)
        if not self.series.step or not self.steps_per_epoch:
            return float(self.epochs_done)
        return max(float(self.epochs_done), self.series.step[-1] / self.steps_per_epoch)

    @classmethod
    def reopened(cls, run: SavedRun) -> SweepMember:
        name = member_name(run.config)
        record = run.record
        series = RunSeries.from_record(record, name) if record else RunSeries(name=name)
        last = record.epochs[-1] if record and record.epochs else None
        return cls(run.config, series, started=record is not None, steps_per_epoch=series.steps_per_epoch,
                   epochs_done=last.epoch if last else 0, test_acc=last.test_acc if last else None,
                   converged_epoch=last.converged_epoch if last else None, row=run.row,
                   analysis=run.analysis, saved=True)  # fmt: skip

    def cells(self, columns: list[str], ended: bool) -> list:
        if self.saved:
            return [cell(text) for text in self._cells(columns, ended)]
        return self._cells(columns, ended)

    def _cells(self, columns: list[str], ended: bool) -> list[str]:
        results = iter(self._result_cells([c for c in columns if c not in ANALYSIS_COLUMNS], ended))
        return [self._analysis_cell(c) if c in ANALYSIS_COLUMNS else next(results) for c in columns]

    def _analysis_cell(self, column: str) -> str:
        return ANALYSIS_COLUMNS[column][1](self.analysis) if self.analysis else "-"

    def _result_cells(self, columns: list[str], ended: bool) -> list[str]:
        if self.row is not None:
            return [COLUMNS[c].text(self.row) for c in columns]
        if self.saved:
            status = "unfinished" if self.started else "not run"
            return [status if c == "status" else "-" if c in RESULT_COLUMNS else
                    COLUMNS[c].text(RunRow.pending(self.config)) for c in columns]  # fmt: skip
        if not self.started:
            status = "not run" if ended else "pending"
        elif ended:  # the sweep failed under it
            status = "interrupted"
        else:
            status = f"[green]running {min(self.epochs_done + 1, self.config.epochs)}/{self.config.epochs}[/]"
        live = {
            "accuracy": "-" if self.test_acc is None else f"[dim]{self.test_acc:.2f}[/]",
            "epoch": "-" if self.converged_epoch is None else str(self.converged_epoch),
            "status": status,
        }
        pending = RunRow.pending(self.config)
        return [live[c] if c in RESULT_COLUMNS else COLUMNS[c].text(pending) for c in columns]


@dataclass
class SweepRun:
    """The sweep the table and charts show: planned from the form, or started."""

    plan: SweepPlan
    members: list[SweepMember]
    columns: list[str]
    state: str = "planned"  # planned, running, completed, stopped, refused, failed
    record_path: Path | None = None
    problem: str = ""
    stopping: bool = False
    began_at: float = 0.0
    seconds: float | None = None
    reopened: bool = False  # a saved sweep, read back

    @classmethod
    def of_saved(cls, sweep: SweepRecord, runs: list[SavedRun]) -> SweepRun:
        """A saved sweep as it ended, its runs' curves and analysis with it."""
        plan = SweepPlan(sweep.configs, sweep.table, sweep.preset, sweep.grid, sweep.stacked)
        columns = sweep_columns(sweep.table, sweep.configs)
        columns[-1:-1] = list(ANALYSIS_COLUMNS)  # before the status
        members = [SweepMember.reopened(run) for run in runs]
        return cls(plan, members, columns, state=sweep.status, record_path=sweep.path,
                   seconds=sweep.seconds, reopened=True)  # fmt: skip

    @classmethod
    def of(cls, plan: SweepPlan) -> SweepRun:
        members = [SweepMember(c, RunSeries(name=member_name(c))) for c in plan.configs]
        return cls(plan, members, sweep_columns(plan.table, plan.configs))

    @property
    def ended(self) -> bool:
        return self.state not in ("planned", "running")

    def runs_done(self) -> int:
        """Runs that ended on their own (not stopped or failed)."""
        return sum(m.row is not None and m.row.status in FINISHED for m in self.members)

    def runs_stopped(self) -> int:
        return sum(m.row is not None and m.row.status == "stopped" for m in self.members)

    def counts(self) -> tuple[int, int]:
        """Epochs done and in all, in hundredths (the bar counts whole numbers)."""
        done = sum(min(m.progress(), m.config.epochs) for m in self.members)
        return int(100 * done), 100 * sum(m.config.epochs for m in self.members)

    def status(self, now: float) -> str:
        name = f"sweep {escape(visible(self.plan.name))}"  # a reopened sweep's name is from a file
        runs = f"{self.runs_done()}/{len(self.members)} runs done"
        if self.problem:
            return f"[red]✗ {name}: {escape(visible(self.problem))}[/red]"  # the text of an error
        if self.state == "running" and self.reopened:
            return f"[green]● {name} training elsewhere[/green]: {runs} · followed"
        if self.state == "running":
            text = f"[green]● {name}[/green]: {runs}"
            done, total = self.counts()
            elapsed = now - self.began_at
            if self.stopping:
                text += " · [yellow]stopping…[/yellow]"
            elif done and elapsed > 0:
                text += f" · ETA {clock_text(elapsed * (total - done) / done)}"
            return text
        if self.state == "completed":
            return f"[green]✓ {name} completed[/green]: {runs} · took {clock_text(self.seconds or 0)}"
        stopped = self.runs_stopped()
        state = escape(visible(self.state)) if self.reopened else "stopped"
        return f"[yellow]■ {name} {state}[/yellow]: {runs}" + (
            f" · {stopped} saved as stopped" if stopped else ""
        )

    def detail(self, width: int) -> Content:
        if self.record_path is None:
            return Content("")
        if self.state == "refused":
            return Content("nothing saved")
        verb = "opened" if self.reopened else "saved to"
        return literal(f"{verb} {fit_path(self.record_path, max(width - len(verb) - 1, 12))}")
