"""Run configuration: small frozen dataclasses, validated where they enter.

``fmlab.trainer.fields.parse_run_config`` is the one door from untrusted
values (CLI options, form fields, JSON) to a :class:`RunConfig`; everything
past it trusts the config. This module holds what the fields are made of:
the dataclasses, the limits and the value parsers.
This module does not import torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

ARCH_PRESETS: dict[str, tuple[int, ...]] = {
    "base": (256, 512),
    "deeper": (256, 512, 1024, 2048),
    "wider": (1024, 2048),
}
OPTIMIZERS = ("sgd", "adam")
DEVICES = ("auto", "cpu", "cuda")
INPUT_SIZE = 784
NUM_CLASSES = 10
MAX_EPOCHS = 10_000
MAX_BATCH_SIZE = 60_000
MAX_WIDTH = 1_000_000
MAX_LR = 1e6
# A model whose parameters, gradients and optimizer state would not fit in this
# many bytes is refused before anything is allocated.
MAX_MODEL_BYTES = 8 * 2**30


class ConfigError(ValueError):
    """A value that cannot be used; ``field`` names the option or form field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message

    @property
    def errors(self) -> dict[str, str]:
        """Every refused field with its reason: here the one."""
        return {self.field: self.message}

    @staticmethod
    def of(errors: dict[str, str]) -> ConfigError:
        """The error for these refusals: a ConfigError for one, ConfigErrors for several."""
        if len(errors) == 1:
            return ConfigError(*next(iter(errors.items())))
        return ConfigErrors(errors)


class ConfigErrors(ConfigError):
    """Several values that cannot be used, each with its reason, in the
    fields' order; ``field`` and ``message`` are the first one's, so a caller
    that shows one refusal still can."""

    def __init__(self, errors: dict[str, str]) -> None:
        (field, message), *_ = errors.items()
        super().__init__(field, message)
        self.args = ("; ".join(f"{name}: {reason}" for name, reason in errors.items()),)
        self._errors = dict(errors)

    @property
    def errors(self) -> dict[str, str]:
        return dict(self._errors)


@dataclass(frozen=True)
class ModelSpec:
    """An MLP named by its hidden widths (input 784 and output 10 are implied)."""

    hidden: tuple[int, ...] = ARCH_PRESETS["base"]

    @property
    def name(self) -> str:
        """The preset's name when the widths match one, else the widths."""
        for name, widths in ARCH_PRESETS.items():
            if widths == self.hidden:
                return name
        return ",".join(str(w) for w in self.hidden)

    @property
    def sizes(self) -> tuple[int, ...]:
        """Every layer's width, input and output included."""
        return (INPUT_SIZE, *self.hidden, NUM_CLASSES)

    @property
    def num_params(self) -> int:
        return sum((i + 1) * o for i, o in zip(self.sizes, self.sizes[1:]))


@dataclass(frozen=True)
class OptimizerConfig:
    name: str = "sgd"  # "sgd" or "adam"
    lr: float = 0.1
    momentum: float = 0.0  # SGD only


@dataclass(frozen=True)
class ConvergenceRule:
    """Converged after the first epoch past which test accuracy moved less than
    ``threshold`` percentage points for ``patience`` consecutive epochs."""

    threshold: float = 0.1
    patience: int = 3
    stop: bool = False  # end the run once converged


@dataclass(frozen=True)
class RunConfig:
    model: ModelSpec = field(default_factory=ModelSpec)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    convergence: ConvergenceRule = field(default_factory=ConvergenceRule)
    epochs: int = 10
    batch_size: int = 64
    seed: int = 0
    shuffle: bool = False  # the reference experiments keep the file order
    device: str = "auto"  # "auto" picks CUDA when available
    full_steps: int = 100  # every step's metrics are kept for this many steps
    step_every: int = 10  # then one step in this many

    def describe(self) -> str:
        """A one-line title, e.g. ``base lr=0.1 sgd bs=64 10 epochs``."""
        opt = self.optimizer
        text = f"{self.model.name} lr={opt.lr:g} {opt.name}"
        if opt.name == "sgd" and opt.momentum:
            text += f" m={opt.momentum:g}"
        return f"{text} bs={self.batch_size} {self.epochs} epoch{'s' if self.epochs != 1 else ''}"


def parse_widths(text: str, field: str = "arch") -> tuple[int, ...]:
    """A preset name or comma-separated widths such as ``128,64``."""
    text = str(text).strip()
    if text.lower() in ARCH_PRESETS:
        return ARCH_PRESETS[text.lower()]
    parts = [p.strip() for p in text.split(",")]
    if not text or any(not p for p in parts):
        raise ConfigError(
            field,
            f"{text!r} is not a preset ({', '.join(ARCH_PRESETS)}) or a list of widths like 128,64",
        )
    widths = []
    for part in parts:
        try:
            width = int(part)
        except ValueError:
            raise ConfigError(field, f"width {part!r} is not a whole number") from None
        if width < 1:
            raise ConfigError(field, f"width {width} must be at least 1")
        if width > MAX_WIDTH:
            raise ConfigError(field, f"width {width} is over the limit of {MAX_WIDTH:,}")
        widths.append(width)
    spec = ModelSpec(tuple(widths))
    # weights + gradients + up to two optimizer buffers, float32
    needed = spec.num_params * 4 * 4
    if needed > MAX_MODEL_BYTES:
        raise ConfigError(
            field,
            f"{spec.num_params:,} parameters would need about {needed / 2**30:.0f} GiB; "
            f"the limit is {MAX_MODEL_BYTES / 2**30:.0f} GiB",
        )
    return spec.hidden


def parse_number(value: object, field: str, kind: type) -> float | int:
    """A finite number of ``kind`` (int or float); a bool is not a number here."""
    if isinstance(value, bool):
        raise ConfigError(field, f"{value!r} is not a number")
    try:
        number = kind(value)
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(field, f"{value!r} is not a {'whole ' if kind is int else ''}number") from None
    if kind is float and not math.isfinite(number):
        raise ConfigError(field, f"{value!r} is not a finite number")
    if kind is int and isinstance(value, float) and value != number:
        raise ConfigError(field, f"{value!r} is not a whole number")
    return number


def parse_lr(value: object, field: str = "lr") -> float:
    lr = parse_number(value, field, float)
    if lr <= 0:
        raise ConfigError(field, f"{lr:g} must be greater than 0")
    if lr > MAX_LR:
        raise ConfigError(field, f"{lr:g} is too large (at most {MAX_LR:g})")
    return float(lr)
