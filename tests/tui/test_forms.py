"""The app's forms derive from the fields table: a row per field with the
table's label and default, and every refused field flagged at its own row."""

from __future__ import annotations

from pilot_helpers import type_into
from sessions_fixture import FixedProbe
from textual.app import App, ComposeResult
from textual.widgets import Input, Label, Static

from fmlab.trainer.config import RunConfig
from fmlab.trainer.fields import FIELDS, RUN_FIELDS, parse_run_config
from fmlab.tui.app import make_app
from fmlab.tui.screens.sweep import FORM_FIELDS, SweepScreen, form_label
from fmlab.tui.widgets.config_form import ConfigForm


def row_label(screen, selector: str) -> str:
    return str(screen.query_one(selector).parent.query_one(Label).render())


def shown_error(screen, name: str) -> str:
    error = screen.query_one(f"#error-{name}", Static)
    return str(error.render()) if error.display else ""


class FormApp(App):
    def __init__(self, initial: RunConfig) -> None:
        super().__init__()
        self.initial = initial

    def compose(self) -> ComposeResult:
        yield ConfigForm(self.initial)


async def test_the_run_form_has_a_row_per_field_with_its_label(sessions_dir):
    app = make_app(sessions_dir, None, probe=FixedProbe())
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.pause()
        screen = app.screen
        for field in RUN_FIELDS:
            assert row_label(screen, f"#f-{field.name}") == field.label
        assert screen.query_one(ConfigForm).config == RunConfig()


async def test_the_run_form_starts_from_any_config_and_gives_it_back():
    initial = parse_run_config(arch="64,32", lr=0.02, epochs=3, optimizer="adam", seed=5, shuffle=True,
                               device="cpu", threshold=0.5, patience=2, stop_on_converge=True,
                               full_steps=7, step_every=3)  # fmt: skip
    app = FormApp(initial)
    async with app.run_test(size=(60, 40)) as pilot:
        await pilot.pause()
        form = app.query_one(ConfigForm)
        assert form.errors == {} and form.config == initial


async def test_the_run_form_flags_every_refused_field_at_its_row(sessions_dir):
    app = make_app(sessions_dir, None, probe=FixedProbe())
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.pause()
        screen = app.screen
        form = screen.query_one(ConfigForm)
        screen.query_one("#f-optimizer").value = "adam"
        await type_into(pilot, "#f-momentum", "0.9")
        await type_into(pilot, "#f-lr", "x")
        await type_into(pilot, "#f-epochs", "0")
        await type_into(pilot, "#f-step_every", "0")
        await pilot.pause()
        assert list(form.errors) == ["lr", "epochs", "momentum", "step_every"]
        assert "'x' is not a number" in shown_error(screen, "lr")
        assert "0 is out of range" in shown_error(screen, "epochs")
        assert "momentum applies to sgd only" in shown_error(screen, "momentum")
        assert "0 is out of range" in shown_error(screen, "step_every")
        assert not shown_error(screen, "batch_size") and form.config is None

        # mending one field clears its refusal only; switching to sgd clears the rule's
        await type_into(pilot, "#f-lr", "0.01")
        screen.query_one("#f-optimizer").value = "sgd"
        await pilot.pause()
        assert list(form.errors) == ["epochs", "step_every"]


async def test_the_sweep_form_takes_its_rows_from_the_table_and_flags_each_refusal(sessions_dir):
    app = make_app(sessions_dir, None, probe=FixedProbe())
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("f5")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, SweepScreen)
        for name in FORM_FIELDS:
            field = FIELDS[name]
            assert row_label(screen, f"#sw-{name}") == form_label(name)
            assert screen.query_one(f"#sw-{name}").value == field.text(field.default)
        assert [form_label(name) for name in ("lr", "arch")] == ["lrs", "archs"]  # several values each
        await type_into(pilot, "#sw-lr", "0.1,x")
        await type_into(pilot, "#sw-arch", "base;0")
        await type_into(pilot, "#sw-epochs", "0")
        await pilot.pause()
        assert list(screen.errors) == ["arch", "lr", "epochs"] and screen.plan is None
        assert "at least 1" in shown_error(screen, "arch")
        assert "'x' is not a number" in shown_error(screen, "lr")
        assert "out of range" in shown_error(screen, "epochs")
        await type_into(pilot, "#sw-lr", "0.1,0.01")
        await pilot.pause()
        assert screen.query_one("#sw-lr", Input).value == "0.1,0.01" and "lr" not in screen.errors
