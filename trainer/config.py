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

from fmlab.trainer.layers import (
    ALIASES,
    SIGNATURES,
    Layer,
    StackError,
    mlp_widths,
    parse_stack,
    stack_text,
    summarize_stack,
)

ARCH_PRESETS: dict[str, tuple[int, ...]] = {
    "base": (256, 512),
    "deeper": (256, 512, 1024, 2048),
    "wider": (1024, 2048),
}
# Layer stacks by name (see fmlab.trainer.layers). cnn: LeNet-like, two convolutions
# with pooling and one hidden layer; over 90% test accuracy after 10 epochs at lr 0.1.
STACK_PRESETS: dict[str, str] = {
    "cnn": "conv(16,5,pad=2) relu maxpool(2) conv(32,3) relu maxpool(2) flatten fc(128) relu fc(10)",
}
PRESET_NAMES = (*ARCH_PRESETS, *STACK_PRESETS)  # every network by name
ARCH_CHOICES = (
    f"a preset ({', '.join(PRESET_NAMES)}), widths like 128,64, "
    "or layers like 'conv(8,3) relu flatten fc(10)'"
)
OPTIMIZERS = ("sgd", "adam")
DEVICES = ("auto", "cpu", "cuda")
# fp32 throughout, or bf16 matrix products with fp32 weights (MLPs only)
PRECISIONS = ("fp32", "bf16")
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
class ModuleRef:
    """A user's own nn.Module: the file and factory that build it, and what
    fmlab read of it when it was loaded, so that a session names the network
    without the file (fmlab.trainer.user_module loads it: that runs the file)."""

    path: str
    factory: str
    sha256: str = ""  # of the file's bytes when it was loaded
    text: str = ""  # repr() of the module it built
    params: int = 0
    # the forward-hook summary; not part of the config's identity or its JSON
    summary: object = field(default=None, compare=False, hash=False, repr=False)

    @property
    def name(self) -> str:
        return f"{self.path}:{self.factory}"


@dataclass(frozen=True)
class ModelSpec:
    """The network: an MLP by its hidden widths (input 784 and output 10 are
    implied), a stack of layers (``layers``), or a user's module (``module``)."""

    hidden: tuple[int, ...] = ARCH_PRESETS["base"]
    layers: tuple[Layer, ...] = ()
    module: ModuleRef | None = None

    @property
    def kind(self) -> str:
        """ "mlp" (the fast path), "stack" or "module"."""
        return "module" if self.module else "stack" if self.layers else "mlp"

    @property
    def is_mlp(self) -> bool:
        return self.kind == "mlp"

    @property
    def name(self) -> str:
        """The preset's name when the network matches one, else how it is written."""
        if self.module:
            return self.module.name
        if self.layers:
            text = stack_text(self.layers)
            return next((name for name, stack in STACK_PRESETS.items() if stack == text), text)
        for name, widths in ARCH_PRESETS.items():
            if widths == self.hidden:
                return name
        return ",".join(str(w) for w in self.hidden)

    @property
    def sizes(self) -> tuple[int, ...]:
        """Every layer's width, input and output included (an MLP's)."""
        return (INPUT_SIZE, *self.hidden, NUM_CLASSES)

    @property
    def num_params(self) -> int:
        if self.module:
            return self.module.params
        if self.layers:
            return summarize_stack(self.layers).total_params
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
    precision: str = "fp32"  # the reference numbers are fp32
    full_steps: int = 100  # every step's metrics are kept for this many steps
    step_every: int = 10  # then one step in this many

    def describe(self) -> str:
        """A one-line title, e.g. ``base lr=0.1 sgd bs=64 10 epochs``."""
        opt = self.optimizer
        text = f"{self.model.name} lr={opt.lr:g} {opt.name}"
        if opt.name == "sgd" and opt.momentum:
            text += f" m={opt.momentum:g}"
        return f"{text} bs={self.batch_size} {self.epochs} epoch{'s' if self.epochs != 1 else ''}"


def looks_like_module(text: object) -> bool:
    """Whether ``text`` names a module file (``net.py:build``) rather than layers."""
    text = str(text).strip()
    return text.endswith(".py") or ".py:" in text


def parse_arch(text: str, field: str = "arch") -> ModelSpec:
    """A preset (MLP or stack), MLP widths such as ``128,64``, or a layer stack
    such as ``conv(8,3) relu flatten fc(10)``; a stack that is a plain MLP
    becomes one (its fast path). A user's module file is read elsewhere
    (fmlab.trainer.user_module): parsing text never runs code."""
    text = str(text).strip()
    preset = STACK_PRESETS.get(text.lower())
    if preset is None and (not text or text.lower() in ARCH_PRESETS or text[0] in "0123456789+-,"):
        return ModelSpec(parse_widths(text, field))
    if (
        preset is None
        and text.isidentifier()
        and text.lower() not in SIGNATURES
        and text.lower() not in ALIASES
    ):
        raise ConfigError(field, f"{text!r} is not {ARCH_CHOICES}")
    try:
        layers = parse_stack(preset or text)
    except StackError as exc:
        raise ConfigError(field, str(exc)) from None
    widths = mlp_widths(layers)
    spec = ModelSpec(widths) if widths else ModelSpec((), layers=layers)
    check_model_size(spec, field)
    return spec


def check_model_size(spec: ModelSpec, field: str = "arch") -> None:
    # weights + gradients + up to two optimizer buffers, float32
    needed = spec.num_params * 4 * 4
    if needed > MAX_MODEL_BYTES:
        raise ConfigError(
            field,
            f"{spec.num_params:,} parameters would need about {needed / 2**30:.0f} GiB; "
            f"the limit is {MAX_MODEL_BYTES / 2**30:.0f} GiB",
        )


def parse_widths(text: str, field: str = "arch") -> tuple[int, ...]:
    """A preset name or comma-separated widths such as ``128,64``."""
    text = str(text).strip()
    if text.lower() in ARCH_PRESETS:
        return ARCH_PRESETS[text.lower()]
    parts = [p.strip() for p in text.split(",")]
    if not text or any(not p for p in parts):
        raise ConfigError(
            field,
            f"{text!r} is not {ARCH_CHOICES}",
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
    check_model_size(spec, field)
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
