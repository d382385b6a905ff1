"""Text from users and files inside the GUI's markdown: shown as the characters it is, never as
markup. viser renders markdown with raw HTML allowed, so a file named ``<img onerror=...>.npz``
would otherwise run script in the tab."""

from __future__ import annotations

import html
import re

_MARKDOWN_PUNCTUATION = re.compile(r"([\\`*_{}\[\]()#+\-.!|~<>])")


def literal(text: object) -> str:
    """``text`` for a markdown string: HTML-escaped (no tag, no entity survives) and with every
    markdown punctuation character backslash-escaped (no link, emphasis or code span)."""
    return _MARKDOWN_PUNCTUATION.sub(r"\\\1", html.escape(str(text), quote=True))
