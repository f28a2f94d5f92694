"""A network's per-layer summary: what the inspector, ``fmlab params``, the
report and session files show. Plain values, no imports."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class LayerSummary:
    name: str  # e.g. "fc1", "conv2"
    kind: str  # the torch layer: "Linear", "ReLU", "Conv2d", ...
    in_features: int  # values in one sample's input
    out_features: int  # values in one sample's output
    params: int  # trainable
    formula: str  # "(784 + 1) x 256 = 200,960", "-" where it has none
    shape: tuple[int, ...] = ()  # one sample's output, e.g. (32, 26, 26); () means (out_features,)
    buffers: int = 0  # non-trainable values (batch norm's running statistics)

    @property
    def dims(self) -> tuple[int, ...]:
        """One sample's output shape, e.g. (32, 26, 26) or (10,)."""
        return self.shape or (self.out_features,)

    @property
    def output_shape(self) -> str:
        return f"(batch, {', '.join(map(str, self.dims))})"


@dataclass(frozen=True)
class ModelSummary:
    layers: tuple[LayerSummary, ...]
    total_params: int
    size_mb: float  # float32 parameters, in MB (10^6 bytes)

    @classmethod
    def of(cls, layers: Iterable[LayerSummary]) -> ModelSummary:
        """The summary of these rows: their parameters added up."""
        layers = tuple(layers)
        total = sum(layer.params for layer in layers)
        return cls(layers, total, total * 4 / 1e6)

    @property
    def non_trainable(self) -> int:
        """Values kept but not trained (batch norm's running statistics)."""
        return sum(layer.buffers for layer in self.layers)


# The parameter arithmetic of the layers that have parameters: (count, formula).


def linear_params(fan_in: int, fan_out: int) -> tuple[int, str]:
    params = (fan_in + 1) * fan_out
    return params, f"({fan_in} + 1) x {fan_out} = {params:,}"


def conv_params(in_channels: int, kh: int, kw: int, out_channels: int) -> tuple[int, str]:
    params = (in_channels * kh * kw + 1) * out_channels
    return params, f"({in_channels} x {kh} x {kw} + 1) x {out_channels} = {params:,}"


def batch_norm_params(channels: int) -> tuple[int, str]:
    """A scale and a shift per channel; the running statistics are not trained."""
    params = 2 * channels
    return params, f"2 x {channels} = {params:,} (+ {params:,} running statistics)"
