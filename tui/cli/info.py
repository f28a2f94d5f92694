"""``fmlab data`` and ``fmlab params``: where the data is, what a network costs."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from fmlab.trainer.config import PRESET_NAMES
from fmlab.trainer.text import visible
from fmlab.tui.cli.options import (
    choices_metavar,
    complete_from,
    data_dir_option,
    json_option,
    model_option,
    with_model,
)
from fmlab.tui.cli.output import absolute, fail, print_json, text_table, usage_error
from fmlab.tui.cli.progress import spinner


def data(
    data_dir: Optional[Path] = data_dir_option(),
    json_output: bool = json_option(),
) -> None:
    """Find Fashion-MNIST and show where it is, its split sizes and classes."""
    from fmlab.trainer.data import CLASS_NAMES, DataError, load, locate

    try:
        with spinner("looking for Fashion-MNIST…") as status:
            source = locate(data_dir)
            status.update(f"loading Fashion-MNIST from {absolute(source.directory)}…")
            dataset = load(source)
    except DataError as exc:
        fail(str(exc))
    info = {
        "directory": str(absolute(source.directory)),
        "found_by": source.how,
        "files": {key: str(absolute(path)) for key, path in source.files.items()},
        "train": len(dataset.train_y),
        "test": len(dataset.test_y),
        "classes": list(CLASS_NAMES),
    }
    if json_output:
        print_json(info)
        return
    typer.echo(f"Fashion-MNIST in {info['directory']} (found by {source.how})")
    typer.echo(f"train: {info['train']:,} images, test: {info['test']:,} images, 28x28 grey")
    typer.echo("classes: " + ", ".join(f"{i} {name}" for i, name in enumerate(CLASS_NAMES)))


def params(
    arch: str = typer.Option(
        "base",
        help="A preset, MLP widths like 128,64, or a layer stack (the layers are listed above).",
        metavar=choices_metavar(PRESET_NAMES, "WIDTHS|LAYERS"),
        autocompletion=complete_from(PRESET_NAMES),
    ),
    model: Optional[str] = model_option(),
    json_output: bool = json_option("Print JSON instead of a table."),
) -> None:
    """Show each layer's output shape, parameter count and the formula behind it.

    A layer stack reads left to right from the 1x28x28 image to the 10 logits:

      fmlab params --arch "conv(32,3) relu maxpool(2) conv(64,3) relu maxpool(2) flatten fc(128) relu fc(10)"

    Layers: conv(out,kernel,stride=1,pad=0) (parameters: (in_channels x kh x kw
    + 1) x out), maxpool(k) or pool(k), avgpool(k), fc(out) or linear(out) ((in
    + 1) x out), relu, gelu, tanh, dropout(p), bn (2 x channels, plus as many
    running statistics, not trained) and flatten. --model FILE.py:FACTORY
    shows your own module, found with forward hooks (this runs that file).
    """
    from dataclasses import asdict

    from fmlab.trainer.config import ConfigError
    from fmlab.trainer.fields import FIELDS
    from fmlab.trainer.models import summarize

    try:
        spec = with_model({}, model)["arch"] if model is not None else FIELDS["arch"].parse(arch)
    except ConfigError as exc:
        usage_error(exc.field, exc.message)
    summary = summarize(spec)
    if json_output:
        layers = [{**asdict(x), "shape": list(x.dims)} for x in summary.layers]
        print_json({"arch": spec.name, "kind": spec.kind, "hidden": list(spec.hidden),
                    "layers": layers, "total_params": summary.total_params,
                    "non_trainable": summary.non_trainable, "size_mb": summary.size_mb})  # fmt: skip
        return
    rows = [(x.name, x.kind, x.output_shape, f"{x.params:,}", x.formula) for x in summary.layers]
    typer.echo(_title(spec))
    typer.echo(text_table(("layer", "type", "output", "params", "formula"), rows, right={3}))
    line = f"total: {summary.total_params:,} parameters ({summary.size_mb:.2f} MB as float32)"
    if summary.non_trainable:
        line += f", plus {summary.non_trainable:,} running statistics (not trained)"
    typer.echo(line)


def _title(spec) -> str:
    from fmlab.trainer.layers import stack_text

    if spec.is_mlp:
        return f"{spec.name}: 784 -> {' -> '.join(map(str, spec.hidden))} -> 10"
    if spec.layers:
        text = stack_text(spec.layers)
        return text if text == spec.name else f"{spec.name}: {text}"
    return f"{visible(spec.name)} (your module: loading it ran that file)"
