"""The footer: the app's own keys first (F1 help, F2-F5 the screens, ^q
quit), then the screen's and the focused widget's, the keys every chart view
shares (smoothing, the axis) last: a narrow terminal cuts those, never the
way to the other screens or to the help (which lists every key)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.widgets import Footer
from textual.widgets._footer import FooterKey

FIRST = ("f1", "f2", "f3", "f4", "f5", "ctrl+q")
LAST = ("toggle_smooth", "toggle_axis")  # tui/screens/chart_keys.py


def _place(binding) -> int:
    if binding.key in FIRST:
        return FIRST.index(binding.key)
    return len(FIRST) + (binding.action in LAST)


class KeyFooter(Footer):
    def __init__(self) -> None:
        super().__init__(compact=True, show_command_palette=False)

    def compose(self) -> ComposeResult:
        if not self._bindings_ready:
            return
        shown: dict[str, tuple] = {}  # one key per action: the first bound
        for _node, binding, enabled, tooltip in self.screen.active_bindings.values():
            if binding.show and binding.action not in shown:
                shown[binding.action] = (binding, enabled, tooltip)
        keys = sorted(shown.values(), key=lambda item: _place(item[0]))
        self.styles.grid_size_columns = len(keys)
        for binding, enabled, tooltip in keys:
            yield FooterKey(
                binding.key,
                self.app.get_key_display(binding),
                binding.description,
                binding.action,
                disabled=not enabled,
                tooltip=tooltip or binding.tooltip,
            ).data_bind(compact=Footer.compact)
