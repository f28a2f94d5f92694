"""Configure a run: the form on the left, the parameter inspector beside it."""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Button, Header

from fmlab.trainer.config import RunConfig
from fmlab.tui.screens.terminal_sized import TerminalSized
from fmlab.tui.widgets.config_form import ConfigForm
from fmlab.tui.widgets.key_footer import KeyFooter
from fmlab.tui.widgets.param_inspector import ParamInspector


class ConfigureScreen(TerminalSized, Screen):
    CSS_PATH = "configure.tcss"
    BINDINGS = [Binding("ctrl+r", "start", "Start run", priority=True, tooltip="Train the run in the form")]

    def __init__(self, initial: RunConfig | None = None) -> None:
        super().__init__()
        self.initial = initial

    def compose(self) -> ComposeResult:
        settings = getattr(self.app, "settings", None)
        initial = self.initial or (settings.current.run_config() if settings is not None else None)
        yield Header()
        with Horizontal():
            with Vertical(id="form-column"):
                yield ConfigForm(initial, id="form")
                yield Button("Start run (ctrl+r)", variant="primary", compact=True, id="start")
            yield ParamInspector(id="inspector")
        yield KeyFooter()

    def on_mount(self) -> None:
        self.sub_title = "configure a run"
        form = self.query_one(ConfigForm)
        self.query_one(ParamInspector).show(form.initial.model if form.initial.model.module is None else None)
        self.probe_cuda()

    @work(thread=True, exit_on_error=False, group="probe")
    def probe_cuda(self) -> None:
        available, description = self.app.probe.cuda_status()
        self.app.call_from_thread(self.query_one(ConfigForm).set_cuda, available, description)

    def on_config_form_changed(self, message: ConfigForm.Changed) -> None:
        self.query_one(ParamInspector).show(message.spec)
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
        settings = getattr(self.app, "settings", None)
        if settings is not None:
            settings.remember_run(config)  # the form starts from it next time
        self.app.start_training(config)

    def fill_form(self, config: RunConfig) -> None:
        """Put ``config``'s settings in the form (``n`` in the sessions browser)."""
        self.query_one(ConfigForm).fill(config)
        self.notify(f"the form holds {config.describe()}: ctrl+r starts it", timeout=5)
