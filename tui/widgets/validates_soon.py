"""A form's field changes coalesced into one validation."""

from __future__ import annotations

from textual.widgets import Checkbox, Input


class ValidatesSoon:
    """Mixed into a form (a widget or screen with ``validate()``): a burst of
    field changes (mounting fills every field, a preset fills several) posts
    one change each, and a single check after them, with its restyles, serves
    them all."""

    _check_pending = False

    def validate(self) -> object:
        raise NotImplementedError

    def validate_soon(self) -> None:
        if not self._check_pending:
            self._check_pending = True
            self.call_after_refresh(self._validate_pending)

    def _validate_pending(self) -> None:
        self._check_pending = False
        self.validate()

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        self.validate_soon()

    def on_checkbox_changed(self, event: Checkbox.Changed) -> None:
        event.stop()
        self.validate_soon()
