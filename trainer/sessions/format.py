"""Session files: the format. One JSON object per run, read strictly.

Layout: the first line of every file is a header object's members (schema,
version, id, status, times, config, results), so a listing reads one line per
file; the rest holds the environment, model summary, per-epoch metrics and the
step curves. Files are written through fmlab.trainer.atomic, so a process
killed at any moment leaves either the previous or the new version.
"""

from __future__ import annotations

import bisect
import json
import math
import os
import secrets
import socket
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fmlab.trainer.config import ConfigError, RunConfig
from fmlab.trainer.events import (
    STATUSES,
    EpochMetrics,
    LayerSummary,
    ModelSummary,
    RunResults,
    StepMetrics,
)
from fmlab.trainer.fields import config_from_dict, config_to_dict

SCHEMA = "fmlab.session"
VERSION = 1
LATER_STEP_POINTS = 512  # step points kept after the first full_steps, at most


class SessionError(Exception):
    """A session file that cannot be used; the message names file and problem."""


@dataclass
class StepCurve:
    """Step metrics in columns: every step up to ``full_steps``, then a thinned
    tail of at most LATER_STEP_POINTS points (when it fills, every other point
    is dropped and the stride doubles), so files stay small however long the run."""

    full_steps: int = 100
    stride: int = 1  # keep one later event in this many
    later_seen: int = 0  # later events offered so far
    step: list[int] = field(default_factory=list)
    epoch: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    grad_mean: list[float] = field(default_factory=list)
    grad_norm: list[float] = field(default_factory=list)
    layer_norms: list[list[float]] = field(default_factory=list)

    COLUMNS = ("step", "epoch", "loss", "grad_mean", "grad_norm", "layer_norms")

    def add(self, event: StepMetrics) -> None:
        if event.step > self.full_steps:
            self.later_seen += 1
            if (self.later_seen - 1) % self.stride:
                return
        self.step.append(event.step)
        self.epoch.append(event.epoch)
        self.loss.append(event.loss)
        self.grad_mean.append(event.grad_mean)
        self.grad_norm.append(event.grad_norm)
        self.layer_norms.append(list(event.layer_norms))
        if len(self.step) - self._first_later() > LATER_STEP_POINTS:
            self._thin()

    def _first_later(self) -> int:
        return bisect.bisect_right(self.step, self.full_steps)

    def _thin(self) -> None:
        first_later = self._first_later()
        keep = list(range(first_later)) + list(range(first_later, len(self.step), 2))
        for name in self.COLUMNS:
            column = getattr(self, name)
            setattr(self, name, [column[i] for i in keep])
        self.stride *= 2

    def truncate(self, last_step: int) -> None:
        """Forget points past ``last_step`` (a resumed run records them again)."""
        keep = bisect.bisect_right(self.step, last_step)
        for name in self.COLUMNS:
            setattr(self, name, getattr(self, name)[:keep])

    def events(self) -> list[StepMetrics]:
        return [
            StepMetrics(s, e, lo, gm, gn, tuple(ln))
            for s, e, lo, gm, gn, ln in zip(
                self.step,
                self.epoch,
                self.loss,
                self.grad_mean,
                self.grad_norm,
                self.layer_norms,
            )
        ]


@dataclass
class SessionRecord:
    """Everything a session file holds, decoded."""

    id: str
    config: RunConfig
    status: str = "running"
    created: str = ""
    updated: str = ""
    pid: int = 0
    host: str = ""
    environment: dict[str, str] = field(default_factory=dict)
    model: ModelSummary | None = None
    results: RunResults | None = None
    epochs: list[EpochMetrics] = field(default_factory=list)
    steps: StepCurve = field(default_factory=StepCurve)
    path: Path | None = None  # where it was read from or is written to

    @property
    def steps_per_epoch(self) -> int:
        return int(self.environment.get("steps_per_epoch", 0) or 0)


@dataclass(frozen=True)
class SessionSummary:
    """What a listing needs, read from a file's first line."""

    id: str
    path: Path
    status: str
    created: str
    arch: str
    lr: float
    optimizer: str
    epochs: int
    epochs_done: int
    final_test_acc: float | None
    best_test_acc: float | None
    converged_epoch: int | None


def new_session_id(config: RunConfig) -> str:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{config.model.name.replace(',', '-')}-lr{config.optimizer.lr:g}-{secrets.token_hex(2)}"


def _now() -> str:
    return datetime.now(UTC).astimezone().isoformat(timespec="seconds")


# ----------------------------------------------------------------- encoding


def _finite_or_none(value: float | None) -> float | None:
    """JSON has no NaN or infinity; a diverged loss is stored as null."""
    if value is None or not math.isfinite(value):
        return None
    return value


