"""``fmlab data`` and ``fmlab params``: where the data is, what a network costs."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from fmlab.tui.cli.options import choices_metavar, complete_from, data_dir_option, json_option
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
        help="A preset or widths like 128,64.",
        metavar=choices_metavar(("base", "deeper", "wider"), "WIDTHS"),
        autocompletion=complete_from(("base", "deeper", "wider")),
    ),
    json_output: bool = json_option("Print JSON instead of a table."),
) -> None:
    """Show each layer's parameter count and the formula behind it."""
    from dataclasses import asdict

    from fmlab.trainer.config import ConfigError, ModelSpec, parse_widths
    from fmlab.trainer.models import summarize

    try:
        spec = ModelSpec(parse_widths(arch))
    except ConfigError as exc:
        usage_error(exc.field, exc.message)
    summary = summarize(spec)
    if json_output:
        print_json({"arch": spec.name, "hidden": list(spec.hidden), **asdict(summary)})
        return
    rows = [(x.name, x.kind, x.output_shape, f"{x.params:,}", x.formula) for x in summary.layers]
    typer.echo(f"{spec.name}: 784 -> {' -> '.join(map(str, spec.hidden))} -> 10")
    typer.echo(text_table(("layer", "type", "output", "params", "formula"), rows, right={3}))
    typer.echo(f"total: {summary.total_params:,} parameters ({summary.size_mb:.2f} MB as float32)")
