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

Resuming: a run whose finished session (same config) is already in its
study's folder is not trained again, so an interrupted reproduction picks up
where it stopped; only runs cut off mid-way start over. ``state.json`` keeps
the wall time already spent, so the report shows the whole cost.
"""

from __future__ import annotations

import json
import math
import platform
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from fmlab.trainer.config import ModelSpec, RunConfig
from fmlab.trainer.events import Event
from fmlab.trainer.models import summarize
from fmlab.trainer.sessions.format import SessionRecord, write_atomic
from fmlab.trainer.studies.sweep import (
    PRESETS,
    RunRow,
    Sweep,
    expand,
    finished_rows,
    parse_grid,
    records_of,
    table_columns,
    table_text,
)

if TYPE_CHECKING:
    from fmlab.trainer.data import FashionMNIST

STATE_SCHEMA = "fmlab.reproduce"
GRAD_STEPS = 100
# the reference study's figures, for the report's comparison lines
REFERENCE = {
    "lr": "87.0 / 83.5 / 71.9 for lr 0.1 / 0.01 / 0.001 (lr 1 does not learn)",
    "convergence": "89.1 / 88.6 / 84.7 for lr 0.1 / 0.01 / 0.001",
    "architectures": "88.7 / 88.8 / 89.1 for base / deeper / wider",
}


TITLES = {
    "lr": "Learning rate: test accuracy after {epochs} epochs",
    "convergence": "Convergence: the epoch each learning rate converges at (up to {epochs} epochs)",
    "architectures": "Architectures: base, deeper and wider at lr 0.01 ({epochs} epochs)",
}


def describe_machine() -> dict[str, str]:
    """CPU model, cores and torch threads, for the report's environment table."""
    import os

    import torch

    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    machine = {"cpu": f"{model}, {os.cpu_count()} cores, torch using {torch.get_num_threads()} threads"}
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


def grad_configs(lrs: Sequence[float] = (0.1,), arch: str = "base", steps: int = GRAD_STEPS, batch: int = 64,
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
            f"base, lr 0.1, batch 64, seed 0: the first {GRAD_STEPS} steps of epoch 1 "
            f"(the first {GRAD_STEPS * 64:,} training images), every step recorded.",
            train_limit=GRAD_STEPS * 64,
        )
    )
    return studies


def limit_train(data: FashionMNIST, count: int | None) -> FashionMNIST:
    if count is None or count >= len(data.train_x):
        return data
    return replace(data, train_x=data.train_x[:count], train_y=data.train_y[:count])


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