def _encode_results(results: RunResults | None) -> dict | None:
    if results is None:
        return None
    return asdict(results)


def encode(record: SessionRecord) -> str:
    header = {
        "schema": SCHEMA,
        "version": VERSION,
        "id": record.id,
        "status": record.status,
        "created": record.created,
        "updated": record.updated,
        "pid": record.pid,
        "host": record.host,
        "config": config_to_dict(record.config),
        "results": _encode_results(record.results),
    }
    body = {
        "environment": record.environment,
        "model": asdict(record.model) if record.model else None,
        "epochs": [asdict(e) for e in record.epochs],
        "steps": {
            "full_steps": record.steps.full_steps,
            "stride": record.steps.stride,
            "later_seen": record.steps.later_seen,
            **{
                name: [
                    [_finite_or_none(v) for v in row] if isinstance(row, list) else _finite_or_none(row)
                    for row in getattr(record.steps, name)
                ]
                for name in StepCurve.COLUMNS
            },
        },
    }
    head = json.dumps(header, allow_nan=False)
    rest = json.dumps(body, allow_nan=False, separators=(",", ":"))
    # header members on line one, so listings can stop reading there
    return head[:-1] + ",\n" + rest[1:] + "\n"


# ----------------------------------------------------------------- decoding


class _Reader:
    """Typed access to a decoded JSON object; every miss is a SessionError."""

    def __init__(self, path: Path, data: Any, where: str = "") -> None:
        self.path, self.data, self.where = path, data, where
        if not isinstance(data, dict):
            self.fail("is not an object")

    def fail(self, problem: str):
        where = f"{self.where}: " if self.where else ""
        raise SessionError(f"{self.path}: {where}{problem}")

    def get(self, key: str, kinds: tuple[type, ...], optional: bool = False) -> Any:
        if key not in self.data:
            self.fail(f"missing field {key!r}")
        value = self.data[key]
        if value is None and optional:
            return None
        if isinstance(value, bool) and bool not in kinds:
            self.fail(f"field {key!r} has the wrong type (bool)")
        if not isinstance(value, kinds):
            self.fail(f"field {key!r} has the wrong type ({type(value).__name__})")
        if isinstance(value, float) and not math.isfinite(value):
            self.fail(f"field {key!r} is not a finite number")
        if isinstance(value, (int, float)) and not isinstance(value, bool) and abs(value) > 1e300:
            self.fail(f"field {key!r} is out of range")
        return value

    def number(self, key: str, optional: bool = False) -> float | None:
        value = self.get(key, (int, float), optional)
        return None if value is None else float(value)

    def count(self, key: str, optional: bool = False) -> int | None:
        value = self.get(key, (int,), optional)
        if value is not None and value < 0:
            self.fail(f"field {key!r} is negative")
        return value

    def child(self, key: str, optional: bool = False) -> _Reader | None:
        value = self.get(key, (dict,), optional)
        return None if value is None else _Reader(self.path, value, key)


def _check_header(r: _Reader) -> None:
    schema = r.data.get("schema")
    if schema != SCHEMA:
        r.fail(f"not an fmlab session (schema {schema!r})")
    version = r.get("version", (int,))
    if version > VERSION:
        r.fail(f"written by a newer fmlab (session version {version}, this one reads {VERSION})")
    if version < 1:
        r.fail(f"unknown session version {version}")
    status = r.get("status", (str,))
    if status not in STATUSES:
        r.fail(f"unknown status {status!r}")


def _decode_config(r: _Reader) -> RunConfig:
    try:
        return config_from_dict(r.get("config", (dict,)))
    except ConfigError as exc:
        r.fail(f"config: {exc}")
        raise  # unreachable


def _decode_results(r: _Reader | None) -> RunResults | None:
    if r is None:
        return None
    status = r.get("status", (str,))
    if status not in STATUSES:
        r.fail(f"unknown status {status!r}")
    return RunResults(
        status=status,
        epochs_done=r.count("epochs_done"),
        steps_done=r.count("steps_done"),
        final_test_acc=r.number("final_test_acc", optional=True),
        best_test_acc=r.number("best_test_acc", optional=True),
        best_epoch=r.count("best_epoch", optional=True),
        converged_epoch=r.count("converged_epoch", optional=True),
        seconds=r.number("seconds"),
        message=r.get("message", (str,)),
    )


def _decode_epoch(r: _Reader) -> EpochMetrics:
    return EpochMetrics(
        epoch=r.count("epoch"),
        train_loss=r.number("train_loss"),
        train_acc=r.number("train_acc"),
        test_loss=r.number("test_loss"),
        test_acc=r.number("test_acc"),
        seconds=r.number("seconds"),
        samples_per_s=r.number("samples_per_s"),
        converged_epoch=r.count("converged_epoch", optional=True),
    )


