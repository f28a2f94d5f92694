"""The run configuration form: one row per RunConfig field, checked as you type.

Every value goes through trainer.config.parse_run_config, the same door the
CLI uses; a refused value shows its reason under the field and ``config`` is
None until all fields are good.
"""

from __future__ import annotations

from dataclasses import dataclass

from fmlab.trainer.config import ARCH_PRESETS, ConfigError, RunConfig, parse_run_config
from fmlab.tui.literal import literal
from fmlab.tui.widgets.validates_soon import ValidatesSoon
from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.widgets import Checkbox, Input, Label, Select, Static

# Run presets: a name, what the menu says, and the fields they set.
RUN_PRESETS: dict[str, tuple[str, dict[str, object]]] = {
    "reference": ("Reference: base, SGD lr 0.1, 10 ep", {"arch": "base", "lr": "0.1", "epochs": "10", "optimizer": "sgd", "momentum": "0"}),
    "quick": ("Quick check: 1 epoch", {"epochs": "1"}),
    "momentum": ("SGD + momentum 0.9, lr 0.01", {"optimizer": "sgd", "lr": "0.01", "momentum": "0.9"}),
    "adam": ("Adam, lr 0.001", {"optimizer": "adam", "lr": "0.001", "momentum": "0"}),
    "deeper": ("Deeper net, lr 0.01", {"arch": "deeper", "lr": "0.01"}),
}  # fmt: skip
TEXT_FIELDS = {
    "lr": "lr",
    "epochs": "epochs",
    "batch_size": "batch size",
    "momentum": "momentum",
    "seed": "seed",
    "threshold": "threshold",
    "patience": "patience",
}
# ConfigError.field -> the form row that shows it
ERROR_ROWS = {"arch": "widths", "batch-size": "batch_size", "stop-on-converge": "stop_on_converge"}


@dataclass
class Cuda:
    available: bool
    description: str


