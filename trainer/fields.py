"""A run's fields, declared once.

Each field of a RunConfig is one row of RUN_FIELDS: its name (the
parse_run_config keyword and the JSON key; with dashes, the CLI option and the
field a ConfigError names), where the config keeps it, its parser (type, range
or choices), its help text and form label, and, for a sweep axis, how a sweep
lists several of its values. Validation, the session JSON, sweep grids, the
``train`` and ``sweep`` options and the app's forms all derive from this table.
Defaults are RunConfig's own. No torch here.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from functools import cached_property, reduce

from fmlab.trainer.config import (
    ARCH_PRESETS,
    DEVICES,
    MAX_BATCH_SIZE,
    MAX_EPOCHS,
    MAX_LR,
    MAX_WIDTH,
    OPTIMIZERS,
    PRECISIONS,
    PRESET_NAMES,
    ConfigError,
    ModelSpec,
    ModuleRef,
    RunConfig,
    looks_like_module,
    parse_arch,
    parse_lr,
    parse_number,
    parse_widths,
)
from fmlab.trainer.layers import StackError, check_stack, layers_from_json, layers_json_schema

# ----------------------------------------------------------------- parsers


class Parser:
    """Turns one raw value (text, a number, a bool, or an already parsed value)
    into a field's value, or raises ConfigError naming ``option``."""

    def parse(self, value: object, option: str) -> object:
        raise NotImplementedError

    def text(self, value: object) -> str:
        """The value as someone would type it."""
        return str(value)

    def json_schema(self) -> dict:
        """What a session file may hold for the field, as JSON Schema."""
        raise NotImplementedError

    def json_type_problem(self, value: object) -> str | None:
        """Why ``value``, read from JSON, is not of the field's JSON type (a
        file holds ``10``, not ``"10"``), or None; the schema says the same."""
        kinds = {"integer": (int,), "number": (int, float), "string": (str,), "boolean": (bool,)}
        kind = self.json_schema()["type"]
        if isinstance(value, bool) != (kind == "boolean") or not isinstance(value, kinds[kind]):
            return f"must be {'a' if kind != 'integer' else 'an'} {kind}"
        return None

    def split(self, text: object, option: str) -> list[object]:
        """A sweep option's values: comma-separated."""
        parts = [p.strip() for p in str(text).split(",")]
        if not parts or any(not p for p in parts):
            raise ConfigError(option, f"{text!r} is not a comma-separated list")
        return parts


@dataclass(frozen=True)
class Whole(Parser):
    low: int
    high: int

    def parse(self, value: object, option: str) -> int:
        return int(_in_range(value, option, int, self.low, self.high))

    def json_schema(self) -> dict:
        return {"type": "integer", "minimum": self.low, "maximum": self.high}


@dataclass(frozen=True)
class Real(Parser):
    low: float
    high: float

    def parse(self, value: object, option: str) -> float:
        return float(_in_range(value, option, float, self.low, self.high))

    def text(self, value: object) -> str:
        return f"{value:g}"

    def json_schema(self) -> dict:
        return {"type": "number", "minimum": self.low, "maximum": self.high}


@dataclass(frozen=True)
class LearningRate(Parser):
    """Greater than 0 and at most 1e6 (see parse_lr)."""

    def parse(self, value: object, option: str) -> float:
        return parse_lr(value, option)

    def text(self, value: object) -> str:
        return f"{value:g}"

    def json_schema(self) -> dict:
        return {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_LR}


@dataclass(frozen=True)
class Choice(Parser):
    choices: tuple[str, ...]
    names: tuple[str, ...] = ()  # what a form's menu shows for each choice, where not the choice itself

    def parse(self, value: object, option: str) -> str:
        text = str(value).strip().lower()
        if text not in self.choices:
            raise ConfigError(option, f"{value!r} is not one of {', '.join(self.choices)}")
        return text

    def menu(self) -> list[tuple[str, str]]:
        """(shown, value) pairs for a select box."""
        return list(zip(self.names or self.choices, self.choices))

    def json_schema(self) -> dict:
        return {"type": "string", "enum": list(self.choices)}

    def json_type_problem(self, value: object) -> str | None:
        if value not in self.choices:  # a file holds the value as fmlab writes it
            return f"{value!r} is not one of {', '.join(self.choices)}"
        return None


@dataclass(frozen=True)
class YesNo(Parser):
    def parse(self, value: object, option: str) -> bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ConfigError(option, f"{value!r} is not yes or no")

    def text(self, value: object) -> str:
        return "yes" if value else "no"

    def json_schema(self) -> dict:
        return {"type": "boolean"}


