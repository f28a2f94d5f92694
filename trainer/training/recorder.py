"""Step metrics gathered on the device and handed out in batches, so a GPU
run syncs at most every FLUSH_SECONDS rather than every step."""

from __future__ import annotations

import time

import torch

from fmlab.trainer.events import StepMetrics

FLUSH_SECONDS = 0.25  # step metrics reach consumers at most this late


class StepRecorder:
    """One device buffer row per recorded step, [members, loss + statistics]."""

    def __init__(self, members: int, num_layers: int, device: torch.device, capacity: int = 256) -> None:
        # loss, then the stepper's statistics (see Stepper): 3 + 2 * layers
        self.buffer = torch.empty(capacity, members, 4 + 2 * num_layers, device=device)
        self.num_layers = num_layers
        self.steps: list[tuple[int, int]] = []
        self.last_flush = time.perf_counter()

    def record(self, step: int, epoch: int, loss: torch.Tensor, stats: torch.Tensor) -> None:
        row = self.buffer[len(self.steps)]
        row[:, 0] = loss
        row[:, 1:] = stats
        self.steps.append((step, epoch))

    def due(self) -> bool:
        return len(self.steps) == len(self.buffer) or (
            bool(self.steps) and time.perf_counter() - self.last_flush >= FLUSH_SECONDS
        )

    def flush(self) -> list[list[StepMetrics]]:
        """Each member position's step events since the last flush."""
        rows = self.buffer[: len(self.steps)].tolist()
        per_member: list[list[StepMetrics]] = [[] for _ in range(self.buffer.shape[1])]
        layers = self.num_layers
        for (step, epoch), row in zip(self.steps, rows):
            for position, v in enumerate(row):
                per_member[position].append(
                    StepMetrics(
                        step,
                        epoch,
                        loss=v[0],
                        grad_mean=v[1],
                        grad_norm=v[2],
                        layer_norms=tuple(v[4 : 4 + layers]),
                        grad_sum_of_means=v[3],
                        layer_grad_means=tuple(v[4 + layers :]),
                    )  # fmt: skip
                )
        self.steps.clear()
        self.last_flush = time.perf_counter()
        return per_member

    def keep(self, positions: torch.Tensor) -> None:
        self.buffer = self.buffer.index_select(1, positions)
