"""The reference study's four questions as one resumable reproduction.

``Reproduction(out_dir, quick)`` plans the studies (learning rate, convergence,
architectures, mean gradient); ``run_study`` trains what is not done yet and
``write_report`` writes ``out_dir/REPORT.md`` with the tables in the
reference's shape, the parameter calculation per structure, the figures and
the environment.

Layout of ``out_dir``::

    REPORT.md
    state.json               studies done and the wall time spent on each
    sessions/<study>/*.json  every run, an ordinary session
    sweeps/<study>.json      each study's sweep record
    figures/*.png            overlaid curves per study, runs/ one per run

Resuming: each study is a sweep whose record is kept in ``sweeps/``, so an
interrupted reproduction run again keeps every finished run and continues
every run cut off from its last finished epoch (its checkpoint).
``state.json`` keeps the wall time already spent, so the report shows the
whole cost.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from fmlab.trainer.atomic import write_atomic
from fmlab.trainer.config import RunConfig
from fmlab.trainer.events import Event
from fmlab.trainer.sessions import SessionError, SessionRecord, load
from fmlab.trainer.studies.grads import GRAD_LR, GRAD_STEPS
from fmlab.trainer.studies.grid import PRESETS, expand, parse_grid
from fmlab.trainer.studies.sweep import Sweep, SweepError, finished_rows
from fmlab.trainer.studies.tables import RunRow

if TYPE_CHECKING:
    from fmlab.trainer.data import DatasetCache
    from fmlab.trainer.jobs import StackRunner

STATE_SCHEMA = "fmlab.reproduce"

# the reference study's figures, for the report's comparison lines
TITLES = {
    "lr": "Learning rate: test accuracy after {epochs} epochs",
    "convergence": "Convergence: the epoch each learning rate converges at (up to {epochs} epochs)",
    "architectures": "Architectures: base, deeper and wider at lr 0.01 ({epochs} epochs)",
}


def describe_machine() -> dict[str, str]:
    """CPU model, cores and torch threads, for the report's environment table."""
    import os

    import torch

    from fmlab.trainer.device import cpu_model

    machine = {"cpu": f"{cpu_model()}, {os.cpu_count()} cores, torch using {torch.get_num_threads()} threads"}
    if torch.cuda.is_available():
        machine["gpu"] = torch.cuda.get_device_name(0)
    return machine


@dataclass(frozen=True)
class Study:
    """One question: its runs, the table that answers it and how to read it."""

    name: str  # "lr", "convergence", "architectures", "grads"
    title: str
    table: str  # a fmlab.trainer.studies.sweep table, or "grads"
    configs: tuple[RunConfig, ...]
    note: str  # how the runs were set up, for the report
    train_limit: int | None = None  # train on the first N images only (grads)


def grad_configs(lrs: Sequence[float] = (GRAD_LR,), arch: str = "base", steps: int = GRAD_STEPS, batch: int = 64,
                 seed: int = 0, device: str = "auto") -> list[RunConfig]:  # fmt: skip
    """One-epoch runs over the first ``steps * batch`` images, every step recorded."""
    grid = parse_grid(lr=",".join(f"{v!r}" for v in lrs), arch=arch, batch_size=batch, seed=seed,
                      epochs=1, device=device)  # fmt: skip
    return expand(grid, full_steps=steps)


def plan_studies(quick: bool = False, threshold: float = 0.1) -> list[Study]:
    """The four studies; ``quick`` cuts the epochs for a fast look."""
    epochs = {"lr": 2, "convergence": 10, "architectures": 2} if quick else {}
    studies = []
    for name in ("lr", "convergence", "architectures"):
        preset = PRESETS[name]
        options = dict(preset.options)
        options["epochs"] = epochs.get(name, options["epochs"])
        if name != "lr":
            options["threshold"] = threshold
        configs = tuple(expand(parse_grid(**options)))
        first = configs[0]
        rule = first.convergence
        note = f"{first.model.name if name != 'architectures' else 'base, deeper, wider'}, batch {first.batch_size}, plain SGD, no shuffle, seed {first.seed}, "
        if name == "lr":
            note += f"{first.epochs} epochs."
        else:
            note += (
                f"up to {first.epochs} epochs; converged = the first epoch after which test accuracy moved "
                f"less than {rule.threshold:g} points for {rule.patience} epochs in a row"
                + (
                    "; each run ends once it has converged."
                    if rule.stop
                    else "; every run goes the full length."
                )
            )
        studies.append(Study(name, TITLES[name].format(epochs=first.epochs), preset.table, configs, note))
    grads = tuple(grad_configs())
    studies.append(
        Study(
            "grads",
            f"Gradients: the mean gradient over the first {GRAD_STEPS} training steps",
            "grads",
            grads,
            f"base, lr {GRAD_LR:g} (the notebook's setting), batch 64, seed 0: the first {GRAD_STEPS} steps "
            f"of epoch 1 (the first {GRAD_STEPS * 64:,} training images), every step recorded.",
            train_limit=GRAD_STEPS * 64,
        )
    )
    return studies


# ----------------------------------------------------------------- state


@dataclass
class StudyState:
    seconds: float = 0.0  # wall time spent, over every attempt
    done: bool = False


