"""What the app keeps between launches: the theme, the chart options and the
last run form, as one JSON file in the user's config folder (platformdirs:
``~/.config/fmlab/settings.json`` on Linux).

The file is read like any file the app did not just write: a regular file of
at most MAX_BYTES, each value checked, a bad one (or a bad file) falling back
to the default with one warning line, never a crash. It is written
atomically whenever a setting changes; a failed write is one warning too.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from fmlab.trainer.config import ConfigError, RunConfig
from fmlab.trainer.fields import config_from_dict, config_to_dict

MAX_BYTES = 256 * 1024
X_AXES = ("step", "epoch")
GRADIENT_VIEWS = ("global", "mean", "layers")
# TensorBoard-style smoothing weights that [ and ] step through
SMOOTHING_WEIGHTS = (0.0, 0.3, 0.6, 0.8, 0.9, 0.95, 0.99)


def settings_path() -> Path:
    """Where the settings live: the user's config folder for fmlab."""
    from platformdirs import user_config_path

    return user_config_path("fmlab") / "settings.json"


@dataclass(frozen=True)
class ChartSettings:
    """How the charts draw, the same in every view."""

    smooth: bool = False  # draw an EMA over the raw curve
    smoothing: float = 0.6  # its weight, one of SMOOTHING_WEIGHTS
    x_axis: str = "step"  # of the live view (a sweep and a comparison start by epoch)
    loss_log: bool = False
    gradient_log: bool = False
    gradient_view: str = "global"


@dataclass(frozen=True)
class Settings:
    theme: str = "textual-dark"
    charts: ChartSettings = field(default_factory=ChartSettings)
    run: dict[str, Any] | None = None  # the last run form started, as a session file's config

    def run_config(self) -> RunConfig | None:
        if self.run is None:
            return None
        try:
            return config_from_dict(self.run)
        except ConfigError:
            return None


CHECKS = {
    "smooth": lambda v: isinstance(v, bool),
    "smoothing": lambda v: v in SMOOTHING_WEIGHTS,
    "x_axis": lambda v: v in X_AXES,
    "loss_log": lambda v: isinstance(v, bool),
    "gradient_log": lambda v: isinstance(v, bool),
    "gradient_view": lambda v: v in GRADIENT_VIEWS,
}


class SettingsFile:
    """The settings and the file they are kept in. ``warnings`` collects one
    line per problem, for the app to show."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path if path is not None else settings_path()
        self.warnings: list[str] = []  # problems reading the file, for the app to show
        self.on_warning: Callable[[str], None] | None = None  # hears a failed save, once per reason
        self.told: set[str] = set()
        self.current = self._read()

    def _read(self) -> Settings:
        from fmlab.trainer.regular_files import NotRegularFile, read_regular_file
        from fmlab.trainer.text import visible

        try:
            raw = read_regular_file(self.path, MAX_BYTES)
        except FileNotFoundError:
            return Settings()
        except (NotRegularFile, OSError, ValueError) as exc:
            self.warnings.append(
                f"settings not read from {visible(self.path)}: {visible(exc)}; using defaults"
            )
            return Settings()
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            self.warnings.append(f"settings not read from {visible(self.path)}: not JSON; using defaults")
            return Settings()
        return self._decode(data if isinstance(data, dict) else {})

    def _decode(self, data: dict) -> Settings:
        settings, bad = Settings(), []
        theme = data.get("theme", settings.theme)
        if isinstance(theme, str) and 0 < len(theme) <= 64:  # the app checks it names a theme it has
            settings = replace(settings, theme=theme)
        else:
            bad.append("theme")
        charts = data.get("charts", {})
        chart_values = {}
        for item in fields(ChartSettings):
            if isinstance(charts, dict) and item.name in charts:
                if CHECKS[item.name](charts[item.name]):
                    chart_values[item.name] = charts[item.name]
                else:
                    bad.append(f"charts.{item.name}")
        settings = replace(settings, charts=replace(settings.charts, **chart_values))
        run = data.get("run")
        if run is not None:
            try:
                config_from_dict(run)
                settings = replace(settings, run=run)
            except (ConfigError, TypeError, KeyError):
                bad.append("run")
        if bad:
            self.warnings.append(f"settings {', '.join(bad)} in {self.path} were not valid; using defaults")
        return settings

    def update(self, **changes: Any) -> None:
        """Change settings and write the file (``charts`` takes a dict of chart changes)."""
        charts = changes.pop("charts", None)
        settings = replace(self.current, **changes)
        if charts:
            settings = replace(settings, charts=replace(settings.charts, **charts))
        if settings == self.current:
            return
        self.current = settings
        self.save()

    def remember_run(self, config: RunConfig) -> None:
        self.update(run=config_to_dict(config))

    def save(self) -> None:
        from fmlab.trainer.atomic import write_atomic

        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(self.path, json.dumps(asdict(self.current), indent=1) + "\n")
        except OSError as exc:
            problem = f"settings not saved to {self.path}: {exc.strerror or exc}"
            if problem not in self.told and self.on_warning is not None:
                self.told.add(problem)
                self.on_warning(problem)
