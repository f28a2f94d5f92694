"""The run configuration form: one row per field of a run, checked as you type.

The rows, their labels and their starting values come from the fields table
(fmlab.trainer.fields). Every value goes through parse_run_config, the same
door the CLI uses, which reports every refused field at once; a refused
field's label turns red and its reason shows in the error box under the
rows, a box of fixed height: what appears there never moves a row under the
pointer. ``config`` is None until all fields are good.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Checkbox, Input, Label, Select, Static

from fmlab.trainer.config import (
    ARCH_PRESETS,
    PRESET_NAMES,
    STACK_PRESETS,
    ConfigError,
    ModelSpec,
    RunConfig,
    looks_like_module,
)
from fmlab.trainer.fields import (
    FIELDS,
    RUN_FIELDS,
    Architecture,
    Choice,
    Field,
    YesNo,
    config_texts,
    field_named,
    parse_run_config,
)
from fmlab.trainer.layers import stack_text
from fmlab.tui.literal import literal
from fmlab.tui.widgets.validates_soon import ValidatesSoon

# Run presets: a name, what the menu says, and the fields they set.
RUN_PRESETS: dict[str, tuple[str, dict[str, object]]] = {
    "reference": ("Reference: base, SGD lr 0.1, 10 ep", {"arch": "base", "lr": "0.1", "epochs": "10", "optimizer": "sgd", "momentum": "0"}),
    "quick": ("Quick check: 1 epoch", {"epochs": "1"}),
    "momentum": ("SGD + momentum 0.9, lr 0.01", {"optimizer": "sgd", "lr": "0.01", "momentum": "0.9"}),
    "adam": ("Adam, lr 0.001", {"optimizer": "adam", "lr": "0.001", "momentum": "0"}),
    "deeper": ("Deeper net, lr 0.01", {"arch": "deeper", "lr": "0.01"}),
}  # fmt: skip
CUSTOM = "custom"  # the arch menu's choice for a net typed in
WIDTHS = "widths"  # the row of the net as text, where the architecture's refusals show
NOT_TYPED = "type FILE.py:FACTORY here to load it: fmlab runs a module file only when you name it"


@dataclass
class Cuda:
    available: bool
    description: str


class ConfigForm(ValidatesSoon, Vertical):
    class Changed(Message):
        """The form was edited; ``config`` is None while any field is refused."""

        def __init__(self, config: RunConfig | None, spec: ModelSpec | None) -> None:
            super().__init__()
            self.config = config
            self.spec = spec  # the network, when its row is good

    def __init__(self, initial: RunConfig | None = None, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.initial = initial or RunConfig()
        self.cuda: Cuda | None = None
        self.errors: dict[str, str] = {}
        self.config: RunConfig | None = None
        self.typed_module = ""  # a module file typed into the net row: only that is loaded

    # ----------------------------------------------------------- layout

    def compose(self) -> ComposeResult:
        presets = [(label, key) for key, (label, _) in RUN_PRESETS.items()]
        self._errors: list[tuple[str, str]] = [("preset", "preset")]
        with VerticalScroll(id="form-rows"):
            yield from self._row(
                "preset", "preset", Select(presets, prompt="choose…", compact=True, id="f-preset")
            )
            texts = config_texts(self.initial)
            for field in RUN_FIELDS:
                yield from self._field_rows(field, texts[field.name])
        with VerticalScroll(id="form-errors", can_focus=False):
            yield Static("values are checked as you type", id="form-ok")
            for name, label in self._errors:
                yield Static("", id=f"error-{name}", classes="field-error", name=label)

    def _field_rows(self, field: Field, value: object) -> ComposeResult:
        """A field's row: a menu for a choice, a box for yes/no, else text; the
        architecture is a menu of presets and a row for the net as text
        (widths, layers, or a module file)."""
        name, parser = field.name, field.parser
        if isinstance(parser, Architecture):
            arch = value if value in PRESET_NAMES else CUSTOM
            menu = [(f"{n} ({','.join(map(str, w))})", n) for n, w in ARCH_PRESETS.items()]
            menu += [(f"{n} (layers)", n) for n in STACK_PRESETS]
            menu.append(("custom: widths, layers, file", CUSTOM))
            yield from self._row(
                name, field.label, Select(menu, value=arch, allow_blank=False, compact=True, id="f-arch")
            )
            widths = net_text(self.initial.model)
            yield from self._row(
                WIDTHS, "net", Input(widths, compact=True, disabled=arch != CUSTOM, id=f"f-{WIDTHS}")
            )
        elif isinstance(parser, Choice):
            menu = Select(parser.menu(), value=value, allow_blank=False, compact=True, id=f"f-{name}")
            yield from self._row(name, field.label, menu)
        elif isinstance(parser, YesNo):
            yield from self._row(name, field.label, Checkbox(field.note, value, compact=True, id=f"f-{name}"))
        else:
            yield from self._row(name, field.label, Input(str(value), compact=True, id=f"f-{name}"))
        if name == "device":
            yield Static("checking CUDA…", id="device-hint", classes="field-hint")

    def _row(self, name: str, label: str, widget) -> ComposeResult:
        with Horizontal(classes="field-row"):
            yield Label(label, classes="field-label")
            yield widget
        if name != "preset":
            self._errors.append((name, label))

    def on_mount(self) -> None:
        self.validate()

    # ----------------------------------------------------------- values

    def raw_values(self) -> dict[str, object]:
        """The form's values as parse_run_config keyword arguments."""
        values = {field.name: self.query_one(f"#f-{field.name}").value for field in RUN_FIELDS}
        if values["arch"] == CUSTOM:
            values["arch"] = self.query_one(f"#f-{WIDTHS}", Input).value
        return values

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == f"f-{WIDTHS}" and event.input.has_focus:
            self.typed_module = event.value.strip()  # someone typed it: it may be loaded

    def _module(self, text: str) -> ModelSpec | ConfigError:
        """The module a typed ``FILE.py:FACTORY`` builds (its file runs once
        while it stays the same: fmlab.trainer.user_module keeps what it
        built), or why not."""
        if text != self.typed_module:
            return ConfigError("arch", NOT_TYPED)
        try:
            return FIELDS["arch"].parse(text)
        except ConfigError as exc:
            return exc

    def set_values(self, values: dict[str, object]) -> None:
        """Fill fields by parse_run_config name (``arch`` takes a preset name)."""
        for name, value in values.items():
            widget = self.query_one(f"#f-{name}")
            if isinstance(widget, Checkbox):
                widget.value = bool(value)
            elif isinstance(widget, Select):
                widget.value = value
            else:
                widget.value = str(value)

    def fill(self, config: RunConfig) -> None:
        """Every field from ``config``; the preset menu goes back to its prompt."""
        texts = config_texts(config)
        arch = texts.pop("arch")
        self.query_one("#f-preset", Select).clear()
        self.query_one("#f-arch", Select).value = arch if arch in PRESET_NAMES else CUSTOM
        widths = self.query_one(f"#f-{WIDTHS}", Input)
        widths.disabled = arch in PRESET_NAMES
        widths.value = net_text(config.model)
        self.set_values(texts)
        self.validate_soon()

    def set_cuda(self, available: bool, description: str) -> None:
        self.cuda = Cuda(available, description)
        self.query_one("#device-hint", Static).update(description)
        self.validate()

    # ----------------------------------------------------------- checking

    def validate(self) -> RunConfig | None:
        """Check every field, show each refusal at its row, post Changed."""
        values = self.raw_values()
        refused: dict[str, str] = {}
        if looks_like_module(str(values["arch"])):
            module = self._module(str(values["arch"]).strip())
            if isinstance(module, ConfigError):
                refused[WIDTHS], values["arch"] = module.message, FIELDS["arch"].default
            else:
                values["arch"] = module
        try:
            self.config, self.errors = parse_run_config(**values), {}
        except ConfigError as exc:
            self.config, self.errors = None, {_row_of(field): reason for field, reason in exc.errors.items()}
        if refused:
            self.config, self.errors = None, {**refused, **self.errors}
        if self.cuda and not self.cuda.available and values["device"] == "cuda":
            self.errors["device"] = "no CUDA device here; use auto or cpu"
            self.config = None
        for row in self.query(".field-error").results(Static):
            name = row.id.removeprefix("error-") if row.id else ""
            message = self.errors.get(name, "")
            row.update(literal(f"{row.name}: {message}") if message else "")
            row.set_class(bool(message), "-shown")
        self.query_one("#form-ok", Static).display = not self.errors
        for row in self.query(".field-row"):
            widget = row.children[-1]
            name = (widget.id or "").removeprefix("f-")
            row.set_class(name in self.errors, "-invalid")
        spec = None if WIDTHS in self.errors else _spec_of(values["arch"])
        self.post_message(self.Changed(self.config, spec))
        return self.config

    def on_select_changed(self, event: Select.Changed) -> None:
        event.stop()
        if event.select.id == "f-preset":
            if event.value in RUN_PRESETS:
                self.set_values(RUN_PRESETS[str(event.value)][1])
            return
        if event.select.id == "f-arch":
            widths = self.query_one(f"#f-{WIDTHS}", Input)
            widths.disabled = event.value != CUSTOM
            if event.value in PRESET_NAMES:
                widths.value = net_text(FIELDS["arch"].parse(event.value))
        self.validate_soon()


def _row_of(key: str) -> str:
    """The row that shows a refusal of the field ConfigError names."""
    field = field_named(key)
    if field is None:
        return key
    return WIDTHS if isinstance(field.parser, Architecture) else field.name


def _spec_of(arch: object) -> ModelSpec | None:
    """The network for the inspector; a module only once loaded."""
    if isinstance(arch, ModelSpec):
        return arch
    try:
        return FIELDS["arch"].parse(arch)
    except ConfigError:
        return None


def net_text(spec: ModelSpec) -> str:
    """The net as its row shows it: widths, layers, or FILE.py:FACTORY."""
    if spec.module is not None:
        return spec.module.name
    return stack_text(spec.layers) if spec.layers else ",".join(map(str, spec.hidden))
