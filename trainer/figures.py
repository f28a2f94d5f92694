"""PNG figures for sweeps and studies, drawn with trainer.export's helpers so
they look like every other figure fmlab makes.

- ``run_figures``: one PNG per run (loss, accuracy and gradient panels);
- ``sweep_figures``: the sweep's runs overlaid (all three panels in one PNG,
  plus the loss and the accuracy curves each on their own, larger);
- ``gradient_figure``: both mean-gradient curves over the first steps.

matplotlib is imported by trainer.export when a figure is drawn, not before.
"""

from __future__ import annotations

from pathlib import Path

from fmlab.trainer.export import (
    export_sessions,
    label_of,
    new_figure,
    plot_accuracy,
    plot_gradients,
    plot_loss,
    save_figure,
)
from fmlab.trainer.sessions import SessionRecord


def run_figures(records: list[SessionRecord], out_dir: Path) -> list[Path]:
    """``<session id>.png`` for each record."""
    return [export_sessions([record], Path(out_dir) / f"{record.id}.png") for record in records]


def sweep_figures(records: list[SessionRecord], out_dir: Path, stem: str) -> list[Path]:
    """``<stem>.png`` (all panels), ``<stem>-loss.png`` and ``<stem>-accuracy.png``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [export_sessions(records, out_dir / f"{stem}.png")]
    for suffix, plot in (("loss", plot_loss), ("accuracy", plot_accuracy)):
        figure, (ax,) = new_figure(1, width=8.0)
        plot(ax, records)
        ax.legend(fontsize="small")
        figure.suptitle(f"{stem}: {suffix}")
        path = out_dir / f"{stem}-{suffix}.png"
        save_figure(figure, path)
        paths.append(path)
    return paths


def gradient_figure(records: list[SessionRecord], out: Path, title: str) -> Path:
    """Both mean gradients per step, each in its own panel: the notebook's sum
    of tensor means, and the mean over all parameters (with the global norm,
    dotted)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure, (notebook_ax, mean_ax) = new_figure(2, width=12.0)
    for index, record in enumerate(records):
        notebook_ax.plot(record.steps.step, record.steps.grad_sum_of_means, color=f"C{index % 10}",
                         label=label_of(record))  # fmt: skip
    notebook_ax.set(title="sum over tensors of each one's mean (notebook)", xlabel="step", ylabel="gradient")
    notebook_ax.axhline(0.0, color="grey", lw=0.6)
    notebook_ax.grid(alpha=0.3)
    notebook_ax.legend(fontsize="small")
    plot_gradients(mean_ax, records)
    mean_ax.set(title="mean over all parameters")
    figure.suptitle(title)
    save_figure(figure, out)
    return out


def is_png(path: Path) -> bool:
    """Whether ``path`` starts with the PNG signature and holds an IHDR chunk."""
    with open(path, "rb") as handle:
        head = handle.read(16)
    return head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR"
