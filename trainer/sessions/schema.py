"""What a session file may hold, declared once.

Every member of a session file is declared here as a ``Spec``: ``check``
reads one value of an untrusted file (a SessionError of one line naming the
file and the problem when it is not what is declared) and ``schema`` gives
the same declaration as JSON Schema. ``decode`` reads every file through
these declarations and ``fmlab sessions schema`` prints ``session_schema()``:
the published schema and the reader cannot disagree about the shape of a
file. A new member, or a new step column, is one line in ``HEADER``, ``BODY``
or ``STEPS`` (and one in the format's ``encode``).

What no schema says (the epoch rows are numbered 1, 2, 3..., results count
no more epochs than configured, step numbers increase, an id holds no
invisible characters) is checked by ``decode`` after the declarations.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fmlab.trainer.config import ConfigError
from fmlab.trainer.events import STATUSES, EpochMetrics, LayerSummary, ModelSummary, RunResults
from fmlab.trainer.fields import config_from_dict, config_json_schema
from fmlab.trainer.sessions.format import (
    ID_FORBIDDEN,
    MAX_ID_BYTES,
    SCHEMA,
    VERSION,
    SessionError,
    TrainData,
    session_id_problem,
)
from fmlab.trainer.text import visible

LARGEST_NUMBER = 1e300  # a larger number in a file is refused: no run measures one


def quoted(value: Any, limit: int = 60) -> str:
    """A value from a file, quoted for a message: escaped and kept short."""
    text = visible(repr(value))
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True)
class Place:
    """Where in which file a value was read: messages start with it."""

    path: Path
    where: str = ""  # "results", "epoch row 3", ...

    def fail(self, problem: str):
        where = f"{self.where}: " if self.where else ""
        raise SessionError(f"{visible(self.path)}: {where}{problem}")

    def inside(self, where: str) -> Place:
        return Place(self.path, where)


class Spec:
    """One declared value. ``check`` returns it decoded (or fails at
    ``place``); ``name`` is how messages call it (``field 'lr'``)."""

    def check(self, value: Any, place: Place, name: str) -> Any:
        raise NotImplementedError

    def schema(self) -> dict:
        raise NotImplementedError


def _plain_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _kind(value: Any) -> str:
    return "bool" if isinstance(value, bool) else type(value).__name__


@dataclass(frozen=True)
class Text(Spec):
    description: str = ""

    def check(self, value: Any, place: Place, name: str) -> str:
        if not isinstance(value, str):
            place.fail(f"{name} has the wrong type ({_kind(value)})")
        return value

    def schema(self) -> dict:
        return _described({"type": "string"}, self.description)


@dataclass(frozen=True)
class Number(Spec):
    """A finite number, read as a float."""

    description: str = ""

    def check(self, value: Any, place: Place, name: str) -> float:
        if not _plain_number(value):
            place.fail(f"{name} has the wrong type ({_kind(value)})")
        if isinstance(value, float) and not math.isfinite(value):
            place.fail(f"{name} is not a finite number")
        if abs(value) > LARGEST_NUMBER:
            place.fail(f"{name} is out of range")
        return float(value)

    def schema(self) -> dict:
        return _described(
            {"type": "number", "minimum": -LARGEST_NUMBER, "maximum": LARGEST_NUMBER}, self.description
        )


@dataclass(frozen=True)
class Whole(Spec):
    """A whole number; ``counts`` refuses a negative one."""

    counts: bool = True
    description: str = ""

    def check(self, value: Any, place: Place, name: str) -> int:
        if not isinstance(value, int) or isinstance(value, bool):
            place.fail(f"{name} has the wrong type ({_kind(value)})")
        if abs(value) > LARGEST_NUMBER:
            place.fail(f"{name} is out of range")
        if self.counts and value < 0:
            place.fail(f"{name} is negative")
        return value

    def schema(self) -> dict:
        low = 0 if self.counts else -LARGEST_NUMBER
        return _described({"type": "integer", "minimum": low, "maximum": LARGEST_NUMBER}, self.description)


@dataclass(frozen=True)
class Choice(Spec):
    """Text that is one of ``choices``; ``refusal`` words the message."""

    choices: tuple[str, ...]
    refusal: str = "unknown value {value}"
    description: str = ""

    def check(self, value: Any, place: Place, name: str) -> str:
        text = Text().check(value, place, name)
        if text not in self.choices:
            place.fail(self.refusal.format(value=quoted(text)))
        return text

    def schema(self) -> dict:
        return _described({"type": "string", "enum": list(self.choices)}, self.description)


@dataclass(frozen=True)
class Tag(Spec):
    """The schema tag: anything else is not a session of ours."""

    def check(self, value: Any, place: Place, name: str) -> str:
        if value != SCHEMA:
            place.fail(f"not an fmlab session (schema {quoted(value)})")
        return value

    def schema(self) -> dict:
        return {"const": SCHEMA, "description": "What the file is: always this tag."}


@dataclass(frozen=True)
class Version(Spec):
    def check(self, value: Any, place: Place, name: str) -> int:
        version = Whole(counts=False).check(value, place, name)
        if version > VERSION:
            place.fail(f"written by a newer fmlab (session version {version}, this one reads {VERSION})")
        if version < 1:
            place.fail(f"unknown session version {version}")
        return version

    def schema(self) -> dict:
        return {
            "type": "integer",
            "minimum": 1,
            "maximum": VERSION,
            "description": "The format's version; a newer one is refused.",
        }


@dataclass(frozen=True)
class SessionId(Spec):
    def check(self, value: Any, place: Place, name: str) -> str:
        text = Text().check(value, place, name)
        problem = session_id_problem(text)
        if problem is not None:
            place.fail(f"session id {quoted(text)} {problem}; it cannot name a session file")
        return text

    def schema(self) -> dict:
        forbidden = "".join("\\" + c if c in '\\"' else c for c in ID_FORBIDDEN)
        return {
            "type": "string",
            "minLength": 1,
            "maxLength": MAX_ID_BYTES,
            # a file name on any system: no separators or characters Windows refuses,
            # no leading dot or dash, no trailing dot or space
            "pattern": f"^(?![.\\-\\s])[^{forbidden}\\x00-\\x1f\\x7f]*[^{forbidden}\\x00-\\x1f\\x7f.\\s]$",
            "description": "Names the file (ID.json); also no invisible characters, "
            f"at most {MAX_ID_BYTES} bytes of UTF-8, not a Windows device name.",
        }


@dataclass(frozen=True)
class Config(Spec):
    """A run's settings, checked by the fields table (fmlab.trainer.fields)."""

    def check(self, value: Any, place: Place, name: str):
        if not isinstance(value, dict):
            place.fail(f"{name} has the wrong type ({_kind(value)})")
        try:
            return config_from_dict(value)
        except ConfigError as exc:
            place.fail(f"config: {visible(exc)}")

    def schema(self) -> dict:
        return config_json_schema()


