"""MLPs named by their hidden widths, and their per-layer parameter summary.

The summary is pure arithmetic (no torch), so ``fmlab params`` answers at once;
a test checks it against ``sum(p.numel())`` of the built model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fmlab.trainer.config import ModelSpec
from fmlab.trainer.events import LayerSummary, ModelSummary

if TYPE_CHECKING:
    import torch


def summarize(spec: ModelSpec) -> ModelSummary:
    """Per-layer names, shapes, parameter counts and the formula behind each."""
    layers = []
    sizes = spec.sizes
    for index, (fan_in, fan_out) in enumerate(zip(sizes, sizes[1:]), start=1):
        params = (fan_in + 1) * fan_out
        formula = f"({fan_in} + 1) x {fan_out} = {params:,}"
        layers.append(LayerSummary(f"fc{index}", "Linear", fan_in, fan_out, params, formula))
        if index < len(sizes) - 1:
            layers.append(LayerSummary(f"relu{index}", "ReLU", fan_out, fan_out, 0, "-"))
    total = sum(layer.params for layer in layers)
    return ModelSummary(tuple(layers), total, total * 4 / 1e6)


def build_mlp(spec: ModelSpec, seed: int) -> torch.nn.Sequential:
    """The MLP with PyTorch's default initialisation drawn from ``seed``.

    Built layer by layer in order, like the textbook ``nn.Sequential``, so the
    same seed gives the same initial weights as the textbook loop.
    """
    import torch
    from torch import nn

    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        layers: list[nn.Module] = [nn.Flatten()]
        sizes = spec.sizes
        for index, (fan_in, fan_out) in enumerate(zip(sizes, sizes[1:]), start=1):
            layers.append(nn.Linear(fan_in, fan_out))
            if index < len(sizes) - 1:
                layers.append(nn.ReLU())
        return nn.Sequential(*layers)
    finally:
        torch.random.set_rng_state(generator_state)


def linear_layers(model: torch.nn.Sequential) -> list[torch.nn.Linear]:
    from torch import nn

    return [m for m in model if isinstance(m, nn.Linear)]
