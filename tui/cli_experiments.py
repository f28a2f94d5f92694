"""Experiment commands (sweep, grads, reproduce), added to the main CLI."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the experiment commands to ``app``."""
