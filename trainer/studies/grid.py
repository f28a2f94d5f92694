"""Sweep grids: option strings (``"1,0.1,0.01"``, ``"base,wider"``) validated
into a SweepGrid, expanded into RunConfigs in a fixed order, and the reference
study's questions as presets. No torch here."""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, replace

from fmlab.trainer.config import (
    ARCH_PRESETS,
    ConfigError,
    RunConfig,
    parse_lr,
    parse_run_config,
    parse_widths,
)

# ----------------------------------------------------------------- the grid


@dataclass(frozen=True)
class SweepGrid:
    """Every list is one axis of the grid; the rest applies to every run."""

    archs: tuple[tuple[int, ...], ...] = (ARCH_PRESETS["base"],)
    lrs: tuple[float, ...] = (0.1,)
    batch_sizes: tuple[int, ...] = (64,)
    optimizers: tuple[str, ...] = ("sgd",)
    seeds: tuple[int, ...] = (0,)
    epochs: int = 10
    momentum: float = 0.0
    shuffle: bool = False
    device: str = "auto"
    threshold: float = 0.1
    patience: int = 3
    stop_on_converge: bool = False

    @property
    def size(self) -> int:
        return (
            len(self.archs) * len(self.lrs) * len(self.batch_sizes) * len(self.optimizers) * len(self.seeds)
        )


def split_list(text: object, field_name: str) -> list[str]:
    parts = [p.strip() for p in str(text).split(",")]
    if not parts or any(not p for p in parts):
        raise ConfigError(field_name, f"{text!r} is not a comma-separated list")
    return parts


def split_archs(text: object) -> list[tuple[int, ...]]:
    """``base,wider`` (preset names), ``128,64`` (one net by its widths) or
    several nets separated by ``;`` or ``/`` such as ``base;128,64``."""
    text = str(text).strip()
    for separator in (";", "/"):
        if separator in text:
            return [parse_widths(part, "arch") for part in text.split(separator)]
    parts = [p.strip().lower() for p in text.split(",")]
    if parts and all(p in ARCH_PRESETS for p in parts):
        return [ARCH_PRESETS[p] for p in parts]
    return [parse_widths(text, "arch")]


def _unique(values: list, field_name: str) -> tuple:
    if len(set(values)) != len(values):
        raise ConfigError(field_name, "lists a value twice")
    return tuple(values)


def parse_grid(
    *,
    arch: object = "base",
    lr: object = "0.1",
    batch_size: object = "64",
    optimizer: object = "sgd",
    seed: object = "0",
    epochs: object = 10,
    momentum: object = 0.0,
    shuffle: object = False,
    device: object = "auto",
    threshold: object = 0.1,
    patience: object = 3,
    stop_on_converge: object = False,
) -> SweepGrid:
    """Validate raw option values into a SweepGrid; raises ConfigError naming the option."""
    grid = SweepGrid(
        archs=_unique(split_archs(arch), "arch"),
        lrs=_unique([parse_lr(v, "lr") for v in split_list(lr, "lr")], "lr"),
        batch_sizes=_unique(
            [_one(batch_size=v).batch_size for v in split_list(batch_size, "batch-size")], "batch-size"
        ),
        optimizers=_unique(
            [_one(optimizer=v).optimizer.name for v in split_list(optimizer, "optimizer")], "optimizer"
        ),
        seeds=_unique([_one(seed=v).seed for v in split_list(seed, "seed")], "seed"),
    )
    # the scalar options are checked by parse_run_config with the right field names
    probe = _one(
        epochs=epochs,
        shuffle=shuffle,
        device=device,
        threshold=threshold,
        patience=patience,
        stop_on_converge=stop_on_converge,
    )
    mom = _one(momentum=momentum).optimizer.momentum
    if mom and "adam" in grid.optimizers:
        raise ConfigError("momentum", "momentum applies to sgd only")
    return replace(
        grid,
        epochs=probe.epochs,
        momentum=mom,
        shuffle=probe.shuffle,
        device=probe.device,
        threshold=probe.convergence.threshold,
        patience=probe.convergence.patience,
        stop_on_converge=probe.convergence.stop,
    )


def _one(**values: object) -> RunConfig:
    return parse_run_config(**values)


def expand(grid: SweepGrid, **overrides: object) -> list[RunConfig]:
    """Every combination, architecture outermost and learning rate innermost,
    so runs that can share a stack sit next to each other."""
    configs = []
    for arch, batch, opt, seed, lr in itertools.product(
        grid.archs, grid.batch_sizes, grid.optimizers, grid.seeds, grid.lrs
    ):
        values = dict(
            arch=arch,
            lr=lr,
            epochs=grid.epochs,
            batch_size=batch,
            optimizer=opt,
            momentum=grid.momentum if opt == "sgd" else 0.0,
            seed=seed,
            shuffle=grid.shuffle,
            device=grid.device,
            threshold=grid.threshold,
            patience=grid.patience,
            stop_on_converge=grid.stop_on_converge,
        )
        values.update(overrides)
        configs.append(parse_run_config(**values))
    return configs


def grid_to_dict(grid: SweepGrid) -> dict:
    data = asdict(grid)
    data["archs"] = [list(a) for a in grid.archs]
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
        {"lr": "0.1,0.01,0.001", "arch": "base", "epochs": 100, "threshold": 0.1, "patience": 3},
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