@dataclass(frozen=True)
class Strings(Spec):
    """An object whose values are read as text (the environment)."""

    description: str = ""

    def check(self, value: Any, place: Place, name: str) -> dict[str, str]:
        if not isinstance(value, dict):
            place.fail(f"{name} has the wrong type ({_kind(value)})")
        return {str(k): str(v) for k, v in value.items()}

    def schema(self) -> dict:
        return _described({"type": "object"}, self.description)


@dataclass(frozen=True)
class Nullable(Spec):
    spec: Spec

    def check(self, value: Any, place: Place, name: str) -> Any:
        return None if value is None else self.spec.check(value, place, name)

    def schema(self) -> dict:
        return {"anyOf": [self.spec.schema(), {"type": "null"}]}


@dataclass(frozen=True)
class Missing(Spec):
    """A member older files do not have: ``default`` when it is absent, else
    checked by ``spec`` (a member added later is ``Missing(spec, default)``,
    so files written before it still read)."""

    spec: Spec
    default: Any = None

    def check(self, value: Any, place: Place, name: str) -> Any:
        return self.spec.check(value, place, name)

    def schema(self) -> dict:
        return self.spec.schema()


@dataclass(frozen=True)
class Record(Spec):
    """An object with these members, every one required unless declared
    ``Missing``; read into ``build(**members)`` (a dict when None). Members
    are checked in order. ``where`` names the object in messages about its
    members."""

    members: Mapping[str, Spec]
    build: Callable[..., Any] | None = None
    where: str = ""
    description: str = ""

    def check(self, value: Any, place: Place, name: str = "") -> Any:
        if not isinstance(value, dict):
            if name:
                place.fail(f"{name} has the wrong type ({_kind(value)})")
            place.fail("is not an object")
        inner = place.inside(self.where) if self.where else place
        values = {}
        for key, spec in self.members.items():
            if key not in value:
                if isinstance(spec, Missing):
                    values[key] = spec.default() if callable(spec.default) else spec.default
                    continue
                inner.fail(f"missing field {key!r}")
            values[key] = spec.check(value[key], inner, f"field {key!r}")
        return self.build(**values) if self.build else values

    def schema(self) -> dict:
        return _described(
            {
                "type": "object",
                "properties": {key: spec.schema() for key, spec in self.members.items()},
                "required": [key for key, spec in self.members.items() if not isinstance(spec, Missing)],
            },
            self.description,
        )


