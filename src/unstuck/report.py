"""Building blocks of the reports unstuck writes: self-contained HTML and Markdown.

A report is assembled from small pieces that each return a string: :func:`html_table`,
:func:`html_figure` (a matplotlib figure embedded as a PNG data URI, so the file needs nothing
beside it), :func:`markdown_table`, and :func:`html_page` around them. Every text that may come
from the user (parameter names, module names, task names) goes through :func:`escape` inside these
functions; pass plain text, not HTML, to ``html_table`` cells. The Markdown counterpart is
:func:`markdown_escape`: ``markdown_table`` applies it to every header and cell, and Markdown
reports pass every other user string (titles, labels, messages) through it. Write the result with
:func:`unstuck.files.write_text` (atomic, never clobbers a file silently).

Example:
    >>> print(markdown_table(["optimizer", "loss"], [["Adam", "0.12"], ["SGD", "0.50"]]))
    | optimizer | loss |
    |---|---|
    | Adam | 0.12 |
    | SGD | 0.50 |
"""

from __future__ import annotations

import base64
import html
import io
import re
from collections.abc import Sequence
from typing import Any

__all__ = ["escape", "figure_png", "html_figure", "html_page", "html_table", "markdown_escape",
           "markdown_table"]

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 64rem;
       margin: 2rem auto; padding: 0 1rem; color: #1a1a1a; line-height: 1.45; }
h1, h2, h3 { line-height: 1.2; }
table { border-collapse: collapse; margin: 1rem 0; font-size: 0.92rem; }
th, td { border: 1px solid #ccc; padding: 0.3rem 0.6rem; text-align: left; }
th { background: #f2f2f2; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 1.2rem 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #e5e5e5; }
figcaption { color: #555; font-size: 0.9rem; }
.verdict { border-left: 4px solid #c0392b; padding: 0.2rem 0 0.2rem 0.8rem; margin: 1rem 0; }
.verdict.ok { border-color: #27ae60; }
code { background: #f5f5f5; padding: 0 0.2rem; }
"""


def escape(text: Any) -> str:
    """``str(text)`` with ``& < > " '`` escaped for HTML."""
    return html.escape(str(text), quote=True)


_MD_ALWAYS = frozenset("\\`*[]|~$")
"""Characters backslash-escaped wherever they are: backslash, code spans, emphasis, links and
images, table cells, GFM strikethrough and GitHub's math (``<`` becomes ``&lt;``)."""
_MD_ENTITY = re.compile(r"&(?=#?[0-9A-Za-z]+;)")
_MD_ORDERED = re.compile(r"^(\d{1,9})([.)])")


def markdown_escape(text: Any, *, cell: bool = False) -> str:
    r"""``str(text)`` as Markdown (CommonMark / GitHub) that shows it literally, on one line.

    Line breaks become spaces; ``<`` becomes ``&lt;`` (no raw HTML or autolink, in any renderer);
    backslash, backticks, ``*``, ``[``, ``]``, ``|``, ``~`` and ``$`` are backslash-escaped,
    ``_`` too unless it sits between two letters or digits (where it cannot start emphasis:
    ``val_loss`` stays readable), and ``&`` when it would start an entity (``&amp;``).

    As running text (``cell=False``: a paragraph, list item or heading) surrounding whitespace
    is dropped, ``#`` is escaped and so is a leading ``-``, ``+``, ``>`` or ``1.``, which would
    start a list or a quote; inside a table cell (``cell=True``, what :func:`markdown_table`
    uses) those are plain text and left alone.

    Example:
        >>> print(markdown_escape("a|b *c* <x>\n[d](e)"))
        a\|b \*c\* &lt;x> \[d\](e)
        >>> markdown_escape("val_loss_end", cell=True)
        'val_loss_end'
    """
    s = str(text).replace("\r\n", " ").replace("\r", " ").replace("\n", " ")
    if not cell:
        s = s.strip()
    out = []
    for i, ch in enumerate(s):
        if (ch in _MD_ALWAYS or (ch == "#" and not cell)
                or (ch == "&" and _MD_ENTITY.match(s, i))
                or (ch == "_" and not (0 < i < len(s) - 1 and s[i - 1].isalnum()
                                       and s[i + 1].isalnum()))):
            out.append("\\")
        out.append("&lt;" if ch == "<" else ch)
    s = "".join(out)
    if not cell:
        s = "\\" + s if s[:1] in ("-", "+", ">") else _MD_ORDERED.sub(r"\1\\\2", s)
    return s


def _is_number(cell: Any) -> bool:
    return isinstance(cell, (int, float)) and not isinstance(cell, bool)


def html_table(headers: Sequence[Any], rows: Sequence[Sequence[Any]]) -> str:
    """An HTML ``<table>``: every header and cell escaped; numbers right-aligned.

    Cells are shown with ``str()``; format numbers before passing them to control digits.
    """
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="num">{escape(c)}</td>' if _is_number(c) else f"<td>{escape(c)}</td>"
            for c in row
        )
        + "</tr>\n"
        for row in rows
    )
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}</tbody>\n</table>\n"


def markdown_table(headers: Sequence[Any], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured Markdown table; every header and cell goes through
    :func:`markdown_escape` (``|``, line breaks and inline markup shown literally)."""

    def cell(value: Any) -> str:
        return markdown_escape(value, cell=True)

    lines = [
        "| " + " | ".join(cell(h) for h in headers) + " |",
        "|" + "---|" * len(headers),
        *("| " + " | ".join(cell(c) for c in row) + " |" for row in rows),
    ]
    return "\n".join(lines)


def figure_png(figure: Any, *, dpi: int = 110) -> bytes:
    """A matplotlib figure rendered as PNG bytes."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def html_figure(figure: Any, caption: str = "", *, dpi: int = 110) -> str:
    """A ``<figure>`` with ``figure`` embedded as a base64 PNG and an escaped caption."""
    data = base64.b64encode(figure_png(figure, dpi=dpi)).decode("ascii")
    alt = escape(caption or "figure")
    caption_html = f"<figcaption>{escape(caption)}</figcaption>" if caption else ""
    return f'<figure><img alt="{alt}" src="data:image/png;base64,{data}">{caption_html}</figure>\n'


def html_page(title: str, body: str) -> str:
    """A complete, self-contained HTML document (inline CSS, no external resources).

    ``title`` is escaped; ``body`` is trusted HTML built from the functions of this module.
    """
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
        f"<h1>{escape(title)}</h1>\n{body}</body>\n</html>\n"
    )
