"""Text from files, shown literally in the app.

A plain ``str`` handed to a Textual widget (a Static, a DataTable cell, a
notification) is parsed as markup: an id holding ``[/bold]`` fails to parse and
closes the app, ``[link=...]`` becomes a link. Text that came from a file or a
file name goes through these instead: escaped by fmlab.trainer.text.visible
(control characters become ``\\x1b``) and wrapped so nothing parses it.
"""

from __future__ import annotations

from rich.text import Text
from textual.content import Content
from textual.dom import DOMNode

from fmlab.trainer.text import visible


def literal(text: object, style: str = "") -> Content:
    """``text`` as Content that is shown as written."""
    return Content.styled(visible(text), style) if style else Content(visible(text))


def with_values(template: str, **values: object) -> Content:
    """``template`` is our markup; ``$name`` in it is replaced by ``values[name]``,
    shown literally (Textual substitutes variables after parsing the markup)."""
    return Content.from_markup(template, **{name: visible(value) for name, value in values.items()})


def cell(text: object, style: str = "") -> Text:
    """A DataTable cell shown as written (a ``str`` cell would be parsed as markup)."""
    return Text(visible(text), style=style, end="")


def notify_literally(node: DOMNode, message: object, **options) -> None:
    """``node.notify`` for a message that may quote a file: escaped, not parsed."""
    options.setdefault("markup", False)
    node.notify(visible(message), **options)
