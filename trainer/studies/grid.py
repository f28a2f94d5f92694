"""Sweep grids: option values (``"1,0.1,0.01"``, ``"base,wider"``) validated
into a SweepGrid, expanded into RunConfigs in a fixed order, and the reference
study's questions as presets. Which fields a grid may list several values for
(its axes) is declared in fmlab.trainer.fields. No torch here."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

from fmlab.trainer.config import RunConfig
from fmlab.trainer.fields import AXES, RUN_FIELDS, parse_lists, parse_run_config

# ----------------------------------------------------------------- the grid


@dataclass(frozen=True)
class SweepGrid:
    """Every axis field of a run with its values (one or more); every other
    field with the one value that applies to every run."""

    axes: dict[str, tuple]
    fixed: dict[str, object]

    @property
    def size(self) -> int:
        return math.prod(len(values) for values in self.axes.values())


def parse_grid(**options: object) -> SweepGrid:
    """Validate raw option values into a SweepGrid.

    The keywords are the fields of a run (as for parse_run_config); an axis
    field may list several values. Raises ConfigError naming the option, or
    ConfigErrors naming each refused one.
    """
    values = parse_lists(options)
    return SweepGrid(
        axes={field.name: values[field.name] for field in AXES},
        fixed={field.name: values[field.name][0] for field in RUN_FIELDS if not field.axis},
    )


def expand(grid: SweepGrid, **overrides: object) -> list[RunConfig]:
    """Every combination, the outermost axis (architecture) first and the
    innermost (learning rate) last, so runs that can share a stack sit next
    to each other; ``overrides`` set fields of every run."""
    axes = sorted(AXES, key=lambda field: field.axis.nesting)
    names = [field.name for field in axes]
    return [
        parse_run_config(**{**grid.fixed, **dict(zip(names, combination)), **overrides})
        for combination in itertools.product(*(grid.axes[name] for name in names))
    ]


def grid_to_dict(grid: SweepGrid) -> dict:
    """The grid as JSON, in the fields' order: an axis as a list (an
    architecture as its name: a preset, widths, layers or FILE.py:FACTORY),
    any other field as its value. Informational: a sweep's runs hold their
    configs."""
    data: dict[str, object] = {}
    for field in RUN_FIELDS:
        if field.axis:
            data[field.name] = [field.text(v) if field.name == "arch" else v for v in grid.axes[field.name]]
        else:
            data[field.name] = grid.fixed[field.name]
    return data


# ----------------------------------------------------------------- presets


@dataclass(frozen=True)
class Preset:
    """One of the reference study's questions: the grid's defaults and the table."""

    name: str
    table: str
    summary: str
    options: dict[str, object]  # parse_grid keywords


PRESETS = {
    "lr": Preset(
        "lr",
        "lr",
        "test accuracy after 10 epochs for each learning rate",
        {"lr": "1,0.1,0.01,0.001", "arch": "base", "epochs": 10},
    ),
    "convergence": Preset(
        "convergence",
        "convergence",
        "the epoch each learning rate converges at, up to 100 epochs",
        # lr 1 too, as the reference's table has it (it does not learn)
        {"lr": "1,0.1,0.01,0.001", "arch": "base", "epochs": 100, "threshold": 0.1, "patience": 3},
    ),
    "architectures": Preset(
        "architectures",
        "architectures",
        # the full 200 epochs: at the rule's first convergence base and wider are
        # still over 2 points short of where they end (measured)
        "base, deeper and wider at lr 0.01 for 200 epochs",
        {"lr": "0.01", "arch": "base,deeper,wider", "epochs": 200},
    ),
}