class Reproduction:
    """Runs the studies into ``out_dir`` and writes the report; see the module doc."""

    def __init__(
        self,
        out_dir: Path,
        quick: bool = False,
        batched: bool = True,
        threshold: float = 0.1,
        studies: list[Study] | None = None,  # another plan (tests use small ones)
        figures: bool = True,  # draw PNGs (overlaid per study, and one per run)
    ) -> None:
        self.out_dir = Path(out_dir)
        self.quick = quick
        self.batched = batched
        self.studies = studies if studies is not None else plan_studies(quick, threshold)
        self.figures = figures
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.state_path = self.out_dir / "state.json"
        self.state = ReproduceState.load(self.state_path, quick)
        self.sweeps: dict[str, Sweep] = {}
        self.environment: dict[str, str] = {}

    def sessions_dir(self, study: Study) -> Path:
        return self.out_dir / "sessions" / study.name

    def sweep(self, study: Study) -> Sweep:
        """The study's sweep, with runs finished in an earlier attempt already filled in."""
        if study.name not in self.sweeps:
            sweep = Sweep(
                study.configs,
                self.sessions_dir(study),
                table=study.table if study.table != "grads" else "grid",
                preset=study.name,
                record_path=self.out_dir / "sweeps" / f"{study.name}.json",
                batched=self.batched,
                resume=True,
            )
            sweep.reused()
            self.sweeps[study.name] = sweep
        return self.sweeps[study.name]

    def pending_runs(self, study: Study) -> int:
        return sum(row is None for row in self.sweep(study).rows)

    def run_study(
        self, study: Study, data: FashionMNIST, cancel: threading.Event | None = None
    ) -> Iterator[tuple[int, Event]]:
        """Train the study's missing runs, yielding ``(position, event)``."""
        cancel = cancel or threading.Event()
        state = self.state.studies.setdefault(study.name, StudyState())
        sweep = self.sweep(study)
        self._clear_partial(study)
        trained = any(row is None for row in sweep.rows)
        started = time.perf_counter()
        try:
            yield from sweep.run(limit_train(data, study.train_limit), cancel)
        finally:
            state.seconds += time.perf_counter() - started
            state.done = all(row is not None for row in sweep.rows) and not cancel.is_set()
            self.state.save(self.state_path)
        figure = self.out_dir / "figures" / f"{study.name}.png"
        if state.done and self.figures and (trained or not figure.exists()):
            self._figures(study)

    def _clear_partial(self, study: Study) -> None:
        """Sessions an earlier attempt left unfinished are retrained, so their
        files would only clutter the study's folder."""
        from fmlab.trainer.sessions.format import list_sessions

        summaries, _ = list_sessions(self.sessions_dir(study))
        for summary in summaries:
            if summary.status in ("interrupted", "stopped", "failed"):
                summary.path.unlink(missing_ok=True)

    def _figures(self, study: Study) -> None:
        from fmlab.trainer.figures import gradient_figure, run_figures, sweep_figures

        records = records_of(finished_rows(self.sweep(study).rows))
        if not records:
            return
        figures = self.out_dir / "figures"
        if study.name == "grads":
            gradient_figure(records, figures / "grads.png", study.title)
            return
        sweep_figures(records, figures, study.name)
        run_figures(records, figures / "runs")

    def write_report(self) -> Path:
        path = self.out_dir / "REPORT.md"
        write_atomic(path, self.report_text())
        return path

    def report_text(self) -> str:
        lines = [
            "# fmlab: the reference study, reproduced",
            "",
            f"Written {datetime.now().astimezone().isoformat(timespec='seconds')} by "
            f"`fmlab reproduce{' --quick' if self.quick else ''}`."
            + (" **Quick mode**: fewer epochs than the reference, for a fast look; the numbers are not comparable." if self.quick else ""),
            "",
        ]  # fmt: skip
        lines += self._environment_lines()
        for number, study in enumerate(self.studies, start=1):
            lines += [f"## {number}. {study.title}", "", study.note, ""]
            lines += self._study_lines(study)
        return "\n".join(lines).rstrip() + "\n"

    def _environment_lines(self) -> list[str]:
        env = dict(self.environment)
        for study in self.studies:
            for row in finished_rows(self.sweep(study).rows):
                record = _load_quietly(row)
                if record is not None:
                    env.setdefault(
                        "device",
                        f"{record.environment.get('device', '?')} ({record.environment.get('device_name', '?')})",
                    )
                    env.setdefault("torch", record.environment.get("torch", "?"))
                    break  # fmt: skip
        env.setdefault("python", platform.python_version())
        lines = ["## Environment", "", "| item | value |", "| --- | --- |"]
        lines += [f"| {key} | {value} |" for key, value in env.items()]
        lines += ["", "| study | runs | wall time |", "| --- | --- | --- |"]
        for study in self.studies:
            state = self.state.studies.get(study.name, StudyState())
            done = len(finished_rows(self.sweep(study).rows))
            lines.append(f"| {study.name} | {done}/{len(study.configs)} | {_duration(state.seconds)} |")
        total = sum(s.seconds for s in self.state.studies.values())
        lines += [f"| total | | {_duration(total)} |", ""]
        return lines

    def _study_lines(self, study: Study) -> list[str]:
        rows = finished_rows(self.sweep(study).rows)
        if len(rows) < len(study.configs):
            return [
                f"*Not finished: {len(rows)} of {len(study.configs)} runs done.* Run the command again to resume.",
                "",
            ]
        if study.name == "grads":
            return self._grad_lines(rows)
        lines = [table_text(table_columns(study.table), rows, "markdown").rstrip(), ""]
        if study.name in REFERENCE:
            lines += [f"Reference: {REFERENCE[study.name]}.", ""]
        if study.name == "architectures":
            lines += ["### Parameters per layer", ""]
            for spec in dict.fromkeys(row.config.model for row in rows):
                lines += parameter_lines(spec)
        lines += [f"![{study.name}: loss, accuracy and gradients](figures/{study.name}.png)", ""]
        lines += [f"![{study.name}: accuracy](figures/{study.name}-accuracy.png)", ""]
        lines += [f"Per-run figures: `figures/runs/`. Sessions: `sessions/{study.name}/`.", ""]
        return lines

    def _grad_lines(self, rows: list[RunRow]) -> list[str]:
        records = records_of(rows)
        lines = [grad_summary_text(records), "", "![mean gradient per step](figures/grads.png)", ""]
        lines += ["<details><summary>Every step</summary>", "", grad_table(records, "markdown").rstrip(), "", "</details>", ""]  # fmt: skip
        return lines


def _load_quietly(row: RunRow) -> SessionRecord | None:
    records = records_of([row])
    return records[0] if records else None