@dataclass(frozen=True)
class Architecture(Parser):
    """The network (see parse_arch): a preset, MLP widths such as ``128,64``,
    layers such as ``conv(8,3) relu flatten fc(10)``, or ``file.py:factory``,
    a user's module, which loading it runs (fmlab.trainer.user_module). A
    ModelSpec (read from a file) is checked as it stands and never loaded."""

    def parse(self, value: object, option: str) -> ModelSpec:
        if isinstance(value, ModelSpec):
            return _checked_spec(value, option)
        if isinstance(value, (tuple, list)):
            value = ",".join(str(w) for w in value)
        text = str(value).strip()
        if looks_like_module(text):
            from fmlab.trainer.user_module import load_module_ref  # torch, and the user's code

            return ModelSpec((), module=load_module_ref(text, option))
        return parse_arch(text, option)

    def text(self, value: object) -> str:
        return value.name

    def json_schema(self) -> dict:
        """The name only names the net (``hidden``, ``layers`` or ``module`` hold it)."""
        return {"type": "string"}

    def split(self, text: object, option: str) -> list[object]:
        """``base,wider`` (preset names), ``128,64`` (one net by its widths) or
        several nets separated by ``;`` or ``/`` such as ``base;128,64;cnn``."""
        if isinstance(text, ModelSpec):
            return [text]
        text = str(text).strip()
        if ";" in text:
            return text.split(";")
        if "/" in text and not looks_like_module(text):  # a module's path has slashes of its own
            return text.split("/")
        parts = [p.strip().lower() for p in text.split(",")]
        if parts and all(p in PRESET_NAMES for p in parts):
            return parts
        return [text]


def _checked_spec(spec: ModelSpec, option: str) -> ModelSpec:
    if spec.module is not None:
        return spec  # checked where it was read; a record, not run
    if spec.layers:
        try:
            check_stack(spec.layers)
        except StackError as exc:
            raise ConfigError(option, str(exc)) from None
        return spec
    return ModelSpec(parse_widths(",".join(map(str, spec.hidden)), option))


def _in_range(value: object, option: str, kind: type, low: float, high: float) -> float | int:
    number = parse_number(value, option, kind)
    if not low <= number <= high:
        raise ConfigError(option, f"{number} is out of range ({low:g} to {high:g})")
    return number


# ----------------------------------------------------------------- the table


@dataclass(frozen=True)
class Axis:
    """How a sweep lists several values of a field."""

    help: str  # the sweep option's help
    metavar: str
    label: str  # the sweep view's label
    example: str  # a list to show in an empty field
    # Where the axis sits when a grid is expanded, 0 outermost: runs that differ
    # only in the innermost axes (seed, learning rate) can train in one stack.
    nesting: int


@dataclass(frozen=True)
class Field:
    """One field of a run: where a RunConfig keeps it, how a raw value is
    parsed, and how the CLI and the forms offer it."""

    name: str  # parse_run_config keyword, JSON key
    attr: str  # where a RunConfig keeps it, e.g. "optimizer.lr"
    parser: Parser
    help: str  # the CLI option's help
    metavar: str
    label: str  # the form row's label
    note: str = ""  # the text beside a yes/no box in a form
    axis: Axis | None = None  # a sweep may list several values

    @property
    def option(self) -> str:
        """The CLI option without its dashes, and the field ConfigError names."""
        return self.name.replace("_", "-")

    @property
    def flag(self) -> str:
        return f"--{self.option}"

    @cached_property
    def default(self) -> object:
        return self.read(RunConfig())

    def read(self, config: RunConfig) -> object:
        return reduce(getattr, self.attr.split("."), config)

    def parse(self, value: object) -> object:
        return self.parser.parse(value, self.option)

    def parse_list(self, text: object) -> tuple:
        """Several values, for a sweep: ``"1,0.1"``, each parsed, none twice."""
        values = [self.parse(part) for part in self.parser.split(text, self.option)]
        if len(set(values)) != len(values):
            raise ConfigError(self.option, "lists a value twice")
        return tuple(values)

    def text(self, value: object) -> str:
        return self.parser.text(value)


ARCH_HELP = ", ".join(f"{name} ({','.join(map(str, widths))})" for name, widths in ARCH_PRESETS.items())
ARCH_HELP += ", cnn (a small LeNet-like net), widths like 128,64, layers like 'conv(8,3) relu flatten fc(10)'"
ARCH_HELP += " (see fmlab params --help), or your own module: FILE.py:FACTORY (this runs that file)"

