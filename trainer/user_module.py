"""A user's own nn.Module, from ``path/to/file.py:factory``.

Loading RUNS THE USER'S FILE: it is imported and ``factory()`` is called to
build the network. fmlab does that only for a file someone names on the
command line or types into the form, never for a path read from a session
file (sessions are data: their ModuleRef is only a record).

The module takes images as ``[batch, 1, 28, 28]`` floats in [0, 1] and must
return ``[batch, 10]`` logits. The file's SHA-256, the module's repr and its
parameter count go into the session, with a per-layer summary gathered with
forward hooks, so replay, compare and export work without the file.
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
import sys
from pathlib import Path

import torch
from torch import nn

from fmlab.trainer.config import ConfigError, ModelSpec, ModuleRef, check_model_size
from fmlab.trainer.regular_files import NotRegularFile, read_regular_file
from fmlab.trainer.summary import (
    LayerSummary,
    ModelSummary,
    batch_norm_params,
    conv_params,
    linear_params,
)
from fmlab.trainer.text import first_line, visible

MAX_SOURCE_BYTES = 4 * 2**20
MAX_REPR = 16_000
SPEC = re.compile(r"^(?P<path>.+\.py):(?P<factory>[A-Za-z_]\w*)$")
# What each file, unchanged, built: a form checked at every keystroke runs it once.
_loaded: dict[tuple[str, str, str], ModuleRef] = {}


def load_module_ref(text: str, field: str = "arch") -> ModuleRef:
    """Load ``path.py:factory`` (running it) and describe what it builds;
    ConfigError naming ``field`` with one line for anything wrong."""
    match = SPEC.match(str(text).strip())
    if match is None:
        raise ConfigError(field, f"{visible(text)!r} is not FILE.py:FACTORY, e.g. my_net.py:build")
    path, factory = match["path"], match["factory"]
    source = _source(path, field)
    digest = hashlib.sha256(source).hexdigest()
    key = (path, factory, digest)
    if key in _loaded:
        return _loaded[key]
    model = _build(path, factory, source, digest, seed=0, field=field)
    summary = _check_and_summarize(model, field, f"{factory}()")
    ref = ModuleRef(path, factory, digest, _repr(model), summary.total_params, summary)
    check_model_size(ModelSpec((), module=ref), field)
    _loaded[key] = ref
    return ref


def build_user_module(ref: ModuleRef, seed: int) -> nn.Module:
    """The module again, with the initial weights drawn from ``seed``; the
    file must still be the one the run was configured with, and loaded in
    this process by someone naming it (a ModuleRef read from a file is a
    record: its ``summary`` is None, and its path is not run)."""
    if ref.summary is None:
        raise ConfigError("arch", f"{visible(ref.path)}:{ref.factory} was read from a file; fmlab runs a "
                                  "module only when you name it (--model FILE.py:FACTORY)")  # fmt: skip
    source = _source(ref.path, "arch")
    if hashlib.sha256(source).hexdigest() != ref.sha256:
        raise ConfigError("arch", f"{visible(ref.path)} has changed since the run was configured")
    return _build(ref.path, ref.factory, source, ref.sha256, seed, "arch")


def _source(path: str, field: str) -> bytes:
    try:
        return read_regular_file(Path(path), MAX_SOURCE_BYTES)
    except FileNotFoundError:
        raise ConfigError(field, f"no file {visible(path)}") from None
    except NotRegularFile as exc:
        raise ConfigError(field, f"{visible(path)}: {exc}") from None
    except OSError as exc:
        raise ConfigError(field, f"{visible(path)} cannot be read ({exc.strerror or exc})") from None


def _build(path: str, factory: str, source: bytes, digest: str, seed: int, field: str) -> nn.Module:
    name = f"fmlab_user_module_{digest[:12]}"
    spec = importlib.util.spec_from_loader(name, loader=None, origin=path)
    module = importlib.util.module_from_spec(spec)
    module.__file__ = str(Path(path).resolve())
    sys.modules[name] = module  # dataclasses and pickling look modules up by name
    try:
        with torch.random.fork_rng(devices=[]):  # the caller's generator goes on undisturbed
            torch.manual_seed(seed)
            exec(compile(source, str(path), "exec"), module.__dict__)  # the user's own code, by request
            build = getattr(module, factory, None)
            if not callable(build):
                raise ConfigError(field, f"{visible(path)} has no function {factory}")
            model = build()
    except ConfigError:
        raise
    except BaseException as exc:  # noqa: BLE001  anything the user's code raises is one line
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise ConfigError(field, f"{visible(path)}:{factory} raised {_raised(exc)}") from None
    finally:
        sys.modules.pop(name, None)
    if not isinstance(model, nn.Module):
        raise ConfigError(field, f"{factory}() returned {type(model).__name__}, not a torch nn.Module")
    return model


def _raised(error: BaseException) -> str:
    """``ValueError: its first line``, or the type alone when it says nothing."""
    message = visible(first_line(error, 120)) if str(error).strip() else ""
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


def _repr(model: nn.Module) -> str:
    text = repr(model)
    return text if len(text) <= MAX_REPR else text[: MAX_REPR - 1] + "…"


# ----------------------------------------------------------------- the summary


def _formula(module: nn.Module, params: int) -> str:
    """The known layers' arithmetic (fmlab.trainer.summary), else the sum of
    the module's own tensors."""
    if isinstance(module, nn.Conv2d) and module.bias is not None:
        return conv_params(module.in_channels // module.groups, *module.kernel_size, module.out_channels)[1]
    if isinstance(module, nn.Linear) and module.bias is not None:
        return linear_params(module.in_features, module.out_features)[1]
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.affine:
        return batch_norm_params(module.num_features)[1]
    sizes = [p.numel() for p in module.parameters(recurse=False)]
    if not sizes:
        return "-"
    return f"{' + '.join(f'{n:,}' for n in sizes)} = {params:,}" if len(sizes) > 1 else f"{params:,}"


def _check_and_summarize(model: nn.Module, field: str, call: str) -> ModelSummary:
    """Run one forward pass of two blank images; the output must be [2, 10].
    Leaf modules report their output shapes through forward hooks."""
    rows: dict[nn.Module, LayerSummary] = {}
    names = {module: name for name, module in model.named_modules()}

    def hook(module: nn.Module, inputs, output) -> None:
        if module in rows or not isinstance(output, torch.Tensor):
            return
        first = next((t for t in inputs if isinstance(t, torch.Tensor)), None)
        params = sum(p.numel() for p in module.parameters(recurse=False))
        buffers = sum(b.numel() for b in module.buffers(recurse=False) if b.is_floating_point())
        shape = tuple(output.shape[1:])
        rows[module] = LayerSummary(
            names[module] or "module", type(module).__name__,
            first[0].numel() if first is not None and first.dim() else 0, output[0].numel() if output.dim() else 0,
            params, _formula(module, params), shape=shape, buffers=buffers,
        )  # fmt: skip

    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    model.eval()
    try:
        with torch.no_grad():
            output = model(torch.zeros(2, 1, 28, 28))
    except Exception as exc:  # noqa: BLE001  the user's forward: one line
        raise ConfigError(
            field, f"the module from {call} failed on a [batch, 1, 28, 28] input: {_raised(exc)}"
        ) from None
    finally:
        for handle in handles:
            handle.remove()
        model.train()
    if not isinstance(output, torch.Tensor) or tuple(output.shape) != (2, 10):
        got = list(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
        raise ConfigError(field, f"the module from {call} gives {got} for 2 images; it must give [batch, 10]")
    layers = [rows[m] for m in model.modules() if m in rows]
    other = sum(p.numel() for p in model.parameters()) - sum(layer.params for layer in layers)
    if other:  # parameters used outside the leaves' forward, or never called
        layers.append(LayerSummary("(other)", "parameters", 0, 0, other, f"{other:,}"))
    return ModelSummary.of(layers)