def _decode_model(r: _Reader | None) -> ModelSummary | None:
    if r is None:
        return None
    layers = []
    for index, item in enumerate(r.get("layers", (list,))):
        layer = _Reader(r.path, item, f"model layer {index + 1}")
        layers.append(
            LayerSummary(
                name=layer.get("name", (str,)),
                kind=layer.get("kind", (str,)),
                in_features=layer.count("in_features"),
                out_features=layer.count("out_features"),
                params=layer.count("params"),
                formula=layer.get("formula", (str,)),
            )
        )
    return ModelSummary(tuple(layers), r.count("total_params"), r.number("size_mb"))


def _column(r: _Reader, key: str, kind: type, rows: int | None) -> list:
    values = r.get(key, (list,))
    if rows is not None and len(values) != rows:
        r.fail(f"column {key!r} has {len(values)} rows, expected {rows}")
    out = []
    for value in values:
        if kind is list:
            if not isinstance(value, list):
                r.fail(f"column {key!r} holds a non-list")
            out.append([_curve_value(r, key, v) for v in value])
        elif kind is int:
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                r.fail(f"column {key!r} holds {value!r}, not a step number")
            out.append(value)
        else:
            out.append(_curve_value(r, key, value))
    return out


def _curve_value(r: _Reader, key: str, value: Any) -> float:
    if value is None:
        return math.nan  # stored for a non-finite value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or abs(value) > 1e300:
        r.fail(f"column {key!r} holds {value!r}, not a number")
    return float(value)


def _decode_steps(r: _Reader) -> StepCurve:
    steps = _column(r, "step", int, None)
    curve = StepCurve(
        full_steps=r.count("full_steps"),
        stride=max(1, r.count("stride")),
        later_seen=r.count("later_seen"),
        step=steps,
        epoch=_column(r, "epoch", int, len(steps)),
        loss=_column(r, "loss", float, len(steps)),
        grad_mean=_column(r, "grad_mean", float, len(steps)),
        grad_norm=_column(r, "grad_norm", float, len(steps)),
        layer_norms=_column(r, "layer_norms", list, len(steps)),
    )
    if any(b <= a for a, b in zip(steps, steps[1:])):
        r.fail("step numbers are not increasing")
    return curve


def _read_json(path: Path, text: str | None = None) -> Any:
    try:
        if text is None:
            text = path.read_text(encoding="utf-8")
        return json.loads(text)
    except IsADirectoryError:
        raise SessionError(f"{path}: is a directory, not a session file") from None
    except PermissionError:
        raise SessionError(f"{path}: cannot be read (permission denied)") from None
    except FileNotFoundError:
        raise SessionError(f"{path}: no such file") from None
    except OSError as exc:
        raise SessionError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise SessionError(f"{path}: not a text file") from None
    except RecursionError:
        raise SessionError(f"{path}: nested too deeply to be a session") from None
    except json.JSONDecodeError as exc:
        if not text or not text.strip():
            raise SessionError(f"{path}: empty file") from None
        stripped = text.rstrip()
        if exc.pos >= len(stripped) or (stripped.startswith("{") and not stripped.endswith("}")):
            raise SessionError(f"{path}: truncated JSON (ends at byte {len(text)})") from None
        raise SessionError(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno})") from None


def load(path: Path | str) -> SessionRecord:
    """Read and validate a whole session file; SessionError names what is wrong."""
    path = Path(path)
    r = _Reader(path, _read_json(path))
    _check_header(r)
    epochs = [
        _decode_epoch(_Reader(path, item, f"epoch {i + 1}"))
        for i, item in enumerate(r.get("epochs", (list,)))
    ]
    return SessionRecord(
        id=r.get("id", (str,)),
        config=_decode_config(r),
        status=effective_status(r.data["status"], r.get("pid", (int,)), r.get("host", (str,))),
        created=r.get("created", (str,)),
        updated=r.get("updated", (str,)),
        pid=r.data["pid"],
        host=r.data["host"],
        environment={str(k): str(v) for k, v in r.get("environment", (dict,)).items()},
        model=_decode_model(r.child("model", optional=True)),
        results=_decode_results(r.child("results", optional=True)),
        epochs=epochs,
        steps=_decode_steps(r.child("steps")),
        path=path,
    )


def effective_status(status: str, pid: int, host: str) -> str:
    """A file still marked running whose process is gone was interrupted."""
    if status != "running" or host != socket.gethostname():
        return status
    if pid == os.getpid():
        return status
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return "interrupted"
    except (PermissionError, OSError):
        return status
    return status