def _duration(seconds: float) -> str:
    minutes, rest = divmod(int(round(seconds)), 60)
    return f"{minutes} min {rest:02d} s" if minutes else f"{seconds:.1f} s"


def parameter_lines(spec: ModelSpec) -> list[str]:
    """The per-layer parameter calculation, (in + 1) x out, as a Markdown table."""
    summary = summarize(spec)
    lines = [f"**{spec.name}** (784 -> {' -> '.join(map(str, spec.hidden))} -> 10)", "",
             "| layer | shape | parameters |", "| --- | --- | --- |"]  # fmt: skip
    for layer in summary.layers:
        if layer.kind == "Linear":
            lines.append(f"| {layer.name} | {layer.in_features} -> {layer.out_features} | {layer.formula} |")
    lines += [f"| total | | {summary.total_params:,} |", ""]
    return lines


# ----------------------------------------------------------------- gradients


def grad_label(record: SessionRecord) -> str:
    return f"lr {record.config.optimizer.lr:g}"


def grad_rows(records: Sequence[SessionRecord], steps: int = GRAD_STEPS) -> list[list[object]]:
    """[step, loss, grad mean, grad norm] for one record; [step, grad mean per record] for several."""
    by_step = [{s: i for i, s in enumerate(r.steps.step) if s <= steps} for r in records]
    all_steps = sorted(set().union(*by_step)) if by_step else []
    rows = []
    for step in all_steps:
        if len(records) == 1:
            i, curve = by_step[0][step], records[0].steps
            rows.append([step, _num(curve.loss[i]), _num(curve.grad_mean[i]), _num(curve.grad_norm[i])])
        else:
            rows.append([step] + [
                _num(r.steps.grad_mean[m[step]]) if step in m else None for r, m in zip(records, by_step)
            ])  # fmt: skip
    return rows


def grad_headers(records: Sequence[SessionRecord]) -> list[str]:
    if len(records) == 1:
        return ["step", "loss", "grad mean", "grad norm"]
    return ["step"] + [f"grad mean ({grad_label(r)})" for r in records]


def _num(value: float) -> float | None:
    return value if math.isfinite(value) else None


def grad_table(records: Sequence[SessionRecord], fmt: str, steps: int = GRAD_STEPS) -> str:
    """The mean gradient per step as Markdown, CSV or JSON."""
    import csv
    import io

    headers, rows = grad_headers(records), grad_rows(records, steps)
    if fmt == "json":
        keys = [h.replace(" ", "_") for h in headers]
        return json.dumps([dict(zip(keys, row)) for row in rows], indent=1, allow_nan=False) + "\n"
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(headers)
        writer.writerows([["" if v is None else v for v in row] for row in rows])
        return buffer.getvalue()
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join("---" for _ in headers) + " |"]
    for row in rows:
        cells = [str(row[0])] + ["nan" if v is None else f"{v:.3e}" for v in row[1:]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def grad_summary(record: SessionRecord, steps: int = GRAD_STEPS) -> dict[str, float | int | None]:
    """The curve's shape in numbers: first and last value, extremes, mean, sign changes."""
    pairs = [
        (s, g) for s, g in zip(record.steps.step, record.steps.grad_mean) if s <= steps and math.isfinite(g)
    ]
    if not pairs:
        return {"steps": 0}
    values = [g for _, g in pairs]
    low = min(pairs, key=lambda p: p[1])
    high = max(pairs, key=lambda p: p[1])
    return {
        "steps": len(pairs),
        "first": values[0],
        "last": values[-1],
        "min": low[1],
        "min_step": low[0],
        "max": high[1],
        "max_step": high[0],
        "mean": sum(values) / len(values),
        "mean_abs": sum(abs(v) for v in values) / len(values),
        "sign_changes": sum((a > 0) != (b > 0) for a, b in zip(values, values[1:])),
    }


def grad_summary_text(records: Sequence[SessionRecord], steps: int = GRAD_STEPS) -> str:
    """A Markdown table of grad_summary per record."""
    lines = ["| run | steps | first | last | min (step) | max (step) | mean | mean abs | sign changes |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for record in records:
        s = grad_summary(record, steps)
        if not s["steps"]:
            lines.append(f"| {grad_label(record)} | 0 | | | | | | | |")
            continue
        lines.append(
            f"| {grad_label(record)} | {s['steps']} | {s['first']:.3e} | {s['last']:.3e} | "
            f"{s['min']:.3e} ({s['min_step']}) | {s['max']:.3e} ({s['max_step']}) | {s['mean']:.3e} | "
            f"{s['mean_abs']:.3e} | {s['sign_changes']} |"
        )
    return "\n".join(lines)
