"""The per-layer parameter table of an architecture, with totals."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from fmlab.trainer.config import ModelSpec
from fmlab.trainer.layers import stack_text
from fmlab.trainer.models import summarize
from fmlab.tui.literal import cell, literal

# Below this width the table narrows: output width only, and no params column
# (the formula ends with the count).
WIDE_ENOUGH = 64


class ParamInspector(Vertical):
    DEFAULT_CSS = """
    ParamInspector { height: 1fr; }
    ParamInspector #inspector-shape { height: auto; }
    ParamInspector DataTable { height: auto; max-height: 1fr; }
    ParamInspector #inspector-total { height: auto; margin-top: 1; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.spec: ModelSpec | None = None
        self._wide: bool | None = None

    def compose(self) -> ComposeResult:
        yield Static("", id="inspector-shape")
        yield DataTable(cursor_type="row", zebra_stripes=True, id="inspector-table")
        yield Static("", id="inspector-total")

    def show(self, spec: ModelSpec | None) -> None:
        if spec == self.spec and self._wide is not None:
            return  # the same table: every edit of another field lands here
        self.spec = spec
        self._fill()

    def on_resize(self) -> None:
        if (self.size.width >= WIDE_ENOUGH) != self._wide:
            self._fill()

    def _fill(self) -> None:
        table = self.query_one(DataTable)
        shape = self.query_one("#inspector-shape", Static)
        total = self.query_one("#inspector-total", Static)
        self._wide = self.size.width >= WIDE_ENOUGH
        table.clear(columns=True)
        spec = self.spec
        if spec is None:
            shape.update("[b]model[/b]  (fix the architecture to see its layers)")
            total.update("")
            return
        summary = summarize(spec)
        shape.update(_title(spec))
        if self._wide:
            table.add_columns("layer", "output", "params", "formula")
        else:
            table.add_columns("layer", "out", "formula")
        for layer in summary.layers:
            if self._wide:
                table.add_row(cell(layer.name), layer.output_shape, f"{layer.params:,}", layer.formula)
            else:
                out = "x".join(map(str, layer.dims))
                # spaces out: a conv's formula then fits beside its shape at 80 columns
                table.add_row(cell(layer.name), out, layer.formula.replace(" ", ""))
        text = f"[b]total {summary.total_params:,} parameters[/b]  ({summary.size_mb:.2f} MB as float32)"
        if summary.non_trainable:
            text += f"\n+ {summary.non_trainable:,} running statistics (not trained)"
        total.update(text)


def _title(spec: ModelSpec):
    if spec.is_mlp:
        return f"[b]{spec.name}[/b]  784 → {' → '.join(map(str, spec.hidden))} → 10"
    if spec.layers:
        text = stack_text(spec.layers)
        return literal(text) if text == spec.name else literal(f"{spec.name}: {text}")
    return literal(f"your module {spec.name} (its file ran to find these)")
