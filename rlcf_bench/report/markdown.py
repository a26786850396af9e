"""Markdown (GitHub-flavoured tables): the terminal default and the table for a paper.

Text from the store is escaped so it can neither break a table (``|``, newlines) nor become
raw HTML or an autolink when the markdown is rendered: backslashes, backticks and every ``<``
that could open a tag (``<`` followed by a letter, ``/``, ``!`` or ``?``) are backslash-escaped,
which CommonMark prints literally. A ``<`` before a digit or a space (``p<0.001``) cannot open
one and stays readable in a terminal. Plugin sections are markdown by contract
and are included as written, under an escaped title.
"""

from __future__ import annotations

import re

from .outline import Bullets, Heading, Outline, Paragraph, PluginBlock, Table

_SPECIAL = str.maketrans({"\\": "\\\\", "|": "\\|", "`": "\\`", "\n": " ", "\r": " "})
_TAG_OPEN = re.compile(r"<(?=[A-Za-z/!?])")


def md_escape(text: str) -> str:
    """Escape one line of store-supplied text for a markdown cell, heading or paragraph."""
    return _TAG_OPEN.sub(r"\\<", str(text).translate(_SPECIAL))


def md_unescape(text: str) -> str:
    """Inverse of :func:`md_escape` (newlines excepted), for tools that parse the tables back."""
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text) and text[i + 1] in "\\|<`":
            out.append(text[i + 1])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _table(t: Table) -> list[str]:
    lines = ["| " + " | ".join(md_escape(h) for h in t.headers) + " |",
             "|" + "|".join("---" for _ in t.headers) + "|"]
    lines += ["| " + " | ".join(md_escape(c) for c in row) + " |" for row in t.rows]
    return lines


def render_markdown(outline: Outline) -> str:
    lines: list[str] = []
    for block in outline.blocks:
        if isinstance(block, Heading):
            lines += ["#" * block.level + " " + md_escape(block.text), ""]
        elif isinstance(block, Paragraph):
            lines += [md_escape(block.text), ""]
        elif isinstance(block, Bullets):
            lines += [f"- {md_escape(item)}" for item in block.items] + [""]
        elif isinstance(block, Table):
            lines += _table(block) + [""]
        elif isinstance(block, PluginBlock):
            lines += ["## " + md_escape(block.title), "", block.markdown.rstrip(), ""]
    return "\n".join(lines).rstrip() + "\n"
