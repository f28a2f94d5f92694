"""Session files: the format. One JSON object per run, read strictly
(decoding is in ``decode``).

Layout: the first line of every file is a header object's members (schema,
version, id, status, times, config, results), so a listing reads one line per
file; the rest holds the environment, model summary, per-epoch metrics and the
step curves. Files are written through fmlab.trainer.atomic, so a process
killed at any moment leaves either the previous or the new version.

A session id names its file (``<id>.json``), so an id must be safe as a file
name on any system: ``check_session_id`` is the rule, applied when a session is
read and when one is created.
"""

from __future__ import annotations

import bisect
import json
import math
import re
import secrets
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from fmlab.trainer.config import RunConfig
from fmlab.trainer.events import (
    EpochMetrics,
    ModelSummary,
    RunResults,
    StepMetrics,
)
from fmlab.trainer.fields import config_to_dict
from fmlab.trainer.text import has_hidden_characters

SCHEMA = "fmlab.session"
VERSION = 1
LATER_STEP_POINTS = 512  # step points kept after the first full_steps, at most
# An id's UTF-8 bytes, at most: "<id>.state.pt" and the atomic writer's
# ".<id>.json.<pid>.tmp" must stay under the usual 255-byte name limit.
MAX_ID_BYTES = 200
# Path separators, and what Windows refuses in a name (glob's * and ? among them).
ID_FORBIDDEN = '/\\:*?"<>|'
# Names Windows gives to devices, whatever the extension.
WINDOWS_DEVICES = frozenset(
    ["CON", "PRN", "AUX", "NUL"] + [f"{kind}{n}" for kind in ("COM", "LPT") for n in range(1, 10)]
)


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
    # the notebook's gradient and the mean per layer (see StepMetrics); files
    # from before they were recorded read as NaN and empty rows
    grad_sum_of_means: list[float] = field(default_factory=list)
    layer_grad_means: list[list[float]] = field(default_factory=list)

    COLUMNS = ("step", "epoch", "loss", "grad_mean", "grad_norm", "layer_norms", "grad_sum_of_means",
               "layer_grad_means")  # fmt: skip

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
        self.grad_sum_of_means.append(event.grad_sum_of_means)
        self.layer_grad_means.append(list(event.layer_grad_means))
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
            StepMetrics(s, e, lo, gm, gn, tuple(ln), gs, tuple(lm))
            for s, e, lo, gm, gn, ln, gs, lm in zip(
                self.step,
                self.epoch,
                self.loss,
                self.grad_mean,
                self.grad_norm,
                self.layer_norms,
                self.grad_sum_of_means,
                self.layer_grad_means,
                strict=True,
            )
        ]

    @property
    def has_sum_of_means(self) -> bool:
        """Whether the notebook's gradient was recorded (files before it was hold NaN only)."""
        return any(math.isfinite(v) for v in self.grad_sum_of_means)


@dataclass(frozen=True)
class TrainData:
    """How much of the training split a run trained on: its first ``images`` of ``of``."""

    images: int
    of: int

    @property
    def partial(self) -> bool:
        return self.images < self.of

    def describe(self) -> str:
        """In words: the first 6,400 of 60,000 training images, or all 60,000 training images."""
        if self.partial:
            return f"the first {self.images:,} of {self.of:,} training images"
        return f"all {self.of:,} training images"

    def short(self) -> str:
        """For a table cell: 6,400/60,000 when partial, else all."""
        return f"{self.images:,}/{self.of:,}" if self.partial else "all"


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
    train_data: TrainData | None = None  # None in files from before it was recorded
    path: Path | None = None  # where it was read from or is written to
    # what decoding repaired, one line each, for the reader to pass on; never written
    warnings: list[str] = field(default_factory=list)

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
    best_epoch: int | None = None  # of the best test accuracy
    lowest_test_loss_epoch: int | None = None  # None in files from before it was recorded
    train_data: TrainData | None = None  # likewise
    batch_size: int = 64
    seed: int = 0
    study: str = ""  # the subfolder it was found in ("lr" for sessions/lr/ID.json), "" at the top

    @property
    def partial_data(self) -> bool:
        """Trained on only the first part of the training split."""
        return self.train_data is not None and self.train_data.partial


class UnsafeSessionId(ValueError):
    """An id that cannot name a session file; the message is one line."""


def session_id_problem(text: object) -> str | None:
    """Why ``text`` cannot be a session id, or None when it can."""
    if not isinstance(text, str):
        return "is not text"
    if not text:
        return "is empty"
    if has_hidden_characters(text):
        return "holds control or invisible characters"
    if len(text.encode("utf-8", "surrogatepass")) > MAX_ID_BYTES:
        return f"is longer than {MAX_ID_BYTES} bytes"
    bad = sorted({char for char in text if char in ID_FORBIDDEN})
    if bad:
        return f"holds {' '.join(bad)}, which a file name cannot"
    if text[0] in ".-":
        return f"starts with {text[0]!r}"  # a hidden file, or read as an option
    if text[0].isspace() or text[-1].isspace() or text[-1] == ".":
        return "starts or ends with a space, or ends with a dot"
    if text.split(".")[0].upper() in WINDOWS_DEVICES:
        return "is the name of a device on Windows"
    return None


def is_safe_session_id(text: object) -> bool:
    """Whether ``text`` can name a session file (``<text>.json``) on any system."""
    return session_id_problem(text) is None


def check_session_id(text: object) -> str:
    """``text`` if it is a safe session id, else UnsafeSessionId saying why."""
    problem = session_id_problem(text)
    if problem is not None:
        raise UnsafeSessionId(f"session id {text!r} {problem}")
    return text


def new_session_id(config: RunConfig) -> str:
    """``<time>-<arch>-lr<lr>-<4 hex>``, safe whatever the arch is called."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    arch = re.sub(r"[^A-Za-z0-9_+]+", "-", config.model.name).strip("-")[:48] or "mlp"
    lr = re.sub(r"[^A-Za-z0-9.+-]+", "-", f"{config.optimizer.lr:g}")
    return check_session_id(f"{stamp}-{arch}-lr{lr}-{secrets.token_hex(2)}")


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
    if record.train_data is not None:
        header["train_data"] = asdict(record.train_data)
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