class ConfigForm(ValidatesSoon, VerticalScroll):
    class Changed(Message):
        """The form was edited; ``config`` is None while any field is refused."""

        def __init__(self, config: RunConfig | None, hidden: tuple[int, ...] | None) -> None:
            super().__init__()
            self.config = config
            self.hidden = hidden

    def __init__(self, initial: RunConfig | None = None, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.initial = initial or RunConfig()
        self.cuda: Cuda | None = None
        self.errors: dict[str, str] = {}
        self.config: RunConfig | None = None

    # ----------------------------------------------------------- layout

    def compose(self) -> ComposeResult:
        init = self.initial
        presets = [(label, key) for key, (label, _) in RUN_PRESETS.items()]
        yield from self._row(
            "preset", "preset", Select(presets, prompt="choose…", compact=True, id="f-preset")
        )
        arch = init.model.name if init.model.name in ARCH_PRESETS else "custom"
        arch_options = [(f"{name} ({','.join(map(str, w))})", name) for name, w in ARCH_PRESETS.items()]
        arch_options.append(("custom widths", "custom"))
        yield from self._row(
            "arch", "arch", Select(arch_options, value=arch, allow_blank=False, compact=True, id="f-arch")
        )
        widths = ",".join(map(str, init.model.hidden))
        yield from self._row(
            "widths", "widths", Input(widths, compact=True, disabled=arch != "custom", id="f-widths")
        )
        values = {
            "lr": f"{init.optimizer.lr:g}",
            "epochs": str(init.epochs),
            "batch_size": str(init.batch_size),
            "momentum": f"{init.optimizer.momentum:g}",
            "seed": str(init.seed),
            "threshold": f"{init.convergence.threshold:g}",
            "patience": str(init.convergence.patience),
        }
        for name in ("lr", "epochs", "batch_size"):
            yield from self._row(name, TEXT_FIELDS[name], Input(values[name], compact=True, id=f"f-{name}"))
        optimizers = Select(
            [("SGD", "sgd"), ("Adam", "adam")],
            value=init.optimizer.name,
            allow_blank=False,
            compact=True,
            id="f-optimizer",
        )
        yield from self._row("optimizer", "optimizer", optimizers)
        for name in ("momentum", "seed"):
            yield from self._row(name, TEXT_FIELDS[name], Input(values[name], compact=True, id=f"f-{name}"))
        yield from self._row(
            "shuffle", "shuffle", Checkbox("each epoch", init.shuffle, compact=True, id="f-shuffle")
        )
        devices = Select(
            [("auto", "auto"), ("cpu", "cpu"), ("cuda", "cuda")],
            value=init.device,
            allow_blank=False,
            compact=True,
            id="f-device",
        )
        yield from self._row("device", "device", devices)
        yield Static("checking CUDA…", id="device-hint", classes="field-hint")
        for name in ("threshold", "patience"):
            yield from self._row(name, TEXT_FIELDS[name], Input(values[name], compact=True, id=f"f-{name}"))
        stop = Checkbox("stop on converge", init.convergence.stop, compact=True, id="f-stop_on_converge")
        yield from self._row("stop_on_converge", "", stop)

    def _row(self, name: str, label: str, widget) -> ComposeResult:
        with Horizontal(classes="field-row"):
            yield Label(label, classes="field-label")
            yield widget
        yield Static("", id=f"error-{name}", classes="field-error")

    def on_mount(self) -> None:
        self.validate()

    # ----------------------------------------------------------- values

    def raw_values(self) -> dict[str, object]:
        """The form's values as parse_run_config keyword arguments."""
        arch = self.query_one("#f-arch", Select).value
        values: dict[str, object] = {
            "arch": self.query_one("#f-widths", Input).value if arch == "custom" else arch,
            "optimizer": self.query_one("#f-optimizer", Select).value,
            "device": self.query_one("#f-device", Select).value,
            "shuffle": self.query_one("#f-shuffle", Checkbox).value,
            "stop_on_converge": self.query_one("#f-stop_on_converge", Checkbox).value,
        }
        for name in TEXT_FIELDS:
            values[name] = self.query_one(f"#f-{name}", Input).value
        return values

    def set_values(self, values: dict[str, object]) -> None:
        """Fill fields by parse_run_config name (``arch`` takes a preset name)."""
        for name, value in values.items():
            if name == "arch":
                self.query_one("#f-arch", Select).value = value
            elif name in TEXT_FIELDS:
                self.query_one(f"#f-{name}", Input).value = str(value)
            elif name in ("optimizer", "device"):
                self.query_one(f"#f-{name}", Select).value = value
            elif name in ("shuffle", "stop_on_converge"):
                self.query_one(f"#f-{name}", Checkbox).value = bool(value)

    def set_cuda(self, available: bool, description: str) -> None:
        self.cuda = Cuda(available, description)
        self.query_one("#device-hint", Static).update(description)
        self.validate()

    # ----------------------------------------------------------- checking

    def validate(self) -> RunConfig | None:
        """Check every field, show each refusal at its row, post Changed."""
        self.config, self.errors = check_values(self.raw_values())
        if self.cuda and not self.cuda.available and self.raw_values()["device"] == "cuda":
            self.errors["device"] = "no CUDA device here; use auto or cpu"
            self.config = None
        for row in self.query(".field-error").results(Static):
            name = row.id.removeprefix("error-") if row.id else ""
            message = self.errors.get(name, "")
            row.update(literal(f"↳ {message}") if message else "")
            row.set_class(bool(message), "-shown")
        for row in self.query(".field-row"):
            widget = row.children[-1]
            name = (widget.id or "").removeprefix("f-")
            row.set_class(name in self.errors, "-invalid")
        hidden = None if "widths" in self.errors else _widths_of(self.raw_values()["arch"])
        self.post_message(self.Changed(self.config, hidden))
        return self.config

    def on_select_changed(self, event: Select.Changed) -> None:
        event.stop()
        if event.select.id == "f-preset":
            if event.value in RUN_PRESETS:
                self.set_values(RUN_PRESETS[str(event.value)][1])
            return
        if event.select.id == "f-arch":
            widths = self.query_one("#f-widths", Input)
            widths.disabled = event.value != "custom"
            if event.value in ARCH_PRESETS:
                widths.value = ",".join(map(str, ARCH_PRESETS[str(event.value)]))
        self.validate_soon()


def check_values(values: dict[str, object]) -> tuple[RunConfig | None, dict[str, str]]:
    """The config, or None and every refused field with its reason.

    parse_run_config stops at the first bad field, so each refused field is
    put back to its default and the rest are checked again.
    """
    defaults = {"arch": "base", "lr": 0.1, "epochs": 10, "batch_size": 64, "optimizer": "sgd",
                "momentum": 0.0, "seed": 0, "threshold": 0.1, "patience": 3}  # fmt: skip
    trial, errors = dict(values), {}
    for _ in range(len(trial) + 1):
        try:
            config = parse_run_config(**trial)
        except ConfigError as exc:
            row = ERROR_ROWS.get(exc.field, exc.field.replace("-", "_"))
            key = "arch" if row == "widths" else row
            if row in errors or key not in defaults:  # nothing left to put back
                errors.setdefault(row, exc.message)
                return None, errors
            errors[row] = exc.message
            trial[key] = defaults[key]
            continue
        return (None if errors else config), errors
    return None, errors


def _widths_of(arch: object) -> tuple[int, ...] | None:
    from fmlab.trainer.config import parse_widths

    try:
        return parse_widths(str(arch))
    except ConfigError:
        return None
