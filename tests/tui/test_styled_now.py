"""tui.app.styled_now spares each mode's first show a full stylesheet refresh
by setting private Textual state (there is no public way). These tests fail
loudly when Textual renames that state or the refreshes come back; the theme
test in test_app_flows checks that the screens are still styled right."""

from __future__ import annotations

from sessions_fixture import FixedProbe
from textual.screen import Screen

from fmlab.tui.app import make_app

HOW = "Textual changed what tui.app.styled_now relies on: see its docstring"


async def test_textual_still_counts_stylesheet_updates_where_styled_now_looks(sessions_dir):
    app = make_app(sessions_dir, None, probe=FixedProbe())
    async with app.run_test(size=(100, 30)):
        assert isinstance(getattr(app, "_css_update_count", None), int), HOW
        assert getattr(Screen(), "_css_update_count", None) == -1, HOW


async def test_showing_each_mode_first_refreshes_no_stylesheet(sessions_dir):
    app = make_app(sessions_dir, None, probe=FixedProbe())
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        refreshes = []
        refresh_css = app.refresh_css

        def counted(*args, **kwargs) -> None:
            refreshes.append(app.screen)
            refresh_css(*args, **kwargs)

        app.refresh_css = counted
        for key in ("f4", "f3", "f5", "f2"):
            await pilot.press(key)
            await pilot.pause()
        assert refreshes == [], HOW
