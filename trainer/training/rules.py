"""What every stepper keeps to alike."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

EVAL_CHUNK = 1_000  # test samples per forward pass; the same for any stack size
ADAM_BETAS = (0.9, 0.999)  # PyTorch's Adam defaults, which the reference uses
ADAM_EPS = 1e-8


def take_epoch_sums(loss_sum: torch.Tensor, correct: torch.Tensor) -> tuple[list[float], list[int]]:
    """Each member's summed loss and correct predictions so far, then zero them."""
    loss, right = loss_sum.tolist(), correct.tolist()
    loss_sum.zero_()
    correct.zero_()
    return loss, right
