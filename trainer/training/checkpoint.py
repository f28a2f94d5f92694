"""Checkpoints: everything needed to continue one member after its last
finished epoch, in a file beside its session.

A checkpoint in a sessions folder may come from someone else, so it is data,
never code: it holds only tensors, numbers, strings, lists and dicts, is read
with ``torch.load(weights_only=True)``, and is checked before anything is
loaded from it: its format, the session it belongs to (id and a digest of the
config), and every tensor's shape against the config's model. Any problem is
one CheckpointError line naming the file.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch

from fmlab.trainer.atomic import write_atomic
from fmlab.trainer.config import MAX_MODEL_BYTES, RunConfig
from fmlab.trainer.events import EpochMetrics
from fmlab.trainer.fields import config_to_dict
from fmlab.trainer.regular_files import NotRegularFile, read_regular_file
from fmlab.trainer.text import first_line
from fmlab.trainer.training.steppers import buffer_shapes, optimizer_state_shapes, param_shapes

FORMAT = "fmlab.checkpoint"
VERSION = 2  # version 1 pickled Python objects and is not read any more
EPOCH_FIELDS = tuple(f.name for f in fields(EpochMetrics))


class CheckpointError(Exception):
    """A checkpoint that cannot be used; the message names the file and why."""


def config_digest(config: RunConfig) -> str:
    """A short fingerprint of everything that defines a run."""
    text = json.dumps(config_to_dict(config), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class Checkpoint:
    """One member's state after ``epoch`` finished epochs (``step`` steps).
    Tensors are CPU copies, so a checkpoint can be saved while training goes on."""

    epoch: int
    step: int
    params: list[torch.Tensor]  # weight, bias, weight, bias, ...
    optimizer: dict  # the stepper's state for this member (see Stepper.member_state)
    shuffle_state: torch.Tensor  # the data-order generator's state
    history: list[EpochMetrics]
    seconds: float  # training time so far
    buffers: list[torch.Tensor] = field(
        default_factory=list
    )  # batch norm's statistics, in model.buffers() order

    def to_bytes(self, session_id: str, config: RunConfig) -> bytes:
        payload = {
            "format": FORMAT,
            "version": VERSION,
            "session": session_id,
            "config_digest": config_digest(config),
            "epoch": self.epoch,
            "step": self.step,
            "params": list(self.params),
            "optimizer": self.optimizer,
            "shuffle_state": self.shuffle_state,
            "history": [asdict(e) for e in self.history],
            "seconds": self.seconds,
            "buffers": list(self.buffers),
        }
        buffer = io.BytesIO()
        torch.save(payload, buffer)
        return buffer.getvalue()

    def save(self, path: Path, session_id: str, config: RunConfig) -> None:
        """Write atomically; raises OSError (a full disk, say) and nothing else."""
        write_atomic(path, self.to_bytes(session_id, config))

    @classmethod
    def load(cls, path: Path, session_id: str, config: RunConfig) -> Checkpoint:
        """Read and check a checkpoint of session ``session_id`` run with ``config``."""
        data = _read_payload(Path(path))
        return _Check(Path(path), data).checkpoint(session_id, config)


def _read_payload(path: Path) -> object:
    try:
        raw = read_regular_file(path, MAX_MODEL_BYTES)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no checkpoint to resume from") from None
    except NotRegularFile as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    try:
        # weights_only: tensors and plain values only, never arbitrary objects
        return torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except Exception as exc:  # a damaged or hostile file: many kinds of error
        raise CheckpointError(f"{path}: not a plain-data fmlab checkpoint ({first_line(exc, 100)})") from None


class _Check:
    """Typed access to a loaded payload; every miss is a CheckpointError."""

    def __init__(self, path: Path, data: object) -> None:
        self.path = path
        if not isinstance(data, dict):
            self.fail("not an fmlab checkpoint")
        self.data = data

    def fail(self, problem: str):
        raise CheckpointError(f"{self.path}: {problem}")

    def get(self, key: str, kinds: tuple[type, ...]):
        value = self.data.get(key)
        if isinstance(value, bool) or not isinstance(value, kinds):
            self.fail(f"field {key!r} is missing or has the wrong type")
        return value

    def checkpoint(self, session_id: str, config: RunConfig) -> Checkpoint:
        if self.data.get("format") != FORMAT:
            self.fail("not an fmlab checkpoint")
        if self.data.get("version") != VERSION:
            self.fail(f"checkpoint version {self.data.get('version')!r}; this fmlab reads {VERSION}")
        if self.data.get("session") != session_id:
            self.fail(f"belongs to another session ({str(self.data.get('session'))[:60]!r})")
        if self.data.get("config_digest") != config_digest(config):
            self.fail("was written for other settings than this session's")
        epoch, step = self.get("epoch", (int,)), self.get("step", (int,))
        if not 1 <= epoch <= config.epochs or step < epoch:
            self.fail(f"epoch {epoch} / step {step} do not fit a run of {config.epochs} epochs")
        seconds = self.get("seconds", (int, float))
        if not math.isfinite(seconds) or seconds < 0:
            self.fail("field 'seconds' is not a time")
        return Checkpoint(
            epoch=epoch,
            step=step,
            params=self.tensors("params", param_shapes(config), torch.float32),
            optimizer=self.optimizer(config),
            shuffle_state=self.shuffle_state(),
            history=self.history(epoch),
            seconds=float(seconds),
            buffers=self.buffers(config),
        )

    def buffers(self, config: RunConfig) -> list:
        """Buffers keep their own types (a batch norm counts its batches in int64)."""
        values = self.data.get("buffers", [])  # none before layer stacks
        self.tensors("buffers", buffer_shapes(config), None, {"buffers": values})
        return values

    def tensors(
        self,
        key: str,
        shapes: list[tuple[int, ...]] | None,
        dtype: torch.dtype | None,
        within: dict | None = None,
    ) -> list:
        """The tensors under ``key``: of these shapes (None: any, for a user's
        module, checked when loaded into it) and this dtype (None: float32 or int64)."""
        values = (self.data if within is None else within).get(key)
        if not isinstance(values, list) or (shapes is not None and len(values) != len(shapes)):
            self.fail(f"{key}: expected {'a list of' if shapes is None else len(shapes)} tensors")
        if shapes is None:
            shapes = [tuple(v.shape) if isinstance(v, torch.Tensor) else () for v in values]
        dtypes = (dtype,) if dtype is not None else (torch.float32, torch.int64)
        for index, (value, shape) in enumerate(zip(values, shapes)):
            if (
                not isinstance(value, torch.Tensor)
                or tuple(value.shape) != shape
                or value.dtype not in dtypes
            ):
                got = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
                self.fail(
                    f"{key}[{index}] is {got}, expected a {dtype or 'float32 or int64'} tensor of shape {shape}"
                )
        return values

    def optimizer(self, config: RunConfig) -> dict:
        state = self.data.get("optimizer")
        expected = optimizer_state_shapes(config)
        if not isinstance(state, dict) or set(state) - {"steps"} != set(expected):
            self.fail("optimizer state does not match the run's optimizer")
        checked = {key: self.tensors(key, shapes, torch.float32, state) for key, shapes in expected.items()}
        if expected:
            steps = state.get("steps")
            if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
                self.fail("optimizer steps is not a count")
            checked["steps"] = steps
        return checked

    def shuffle_state(self) -> torch.Tensor:
        state = self.data.get("shuffle_state")
        try:
            torch.Generator().set_state(state)
        except (TypeError, RuntimeError, ValueError):
            self.fail("shuffle state is not a random generator's state")
        return state

    def history(self, epoch: int) -> list[EpochMetrics]:
        rows = self.data.get("history")
        if not isinstance(rows, list) or len(rows) != epoch:
            self.fail(f"history does not hold {epoch} epochs")
        history = []
        for number, row in enumerate(rows, start=1):
            if not isinstance(row, dict) or set(row) != set(EPOCH_FIELDS) or row["epoch"] != number:
                self.fail(f"history row {number} is not epoch {number}'s metrics")
            for key, value in row.items():
                if isinstance(value, bool) or not isinstance(value, (int, float, type(None))):
                    self.fail(f"history row {number}: {key!r} is not a number")
                if value is None and key != "converged_epoch":
                    self.fail(f"history row {number}: {key!r} is missing")
            history.append(EpochMetrics(**row))
        return history
