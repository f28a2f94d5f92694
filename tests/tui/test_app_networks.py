"""Other networks in the app: layer stacks typed into the run form and
checked there, a user's module loaded only when typed, and a cnn trained with
the live charts and the parameter inspector."""

from __future__ import annotations

import hashlib

import pytest
from pilot_helpers import type_into, wait_for
from sessions_fixture import FixedProbe
from textual.app import App, ComposeResult
from textual.widgets import DataTable, Static

from fmlab.trainer.events import EpochMetrics, RunFinished
from fmlab.trainer.fields import config_from_dict, config_to_dict, parse_run_config
from fmlab.trainer.sessions import load
from fmlab.tui.app import make_app
from fmlab.tui.messages import TrainingEvent
from fmlab.tui.screens.configure import ConfigureScreen
from fmlab.tui.widgets.config_form import NOT_TYPED, ConfigForm
from fmlab.tui.widgets.gradient_chart import GradientChart
from fmlab.tui.widgets.loss_chart import LossChart
from fmlab.tui.widgets.param_inspector import ParamInspector

MODULE = """
import pathlib
from torch import nn

def build():
    pathlib.Path(__file__).with_suffix(".ran").write_text("ran")
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2 * 26 * 26, 10))

def broken():
    raise RuntimeError("not today")

def wrong_output():
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 3))
"""


def shown_error(screen, name: str) -> str:
    error = screen.query_one(f"#error-{name}", Static)
    return str(error.render()) if error.display else ""


def inspector_rows(screen) -> list[tuple[str, ...]]:
    table = screen.query_one(ParamInspector).query_one(DataTable)
    return [tuple(str(cell) for cell in table.get_row_at(row)) for row in range(table.row_count)]


async def custom_net(pilot, text: str) -> ConfigForm:
    screen = pilot.app.screen
    screen.query_one("#f-arch").value = "custom"
    await pilot.pause()
    await type_into(pilot, "#f-widths", text)
    await pilot.pause(0.3)  # the form checks soon after typing stops
    return screen.query_one(ConfigForm)


@pytest.fixture
def module_file(tmp_path):
    path = tmp_path / "my_net.py"
    path.write_text(MODULE)
    return path


@pytest.mark.parametrize(
    "text, message",
    [
        ("conv(8,3) pool(2) pool(2) pool(2) pool(2) pool(2) flatten fc(10)", "layer 6, maxpool(2), gets a 1x1 input"),
        ("conv(8,3) relu fc(10)", "layer 3, fc(10), gets a 8x26x26 input; put flatten before it"),
        ("conv(8,3) swish flatten fc(10)", "layer 2, swish: unknown layer"),
        ("conv(8,three) flatten fc(10)", "kernel 'three' is not a whole number"),
        ("{dir}/nothing.py:build", "no file"),
        ("{dir}/my_net.py:absent", "has no function absent"),
        ("{dir}/my_net.py:broken", "broken raised RuntimeError: not today"),
        ("{dir}/my_net.py:wrong_output", "gives [2, 3] for 2 images; it must give [batch, 10]"),
    ],
)  # fmt: skip
async def test_a_bad_net_is_refused_at_its_row_in_one_line(sessions_dir, module_file, text, message):
    app = make_app(sessions_dir, None, probe=FixedProbe())
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.pause()
        form = await custom_net(pilot, text.format(dir=module_file.parent))
        assert form.config is None and list(form.errors) == ["widths"]
        assert message in form.errors["widths"] and "\n" not in form.errors["widths"]
        assert message in shown_error(app.screen, "widths").replace("\n", "")


class FormApp(App):
    def __init__(self, initial) -> None:
        super().__init__()
        self.initial = initial

    def compose(self) -> ComposeResult:
        yield ConfigForm(self.initial)


async def test_a_module_from_a_session_is_not_run_until_typed(module_file):
    data = config_to_dict(parse_run_config(epochs=2))
    data["hidden"], data["module"] = [], {"path": str(module_file), "factory": "build", "repr": "Sequential()",
                                          "sha256": hashlib.sha256(module_file.read_bytes()).hexdigest(),
                                          "params": 13_550}  # fmt: skip
    recorded = config_from_dict(data)  # as a session file gives it: never loaded in this process
    marker = module_file.with_suffix(".ran")
    app = FormApp(recorded)
    async with app.run_test(size=(60, 30)) as pilot:
        await pilot.pause(0.3)
        form = app.query_one(ConfigForm)
        assert form.config is None and form.errors == {"widths": NOT_TYPED}
        assert not marker.exists()
        await type_into(pilot, "#f-widths", f"{module_file}:build")
        await pilot.pause(0.3)
        assert marker.exists() and form.errors == {}
        assert form.config.model.module.name == f"{module_file}:build"


async def test_the_app_trains_a_cnn_with_live_charts_and_the_inspector(tiny_data_dir, sessions_dir):
    messages = []
    app = make_app(sessions_dir, tiny_data_dir, probe=FixedProbe())
    async with app.run_test(size=(120, 40), message_hook=messages.append) as pilot:
        await pilot.press("f2")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, ConfigureScreen)
        screen.query_one("#f-arch").value = "cnn"
        await type_into(pilot, "#f-epochs", "2")
        await pilot.pause(0.3)
        rows = inspector_rows(screen)
        assert ("conv1", "(batch, 16, 28, 28)", "416", "(1 x 5 x 5 + 1) x 16 = 416") in rows
        assert ("conv2", "(batch, 32, 12, 12)", "4,640", "(16 x 3 x 3 + 1) x 32 = 4,640") in rows
        assert "total 153,930 parameters" in str(screen.query_one("#inspector-total", Static).render())
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: any(isinstance(m, TrainingEvent) and isinstance(m.event, RunFinished)
                                          for m in messages), timeout=120)  # fmt: skip
        finished = [m for m in messages if isinstance(m, TrainingEvent) and isinstance(m.event, RunFinished)]
        assert finished[0].event.status == "completed"
        assert sum(isinstance(m, TrainingEvent) and isinstance(m.event, EpochMetrics) for m in messages) == 2
        await pilot.pause(0.5)
        live = app.screen
        loss = live.query_one(LossChart)
        gradients = live.query_one(GradientChart)
        assert loss.runs and len(loss.runs[0].step) > 10 and len(loss.runs[0].epoch) == 2
        assert {len(row) for row in gradients.runs[0].layer_norms} == {4}  # conv1, conv2, fc1, fc2
        record = load(finished[0].session_path)
        assert record.config.model.name == "cnn" and record.model.total_params == 153_930
