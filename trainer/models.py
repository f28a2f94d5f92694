"""The networks a run trains, and their per-layer parameter summary.

An MLP named by its hidden widths, a layer stack (fmlab.trainer.layers), or a
user's module (fmlab.trainer.user_module). The MLP and stack summaries are
pure arithmetic (no torch), so ``fmlab params`` answers at once; tests check
them against ``sum(p.numel())`` of the built model. A module's summary is the
one its forward hooks gave when it was loaded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fmlab.trainer.config import ModelSpec
from fmlab.trainer.layers import IMAGE, Layer, summarize_stack
from fmlab.trainer.summary import LayerSummary, ModelSummary, linear_params

if TYPE_CHECKING:
    import torch


def summarize(spec: ModelSpec) -> ModelSummary:
    """Per-layer names, shapes, parameter counts and the formula behind each."""
    if spec.module is not None:
        return spec.module.summary or _unloaded_module(spec)
    if spec.layers:
        return summarize_stack(spec.layers)
    layers = []
    sizes = spec.sizes
    for index, (fan_in, fan_out) in enumerate(zip(sizes, sizes[1:]), start=1):
        layers.append(LayerSummary(f"fc{index}", "Linear", fan_in, fan_out, *linear_params(fan_in, fan_out)))
        if index < len(sizes) - 1:
            layers.append(LayerSummary(f"relu{index}", "ReLU", fan_out, fan_out, 0, "-"))
    return ModelSummary.of(layers)


def _unloaded_module(spec: ModelSpec) -> ModelSummary:
    """A module read from a file, not loaded: its size is all that is known."""
    params = spec.module.params
    return ModelSummary.of(
        [LayerSummary("module", "user module", 784, 10, params, f"{params:,} (as recorded)")]
    )


def build_model(spec: ModelSpec, seed: int) -> torch.nn.Module:
    """Any network, its initial weights drawn from ``seed``; a module's file
    is loaded and run (see fmlab.trainer.user_module)."""
    if spec.module is not None:
        from fmlab.trainer.user_module import build_user_module

        return build_user_module(spec.module, seed)
    if spec.layers:
        return build_stack(spec.layers, seed)
    return build_mlp(spec, seed)


def build_stack(layers: tuple[Layer, ...], seed: int, in_place: bool = True) -> torch.nn.Sequential:
    """The layer stack as an nn.Sequential taking [batch, 1, 28, 28], with
    PyTorch's default initialisation drawn from ``seed`` in layer order;
    ``in_place=False`` gives every ReLU its own output, as a textbook does."""
    import torch
    from torch import nn

    layers = _pool_before_relu(layers) if in_place else layers
    inputs = [IMAGE, *(row.shape for row in summarize_stack(layers).layers)]
    previous = [None, *(layer.kind for layer in layers)]
    with torch.random.fork_rng(devices=[]):  # the caller's generator goes on undisturbed
        torch.manual_seed(seed)
        return nn.Sequential(
            *(_module_of(layer, shape, in_place=in_place and before in IN_PLACE_AFTER)
              for layer, shape, before in zip(layers, inputs, previous))
        )  # fmt: skip


def _pool_before_relu(layers: tuple[Layer, ...]) -> tuple[Layer, ...]:
    """``relu maxpool`` as ``maxpool relu``: the same numbers (a max commutes
    with relu, and where a window's max is not positive both give 0 and pass
    no gradient), with the ReLU and its backward on a quarter of the values."""
    ordered = list(layers)
    for index in range(len(ordered) - 1):
        if ordered[index].kind == "relu" and ordered[index + 1].kind == "maxpool":
            ordered[index], ordered[index + 1] = ordered[index + 1], ordered[index]
    return tuple(ordered)


# A ReLU right after one of these works in place: none needs its own output
# for its backward (tanh does), and the input images are never overwritten.
IN_PLACE_AFTER = frozenset({"conv", "fc", "bn", "maxpool", "avgpool"})


def _module_of(layer: Layer, shape: tuple[int, ...], in_place: bool) -> torch.nn.Module:
    """The torch module of one layer."""
    from torch import nn

    kind, values = layer.kind, layer.values
    if kind == "conv":
        out, kernel, stride, pad = values
        return nn.Conv2d(shape[0], out, kernel, stride=stride, padding=pad)
    if kind == "fc":
        return nn.Linear(shape[0], values[0])
    if kind == "bn":
        return nn.BatchNorm2d(shape[0]) if len(shape) == 3 else nn.BatchNorm1d(shape[0])
    if kind in ("maxpool", "avgpool"):
        pool = nn.MaxPool2d if kind == "maxpool" else nn.AvgPool2d
        return pool(values[0], stride=values[1])
    if kind == "dropout":
        return nn.Dropout(values[0])
    if kind == "relu":
        return nn.ReLU(inplace=in_place)
    plain = {"gelu": nn.GELU, "tanh": nn.Tanh, "flatten": nn.Flatten}
    return plain[kind]()


def build_mlp(spec: ModelSpec, seed: int) -> torch.nn.Sequential:
    """The MLP with PyTorch's default initialisation drawn from ``seed``.

    Built layer by layer in order, like the textbook ``nn.Sequential``, so the
    same seed gives the same initial weights as the textbook loop.
    """
    import torch
    from torch import nn

    with torch.random.fork_rng(devices=[]):  # the caller's generator goes on undisturbed
        torch.manual_seed(seed)
        layers: list[nn.Module] = [nn.Flatten()]
        sizes = spec.sizes
        for index, (fan_in, fan_out) in enumerate(zip(sizes, sizes[1:]), start=1):
            layers.append(nn.Linear(fan_in, fan_out))
            if index < len(sizes) - 1:
                layers.append(nn.ReLU())
        return nn.Sequential(*layers)


def linear_layers(model: torch.nn.Sequential) -> list[torch.nn.Linear]:
    from torch import nn

    return [m for m in model if isinstance(m, nn.Linear)]
