"""The Monitor's summary as a small HTML table: what a Jupyter notebook shows for a Monitor.

:func:`summary_html` turns :meth:`unstuck.diagnose.Monitor.summary` (a plain dict, some values
nested) into a two-column table, one row per key: numbers to 4 significant digits, nested dicts
as ``key: value`` lists, ``None`` (nothing to sum up) as ``-``. Everything is escaped by
:func:`unstuck.report.html_table`; the result is a fragment (no ``<html>`` page).

Example:
    >>> html = summary_html({"steps": 3, "last_loss": 0.25, "nonfinite_grads": {}}, "Monitor")
    >>> "<td>last_loss</td><td>0.25</td>" in html
    True
"""

from __future__ import annotations

from typing import Any

from unstuck.report import escape, html_table

__all__ = ["summary_html"]


def _cell(value: Any) -> str:
    """One summary value as text."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_cell(v)}" for k, v in value.items()) if value else "none"
    if isinstance(value, (list, tuple)):
        return ", ".join(_cell(v) for v in value)
    return str(value)


def summary_html(summary: dict[str, Any], caption: str = "") -> str:
    """``summary`` (``Monitor.summary()``) as an HTML fragment: an escaped caption line and a
    ``statistic | value`` table."""
    rows = [[str(key), _cell(value)] for key, value in summary.items()]
    head = f"<p><strong>{escape(caption)}</strong></p>\n" if caption else ""
    table = html_table(["statistic", "value"], rows)
    return f'<div class="unstuck-monitor">\n{head}{table}</div>\n'
