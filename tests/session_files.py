"""Session files for the tests of what fmlab reads: good ones built the way
the recorder writes them, and documents to spoil before writing them out."""

from __future__ import annotations

import json
from pathlib import Path

from fmlab.trainer.events import EpochMetrics, RunResults, StepMetrics
from fmlab.trainer.fields import parse_run_config
from fmlab.trainer.models import summarize
from fmlab.trainer.sessions import SessionRecord, StepCurve, encode
from fmlab.trainer.sessions.decode import HEADER_KEYS

STEPS_PER_EPOCH = 4


def make_record(
    session_id: str = "20250101-000000-16-lr0.1-abcd", epochs: int = 2, **config
) -> SessionRecord:
    """A completed run of ``epochs`` epochs, with made-up but consistent numbers."""
    config = parse_run_config(**{"arch": "16", "epochs": epochs, **config})
    steps = StepCurve(full_steps=config.full_steps)
    history = []
    for epoch in range(1, epochs + 1):
        for step in range((epoch - 1) * STEPS_PER_EPOCH + 1, epoch * STEPS_PER_EPOCH + 1):
            steps.add(StepMetrics(step, epoch, 2.0 / step, 0.001, 0.5, (0.4, 0.2)))
        history.append(EpochMetrics(epoch, 1.0 / epoch, 60.0 + epoch, 1.1 / epoch, 58.0 + epoch, 0.5, 1000.0))
    return SessionRecord(
        id=session_id,
        config=config,
        status="completed",
        created="2025-01-01T00:00:00+00:00",
        updated="2025-01-01T00:01:00+00:00",
        pid=1,
        host="elsewhere",
        environment={"torch": "2.0", "device": "cpu", "device_name": "x86_64", "steps_per_epoch": str(STEPS_PER_EPOCH)},
        model=summarize(config.model),
        results=RunResults("completed", epochs, epochs * STEPS_PER_EPOCH, history[-1].test_acc,
                           history[-1].test_acc, epochs, None, 0.5 * epochs),
        epochs=history,
        steps=steps,
    )  # fmt: skip


def write_record(directory: Path, record: SessionRecord, name: str | None = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / (name or f"{record.id}.json")
    path.write_text(encode(record), encoding="utf-8")
    return path


def document_of(record: SessionRecord) -> dict:
    """A record as the JSON object its file holds, to change before writing."""
    return json.loads(encode(record))


def layout(document: dict) -> str:
    """``document`` laid out like ``encode`` does: header members on line one."""
    header = {key: value for key, value in document.items() if key in HEADER_KEYS}
    body = {key: value for key, value in document.items() if key not in HEADER_KEYS}
    head, rest = json.dumps(header), json.dumps(body, separators=(",", ":"))
    return head[:-1] + ",\n" + rest[1:] + "\n"


def write_document(directory: Path, document: dict, name: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(layout(document), encoding="utf-8")
    return path