RUN_FIELDS: tuple[Field, ...] = (
    Field("arch", "model", Architecture(), f"{ARCH_HELP}.", "ARCH", "arch",
          axis=Axis("Architectures: base,deeper,wider,cnn, or nets separated by ';' like 'base;128,64'.",
                    "ARCHS", "archs", "base,wider or 128;64,32", nesting=0)),
    Field("lr", "optimizer.lr", LearningRate(), "Learning rate (> 0).", "LR", "lr",
          axis=Axis("Learning rates, e.g. 1,0.1,0.01,0.001.", "LRS", "lrs", "1,0.1,0.01", nesting=4)),
    Field("epochs", "epochs", Whole(1, MAX_EPOCHS),
          f"Epochs to train (1 to {MAX_EPOCHS}; the most, with --stop-on-converge).", "N", "epochs"),
    Field("batch_size", "batch_size", Whole(1, MAX_BATCH_SIZE), "Samples per step.", "N", "batch size",
          axis=Axis("Batch sizes, e.g. 32,64.", "BATCH_SIZES", "batches", "32,64", nesting=1)),
    Field("optimizer", "optimizer.name", Choice(OPTIMIZERS, names=("SGD", "Adam")), "sgd or adam.",
          "sgd|adam", "optimizer",
          axis=Axis("Optimizers: sgd, adam or both.", "OPTIMIZERS", "opts", "sgd,adam", nesting=2)),
    Field("momentum", "optimizer.momentum", Real(0.0, 0.999),
          "SGD momentum (0 to 0.999; a sweep trains momentum runs one by one).", "M", "momentum"),
    Field("seed", "seed", Whole(0, 2**63 - 1), "Seed for the initial weights (and the shuffle order).",
          "N", "seed", axis=Axis("Seeds, e.g. 0,1,2.", "SEEDS", "seeds", "0,1,2", nesting=3)),
    Field("shuffle", "shuffle", YesNo(), "Shuffle the training set every epoch.", "", "shuffle",
          note="each epoch"),
    Field("device", "device", Choice(DEVICES), "auto (CUDA when available), cpu or cuda.", "auto|cpu|cuda",
          "device"),
    Field("precision", "precision", Choice(PRECISIONS),
          "fp32, or bf16: matrix products in bfloat16, weights kept in fp32 (MLPs; faster on CPUs with "
          "AVX-512 BF16 or AMX and on GPUs, numbers a little off fp32's).", "fp32|bf16", "precision"),
    Field("threshold", "convergence.threshold", Real(0.0, 100.0),
          "Convergence: test accuracy moves less than this many points...", "POINTS", "threshold"),
    Field("patience", "convergence.patience", Whole(1, MAX_EPOCHS), "...for this many epochs in a row.",
          "N", "patience"),
    Field("stop_on_converge", "convergence.stop", YesNo(), "End the run once it has converged.", "", "",
          note="stop on converge"),
    Field("full_steps", "full_steps", Whole(0, 10**9),
          "Keep every step's metrics for this many steps, then one in --step-every.", "N", "full steps"),
    Field("step_every", "step_every", Whole(1, 10**9), "Step-metric interval after --full-steps.", "N",
          "step every"),
)  # fmt: skip
FIELDS: dict[str, Field] = {field.name: field for field in RUN_FIELDS}
AXES: tuple[Field, ...] = tuple(field for field in RUN_FIELDS if field.axis)


@dataclass(frozen=True)
class Rule:
    """A check across fields, made once each of them is good; its refusal is
    filed under ``field``."""

    field: str
    needs: tuple[str, ...]
    reason: Callable[..., str | None]  # the needed fields' values -> why not, or None


def _momentum_is_for_sgd(optimizer: str, momentum: float) -> str | None:
    return "momentum applies to sgd only" if momentum and optimizer != "sgd" else None


def _bf16_is_for_mlps(arch: ModelSpec, precision: str) -> str | None:
    if precision != "fp32" and not arch.is_mlp:
        return f"{precision} applies to MLPs (widths or a preset like base); other networks train in fp32"
    return None


RULES: tuple[Rule, ...] = (
    Rule("momentum", ("optimizer", "momentum"), _momentum_is_for_sgd),
    Rule("precision", ("arch", "precision"), _bf16_is_for_mlps),
)


def field_named(key: str) -> Field | None:
    """The field a ConfigError names (``batch-size``) or a keyword names (``batch_size``)."""
    return FIELDS.get(key.replace("-", "_"))


# ----------------------------------------------------------------- parsing


