"""The mean-gradient study: the first steps' gradient statistics as tables
and a summary of each curve's shape, for both definitions of "the mean
gradient" a session records (see DEFINITIONS)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

from fmlab.trainer.sessions import SessionRecord

GRAD_STEPS = 100
GRAD_LR = 0.01  # the notebook's setting

# (the session's step column, its name in tables): the notebook's definition first
DEFINITIONS = (
    ("grad_sum_of_means", "sum of tensor means (notebook)"),
    ("grad_mean", "mean over all parameters"),
)
HOW_THEY_DIFFER = (
    "Two definitions of the mean gradient: the notebook's adds each parameter tensor's own mean "
    "(`for p in model.parameters(): g += p.grad.mean()`), so every weight matrix and every bias counts "
    "alike, however many values it holds; the mean over all parameters divides the sum of every gradient "
    "by the number of parameters, so each tensor counts by its size."
)


def grad_label(record: SessionRecord) -> str:
    return f"lr {record.config.optimizer.lr:g}"


def _column(record: SessionRecord, name: str) -> list[float]:
    return getattr(record.steps, name)


def grad_rows(records: Sequence[SessionRecord], steps: int = GRAD_STEPS) -> list[list[object]]:
    """[step, loss, notebook, mean, norm] for one record; [step, then notebook
    and mean per record] for several. None where a value is missing or not finite."""
    by_step = [{s: i for i, s in enumerate(r.steps.step) if s <= steps} for r in records]
    all_steps = sorted(set().union(*by_step)) if by_step else []
    rows = []
    for step in all_steps:
        if len(records) == 1:
            i, record = by_step[0][step], records[0]
            rows.append([step, _num(record.steps.loss[i])]
                        + [_num(_column(record, name)[i]) for name, _ in DEFINITIONS]
                        + [_num(record.steps.grad_norm[i])])  # fmt: skip
        else:
            row: list[object] = [step]
            for record, where in zip(records, by_step):
                row += [
                    _num(_column(record, name)[where[step]]) if step in where else None
                    for name, _ in DEFINITIONS
                ]
            rows.append(row)
    return rows


def grad_headers(records: Sequence[SessionRecord]) -> list[str]:
    if len(records) == 1:
        return ["step", "loss"] + [title for _, title in DEFINITIONS] + ["grad norm"]
    return ["step"] + [f"{title} ({grad_label(r)})" for r in records for _, title in DEFINITIONS]


def grad_keys(records: Sequence[SessionRecord]) -> list[str]:
    """The JSON keys of grad_headers: the session's own column names."""
    if len(records) == 1:
        return ["step", "loss"] + [name for name, _ in DEFINITIONS] + ["grad_norm"]
    return ["step"] + [f"{name}_lr{r.config.optimizer.lr:g}" for r in records for name, _ in DEFINITIONS]


def _num(value: float) -> float | None:
    return value if math.isfinite(value) else None


def grad_table(records: Sequence[SessionRecord], fmt: str, steps: int = GRAD_STEPS) -> str:
    """Both mean gradients per step as Markdown, CSV or JSON."""
    import csv
    import io

    headers, rows = grad_headers(records), grad_rows(records, steps)
    if fmt == "json":
        keys = grad_keys(records)
        return json.dumps([dict(zip(keys, row)) for row in rows], indent=1, allow_nan=False) + "\n"
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(headers)
        writer.writerows([["" if v is None else v for v in row] for row in rows])
        return buffer.getvalue()
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join("---" for _ in headers) + " |"]
    for row in rows:
        cells = [str(row[0])] + ["-" if v is None else f"{v:.3e}" for v in row[1:]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def grad_summary(record: SessionRecord, steps: int = GRAD_STEPS, column: str = "grad_mean") -> dict:
    """One gradient curve's shape in numbers (``column``: a DEFINITIONS name):
    first and last value, extremes with their steps, mean, mean magnitude and
    sign changes over the finite values of the first ``steps`` steps."""
    pairs = [
        (s, g) for s, g in zip(record.steps.step, _column(record, column)) if s <= steps and math.isfinite(g)
    ]
    if not pairs:
        return {"steps": 0}
    values = [g for _, g in pairs]
    low = min(pairs, key=lambda p: p[1])
    high = max(pairs, key=lambda p: p[1])
    return {
        "steps": len(pairs),
        "first_step": pairs[0][0],
        "last_step": pairs[-1][0],
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
    """A Markdown table of grad_summary per record and definition."""
    lines = ["| run | gradient | steps | first | last | min (step) | max (step) | mean | mean abs | sign changes |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for record in records:
        for column, title in DEFINITIONS:
            s = grad_summary(record, steps, column)
            if not s["steps"]:
                lines.append(f"| {grad_label(record)} | {title} | 0 (not recorded) | | | | | | | |")
                continue
            lines.append(
                f"| {grad_label(record)} | {title} | {s['steps']} | {s['first']:.3e} | {s['last']:.3e} | "
                f"{s['min']:.3e} ({s['min_step']}) | {s['max']:.3e} ({s['max_step']}) | {s['mean']:.3e} | "
                f"{s['mean_abs']:.3e} | {s['sign_changes']} |"
            )
    return "\n".join(lines)
