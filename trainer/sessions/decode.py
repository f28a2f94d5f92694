"""Session files: reading them back, strictly.

A file in a sessions folder is untrusted data. It is read only if it is a
regular file of at most MAX_SESSION_BYTES (fmlab.trainer.regular_files), its
JSON may not repeat a key (a reader that kept the first copy and one that kept
the last would show different sessions), its id must be safe as a file name,
and its parts must agree with each other. Every problem is a SessionError of
one line that names the file; what can be repaired without guessing (results
that disagree with the epoch rows) is, with a line in ``record.warnings``.
"""

from __future__ import annotations

import json
import math
import os
import socket
from dataclasses import replace
from pathlib import Path
from typing import Any

from fmlab.trainer.config import ConfigError, RunConfig
from fmlab.trainer.events import STATUSES, EpochMetrics, LayerSummary, ModelSummary, RunResults
from fmlab.trainer.fields import config_from_dict
from fmlab.trainer.metrics import lowest_test_loss_epoch
from fmlab.trainer.regular_files import NotRegularFile, read_regular_file
from fmlab.trainer.sessions.format import (
    SCHEMA,
    VERSION,
    SessionError,
    SessionRecord,
    StepCurve,
    TrainData,
    session_id_problem,
)
from fmlab.trainer.text import visible

# A real session is tens of KiB (the step curve is bounded); this leaves room
# for runs that keep every step for a long while, and keeps a hostile file
# from filling the memory.
MAX_SESSION_BYTES = 64 * 2**20
# The members of the header (the first line): a later copy of one of these in
# the rest of the file would make a listing and a full read disagree.
HEADER_KEYS = ("schema", "version", "id", "status", "created", "updated", "pid", "host", "config", "results",
               "train_data")  # fmt: skip
LARGEST_PID = 2**22  # Linux's limit; a larger number in a file is no process of ours


def quoted(value: Any, limit: int = 60) -> str:
    """A value from a file, quoted for a message: escaped and kept short."""
    text = visible(repr(value))
    return text if len(text) <= limit else text[: limit - 1] + "…"


class _Reader:
    """Typed access to a decoded JSON object; every miss is a SessionError."""

    def __init__(self, path: Path, data: Any, where: str = "") -> None:
        self.path, self.data, self.where = path, data, where
        if not isinstance(data, dict):
            self.fail("is not an object")

    def fail(self, problem: str):
        where = f"{self.where}: " if self.where else ""
        raise SessionError(f"{visible(self.path)}: {where}{problem}")

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


# ----------------------------------------------------------------- the header


def _check_header(r: _Reader) -> None:
    schema = r.data.get("schema")
    if schema != SCHEMA:
        r.fail(f"not an fmlab session (schema {quoted(schema)})")
    version = r.get("version", (int,))
    if version > VERSION:
        r.fail(f"written by a newer fmlab (session version {version}, this one reads {VERSION})")
    if version < 1:
        r.fail(f"unknown session version {version}")
    status = r.get("status", (str,))
    if status not in STATUSES:
        r.fail(f"unknown status {quoted(status)}")


def _decode_id(r: _Reader) -> str:
    session_id = r.get("id", (str,))
    problem = session_id_problem(session_id)
    if problem is not None:
        r.fail(f"session id {quoted(session_id)} {problem}; it cannot name a session file")
    return session_id


def _decode_config(r: _Reader) -> RunConfig:
    try:
        return config_from_dict(r.get("config", (dict,)))
    except ConfigError as exc:
        r.fail(f"config: {visible(exc)}")
        raise  # unreachable


def _decode_results(r: _Reader | None, config: RunConfig) -> RunResults | None:
    """The results, checked against the config they ran."""
    if r is None:
        return None
    status = r.get("status", (str,))
    if status not in STATUSES:
        r.fail(f"unknown status {quoted(status)}")
    results = RunResults(
        status=status,
        epochs_done=r.count("epochs_done"),
        steps_done=r.count("steps_done"),
        final_test_acc=r.number("final_test_acc", optional=True),
        best_test_acc=r.number("best_test_acc", optional=True),
        best_epoch=r.count("best_epoch", optional=True),
        converged_epoch=r.count("converged_epoch", optional=True),
        seconds=r.number("seconds"),
        message=r.get("message", (str,)),
        # absent in files written before it was kept
        lowest_test_loss_epoch=r.count("lowest_test_loss_epoch", optional=True)
        if "lowest_test_loss_epoch" in r.data
        else None,
    )
    if results.epochs_done > config.epochs:
        r.fail(f"{results.epochs_done} epochs done, more than the {config.epochs} configured")
    for name in ("best_epoch", "converged_epoch", "lowest_test_loss_epoch"):
        epoch = getattr(results, name)
        if epoch is not None and not 1 <= epoch <= results.epochs_done:
            r.fail(f"{name} {epoch} is not one of the {results.epochs_done} epochs done")
    return results