@dataclass
class ReproduceState:
    quick: bool
    studies: dict[str, StudyState] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path, quick: bool) -> ReproduceState:
        """The saved state when it is for the same mode, else a fresh one."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("schema") == STATE_SCHEMA and data.get("quick") == quick:
                studies = {
                    k: StudyState(float(v["seconds"]), bool(v["done"])) for k, v in data["studies"].items()
                }
                return cls(quick, studies)
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            pass
        return cls(quick)

    def save(self, path: Path) -> None:
        data = {
            "schema": STATE_SCHEMA,
            "version": 1,
            "quick": self.quick,
            "studies": {k: {"seconds": v.seconds, "done": v.done} for k, v in self.studies.items()},
        }
        write_atomic(path, json.dumps(data, indent=1) + "\n")


# ----------------------------------------------------------------- running


def _keep_runs(earlier: Sweep, sweep: Sweep) -> None:
    """A study whose plan changed (a run added, a setting changed) keeps every
    run of the earlier sweep whose config it still asks for: finished ones as
    they are, cut-off ones to continue from their checkpoint."""
    old = earlier.record
    for index, config in enumerate(sweep.record.configs):
        for position, previous in enumerate(old.configs):
            row = old.rows[position]
            session = old.sessions[position] or (
                row.session if row else None
            )  # records before 0.2 kept it in the row
            if previous == config and session:
                sweep.record.sessions[index] = session
                sweep.record.rows[index] = row
                break


class Reproduction:
    """Runs the studies into ``out_dir`` and writes the report; see the module doc."""

    def __init__(
        self,
        out_dir: Path,
        quick: bool = False,
        stacked: bool = True,
        threshold: float = 0.1,
        studies: list[Study] | None = None,  # another plan (tests use small ones)
        figures: bool = True,  # draw PNGs (overlaid per study, and one per run)
    ) -> None:
        self.out_dir = Path(out_dir)
        self.quick = quick
        self.stacked = stacked
        self.on_warning: Callable[[str], None] | None = None
        self.studies = studies if studies is not None else plan_studies(quick, threshold)
        self.figures = figures
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.state_path = self.out_dir / "state.json"
        self.state = ReproduceState.load(self.state_path, quick)
        self.sweeps: dict[str, Sweep] = {}
        self.environment: dict[str, str] = {}

    @classmethod
    def open(cls, out_dir: Path) -> Reproduction:
        """An existing reproduction folder, to read (its report, its studies'
        runs): planned as it was made, quick or not. SweepError when
        ``out_dir`` holds no reproduction."""
        state = Path(out_dir) / "state.json"
        try:
            quick = json.loads(state.read_text(encoding="utf-8")).get("quick") is True
        except (OSError, ValueError, AttributeError):
            raise SweepError(f"{out_dir}: not a reproduction folder (no readable state.json)") from None
        return cls(out_dir, quick=quick)

    def sessions_dir(self, study: Study) -> Path:
        return self.out_dir / "sessions" / study.name

    def sweep(self, study: Study) -> Sweep:
        """The study's sweep: the one an earlier attempt saved, when it asked for
        the same runs, else a new one."""
        if study.name not in self.sweeps:
            path = self.out_dir / "sweeps" / f"{study.name}.json"
            sweep = None
            if path.exists():
                try:
                    sweep = Sweep.resume(path, self.sessions_dir(study), self.on_warning)
                except SweepError as exc:
                    self._warn(f"{exc}; starting the {study.name} study again")
            earlier = sweep
            if sweep is None or sweep.record.configs != list(study.configs):
                sweep = Sweep.new(study.configs, self.sessions_dir(study), preset=study.name,
                                  table=study.table if study.table != "grads" else "grid",
                                  stacked=self.stacked, record_path=path, on_warning=self.on_warning)  # fmt: skip
                if earlier is not None:
                    _keep_runs(earlier, sweep)
            self.sweeps[study.name] = sweep
        return self.sweeps[study.name]

    def finished(self, study: Study) -> list[tuple[RunRow, SessionRecord | None]]:
        """The study's finished runs, each with its session (None when it cannot
        be read). Sessions are found in the study's sessions folder by id (the
        folder may have moved since its rows were written), and each row is
        taken afresh from its session, which may know more (its best epoch)."""
        out = []
        for row in finished_rows(self.sweep(study).rows):
            path = self.sessions_dir(study) / f"{row.session}.json"
            try:
                record = load(path if row.session and path.is_file() else Path(row.path))
            except SessionError:
                out.append((row, None))
                continue
            out.append((RunRow.from_record(record), record))
        return out

    def pending_runs(self, study: Study) -> int:
        return len(self.sweep(study).record.pending())

    def run_study(
        self,
        study: Study,
        datasets: DatasetCache,
        cancel: threading.Event | None = None,
        stacks: StackRunner | None = None,
    ) -> Iterator[tuple[int, Event]]:
        """Train the study's pending runs, yielding ``(position, event)``;
        ``stacks`` trains the stacks (see Sweep.run)."""
        cancel = cancel or threading.Event()
        state = self.state.studies.setdefault(study.name, StudyState())
        sweep = self.sweep(study)
        trained = bool(sweep.record.pending())
        started = time.perf_counter()
        try:
            yield from sweep.run(datasets, cancel, train_limit=study.train_limit, stacks=stacks)
        finally:
            state.seconds += time.perf_counter() - started
            state.done = not sweep.record.pending() and not cancel.is_set()
            self.state.save(self.state_path)
        figure = self.out_dir / "figures" / f"{study.name}.png"
        if state.done and self.figures and (trained or not figure.exists()):
            self._figures(study)

    def _warn(self, message: str) -> None:
        if self.on_warning:
            self.on_warning(message)

    def _figures(self, study: Study) -> None:
        from fmlab.trainer.figures import gradient_figure, run_figures, sweep_figures

        records = [record for _, record in self.finished(study) if record is not None]
        if not records:
            return
        figures = self.out_dir / "figures"
        if study.name == "grads":
            gradient_figure(records, figures / "grads.png", study.title)
            return
        sweep_figures(records, figures, study.name)
        run_figures(records, figures / "runs")

    def write_report(self) -> Path:
        from fmlab.trainer.studies.report import write_report

        return write_report(self)