def parse_values(values: Mapping[str, object]) -> dict[str, object]:
    """Every field's value: each one given parsed, the rest their defaults.

    Every field is checked, and then the rules across fields; one refusal
    raises ConfigError, several raise ConfigErrors with each. An unknown name
    is a TypeError, as an unknown keyword would be.
    """
    return {name: found[0] for name, found in _parse(values, lists=False).items()}


def parse_lists(values: Mapping[str, object]) -> dict[str, tuple]:
    """As parse_values, but an axis field may list several values
    (``lr="1,0.1"``, ``arch="base;128,64"``): every field's values as a tuple,
    one or more for an axis, one for the rest. A rule must hold for every
    combination."""
    return _parse(values, lists=True)


def _parse(values: Mapping[str, object], lists: bool) -> dict[str, tuple]:
    unknown = set(values) - FIELDS.keys()
    if unknown:
        raise TypeError(f"not a field of a run: {', '.join(sorted(unknown))}")
    found: dict[str, tuple] = {}
    errors: dict[str, str] = {}
    for field in RUN_FIELDS:
        if field.name not in values:
            found[field.name] = (field.default,)
            continue
        raw = values[field.name]
        try:
            found[field.name] = field.parse_list(raw) if lists and field.axis else (field.parse(raw),)
        except ConfigError as exc:
            errors[exc.field] = exc.message
    for rule in RULES:
        if FIELDS[rule.field].option in errors or not all(name in found for name in rule.needs):
            continue
        for combination in itertools.product(*(found[name] for name in rule.needs)):
            reason = rule.reason(*combination)
            if reason:
                errors[FIELDS[rule.field].option] = reason
                break
    if errors:
        order = [field.option for field in RUN_FIELDS]
        raise ConfigError.of(dict(sorted(errors.items(), key=lambda item: order.index(item[0]))))
    return found


def build_config(values: Mapping[str, object]) -> RunConfig:
    """The RunConfig holding every field's parsed value."""
    config = RunConfig()
    top: dict[str, object] = {}
    sections: dict[str, dict[str, object]] = {}
    for field in RUN_FIELDS:
        section, _, name = field.attr.rpartition(".")
        (sections.setdefault(section, {}) if section else top)[name] = values[field.name]
    parts = {section: replace(getattr(config, section), **items) for section, items in sections.items()}
    return replace(config, **top, **parts)


def config_texts(config: RunConfig) -> dict[str, object]:
    """Every field of ``config`` as a form shows it: text, or a bool for a yes/no box."""
    return {
        f.name: f.read(config) if isinstance(f.parser, YesNo) else f.text(f.read(config)) for f in RUN_FIELDS
    }


# ----------------------------------------------------------------- JSON


NET_KEYS = ("hidden", "layers", "module")  # what a file holds the network in, beside its name
# Fields newer than the file format, written only when not at this value: files
# (and the checkpoint digests of their settings) from before them stay as they were.
OPTIONAL_KEYS = {"precision": "fp32"}
MAX_PATH_TEXT = 4096


def config_json(config: RunConfig) -> dict:
    """One key per field; the architecture by name for people (``arch``) and
    exactly for programs: MLP widths (``hidden``), a layer stack (``layers``)
    or a user's module (``module``: its file, factory, hash, repr and size)."""
    data: dict[str, object] = {}
    for field in RUN_FIELDS:
        value = field.read(config)
        if field.name == "arch":
            data["arch"] = field.text(value)
            data.update(_net_json(value))
        elif field.name not in OPTIONAL_KEYS or value != OPTIONAL_KEYS[field.name]:
            data[field.name] = value
    return data


def _net_json(spec: ModelSpec) -> dict:
    module = spec.module
    return {
        "hidden": list(spec.hidden) if spec.is_mlp else [],
        "layers": [layer.to_dict() for layer in spec.layers] if spec.layers else None,
        "module": None if module is None else {
            "path": module.path, "factory": module.factory, "sha256": module.sha256,
            "repr": module.text, "params": module.params,
        },
    }  # fmt: skip


def config_of_json(data: object) -> RunConfig:
    """Strict inverse of config_json; raises ConfigError on any bad field.
    Files from before layer stacks hold ``hidden`` only. Reading never loads
    a module's file: the record of it is taken as it stands."""
    if not isinstance(data, dict):
        raise ConfigError("config", "is not an object")
    missing = config_json(RunConfig()).keys() - {"layers", "module"} - data.keys()
    if missing:
        raise ConfigError("config", f"missing {', '.join(sorted(missing))}")
    data = {**OPTIONAL_KEYS, **data}
    for field in RUN_FIELDS:
        problem = field.parser.json_type_problem(data[field.name])
        if problem is not None:
            raise ConfigError(
                field.name, "must be true or false" if isinstance(field.parser, YesNo) else problem
            )
    values = {field.name: data[field.name] for field in RUN_FIELDS}
    values["arch"] = _net_of_json(data)  # the net itself; the name only names it
    return build_config(parse_values(values))


