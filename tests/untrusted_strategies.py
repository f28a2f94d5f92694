"""Hypothesis strategies for text a hostile or damaged sessions folder may
hold: markup, terminal escapes, bidi and zero-width characters, unicode."""

from __future__ import annotations

from hypothesis import strategies as st

PIECES = [
    "[bold]", "[/bold]", "[/]", "[b red]", "[link=https://example.com]", "[@click=app.quit]", "[",
    "]", "\x1b[2J", "\x1b]8;;x\x07", "\x1b]0;title\x07", "\x9b31m", "\u202e", "\u200b", "\u2028",
    "\x00", "\n", "\r", "\t", "$x^{$", "\\", "*", "?", "/", ".", "-", " ", "中文", "é", "e\u0301", "\ud800",
]  # fmt: skip

untrusted_text = st.lists(st.sampled_from(PIECES) | st.text(max_size=5), max_size=6).map("".join)

# ids a file name can hold, markup and unicode included: half of the ids drawn,
# so that what is shown (not only what is refused) is tested as often
MARKUP = [
    "[bold]",
    "[b red]",
    "[link=evil]",
    "[@click=app.quit]",
    "[",
    "]",
    "$x^{$",
    "中文",
    "e\u0301",
    "=",
    " ",
]
words = st.text(st.characters(categories=["L", "N"]), min_size=1, max_size=5)
markup_ids = st.lists(st.sampled_from(MARKUP) | words, min_size=1, max_size=6).map("".join)
session_ids = untrusted_text | markup_ids


def as_file_name(text: str) -> str:
    """``text`` made into a name the filesystem takes (no slash, NUL or lone
    surrogate, not too long), ending in .json."""
    text = "".join(c for c in text if not 0xD800 <= ord(c) <= 0xDFFF)
    text = text.replace("/", "∕").replace("\x00", "0")
    while len(text.encode()) > 200:
        text = text[:-1]
    return f"{text}.json"


file_names = untrusted_text.map(as_file_name)
