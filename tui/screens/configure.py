"""Configure a run: the form on the left, the parameter inspector beside it."""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Button, Footer, Header

from fmlab.trainer.config import RunConfig
from fmlab.tui.widgets.config_form import ConfigForm
from fmlab.tui.widgets.param_inspector import ParamInspector


class ConfigureScreen(Screen):
    CSS_PATH = "configure.tcss"
    BINDINGS = [Binding("ctrl+r", "start", "Start run", priority=True)]

    def __init__(self, initial: RunConfig | None = None) -> None:
        super().__init__()
        self.initial = initial

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal():
            with Vertical(id="form-column"):
                yield ConfigForm(self.initial, id="form")
                yield Button("Start run (ctrl+r)", variant="primary", compact=True, id="start")
            yield ParamInspector(id="inspector")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = "configure a run"
        form = self.query_one(ConfigForm)
        self.query_one(ParamInspector).show(form.initial.model.hidden)
        self.probe_cuda()

    @work(thread=True, exit_on_error=False, group="probe")
    def probe_cuda(self) -> None:
        available, description = self.app.probe.cuda_status()
        self.app.call_from_thread(self.query_one(ConfigForm).set_cuda, available, description)

    def on_config_form_changed(self, message: ConfigForm.Changed) -> None:
        self.query_one(ParamInspector).show(message.hidden)
        self.query_one("#start", Button).disabled = message.config is None

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "start":
            self.action_start()

    def action_start(self) -> None:
        form = self.query_one(ConfigForm)
        config = form.validate()
        if config is None:
            fields = ", ".join(name.replace("_", " ") for name in form.errors)
            self.notify(f"fix the flagged fields first: {fields}", severity="error")
            return
        self.app.start_training(config)
