"""Run configuration: small frozen dataclasses, validated where they enter.

``parse_run_config`` is the one door from untrusted values (CLI options, form
fields, JSON) to a :class:`RunConfig`; everything past it trusts the config.
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
# A model whose parameters, gradients and optimizer state would not fit in this
# many bytes is refused before anything is allocated.
MAX_MODEL_BYTES = 8 * 2**30


class ConfigError(ValueError):
    """A value that cannot be used; ``field`` names the option or form field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


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
        return f"{text} bs={self.batch_size} {self.epochs} epochs"


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


def _number(value: object, field: str, kind: type) -> float | int:
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


def _in_range(value: object, field: str, kind: type, low: float, high: float) -> float | int:
    number = _number(value, field, kind)
    if not low <= number <= high:
        raise ConfigError(field, f"{number} is out of range ({low:g} to {high:g})")
    return number


def _choice(value: object, field: str, choices: tuple[str, ...]) -> str:
    text = str(value).strip().lower()
    if text not in choices:
        raise ConfigError(field, f"{value!r} is not one of {', '.join(choices)}")
    return text


def _flag(value: object, field: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ConfigError(field, f"{value!r} is not yes or no")


def parse_lr(value: object, field: str = "lr") -> float:
    lr = _number(value, field, float)
    if lr <= 0:
        raise ConfigError(field, f"{lr:g} must be greater than 0")
    if lr > 1e6:
        raise ConfigError(field, f"{lr:g} is too large (at most 1e6)")
    return float(lr)


def parse_run_config(
    *,
    arch: object = "base",
    lr: object = 0.1,
    epochs: object = 10,
    batch_size: object = 64,
    optimizer: object = "sgd",
    momentum: object = 0.0,
    seed: object = 0,
    shuffle: object = False,
    device: object = "auto",
    threshold: object = 0.1,
    patience: object = 3,
    stop_on_converge: object = False,
    full_steps: object = 100,
    step_every: object = 10,
) -> RunConfig:
    """Validate raw values (strings or numbers) into a RunConfig.

    Raises ConfigError naming the first field that cannot be used.
    """
    if isinstance(arch, (tuple, list)):
        arch = ",".join(str(w) for w in arch)
    hidden = parse_widths(arch, "arch")
    opt_name = _choice(optimizer, "optimizer", OPTIMIZERS)
    mom = _in_range(momentum, "momentum", float, 0.0, 0.999)
    if mom and opt_name != "sgd":
        raise ConfigError("momentum", "momentum applies to sgd only")
    return RunConfig(
        model=ModelSpec(hidden),
        optimizer=OptimizerConfig(opt_name, parse_lr(lr), float(mom)),
        convergence=ConvergenceRule(
            threshold=float(_in_range(threshold, "threshold", float, 0.0, 100.0)),
            patience=int(_in_range(patience, "patience", int, 1, MAX_EPOCHS)),
            stop=_flag(stop_on_converge, "stop-on-converge"),
        ),
        epochs=int(_in_range(epochs, "epochs", int, 1, MAX_EPOCHS)),
        batch_size=int(_in_range(batch_size, "batch-size", int, 1, MAX_BATCH_SIZE)),
        seed=int(_in_range(seed, "seed", int, 0, 2**63 - 1)),
        shuffle=_flag(shuffle, "shuffle"),
        device=_choice(device, "device", DEVICES),
        full_steps=int(_in_range(full_steps, "full-steps", int, 0, 10**9)),
        step_every=int(_in_range(step_every, "step-every", int, 1, 10**9)),
    )


def config_to_dict(config: RunConfig) -> dict:
    """The JSON form stored in session files."""
    return {
        "arch": config.model.name,
        "hidden": list(config.model.hidden),
        "lr": config.optimizer.lr,
        "optimizer": config.optimizer.name,
        "momentum": config.optimizer.momentum,
        "epochs": config.epochs,
        "batch_size": config.batch_size,
        "seed": config.seed,
        "shuffle": config.shuffle,
        "device": config.device,
        "threshold": config.convergence.threshold,
        "patience": config.convergence.patience,
        "stop_on_converge": config.convergence.stop,
        "full_steps": config.full_steps,
        "step_every": config.step_every,
    }


def config_from_dict(data: dict) -> RunConfig:
    """Strict inverse of config_to_dict; raises ConfigError on any bad field."""
    if not isinstance(data, dict):
        raise ConfigError("config", "is not an object")
    expected = set(config_to_dict(RunConfig()))
    missing = expected - set(data)
    if missing:
        raise ConfigError("config", f"missing {', '.join(sorted(missing))}")
    hidden = data["hidden"]
    if not isinstance(hidden, list) or not all(
        isinstance(w, int) and not isinstance(w, bool) for w in hidden
    ):
        raise ConfigError("hidden", "must be a list of whole numbers")
    raw = {k: data[k] for k in expected if k not in ("arch", "hidden")}
    for key in ("shuffle", "stop_on_converge"):
        if not isinstance(raw[key], bool):
            raise ConfigError(key, "must be true or false")
    return parse_run_config(
        arch=",".join(str(w) for w in hidden), stop_on_converge=raw.pop("stop_on_converge"), **raw
    )
