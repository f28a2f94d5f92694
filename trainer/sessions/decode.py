"""Session files: reading them back, strictly.

A file in a sessions folder is untrusted data. It is read only if it is a
regular file of at most MAX_SESSION_BYTES (fmlab.trainer.regular_files), its
JSON may not repeat a key (a reader that kept the first copy and one that kept
the last would show different sessions), its id must be safe as a file name,
and its parts must agree with each other. What each member may hold is
declared once in ``schema`` (the same declarations give ``fmlab sessions
schema``); what spans members is checked here. Every problem is a
SessionError of one line that names the file; what can be repaired without
guessing (results that disagree with the epoch rows) is, with a line in
``record.warnings``.
"""

from __future__ import annotations

import json
import math
import os
import socket
from dataclasses import replace
from pathlib import Path
from typing import Any

from fmlab.trainer.config import RunConfig
from fmlab.trainer.events import EpochMetrics, RunResults
from fmlab.trainer.metrics import lowest_test_loss_epoch
from fmlab.trainer.regular_files import NotRegularFile, read_regular_file
from fmlab.trainer.sessions.format import SessionError, SessionRecord, StepCurve, TrainData
from fmlab.trainer.sessions.schema import BODY, HEADER, STEPS, Missing, Place, Record, Tag, quoted
from fmlab.trainer.text import visible

# A real session is tens of KiB (the step curve is bounded); this leaves room
# for runs that keep every step for a long while, and keeps a hostile file
# from filling the memory.
MAX_SESSION_BYTES = 64 * 2**20
# The members of the header (the first line): a later copy of one of these in
# the rest of the file would make a listing and a full read disagree.
HEADER_KEYS = tuple(HEADER)
LARGEST_PID = 2**22  # Linux's limit; a larger number in a file is no process of ours


# ----------------------------------------------------------------- the header


def decode_header(path: Path, data: Any) -> dict[str, Any]:
    """The header members of a session file's JSON, checked as declared in
    fmlab.trainer.sessions.schema, and the results against the config; the
    status is the effective one (see effective_status)."""
    place = Place(path)
    if not isinstance(data, dict):
        place.fail("is not an object")
    Tag().check(data.get("schema"), place, "field 'schema'")  # anything else first says what it is not
    header = Record(HEADER).check(data, place)
    _check_results(header["results"], header["config"], place.inside("results"))
    _check_train_data(header["train_data"], place.inside("train_data"))
    header["status"] = effective_status(header["status"], header["pid"], header["host"])
    return header


def _check_results(results: RunResults | None, config: RunConfig, place: Place) -> None:
    """The results, checked against the config they ran."""
    if results is None:
        return
    if results.epochs_done > config.epochs:
        place.fail(f"{results.epochs_done} epochs done, more than the {config.epochs} configured")
    for name in ("best_epoch", "converged_epoch", "lowest_test_loss_epoch"):
        epoch = getattr(results, name)
        if epoch is not None and not 1 <= epoch <= results.epochs_done:
            place.fail(f"{name} {epoch} is not one of the {results.epochs_done} epochs done")


def _check_train_data(train_data: TrainData | None, place: Place) -> None:
    if train_data is not None and not 0 < train_data.images <= train_data.of:
        place.fail(f"{train_data.images} images of {train_data.of} is not a part of a training split")


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


def _check_epochs(epochs: list[EpochMetrics], config: RunConfig, place: Place) -> None:
    seen: set[int] = set()
    for row, epoch in enumerate(epochs, 1):
        if epoch.epoch in seen:
            place.fail(f"epoch {epoch.epoch} appears twice in the epoch rows")
        seen.add(epoch.epoch)
        if epoch.epoch != row:
            place.fail(f"the epoch rows are not numbered 1, 2, 3…: row {row} is epoch {epoch.epoch}")
    if len(epochs) > config.epochs:
        place.fail(f"{len(epochs)} epoch rows, more than the {config.epochs} epochs configured")


def _decode_steps(steps: dict[str, Any], config: RunConfig, place: Place) -> StepCurve:
    """The step columns, each as long as ``step``, in order."""
    rows = len(steps["step"])
    for key, spec in STEPS.members.items():
        column = steps[key]
        if isinstance(spec, Missing) and column == [] and rows:
            # a column added after the file was written: not measured then
            steps[key] = [[] if getattr(spec.spec, "lists", False) else math.nan for _ in range(rows)]
        elif isinstance(column, list) and key != "step" and len(column) != rows:
            place.fail(f"column {key!r} has {len(column)} rows, expected {rows}")
    curve = StepCurve(**{**steps, "stride": max(1, steps["stride"])})
    if any(b <= a for a, b in zip(curve.step, curve.step[1:])):
        place.fail("step numbers are not increasing")
    if any(b < a for a, b in zip(curve.epoch, curve.epoch[1:])):
        place.fail("the steps' epoch numbers go backwards")
    if curve.epoch and not 1 <= curve.epoch[0] <= curve.epoch[-1] <= config.epochs:
        place.fail(
            f"the steps' epochs run {curve.epoch[0]} to {curve.epoch[-1]}, outside 1 to {config.epochs}"
        )
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
    place = Place(path)
    data = parse_session_json(path, read_session_text(path))
    header = decode_header(path, data)
    body = Record(BODY).check(data, place)
    config = header["config"]
    _check_epochs(body["epochs"], config, place)
    record = SessionRecord(
        id=header["id"],
        config=config,
        status=header["status"],
        created=header["created"],
        updated=header["updated"],
        pid=header["pid"],
        host=header["host"],
        environment=body["environment"],
        model=body["model"],
        results=header["results"],
        epochs=body["epochs"],
        steps=_decode_steps(body["steps"], config, place.inside("steps")),
        train_data=header["train_data"],
        path=path,
    )
    _check_train_size(record, place)
    _results_from_rows(record)
    return record


def _check_train_size(record: SessionRecord, place: Place) -> None:
    """The header's training images and the environment's must agree."""
    used = record.environment.get("train_size")
    if record.train_data is not None and used is not None and used != str(record.train_data.images):
        place.fail(f"train_data says {record.train_data.images} images, the environment {quoted(used)}")