def _decode_train_data(r: _Reader) -> TrainData | None:
    """How much of the training split the run used; None in files from before
    it was recorded."""
    if "train_data" not in r.data:
        return None
    data = r.child("train_data")
    images, total = data.count("images"), data.count("of")
    if not 0 < images <= total:
        data.fail(f"{images} images of {total} is not a part of a training split")
    return TrainData(images, total)


def effective_status(status: str, pid: int, host: str) -> str:
    """A file still marked running whose process is gone was interrupted."""
    if status != "running" or host != socket.gethostname():
        return status
    if pid == os.getpid():
        return status
    if not 0 < pid <= LARGEST_PID:
        return "interrupted"  # no process has that number (and 0 or -1 would name a group)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return "interrupted"
    except OSError:  # it exists, owned by someone else
        return status
    return status


# ----------------------------------------------------------------- reading


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict:
    data = dict(pairs)
    if len(data) != len(pairs):
        seen = set()
        repeated = next(key for key, _ in pairs if key in seen or seen.add(key))
        raise _RepeatedKey(repeated)
    return data


class _RepeatedKey(ValueError):
    pass


def read_session_text(path: Path) -> str:
    """The text of a session file, read only if it is a regular file of
    at most MAX_SESSION_BYTES."""
    where = visible(path)
    try:
        raw = read_regular_file(path, MAX_SESSION_BYTES)
    except NotRegularFile as exc:
        raise SessionError(f"{where}: {exc}") from None
    except IsADirectoryError:
        raise SessionError(f"{where}: is a directory, not a session file") from None
    except PermissionError:
        raise SessionError(f"{where}: cannot be read (permission denied)") from None
    except FileNotFoundError:
        raise SessionError(f"{where}: no such file") from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the name
        raise SessionError(
            f"{where}: cannot be read ({visible(getattr(exc, 'strerror', None) or exc)})"
        ) from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SessionError(f"{where}: not a text file") from None


def parse_session_json(path: Path, text: str) -> Any:
    """``text`` decoded as JSON, refusing a repeated key anywhere."""
    where = visible(path)
    try:
        return json.loads(text, object_pairs_hook=_unique_keys)
    except _RepeatedKey as exc:
        raise SessionError(f"{where}: the key {quoted(exc.args[0])} appears twice in one object") from None
    except RecursionError:
        raise SessionError(f"{where}: nested too deeply to be a session") from None
    except json.JSONDecodeError as exc:
        if not text.strip():
            raise SessionError(f"{where}: empty file") from None
        stripped = text.rstrip()
        if exc.pos >= len(stripped) or (stripped.startswith("{") and not stripped.endswith("}")):
            raise SessionError(f"{where}: truncated JSON (ends at byte {len(text)})") from None
        raise SessionError(f"{where}: not valid JSON ({exc.msg}, line {exc.lineno})") from None


def read_header(path: Path) -> dict:
    """The header members of a session file, from its first line when the
    file has the layout ``encode`` writes and nothing after that line could
    repeat a header member; else from the whole file."""
    text = read_session_text(path)
    first, newline, rest = text.partition("\n")
    # A later copy of a header member needs its name in the rest, written out
    # or with \u escapes: when neither is there, line one alone decides.
    if first.endswith(",") and newline and "\\u" not in rest:
        if not any(f'"{key}"' in rest for key in HEADER_KEYS):
            try:
                return parse_session_json(path, first[:-1] + "}")
            except SessionError:
                pass  # read it all below, for the message that names the real problem
    return parse_session_json(path, text)


# ----------------------------------------------------------------- the rest


