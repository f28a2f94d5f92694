"""REPORT.md for a reproduction: the environment, then each study's table in
the reference's shape, the parameter arithmetic, the figures."""

from __future__ import annotations

import platform
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from fmlab.trainer.atomic import write_atomic
from fmlab.trainer.config import ModelSpec
from fmlab.trainer.models import summarize
from fmlab.trainer.sessions import SessionRecord
from fmlab.trainer.studies.grads import grad_summary_text, grad_table
from fmlab.trainer.studies.sweep import finished_rows, records_of
from fmlab.trainer.studies.tables import RunRow, table_columns, table_text

if TYPE_CHECKING:
    from fmlab.trainer.studies.reproduce import Reproduction

REFERENCE = {
    "lr": "87.0 / 83.5 / 71.9 for lr 0.1 / 0.01 / 0.001 (lr 1 does not learn)",
    "convergence": "89.1 / 88.6 / 84.7 for lr 0.1 / 0.01 / 0.001",
    "architectures": "88.7 / 88.8 / 89.1 for base / deeper / wider",
}


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
    lines += _environment_lines(repro)
    for number, study in enumerate(repro.studies, start=1):
        lines += [f"## {number}. {study.title}", "", study.note, ""]
        lines += _study_lines(repro, study)
    return "\n".join(lines).rstrip() + "\n"


def _environment_lines(repro: Reproduction) -> list[str]:
    env = dict(repro.environment)
    for study in repro.studies:
        for row in finished_rows(repro.sweep(study).rows):
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
    for study in repro.studies:
        state = repro.state.studies.get(study.name)
        done = len(finished_rows(repro.sweep(study).rows))
        lines.append(
            f"| {study.name} | {done}/{len(study.configs)} | {_duration(state.seconds if state else 0.0)} |"
        )
    total = sum(s.seconds for s in repro.state.studies.values())
    lines += [f"| total | | {_duration(total)} |", ""]
    return lines


def _study_lines(repro: Reproduction, study) -> list[str]:
    rows = finished_rows(repro.sweep(study).rows)
    if len(rows) < len(study.configs):
        return [
            f"*Not finished: {len(rows)} of {len(study.configs)} runs done.* Run the command again to resume.",
            "",
        ]
    if study.name == "grads":
        return _grad_lines(repro, rows)
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


def _grad_lines(repro: Reproduction, rows: list[RunRow]) -> list[str]:
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
