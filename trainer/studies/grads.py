"""The mean-gradient study: the first steps' gradient statistics as tables
and a summary of the curve's shape."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

from fmlab.trainer.sessions import SessionRecord

GRAD_STEPS = 100


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
