"""A network's per-layer summary: what the inspector, ``fmlab params``, the
report and session files show. Plain values, no imports."""

from __future__ import annotations

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
    def output_shape(self) -> str:
        return f"(batch, {', '.join(map(str, self.shape or (self.out_features,)))})"


@dataclass(frozen=True)
class ModelSummary:
    layers: tuple[LayerSummary, ...]
    total_params: int
    size_mb: float  # float32 parameters, in MB (10^6 bytes)

    @property
    def non_trainable(self) -> int:
        """Values kept but not trained (batch norm's running statistics)."""
        return sum(layer.buffers for layer in self.layers)
