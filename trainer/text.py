"""Text that came from a file, made safe to show.

Session ids, file names, environment strings and error messages that quote
them are untrusted: an escape sequence in one would clear or retitle the
terminal, a bidi override would reorder the line around it. ``visible`` turns
every such character into its Python escape (``\\x1b``, ``\\u202e``), so the
CLI and the app show the text literally, on one line. Markup is not this
module's business: the app shows this text through Content/Text objects, which
never parse it.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache

# Drawn as escapes: controls (Cc: C0, DEL and C1, ESC among them), format
# characters (Cf: bidi overrides, zero-width characters), lone surrogates (Cs:
# they cannot be encoded, so printing one fails) and the Unicode line and
# paragraph separators (Zl, Zp), which break a line like a newline does.
HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


@lru_cache(maxsize=4096)
def _shown_as(char: str) -> str:
    if unicodedata.category(char) in HIDDEN_CATEGORIES:
        return repr(char)[1:-1]  # \x1b, \n, \u202e, \ud800
    return char


def visible(text: object) -> str:
    """``text`` with every control, format and separator character written as
    its escape; other text (markup brackets included) is left as it is."""
    text = str(text)
    if text.isprintable():
        return text  # nothing to escape (checked at C speed): the usual case
    return "".join(_shown_as(char) for char in text)


def first_line(error: BaseException, limit: int | None = None) -> str:
    """An error's message cut to its first line (and ``limit`` characters),
    or its type's name when it has none: one line for a user."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:limit]


def has_hidden_characters(text: str) -> bool:
    """Whether ``visible`` would change ``text``."""
    return visible(text) != text


def display_width(text: str) -> int:
    """Terminal cells ``text`` takes: wide East Asian characters count two,
    combining marks none (the text is assumed to have passed ``visible``)."""
    if text.isascii():
        return len(text)
    width = 0
    for char in text:
        if unicodedata.combining(char) or unicodedata.category(char) in ("Mn", "Me"):
            continue
        width += 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1
    return width


def pad(text: str, width: int, right: bool = False) -> str:
    """``text`` padded with spaces to ``width`` cells (on the left if ``right``)."""
    fill = " " * max(width - display_width(text), 0)
    return fill + text if right else text + fill
