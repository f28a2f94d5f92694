"""Screens never import each other's Screen classes: going from one screen to
another is the app's routing (``app.open_compare(records)`` and the like).
What screens share is allowed: their models (live_run, sweep_run) and the
views' base, TrainingView, which is never shown itself."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest
from textual.screen import Screen

from fmlab.tui.screens.training_view import TrainingView

SCREENS = Path(__file__).parents[2] / "tui" / "screens"
SHARED = {TrainingView}


def screens_imported(path: Path) -> list[str]:
    """The Screen classes (and whole screen modules) ``path`` imports from tui/screens."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.startswith("fmlab.tui.screens.")]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("fmlab.tui.screens."):
            module = importlib.import_module(node.module)
            for alias in node.names:
                value = getattr(module, alias.name)
                if isinstance(value, type) and issubclass(value, Screen) and value not in SHARED:
                    found.append(f"{node.module}.{alias.name}")
    return found


@pytest.mark.parametrize("name", [path.name for path in sorted(SCREENS.glob("*.py"))])
def test_a_screen_imports_no_other_screen(name):
    assert screens_imported(SCREENS / name) == []
