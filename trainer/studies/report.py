"""REPORT.md for a reproduction: where each study's runs were trained, then
per study its table beside the reference's numbers, the analysis of every
run, the observations drawn from them, the parameter arithmetic and the
figures."""

from __future__ import annotations

import platform
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from fmlab.trainer.analysis import (
    DROP_POINTS,
    FINAL_BELOW_BEST,
    FLAT_SLOPE,
    SLOPE_EPOCHS,
    RunAnalysis,
    analyze,
    analyze_record,
)
from fmlab.trainer.atomic import write_atomic
from fmlab.trainer.config import ModelSpec
from fmlab.trainer.models import summarize
from fmlab.trainer.sessions import SessionRecord
from fmlab.trainer.studies.grads import HOW_THEY_DIFFER, grad_summary_text, grad_table
from fmlab.trainer.studies.observations import (
    LABELS,
    OBSERVERS,
    StudyRun,
    gradient_observations,
    loss_rise,
    lr_label,
    paragraph,
)
from fmlab.trainer.studies.tables import RunRow, parameter_columns, study_columns, table_text
from fmlab.trainer.text import visible

if TYPE_CHECKING:
    from fmlab.trainer.studies.reproduce import Reproduction, Study


def write_report(repro: Reproduction) -> Path:
    path = repro.out_dir / "REPORT.md"
    write_atomic(path, report_text(repro))
    return path


def report_text(repro: Reproduction) -> str:
    lines = [
        "# fmlab: the reference study, reproduced",
        "",
        f"Written {datetime.now().astimezone().isoformat(timespec='seconds')} by "
        f"`fmlab reproduce{' --quick' if repro.quick else ''}`."
        + (" **Quick mode**: fewer epochs than the reference, for a fast look; the numbers are not comparable." if repro.quick else ""),
        "",
    ]  # fmt: skip
    loaded = {study.name: repro.finished(study) for study in repro.studies}
    lines += _environment_lines(repro, loaded)
    for number, study in enumerate(repro.studies, start=1):
        lines += [f"## {number}. {study.title}", "", study.note, ""]
        lines += _study_lines(repro, study, loaded[study.name])
    return "\n".join(lines).rstrip() + "\n"


# ----------------------------------------------------------------- environment


def _cell(text: str) -> str:
    """Text from a session file as a Markdown table cell: shown literally."""
    return visible(text).replace("|", "\\|")


def _trained_on(records: list[SessionRecord]) -> tuple[str, str, str]:
    """Devices, torch versions and training data of some runs, each with its
    run count when they differ."""

    def counted(values: list[str]) -> str:
        counts = Counter(values)
        if len(counts) <= 1:
            return _cell(next(iter(counts), "?"))
        return "; ".join(f"{_cell(value)} ({n} run{'s' if n > 1 else ''})" for value, n in counts.items())

    torches = [r.environment.get("torch", "?") for r in records]
    return counted([_device(r) for r in records]), counted(torches), counted([_data_cell(r) for r in records])


def _device(record: SessionRecord) -> str:
    env = record.environment
    return f"{env.get('device', '?')} ({env.get('device_name', '?')})"


def _data_cell(record: SessionRecord) -> str:
    """The training images a run used; a file from before that was recorded
    says only how many (its environment's count)."""
    if record.train_data is not None and record.train_data.partial:
        return record.train_data.describe()
    images = (
        record.train_data.images if record.train_data else int(record.environment.get("train_size", 0) or 0)
    )
    return f"{images:,} training images"


def _mixed_devices(repro: Reproduction, loaded: dict) -> list[str]:
    """For a study whose runs were trained on different devices, which ran where."""
    lines = []
    for study in repro.studies:
        where: dict[str, list[str]] = {}
        for row, record in loaded[study.name]:
            if record is not None:
                where.setdefault(_device(record), []).append(LABELS.get(study.name, lr_label)(row))
        if len(where) > 1:
            parts = [f"{', '.join(labels)} on {_cell(device)}" for device, labels in where.items()]
            lines.append(f"In the {study.name} study, {'; '.join(parts)}.")
    return lines