@dataclass(frozen=True)
class Shape(Spec):
    """A tensor's shape without its batch: a few whole numbers."""

    description: str = ""

    def check(self, value: Any, place: Place, name: str) -> tuple[int, ...]:
        if not isinstance(value, list) or len(value) > 8:
            place.fail(f"{name} is not a shape")
        return tuple(Whole().check(n, place, name) for n in value)

    def schema(self) -> dict:
        return _described(
            {
                "type": "array",
                "items": {"type": "integer", "minimum": 0, "maximum": LARGEST_NUMBER},
                "maxItems": 8,
            },
            self.description,
        )


@dataclass(frozen=True)
class Rows(Spec):
    """A list of records, the n-th named ``f"{label} {n}"`` in messages."""

    row: Record
    label: str
    description: str = ""

    def check(self, value: Any, place: Place, name: str) -> list:
        if not isinstance(value, list):
            place.fail(f"{name} has the wrong type ({_kind(value)})")
        return [self.row.check(item, place.inside(f"{self.label} {i + 1}")) for i, item in enumerate(value)]

    def schema(self) -> dict:
        return _described({"type": "array", "items": self.row.schema()}, self.description)


# ----------------------------------------------------------------- step columns


@dataclass(frozen=True)
class StepNumbers(Spec):
    """A column of step or epoch numbers (whole, not negative)."""

    description: str = ""

    def item(self, value: Any, place: Place, key: str) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            place.fail(f"column {key!r} holds {quoted(value)}, not a step number")
        return value

    def check(self, value: Any, place: Place, name: str) -> list[int]:
        return _column(self, value, place, name)

    def schema(self) -> dict:
        return _described({"type": "array", "items": {"type": "integer", "minimum": 0}}, self.description)


@dataclass(frozen=True)
class Values(Spec):
    """A column of measurements; null stands for a value that was not finite
    (a diverged loss) and is read as NaN. ``lists``: each row is a list of
    them (one per layer)."""

    lists: bool = False
    description: str = ""

    def item(self, value: Any, place: Place, key: str) -> float | list[float]:
        if self.lists:
            if not isinstance(value, list):
                place.fail(f"column {key!r} holds a non-list")
            return [self.value(v, place, key) for v in value]
        return self.value(value, place, key)

    @staticmethod
    def value(value: Any, place: Place, key: str) -> float:
        if value is None:
            return math.nan
        if not _plain_number(value) or abs(value) > LARGEST_NUMBER:
            place.fail(f"column {key!r} holds {quoted(value)}, not a number")
        return float(value)

    def check(self, value: Any, place: Place, name: str) -> list:
        return _column(self, value, place, name)

    def schema(self) -> dict:
        number = {"type": ["number", "null"], "minimum": -LARGEST_NUMBER, "maximum": LARGEST_NUMBER}
        items = {"type": "array", "items": number} if self.lists else number
        return _described({"type": "array", "items": items}, self.description)


def _column(spec: StepNumbers | Values, value: Any, place: Place, name: str) -> list:
    key = name.removeprefix("field ").strip("'")
    if not isinstance(value, list):
        place.fail(f"{name} has the wrong type ({_kind(value)})")
    return [spec.item(item, place, key) for item in value]


def _described(schema: dict, description: str) -> dict:
    return {**schema, "description": description} if description else schema


# ----------------------------------------------------------------- the file