def _net_of_json(data: dict) -> ModelSpec:
    hidden, layers, module = data["hidden"], data.get("layers"), data.get("module")
    if not isinstance(hidden, list) or not all(
        isinstance(w, int) and not isinstance(w, bool) for w in hidden
    ):
        raise ConfigError("hidden", "must be a list of whole numbers")
    if sum((bool(hidden), layers is not None, module is not None)) != 1:
        raise ConfigError("config", "must describe the network once: by hidden, layers or module")
    if layers is not None:
        try:
            return ModelSpec((), layers=layers_from_json(layers))
        except StackError as exc:
            raise ConfigError("layers", str(exc)) from None
    if module is not None:
        return ModelSpec((), module=_module_of_json(module))
    return ModelSpec(tuple(hidden))


def _module_of_json(data: object) -> ModuleRef:
    keys = ("path", "factory", "sha256", "repr", "params")
    if not isinstance(data, dict) or set(data) != set(keys):
        raise ConfigError("module", f"must hold exactly {', '.join(keys)}")
    path, factory, sha256, text, params = (data[key] for key in keys)
    if not all(isinstance(v, str) for v in (path, factory, sha256, text)):
        raise ConfigError("module", "path, factory, sha256 and repr must be text")
    if not path or len(path) > MAX_PATH_TEXT or not factory.isidentifier():
        raise ConfigError("module", "path or factory is not a file and a function name")
    if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
        raise ConfigError("module", "sha256 is not a SHA-256 in hex")
    if len(text) > 16_000:
        raise ConfigError("module", "repr is too long")
    if isinstance(params, bool) or not isinstance(params, int) or not 0 <= params <= 2**40:
        raise ConfigError("module", "params is not a parameter count")
    return ModuleRef(path, factory, sha256, text, params)


def config_json_schema() -> dict:
    """What config_of_json accepts, as JSON Schema: one member per field,
    typed and bounded by its parser, and the network in one of ``hidden``,
    ``layers`` or ``module``."""
    properties: dict[str, dict] = {}
    for field in RUN_FIELDS:
        properties[field.name] = {**field.parser.json_schema(), "description": field.help}
        if field.name == "arch":
            properties.update(_net_json_schema())
    return {
        "type": "object",
        "properties": properties,
        "required": [name for name in properties if name not in ("layers", "module", *OPTIONAL_KEYS)],
        "description": "The run's settings, one member per field of fmlab.trainer.fields.",
    }


def _net_json_schema() -> dict:
    module = {
        "type": "object",
        "properties": {
            "path": {"type": "string", "minLength": 1, "maxLength": MAX_PATH_TEXT},
            "factory": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
            "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
            "repr": {"type": "string", "maxLength": 16_000},
            "params": {"type": "integer", "minimum": 0, "maximum": 2**40},
        },
        "required": ["path", "factory", "sha256", "repr", "params"],
        "additionalProperties": False,
        "description": "A user's own module: a record of what its file built (never loaded from here).",
    }
    return {
        "hidden": {
            "type": "array",
            "items": {"type": "integer", "minimum": 1, "maximum": MAX_WIDTH},
            "description": "An MLP's hidden widths; empty when the net is a layer stack or a module.",
        },
        "layers": {
            "oneOf": [
                {"type": "null"},
                {**layers_json_schema(), "description": "A layer stack, input first (fmlab.trainer.layers)."},
            ]
        },  # fmt: skip
        "module": {"oneOf": [{"type": "null"}, module]},
    }


def parse_run_config(**values: object) -> RunConfig:
    """Validate raw values (strings or numbers) into a RunConfig: the one door
    from untrusted values (CLI options, form fields, JSON) to a config.

    The keywords are the fields of RUN_FIELDS (``arch``, ``lr``, ``epochs``,
    ...); a field not given takes its default. Every field is checked: one
    refused value raises ConfigError naming it, several raise ConfigErrors
    naming each (cross-field rules included).
    """
    return build_config(parse_values(values))


def config_to_dict(config: RunConfig) -> dict:
    """The JSON form stored in session files (see config_json)."""
    return config_json(config)


def config_from_dict(data: dict) -> RunConfig:
    """Strict inverse of config_to_dict; raises ConfigError on any bad field."""
    return config_of_json(data)