def _decode_epochs(r: _Reader, config: RunConfig) -> list[EpochMetrics]:
    epochs = [
        _decode_epoch(_Reader(r.path, item, f"epoch row {i + 1}"))
        for i, item in enumerate(r.get("epochs", (list,)))
    ]
    seen: set[int] = set()
    for row, epoch in enumerate(epochs, 1):
        if epoch.epoch in seen:
            r.fail(f"epoch {epoch.epoch} appears twice in the epoch rows")
        seen.add(epoch.epoch)
        if epoch.epoch != row:
            r.fail(f"the epoch rows are not numbered 1, 2, 3…: row {row} is epoch {epoch.epoch}")
    if len(epochs) > config.epochs:
        r.fail(f"{len(epochs)} epoch rows, more than the {config.epochs} epochs configured")
    return epochs


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
                r.fail(f"column {key!r} holds {quoted(value)}, not a step number")
            out.append(value)
        else:
            out.append(_curve_value(r, key, value))
    return out


def _curve_value(r: _Reader, key: str, value: Any) -> float:
    if value is None:
        return math.nan  # stored for a non-finite value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or abs(value) > 1e300:
        r.fail(f"column {key!r} holds {quoted(value)}, not a number")
    return float(value)


def _later_column(r: _Reader, key: str, kind: type, rows: int) -> list:
    """A column files written before it was kept lack: they read as "not recorded"."""
    if key not in r.data:
        empty = StepCurve.LATER_COLUMNS[key]
        return [list(empty) if isinstance(empty, list) else empty for _ in range(rows)]
    return _column(r, key, kind, rows)


def _decode_steps(r: _Reader, config: RunConfig) -> StepCurve:
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
        grad_sum_of_means=_later_column(r, "grad_sum_of_means", float, len(steps)),
        layer_grad_means=_later_column(r, "layer_grad_means", list, len(steps)),
    )
    if any(b <= a for a, b in zip(steps, steps[1:])):
        r.fail("step numbers are not increasing")
    if any(b < a for a, b in zip(curve.epoch, curve.epoch[1:])):
        r.fail("the steps' epoch numbers go backwards")
    if curve.epoch and not 1 <= curve.epoch[0] <= curve.epoch[-1] <= config.epochs:
        r.fail(f"the steps' epochs run {curve.epoch[0]} to {curve.epoch[-1]}, outside 1 to {config.epochs}")
    return curve


def _results_from_rows(record: SessionRecord) -> None:
    """Results that count other epochs than the file holds are recomputed from
    the rows (a run resumed from an older checkpoint and killed before its
    next epoch leaves such a file), with a warning saying so."""
    results, epochs = record.results, record.epochs
    if results is None or results.epochs_done == len(epochs):
        return
    best = max(epochs, key=lambda e: e.test_acc, default=None)
    last = epochs[-1] if epochs else None
    record.results = replace(
        results,
        epochs_done=len(epochs),
        final_test_acc=last.test_acc if last else None,
        best_test_acc=best.test_acc if best else None,
        best_epoch=best.epoch if best else None,
        converged_epoch=last.converged_epoch if last else None,
        lowest_test_loss_epoch=lowest_test_loss_epoch(epochs),
    )
    record.warnings.append(
        f"{visible(record.path)}: the results count {results.epochs_done} epochs done but the file "
        f"holds {len(epochs)} epoch rows; the results were recomputed from the rows"
    )


def load(path: Path | str) -> SessionRecord:
    """Read and validate a whole session file; SessionError names what is wrong."""
    path = Path(path)
    r = _Reader(path, parse_session_json(path, read_session_text(path)))
    _check_header(r)
    config = _decode_config(r)
    record = SessionRecord(
        id=_decode_id(r),
        config=config,
        status=effective_status(r.data["status"], r.get("pid", (int,)), r.get("host", (str,))),
        created=r.get("created", (str,)),
        updated=r.get("updated", (str,)),
        pid=r.data["pid"],
        host=r.data["host"],
        environment={str(k): str(v) for k, v in r.get("environment", (dict,)).items()},
        model=_decode_model(r.child("model", optional=True)),
        results=_decode_results(r.child("results", optional=True), config),
        epochs=_decode_epochs(r, config),
        steps=_decode_steps(r.child("steps"), config),
        train_data=_decode_train_data(r),
        path=path,
    )
    _check_train_data(r, record)
    _results_from_rows(record)
    return record


def _check_train_data(r: _Reader, record: SessionRecord) -> None:
    """The header's training images and the environment's must agree."""
    used = record.environment.get("train_size")
    if record.train_data is not None and used is not None and used != str(record.train_data.images):
        r.fail(f"train_data says {record.train_data.images} images, the environment {quoted(used)}")