RESULTS = Record(
    {
        "status": Choice(STATUSES, "unknown status {value}"),
        "epochs_done": Whole(),
        "steps_done": Whole(),
        "final_test_acc": Nullable(Number()),
        "best_test_acc": Nullable(Number()),
        "best_epoch": Nullable(Whole()),
        "converged_epoch": Nullable(Whole()),
        "seconds": Number(),
        "message": Text(),
        "lowest_test_loss_epoch": Missing(Nullable(Whole(description="Epoch of the lowest test loss."))),
    },
    build=RunResults,
    where="results",
    description="How the run ended; null while its first epoch trains.",
)

TRAIN_DATA = Record(
    {"images": Whole(), "of": Whole()},
    build=TrainData,
    where="train_data",
    description="How much of the training split the run used: its first 'images' of 'of'.",
)

# The members of the first line: a listing reads only these.
HEADER: dict[str, Spec] = {
    "schema": Tag(),
    "version": Version(),
    "id": SessionId(),
    "status": Choice(STATUSES, "unknown status {value}",
                     "As written; a running file whose process is gone reads as interrupted."),
    "created": Text("ISO 8601 time the run started."),
    "updated": Text("ISO 8601 time of the last save."),
    "pid": Whole(counts=False, description="The process that trained it."),
    "host": Text("The machine that trained it."),
    "config": Config(),
    "results": Nullable(RESULTS),
    "train_data": Missing(TRAIN_DATA),
}  # fmt: skip

EPOCH_ROW = Record(
    {
        "epoch": Whole(),
        "train_loss": Number(),
        "train_acc": Number(),
        "test_loss": Number(),
        "test_acc": Number(),
        "seconds": Number(),
        "samples_per_s": Number(),
        "converged_epoch": Nullable(Whole()),
    },
    build=EpochMetrics,
)

MODEL = Record(
    {
        "layers": Rows(
            Record(
                {
                    "name": Text(),
                    "kind": Text(),
                    "in_features": Whole(),
                    "out_features": Whole(),
                    "params": Whole(),
                    "formula": Text(),
                    "shape": Missing(Shape("One sample's output, e.g. [32, 26, 26]."), tuple),
                    "buffers": Missing(
                        Whole(description="Values kept but not trained (running statistics)."), 0
                    ),
                },
                build=LayerSummary,
            ),
            "model layer",
        ),
        "total_params": Whole(),
        "size_mb": Number(),
    },
    build=lambda layers, total_params, size_mb: ModelSummary(tuple(layers), total_params, size_mb),
    where="model",
    description="The network's layers and parameter counts.",
)

# Step metrics in columns, one row per recorded step; every column has as
# many rows as "step".
STEPS = Record(
    {
        "full_steps": Whole(description="Every step up to this one is recorded."),
        "stride": Whole(description="After full_steps, one step in this many."),
        "later_seen": Whole(description="Steps past full_steps offered so far."),
        "step": StepNumbers("The step numbers, increasing."),
        "epoch": StepNumbers("Each step's epoch."),
        "loss": Values(description="Training loss of the batch."),
        "grad_mean": Values(description="Mean of every gradient element."),
        "grad_norm": Values(description="Global L2 norm of the gradient."),
        "layer_norms": Values(lists=True, description="L2 norm of each layer's gradient."),
        "grad_sum_of_means": Missing(
            Values(description="The notebook's gradient: the sum over parameter tensors of each one's mean."),
            list,
        ),
        "layer_grad_means": Missing(Values(lists=True, description="Mean of each layer's gradient."), list),
    },
    where="steps",
)

BODY: dict[str, Spec] = {
    "environment": Strings("Where it ran: torch version, device, data sizes; values read as text."),
    "model": Nullable(MODEL),
    "epochs": Rows(EPOCH_ROW, "epoch row", "One row per finished epoch, numbered 1, 2, 3..."),
    "steps": STEPS,
}

SESSION = Record({**HEADER, **BODY})


def session_schema() -> dict:
    """The session file's JSON Schema (draft 2020-12), from the declarations
    ``decode`` reads files with."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"{SCHEMA}/{VERSION}",
        "title": "fmlab session",
        "description": (
            "One training run, as fmlab saves it. fmlab also checks what a schema cannot say: "
            "epoch rows are numbered 1, 2, 3..., no more of them than config.epochs; results count "
            "the epochs the file holds; step numbers increase and every step column has as many "
            "rows as 'step'; 'momentum' is 0 unless the optimizer is sgd; an id holds no invisible "
            "characters. The file is at most 64 MiB and repeats no key in any object."
        ),
        **SESSION.schema(),
    }