def _environment_lines(repro: Reproduction, loaded: dict) -> list[str]:
    env = dict(repro.environment)
    env.setdefault("python", platform.python_version())
    lines = ["## Environment", "", "Where each study's runs were trained, from their sessions:", "",
             "| study | runs | trained on | torch | training data | wall time, all attempts |",
             "| --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for study in repro.studies:
        state = repro.state.studies.get(study.name)
        pairs = loaded[study.name]
        records = [record for _, record in pairs if record is not None]
        device, torch_version, data = _trained_on(records) if records else ("-", "-", "-")
        lines.append(
            f"| {study.name} | {len(pairs)}/{len(study.configs)} | {device} | {torch_version} | {data} | "
            f"{_duration(state.seconds if state else 0.0)} |"
        )
    total = sum(s.seconds for s in repro.state.studies.values())
    lines += [f"| total | | | | | {_duration(total)} |", ""]
    mixed = _mixed_devices(repro, loaded)
    if mixed:
        lines += [
            " ".join(mixed) + " A study's wall time adds up every attempt, on whichever machine made it.",
            "",
        ]
    lines += ["This report was written on:", "", "| item | value |", "| --- | --- |"]
    lines += [f"| {key} | {value} |" for key, value in env.items()]
    return lines + [""]


# ----------------------------------------------------------------- studies


def _study_lines(
    repro: Reproduction, study: Study, pairs: list[tuple[RunRow, SessionRecord | None]]
) -> list[str]:
    if len(pairs) < len(study.configs):
        return [
            f"*Not finished: {len(pairs)} of {len(study.configs)} runs done.* Run the command again to resume.",
            "",
        ]
    if study.name == "grads":
        return _grad_lines([record for _, record in pairs if record is not None])
    rows = [row for row, _ in pairs]
    runs = [StudyRun(LABELS[study.name](row), row, _analysis(row, record)) for row, record in pairs]
    lines = [table_text(study_columns(study.table), rows, "markdown").rstrip(), ""]
    lines += [
        "Reference: the assignment's published test accuracy; difference = fmlab's final accuracy minus the "
        f"reference, in points. A final accuracy more than {FINAL_BELOW_BEST:g} point below the run's best is "
        "marked, since the last epoch's number is not the run's result."
        + (" Quick mode trains fewer epochs than the reference, so the differences say little." if repro.quick else ""),
        "",
    ]  # fmt: skip
    if study.name == "architectures":
        lines += ["### Parameters", "", table_text(parameter_columns(), rows, "markdown").rstrip(), ""]
    lines += ["### Run analysis", "", analysis_table(runs), ""]
    lines += ["### Observations", "", paragraph(OBSERVERS[study.name](runs)), ""]
    if study.name == "architectures":
        lines += ["### Parameters per layer", ""]
        for spec in dict.fromkeys(row.config.model for row in rows):
            lines += parameter_lines(spec)
    lines += [f"![{study.name}: loss, accuracy and gradients](figures/{study.name}.png)", ""]
    lines += [f"![{study.name}: accuracy](figures/{study.name}-accuracy.png)", ""]
    lines += [f"Per-run figures: `figures/runs/`. Sessions: `sessions/{study.name}/`.", ""]
    return lines


def _analysis(row: RunRow, record: SessionRecord | None) -> RunAnalysis:
    if record is None:  # an unreadable session: nothing but the row is known
        return analyze([], status=row.status, converged_epoch=row.converged_epoch)
    return analyze_record(record)


def analysis_table(runs: list[StudyRun]) -> str:
    """Each run's analysis as a Markdown table, with how to read it."""
    lines = [
        "| run | lowest test loss (epoch) | rise to the end | train - test at the end | "
        f"drops > {DROP_POINTS:g} point after it (largest) | 85% at epoch | 88% at epoch | "
        f"last {SLOPE_EPOCHS} epochs (points/epoch) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for run in runs:
        a = run.analysis
        if not a.epochs:
            lines.append(f"| {run.label} | - | - | - | - | - | - | - |")
            continue
        lowest = (
            "-" if a.lowest_test_loss is None else f"{a.lowest_test_loss:.4f} ({a.lowest_test_loss_epoch})"
        )
        rise = "-" if a.test_loss_rise is None else f"{loss_rise(a):+.4f}"
        if a.lowest_test_loss_epoch is not None and a.lowest_test_loss_epoch == a.final_epoch:
            rise = "0 (lowest last)"
        gap = "-" if a.train_test_gap is None else f"{a.train_test_gap:+.2f}"
        drops = str(a.drops_after_lowest_loss) + (
            f" ({a.largest_drop_after_lowest_loss:.2f})"
            if a.largest_drop_after_lowest_loss is not None
            else ""
        )
        reach = ["never" if a.epochs_to(mark) is None else str(a.epochs_to(mark)) for mark in (85.0, 88.0)]
        slope = "-" if a.slope is None else f"{a.slope:+.2f} ({a.trend})"
        lines.append(
            f"| {run.label} | {lowest} | {rise} | {gap} | {drops} | {reach[0]} | {reach[1]} | {slope} |"
        )
    lines += [
        "",
        "Lowest test loss: its value and epoch; rise: the final test loss minus it. Drops: falls in test "
        f"accuracy of more than {DROP_POINTS:g} point from one epoch to the next, after the lowest test loss. "
        f"The last column is the least-squares slope of test accuracy over the last {SLOPE_EPOCHS} epochs "
        f"(or fewer); within {FLAT_SLOPE:g} points per epoch either way it reads as flat.",
    ]
    return "\n".join(lines)


def _grad_lines(records: list[SessionRecord]) -> list[str]:
    lines = [grad_summary_text(records), "", HOW_THEY_DIFFER, ""]
    lines += ["### Observations", "", paragraph(gradient_observations(records)), ""]
    lines += ["![both mean gradients per step](figures/grads.png)", ""]
    lines += ["<details><summary>Every step</summary>", "", grad_table(records, "markdown").rstrip(), "", "</details>", ""]  # fmt: skip
    return lines


def _duration(seconds: float) -> str:
    minutes, rest = divmod(int(round(seconds)), 60)
    return f"{minutes} min {rest:02d} s" if minutes else f"{seconds:.1f} s"


def parameter_lines(spec: ModelSpec) -> list[str]:
    """The per-layer parameter calculation ((in + 1) x out for a Linear, (in
    channels x kh x kw + 1) x out for a convolution) as a Markdown table."""
    summary = summarize(spec)
    title = (
        f"**{spec.name}** (784 -> {' -> '.join(map(str, spec.hidden))} -> 10)"
        if spec.is_mlp
        else f"**{spec.name}**"
    )
    lines = [title, "", "| layer | shape | parameters |", "| --- | --- | --- |"]
    for layer in summary.layers:
        if spec.is_mlp and layer.kind == "Linear":
            lines.append(f"| {layer.name} | {layer.in_features} -> {layer.out_features} | {layer.formula} |")
        elif not spec.is_mlp and layer.params:
            lines.append(f"| {layer.name} ({layer.kind}) | {layer.output_shape} | {layer.formula} |")
    lines += [f"| total | | {summary.total_params:,} |", ""]
    return lines
