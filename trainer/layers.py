"""Layer stacks: a network written as one line, and its arithmetic.

``conv(32,3) relu maxpool(2) flatten fc(10)`` reads left to right from the
1x28x28 image to the 10 logits. A layer is a name, with its numbers in
brackets where it takes any; ``name=value`` gives one by name::

    conv(out, kernel, stride=1, pad=0)   maxpool(kernel, stride=kernel)   pool = maxpool
    avgpool(kernel, stride=kernel)       fc(out) (or linear)              relu  gelu  tanh
    dropout(p=0.5)                       bn (or batchnorm)                flatten

Parsing checks every number and follows the shape through the stack, so a
stack that cannot run is refused with the layer at fault ("layer 5, maxpool(2),
gets a 1x1 input"). The per-layer summary (output shape, parameters and the
formula that gives them) is arithmetic only: no torch here.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import lru_cache

from fmlab.trainer.summary import LayerSummary, ModelSummary, batch_norm_params, conv_params, linear_params

IMAGE = (1, 28, 28)
NUM_CLASSES = 10
MAX_CHANNELS = 4096
MAX_FEATURES = 1_000_000
MAX_KERNEL = 28
MAX_LAYERS = 64
# One image's output of one layer may hold at most this many values (8 MiB as
# float32): a batch of 64 then needs at most 512 MiB per layer.
MAX_VALUES_PER_IMAGE = 2**21
# Each layer kind: its numbers in order, with their defaults (None: required).
SIGNATURES: dict[str, tuple[tuple[str, object], ...]] = {
    "conv": (("out", None), ("kernel", None), ("stride", 1), ("pad", 0)),
    "maxpool": (("kernel", None), ("stride", None)),
    "avgpool": (("kernel", None), ("stride", None)),
    "fc": (("out", None),),
    "relu": (),
    "gelu": (),
    "tanh": (),
    "dropout": (("p", 0.5),),
    "bn": (),
    "flatten": (),
}
ALIASES = {"pool": "maxpool", "linear": "fc", "batchnorm": "bn", "padding": "pad"}
TORCH_NAMES = {
    "conv": "Conv2d", "maxpool": "MaxPool2d", "avgpool": "AvgPool2d", "fc": "Linear", "relu": "ReLU",
    "gelu": "GELU", "tanh": "Tanh", "dropout": "Dropout", "bn": "BatchNorm", "flatten": "Flatten",
}  # fmt: skip
SHORT_NAMES = {"maxpool": "pool", "avgpool": "pool", "dropout": "drop"}
_TOKEN = re.compile(r"\s*([A-Za-z_]\w*)\s*(\(([^()]*)\))?\s*")


class StackError(ValueError):
    """A stack that cannot be built; the message is one line for the user."""


@dataclass(frozen=True)
class Layer:
    """One layer of a stack; ``values`` are its SIGNATURES numbers, in order."""

    kind: str
    values: tuple = ()

    def value(self, name: str):
        names = [n for n, _ in SIGNATURES[self.kind]]
        return self.values[names.index(name)]

    @property
    def text(self) -> str:
        """As someone would write it: defaults left out, ``conv(32,3,pad=1)``."""
        signature = SIGNATURES[self.kind]
        if not signature:
            return self.kind
        parts = []
        for index, ((name, default), value) in enumerate(zip(signature, self.values)):
            if name == "stride" and default is None and value == self.value("kernel"):
                continue  # a pool's stride is its window unless said
            if default is None or index == 0:
                parts.append(f"{value:g}" if isinstance(value, float) else str(value))
            elif value != default:
                parts.append(f"{name}={value:g}" if isinstance(value, float) else f"{name}={value}")
        return f"{self.kind}({','.join(parts)})"

    def to_dict(self) -> dict:
        """The structured form kept in session files."""
        data: dict[str, object] = {"layer": self.kind}
        for (name, _), value in zip(SIGNATURES[self.kind], self.values):
            data[name] = value
        return data


def parse_stack(text: str) -> tuple[Layer, ...]:
    """The layers of a one-line stack, checked through to the 10 logits."""
    text = str(text)
    if text.count("(") != text.count(")"):
        raise StackError("unbalanced brackets")
    layers: list[Layer] = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            rest = text[position:].strip()[:20]
            raise StackError(f"cannot read {rest!r} (layers look like conv(32,3) relu maxpool(2) fc(10))")
        name, bracket, inside = match.group(1), match.group(2), match.group(3)
        layers.append(_layer(len(layers) + 1, name, inside if bracket else None))
        position = match.end()
    if not layers:
        raise StackError("no layers")
    check_stack(tuple(layers))
    return tuple(layers)


def _layer(number: int, name: str, inside: str | None) -> Layer:
    kind = ALIASES.get(name.lower(), name.lower())
    where = f"layer {number}, {name}"
    if kind not in SIGNATURES:
        raise StackError(f"{where}: unknown layer (known: {', '.join(SIGNATURES)})")
    signature = SIGNATURES[kind]
    given: dict[str, str] = {}
    parts = [] if inside is None or not inside.strip() else [p.strip() for p in inside.split(",")]
    if parts and not signature:
        raise StackError(f"{where}: takes no numbers")
    for index, part in enumerate(parts):
        key, equals, raw = part.partition("=")
        key = ALIASES.get(key.strip().lower(), key.strip().lower()) if equals else None
        if key is None:
            if given.keys() - {n for n, _ in signature[:index]}:
                raise StackError(f"{where}: a number without a name after one with a name")
            if index >= len(signature):
                raise StackError(f"{where}: takes at most {len(signature)} numbers")
            key, raw = signature[index][0], part
        if key not in dict(signature):
            raise StackError(f"{where}: no number called {key!r}")
        if key in given:
            raise StackError(f"{where}: {key} given twice")
        given[key] = raw.strip()
    values = []
    for key, default in signature:
        if key not in given:
            if default is None and key != "stride":
                raise StackError(f"{where}: needs its {key} ({_usage(kind)})")
            values.append(default)
            continue
        values.append(_number(where, kind, key, given[key]))
    if kind in ("maxpool", "avgpool") and values[1] is None:
        values[1] = values[0]  # the window's own size
    return Layer(kind, tuple(values))


def _usage(kind: str) -> str:
    names = [n if d is None else f"{n}={d}" for n, d in SIGNATURES[kind]]
    return f"{kind}({','.join(names)})"


def _number(where: str, kind: str, key: str, raw: str) -> int | float:
    if key == "p":
        try:
            p = float(raw)
        except ValueError:
            raise StackError(f"{where}: p {raw!r} is not a number") from None
        if not 0 <= p < 1:
            raise StackError(f"{where}: p {raw} must be at least 0 and below 1")
        return p
    try:
        value = int(raw)
    except ValueError:
        raise StackError(f"{where}: {key} {raw!r} is not a whole number") from None
    low = 0 if key == "pad" else 1
    high = {"out": MAX_CHANNELS if kind == "conv" else MAX_FEATURES, "pad": MAX_KERNEL}.get(key, MAX_KERNEL)
    if not low <= value <= high:
        raise StackError(f"{where}: {key} {value} is out of range ({low} to {high:,})")
    return value


# ----------------------------------------------------------------- shapes


def check_stack(layers: tuple[Layer, ...]) -> None:
    """StackError unless the stack runs from 1x28x28 to 10 logits."""
    if len(layers) > MAX_LAYERS:
        raise StackError(f"{len(layers)} layers; at most {MAX_LAYERS}")
    rows = summarize_stack(layers).layers
    for number, (layer, row) in enumerate(zip(layers, rows), start=1):
        if row.out_features > MAX_VALUES_PER_IMAGE:
            raise StackError(f"layer {number}, {layer.text}, gives {row.out_features:,} values per image; "
                             f"the limit is {MAX_VALUES_PER_IMAGE:,}")  # fmt: skip
    shape = rows[-1].shape
    if shape != (NUM_CLASSES,):
        ending = _shape_text(shape)
        hint = "; end with flatten and fc(10)" if len(shape) == 3 else "; end with fc(10)"
        raise StackError(f"the stack ends with {ending} values, not the 10 classes{hint}")


def _shape_text(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape))


def _output(number: int, layer: Layer, shape: tuple[int, ...]) -> tuple[tuple[int, ...], int, str, int]:
    """A layer's output shape, parameters, formula and non-trainable values."""
    where = f"layer {number}, {layer.text},"
    kind = layer.kind
    if kind in ("conv", "maxpool", "avgpool") and len(shape) != 3:
        raise StackError(f"{where} gets {shape[0]} flat values; it needs channels x height x width")
    if kind == "conv":
        channels, height, width = shape
        out, kernel, stride, pad = layer.values
        if min(height, width) + 2 * pad < kernel:
            raise StackError(
                f"{where} gets a {height}x{width} input, smaller than its {kernel}x{kernel} kernel"
            )
        size = lambda n: (n + 2 * pad - kernel) // stride + 1  # noqa: E731
        return (out, size(height), size(width)), *conv_params(channels, kernel, kernel, out), 0
    if kind in ("maxpool", "avgpool"):
        channels, height, width = shape
        kernel, stride = layer.values
        if min(height, width) < kernel:
            raise StackError(
                f"{where} gets a {height}x{width} input, smaller than its {kernel}x{kernel} window"
            )
        return (channels, (height - kernel) // stride + 1, (width - kernel) // stride + 1), 0, "-", 0
    if kind == "fc":
        if len(shape) != 1:
            raise StackError(f"{where} gets a {_shape_text(shape)} input; put flatten before it")
        out = layer.value("out")
        return (out,), *linear_params(shape[0], out), 0
    if kind == "bn":
        params, formula = batch_norm_params(shape[0])
        return shape, params, formula, params  # as many running statistics as parameters
    if kind == "flatten":
        return (math.prod(shape),), 0, "-", 0
    return shape, 0, "-", 0


@lru_cache(maxsize=256)
def summarize_stack(layers: tuple[Layer, ...]) -> ModelSummary:
    """Each layer's name, output shape, parameters and formula, from 1x28x28.
    Raises StackError at the first layer that cannot take its input. Kept per
    stack: parsing, the size check and every table's parameter count ask."""
    rows = []
    shape: tuple[int, ...] = IMAGE
    counts: dict[str, int] = {}
    for number, layer in enumerate(layers, start=1):
        out, params, formula, buffers = _output(number, layer, shape)
        short = SHORT_NAMES.get(layer.kind, layer.kind)
        counts[short] = counts.get(short, 0) + 1
        name = short if layer.kind == "flatten" else f"{short}{counts[short]}"
        kind = TORCH_NAMES[layer.kind] + (("2d" if len(shape) == 3 else "1d") if layer.kind == "bn" else "")
        rows.append(LayerSummary(name, kind, math.prod(shape), math.prod(out), params, formula,
                                 shape=out, buffers=buffers))  # fmt: skip
        shape = out
    return ModelSummary.of(rows)


def stack_text(layers: tuple[Layer, ...]) -> str:
    return " ".join(layer.text for layer in layers)


def mlp_widths(layers: tuple[Layer, ...]) -> tuple[int, ...] | None:
    """The hidden widths when the stack is a plain MLP (flatten, then fc and
    relu in turn, ending with fc(10)), which trains on the MLP fast path."""
    body = layers[1:] if layers and layers[0].kind == "flatten" else layers
    kinds = [layer.kind for layer in body]
    if len(body) < 3 or kinds != ["fc", "relu"] * (len(body) // 2) + ["fc"]:
        return None
    return tuple(layer.value("out") for layer in body[:-1:2])


# ----------------------------------------------------------------- files


def layers_from_json(data: object) -> tuple[Layer, ...]:
    """The inverse of ``[layer.to_dict() ...]``; StackError for anything else."""
    if not isinstance(data, list) or not data or len(data) > MAX_LAYERS:
        raise StackError(f"must be a list of 1 to {MAX_LAYERS} layers")
    layers = []
    for number, item in enumerate(data, start=1):
        if not isinstance(item, dict) or item.get("layer") not in SIGNATURES:
            raise StackError(f"layer {number} is not a known layer")
        kind = item["layer"]
        names = [n for n, _ in SIGNATURES[kind]]
        if set(item) != {"layer", *names}:
            raise StackError(f"layer {number} ({kind}) must hold exactly: {', '.join(names) or 'no numbers'}")
        values = []
        for name in names:
            value = item[name]
            if isinstance(value, bool) or not isinstance(value, (int, float) if name == "p" else int):
                raise StackError(f"layer {number} ({kind}): {name} must be a number")
            values.append(_number(f"layer {number}, {kind}", kind, name, str(value)))
        layers.append(Layer(kind, tuple(values)))
    check_stack(tuple(layers))
    return tuple(layers)


def layers_json_schema() -> dict:
    one_of = []
    for kind, signature in SIGNATURES.items():
        properties: dict[str, dict] = {"layer": {"const": kind}}
        for name, _ in signature:
            properties[name] = {"type": "number"} if name == "p" else {"type": "integer", "minimum": 0}
        one_of.append({"type": "object", "properties": properties, "required": list(properties),
                       "additionalProperties": False})  # fmt: skip
    return {"type": "array", "items": {"oneOf": one_of}, "minItems": 1, "maxItems": MAX_LAYERS}


# ----------------------------------------------------------------- tensors


def tensor_shapes(layers: tuple[Layer, ...]) -> tuple[list[tuple[int, ...]], list[tuple[int, ...]]]:
    """The built stack's parameter shapes (``model.parameters()`` order) and
    its buffer shapes (``model.buffers()`` order: batch norm's running mean,
    running variance and batch count)."""
    params: list[tuple[int, ...]] = []
    buffers: list[tuple[int, ...]] = []
    shape: tuple[int, ...] = IMAGE
    for layer, row in zip(layers, summarize_stack(layers).layers):
        if layer.kind == "conv":
            out, kernel = layer.values[:2]
            params += [(out, shape[0], kernel, kernel), (out,)]
        elif layer.kind == "fc":
            params += [(layer.values[0], shape[0]), (layer.values[0],)]
        elif layer.kind == "bn":
            params += [(shape[0],), (shape[0],)]
            buffers += [(shape[0],), (shape[0],), ()]
        shape = row.shape
    return params, buffers
