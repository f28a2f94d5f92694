"""Fixed sessions for app tests: hand-built records with fixed ids and times,
so screens fed from them draw the same every time."""

from __future__ import annotations

import math
from pathlib import Path

from fmlab.trainer.atomic import write_atomic
from fmlab.trainer.events import EpochMetrics, RunResults, StepMetrics
from fmlab.trainer.fields import parse_run_config
from fmlab.trainer.models import summarize
from fmlab.trainer.sessions import SessionRecord, StepCurve, encode

STEPS_PER_EPOCH = 40


class FixedProbe:
    """A stand-in for trainer.sysinfo.SystemProbe that always says the same."""

    def cuda_status(self) -> tuple[bool, str]:
        return False, "CUDA not available"

    def line(self, device: str | None) -> str:
        return f"device {device or '-'} · mem 512.0 MB of 16.0 GB · CPU 42% of 2 cores"


def fixed_record(session_id: str, lr: float, epochs: int, day: int, arch: str = "base") -> SessionRecord:
    config = parse_run_config(arch=arch, lr=lr, epochs=epochs, full_steps=20, step_every=4)
    rate = 0.5 + lr * 2
    steps = StepCurve(full_steps=config.full_steps)
    for step in range(1, epochs * STEPS_PER_EPOCH + 1):
        if step <= 20 or step % 4 == 0:
            loss = 2.3 * math.exp(-rate * step / STEPS_PER_EPOCH) + 0.25 + 0.05 * math.sin(step)
            norm = 1.0 / (1 + step / 30) + 0.1 * abs(math.cos(step / 3))
            steps.add(
                StepMetrics(
                    step,
                    (step - 1) // STEPS_PER_EPOCH + 1,
                    loss,
                    0.001 * math.sin(step / 5),
                    norm,
                    (norm * 0.8, norm * 0.5, norm * 0.2),
                )
            )
    history = []
    for epoch in range(1, epochs + 1):
        test_acc = 90 - 30 * math.exp(-rate * epoch)
        history.append(
            EpochMetrics(
                epoch=epoch,
                train_loss=2.3 * math.exp(-rate * epoch) + 0.3,
                train_acc=test_acc + 2,
                test_loss=2.3 * math.exp(-rate * epoch) + 0.35,
                test_acc=test_acc,
                seconds=2.0,
                samples_per_s=30000.0,
                converged_epoch=3 if epoch >= 3 and lr < 0.5 else None,
            )
        )
    best = max(history, key=lambda e: e.test_acc)
    converged = history[-1].converged_epoch
    return SessionRecord(
        id=session_id,
        config=config,
        status="completed",
        created=f"2025-03-{day:02d}T10:00:00+00:00",
        updated=f"2025-03-{day:02d}T10:01:00+00:00",
        pid=1,
        host="fixture-host",
        environment={"torch": "2.0", "device": "cpu", "device_name": "x86_64", "python": "3.11",
                     "train_size": "2560", "test_size": "640", "steps_per_epoch": str(STEPS_PER_EPOCH)},
        model=summarize(config.model),
        results=RunResults("completed", epochs, epochs * STEPS_PER_EPOCH, history[-1].test_acc,
                           best.test_acc, best.epoch, converged, 2.0 * epochs),
        epochs=history,
        steps=steps,
    )  # fmt: skip


FIXED = (
    ("20250301-100000-base-lr0.1-aaaa", 0.1, 5, 1, "base"),
    ("20250302-100000-wider-lr0.01-bbbb", 0.01, 4, 2, "wider"),
    ("20250303-100000-64-32-lr0.5-cccc", 0.5, 3, 3, "64,32"),
)


def write_fixed_sessions(directory: Path, broken: bool = True) -> list[SessionRecord]:
    """Three good sessions and (``broken``) three files that cannot be read."""
    directory.mkdir(parents=True, exist_ok=True)
    records = []
    for session_id, lr, epochs, day, arch in FIXED:
        record = fixed_record(session_id, lr, epochs, day, arch)
        write_atomic(directory / f"{session_id}.json", encode(record))
        records.append(record)
    if broken:
        text = encode(records[0])
        (directory / "truncated.json").write_text(text[:60])
        (directory / "notjson.json").write_text("this is not json at all\n")
        (directory / "other-schema.json").write_text('{"schema": "someone.else", "version": 1}\n')
    return records
