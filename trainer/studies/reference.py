"""The assignment's published numbers, for the columns that set fmlab's own
beside them: test accuracy per learning rate (after 10 epochs, and in the
convergence study), per architecture, and the parameter counts.

A run has a reference value only when it is the reference's setting (the
base network for the learning-rate tables, lr 0.01 for the architectures;
batch 64, plain SGD); the number of epochs is not compared, so a quick
reproduction still shows the reference (its report says its epochs differ).
"""

from __future__ import annotations

from dataclasses import dataclass

from fmlab.trainer.config import ARCH_PRESETS, RunConfig


@dataclass(frozen=True)
class Reference:
    """One published cell: a test accuracy (%), or ``text`` where it gives none."""

    value: float | None
    text: str = "-"

    def cell(self) -> str:
        return f"{self.value:.1f}" if self.value is not None else self.text


ACCURACY: dict[str, dict[object, Reference]] = {
    "lr": {
        1.0: Reference(None, "does not learn"),
        0.1: Reference(87.0),
        0.01: Reference(83.5),
        0.001: Reference(71.9),
    },
    "convergence": {
        1.0: Reference(None, "-"),  # the reference lists lr 1 without a value
        0.1: Reference(89.1),
        0.01: Reference(88.6),
        0.001: Reference(84.7),
    },
    "architectures": {
        "base": Reference(88.7),
        "deeper": Reference(88.8),
        "wider": Reference(89.1),
    },
}
PARAMETERS = {"base": 337_674, "deeper": 2_977_546, "wider": 2_923_530}
ARCHITECTURES_LR = 0.01


def _reference_training(config: RunConfig) -> bool:
    opt = config.optimizer
    return config.batch_size == 64 and opt.name == "sgd" and opt.momentum == 0


def reference_accuracy(table: str, config: RunConfig) -> Reference | None:
    """The reference's test accuracy for ``config`` in ``table`` ("lr",
    "convergence", "architectures"), or None where it publishes none."""
    if table not in ACCURACY or not _reference_training(config):
        return None
    if table == "architectures":
        if config.optimizer.lr != ARCHITECTURES_LR:
            return None
        return ACCURACY[table].get(config.model.name)
    if config.model.hidden != ARCH_PRESETS["base"]:
        return None
    return ACCURACY[table].get(float(config.optimizer.lr))


def reference_parameters(config: RunConfig) -> int | None:
    """The reference's parameter count for a preset architecture."""
    return PARAMETERS.get(config.model.name) if config.model.hidden in ARCH_PRESETS.values() else None
