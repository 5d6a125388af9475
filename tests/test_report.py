"""unstuck.report: HTML and Markdown pieces escape what users name."""

from __future__ import annotations

from unstuck.plots import new_figure
from unstuck.report import escape, html_figure, html_page, html_table, markdown_table


def test_html_table_escapes_cells_and_aligns_numbers():
    table = html_table(["name<>", "value"], [["<script>x</script>", 1.5]])
    assert "<script>" not in table
    assert "&lt;script&gt;" in table
    assert '<td class="num">1.5</td>' in table
    assert "<th>name&lt;&gt;</th>" in table


def test_markdown_table_escapes_pipes():
    text = markdown_table(["a", "b"], [["x|y", "2\n3"]])
    assert text.splitlines() == ["| a | b |", "|---|---|", "| x\\|y | 2 3 |"]


def test_html_page_is_self_contained_and_escapes_title():
    page = html_page("a & b", "<p>ok</p>")
    assert page.startswith("<!DOCTYPE html>")
    assert "<title>a &amp; b</title>" in page
    assert "http" not in page  # no external resources


def test_html_figure_embeds_png():
    figure = new_figure(2, 2)
    figure.subplots().plot([0, 1], [1, 0])
    html = html_figure(figure, caption="loss <curve>")
    assert 'src="data:image/png;base64,iVBOR' in html
    assert "loss &lt;curve&gt;" in html
    assert escape("'") == "&#x27;"
