"""Exporting sessions: metrics as CSV or JSON, figures as PNG (matplotlib).

``export_sessions(records, out)`` picks the format from the suffix. The app,
``fmlab export`` and the experiment reports all come through here, so a
figure looks the same wherever it was made.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import asdict
from pathlib import Path

from fmlab.trainer.atomic import write_atomic
from fmlab.trainer.fields import config_to_dict
from fmlab.trainer.sessions import SessionRecord
from fmlab.trainer.text import visible

FORMATS = (".png", ".csv", ".json")
CSV_COLUMNS = (
    "session", "arch", "lr", "optimizer", "batch_size", "seed", "kind", "epoch", "step",
    "train_loss", "train_acc", "test_loss", "test_acc", "seconds", "loss", "grad_mean", "grad_norm",
    "grad_sum_of_means", "train_images", "train_images_of",
)  # fmt: skip


class ExportError(Exception):
    """An export that cannot be written; the message is one line."""


def export_sessions(records: list[SessionRecord], out: Path | str) -> Path:
    """Write the sessions' metrics to ``out`` (.png, .csv or .json) and return it."""
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in FORMATS:
        raise ExportError(f"{out}: unknown format {out.suffix or '(none)'!r}; use .png, .csv or .json")
    if not records:
        raise ExportError("nothing to export: no sessions given")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        if suffix == ".png":
            write_png(records, out)
        elif suffix == ".csv":
            write_atomic(out, metrics_csv(records))
        else:
            write_atomic(out, metrics_json(records))
    except OSError as exc:
        raise ExportError(f"cannot write {out}: {exc.strerror or exc}") from None
    return out


def _clean(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else value


def metrics_csv(records: list[SessionRecord]) -> str:
    """One row per epoch and one per recorded step, for every session."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for record in records:
        config = record.config
        base = {
            "session": record.id,
            "arch": config.model.name,
            "lr": config.optimizer.lr,
            "optimizer": config.optimizer.name,
            "batch_size": config.batch_size,
            "seed": config.seed,
        }
        if record.train_data is not None:  # trained on the first train_images of train_images_of
            base.update(train_images=record.train_data.images, train_images_of=record.train_data.of)
        for e in record.epochs:
            writer.writerow(
                {**base, "kind": "epoch", "epoch": e.epoch, "train_loss": e.train_loss,
                 "train_acc": e.train_acc, "test_loss": e.test_loss, "test_acc": e.test_acc,
                 "seconds": e.seconds}
            )  # fmt: skip
        for s in record.steps.events():
            writer.writerow(
                {**base, "kind": "step", "epoch": s.epoch, "step": s.step, "loss": _clean(s.loss),
                 "grad_mean": _clean(s.grad_mean), "grad_norm": _clean(s.grad_norm),
                 "grad_sum_of_means": _clean(s.grad_sum_of_means)}
            )  # fmt: skip
    return buffer.getvalue()


def metrics_json(records: list[SessionRecord]) -> str:
    sessions = []
    for record in records:
        steps = record.steps
        sessions.append(
            {
                "id": record.id,
                "status": record.status,
                "config": config_to_dict(record.config),
                "results": asdict(record.results) if record.results else None,
                "train_data": _train_data(record),
                "epochs": [asdict(e) for e in record.epochs],
                "steps": {
                    "step": steps.step,
                    "epoch": steps.epoch,
                    "loss": [_clean(v) for v in steps.loss],
                    "grad_mean": [_clean(v) for v in steps.grad_mean],
                    "grad_norm": [_clean(v) for v in steps.grad_norm],
                    "grad_sum_of_means": [_clean(v) for v in steps.grad_sum_of_means],
                },
            }
        )
    return json.dumps({"sessions": sessions}, indent=1, allow_nan=False) + "\n"


def _train_data(record: SessionRecord) -> dict | None:
    data = record.train_data
    return None if data is None else {"images": data.images, "of": data.of, "partial": data.partial}


def label_of(record: SessionRecord) -> str:
    config = record.config
    return f"{config.model.name} lr={config.optimizer.lr:g} {config.optimizer.name} seed={config.seed}"


def literal_for_matplotlib(text: str) -> str:
    """Text from a file as matplotlib shows it literally: a ``$`` would start
    its math markup (and a malformed formula fails the whole figure)."""
    return visible(text).replace("$", r"\$")


def title_of(records: list[SessionRecord]) -> str:
    partial = [r for r in records if r.train_data is not None and r.train_data.partial]
    if len(records) == 1:
        record = records[0]
        title = f"{record.config.describe()} — {record.status} ({literal_for_matplotlib(record.id)})"
        return title + (f"\ntrained on {record.train_data.describe()}" if partial else "")
    if partial:
        return f"{len(records)} sessions ({len(partial)} trained on part of the training images)"
    return f"{len(records)} sessions"


def step_axis(record: SessionRecord) -> list[float]:
    """Step numbers as fractional epochs, so step and epoch curves share an axis."""
    per_epoch = record.steps_per_epoch
    if per_epoch <= 0:
        return [float(s) for s in record.steps.step]
    return [s / per_epoch for s in record.steps.step]


def new_figure(panels: int, width: float = 12.0):
    """A matplotlib figure on the non-interactive Agg canvas (no display needed)."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, 3.6 * panels / 3 if panels > 3 else 4.0), layout="constrained")
    axes = figure.subplots(1, panels, squeeze=False)[0]
    return figure, axes


def plot_loss(ax, records: list[SessionRecord]) -> None:
    for index, record in enumerate(records):
        color = f"C{index % 10}"
        ax.plot(step_axis(record), record.steps.loss, color=color, alpha=0.35, lw=0.8)
        ax.plot(
            [e.epoch for e in record.epochs], [e.test_loss for e in record.epochs],
            color=color, marker="o", ms=3, label=label_of(record),
        )  # fmt: skip
    ax.set(title="loss (steps: train, dots: test)", xlabel="epoch", ylabel="cross-entropy")
    ax.grid(alpha=0.3)


def plot_accuracy(ax, records: list[SessionRecord]) -> None:
    for index, record in enumerate(records):
        color = f"C{index % 10}"
        epochs = [e.epoch for e in record.epochs]
        ax.plot(epochs, [e.test_acc for e in record.epochs], color=color, marker="o", ms=3,
                label=label_of(record))  # fmt: skip
        ax.plot(epochs, [e.train_acc for e in record.epochs], color=color, ls="--", marker=".", alpha=0.6)
    ax.set(title="accuracy (solid: test, dashed: train)", xlabel="epoch", ylabel="accuracy (%)")
    ax.grid(alpha=0.3)


def plot_gradients(ax, records: list[SessionRecord]) -> None:
    for index, record in enumerate(records):
        color = f"C{index % 10}"
        ax.plot(record.steps.step, record.steps.grad_mean, color=color, label=label_of(record))
    ax.set(title="mean gradient over all parameters, per step", xlabel="step", ylabel="mean gradient")
    ax.axhline(0.0, color="grey", lw=0.6)
    ax.grid(alpha=0.3)
    if records and any(record.steps.grad_norm for record in records):
        twin = ax.twinx()
        for index, record in enumerate(records):
            twin.plot(record.steps.step, record.steps.grad_norm, color=f"C{index % 10}", ls=":", alpha=0.7)
        twin.set_ylabel("global L2 norm (dotted)")


def save_figure(figure, out: Path) -> None:
    """Save via a temporary file so a failed write never leaves half a PNG."""
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        figure.savefig(tmp, format="png", dpi=110)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


def write_png(records: list[SessionRecord], out: Path) -> None:
    figure, (loss_ax, acc_ax, grad_ax) = new_figure(3)
    plot_loss(loss_ax, records)
    plot_accuracy(acc_ax, records)
    plot_gradients(grad_ax, records)
    acc_ax.legend(fontsize="small", loc="lower right")
    figure.suptitle(title_of(records))
    save_figure(figure, out)
