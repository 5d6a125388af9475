"""Markdown reports show user strings literally: tables keep their cells, no markup is injected.

Hostile strings (a title, an optimizer label, a parameter name, a message) hold every character
that means something in GitHub Markdown. Checked twice: structurally (cells per row, counted the
way GFM splits a row, and the text read back by undoing the backslash escapes) and, when
markdown-it-py is installed, by rendering the Markdown and reading the HTML.
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from unstuck.doctor.verdicts import Diagnosis, Verdict
from unstuck.lab import tasks
from unstuck.lab.compare_report import OptimizerSummary, markdown_report
from unstuck.report import markdown_escape, markdown_table

HOSTILE = "a|b `c` *d* _e_ <b>x</b> [l](u) \\ ~~s~~ &amp; $m$ 1. x\n- y # z |end"
LEADING = "1. <i>lead</i> | # *x*"
DASH = "- dash\nsecond line"
PARAM = "layer|0.`w`_*x*"


def flat(text: str) -> str:
    """What the reader should see: the text on one line."""
    return text.replace("\n", " ")


def split_row(line: str) -> list[str]:
    """A GFM table row's cells: ``|`` splits unless escaped (a backslash escapes one char)."""
    assert line.startswith("|") and line.endswith("|"), line
    cells, current, i = [], "", 1
    while i < len(line):
        if line[i] == "\\" and i + 1 < len(line):
            current += line[i : i + 2]
            i += 2
            continue
        if line[i] == "|":
            cells.append(current.strip())
            current = ""
        else:
            current += line[i]
        i += 1
    return cells


def unescape(text: str) -> str:
    """CommonMark's backslash escapes (any ASCII punctuation) and ``&lt;`` undone."""
    return re.sub(r"\\([!-/:-@\[-`{-~])|&lt;", lambda m: m.group(1) or "<", text)


def tables(markdown: str) -> list[list[list[str]]]:
    """Every table of ``markdown``: its rows (header, delimiter, body) as cell lists."""
    found, current = [], []
    for line in markdown.splitlines():
        if line.startswith("|"):
            current.append(split_row(line))
        elif current:
            found.append(current)
            current = []
    if current:
        found.append(current)
    return found


def assert_tables_whole(markdown: str, widths: list[int]) -> list[list[list[str]]]:
    found = tables(markdown)
    assert [len(t[0]) for t in found] == widths
    for table in found:
        assert all(len(row) == len(table[0]) for row in table), table
        assert all(set(cell) <= {"-"} for cell in table[1])
    return found


def rendered(markdown: str) -> str:
    markdown_it = pytest.importorskip("markdown_it")
    return markdown_it.MarkdownIt("commonmark").enable(["table", "strikethrough"]).render(markdown)


def assert_renders_literally(markdown: str, texts: list[str], *, strong: int, code: int,
                             images: int = 0) -> None:
    page = rendered(markdown)
    for text in texts:
        assert html.escape(flat(text).strip(), quote=True).replace("&#x27;", "'") in page, text
    for tag in ("<b>", "<i>", "<em>", "<a ", "<s>", "<del>", "<blockquote", "<ol", "<h3"):
        assert tag not in page, tag
    assert page.count("<img") == images
    assert page.count("<strong>") == strong
    assert page.count("<code>") == code
    for row in re.findall(r"<tr>(.*?)</tr>", page, re.S):
        assert row.count("<td") + row.count("<th") in (2, 4, 11), row


# -- the function ---------------------------------------------------------------------------------


def test_markdown_escape_escapes_markup_and_keeps_plain_names():
    assert markdown_escape("a|b") == "a\\|b"
    assert markdown_escape("`x` *y* [z] <w> ~v~ $u$ \\") == (
        "\\`x\\` \\*y\\* \\[z\\] &lt;w> \\~v\\~ \\$u\\$ \\\\")
    assert markdown_escape("_a_ b_c __d") == "\\_a\\_ b_c \\_\\_d"
    assert markdown_escape("&amp; & b") == "\\&amp; & b"
    assert markdown_escape("&lt;<") == "\\&lt;&lt;" and unescape("\\&lt;&lt;") == "&lt;<"
    assert markdown_escape("line\nbreak\r\nhere\rend") == "line break here end"
    assert markdown_escape("  - item") == "\\- item"
    assert markdown_escape("12. x") == "12\\. x" and markdown_escape("3) x") == "3\\) x"
    assert markdown_escape("> quote # h") == "\\> quote \\# h"
    # in a table cell, block markers are plain text: the compare table's "#" and "-" stay
    assert markdown_escape("#", cell=True) == "#" and markdown_escape("-", cell=True) == "-"
    assert markdown_escape("val_loss_end", cell=True) == "val_loss_end"
    assert unescape(markdown_escape(HOSTILE)) == flat(HOSTILE)
    assert unescape(markdown_escape(HOSTILE, cell=True)) == flat(HOSTILE)


def test_markdown_table_keeps_its_cells():
    text = markdown_table([PARAM, "b"], [[HOSTILE, 1.5], ["x", LEADING]])
    (table,) = assert_tables_whole(text, [2])
    assert [unescape(c) for c in table[0]] == [PARAM, "b"]
    assert [unescape(c) for c in table[2]] == [flat(HOSTILE), "1.5"]
    assert [unescape(c) for c in table[3]] == ["x", LEADING]
    assert_renders_literally(text, [HOSTILE, PARAM, LEADING], strong=0, code=0)


# -- the doctor's report --------------------------------------------------------------------------


def hostile_diagnosis() -> Diagnosis:
    verdict = Verdict(
        code="lr_too_small",
        title=f"title {HOSTILE}",
        confidence=0.9,
        message=DASH,
        evidence={PARAM: [PARAM, 1.5], "plain": HOSTILE},
        fixes=(LEADING, HOSTILE),
        trials=({"fix": HOSTILE, "score_before": 1.0, "score_after": 0.5, "diverged": False,
                 "helped": True},),
    )
    return Diagnosis(verdicts=[verdict], notes=[DASH, HOSTILE], title=LEADING)


def test_diagnosis_markdown_tables_are_whole_and_text_literal():
    md = hostile_diagnosis().to_markdown()
    evidence, trials = assert_tables_whole(md, [2, 4])
    assert [unescape(c) for c in evidence[2]] == [PARAM, f"{PARAM}, 1.5"]
    assert [unescape(c) for c in evidence[3]] == ["plain", flat(HOSTILE)]
    assert unescape(trials[2][0]) == flat(HOSTILE)
    lines = md.splitlines()
    assert unescape(lines[0]) == f"# {LEADING}"
    assert unescape(lines[2]) == f"## 1. title {flat(HOSTILE)} (`lr_too_small`, confidence 0.9)"
    assert unescape(lines[4]) == flat(DASH)
    assert f"- {markdown_escape(LEADING)}" in lines and f"- {markdown_escape(DASH)}" in lines
    assert_renders_literally(md, [LEADING, HOSTILE, DASH, PARAM, "title " + HOSTILE],
                             strong=2, code=1)
    # one list item per fix and per note, none nested or split by the hostile text
    page = rendered(md)
    assert page.count("<li>") == 4 and page.count("<ul>") == 2
    assert page.count("<h1>") == 1 and page.count("<h2>") == 2


# -- the compare report ---------------------------------------------------------------------------


def fake_results(label: str) -> SimpleNamespace:
    return SimpleNamespace(
        task={"name": f"task {HOSTILE}", "description": DASH, "metric_name": "acc|`m`",
              "sizes": {"train": 6, "val": 2, "test": 2}},
        config={"optimizers": [label], "seeds": [0], "epochs": 1, "batch_size": 8,
                "schedule": None, "tune_lr": True, "target_loss": 0.5},
        runs=[],
        tuning={label: {"grid": [0.1, 1.0], "scores": [0.4, float("inf")], "chosen": 0.1,
                        "epochs": 1}},
        runs_of=lambda _label: [],
    )


def test_compare_markdown_tables_are_whole_and_text_literal():
    label = f"sgd {HOSTILE}"
    row = OptimizerSummary(
        rank=1, optimizer=label, lr=0.1, seeds=1, diverged=0, val_metric=(0.5, 0.0),
        test_metric=(0.5, 0.0), val_loss=(0.4, 0.0), test_loss=(0.4, 0.0), steps_to_target=3.0,
        reached_target=1, step_time=0.001,
        verdict={"code": "lr_too_small", "title": HOSTILE, "confidence": 0.8, "message": DASH,
                 "fixes": [LEADING]},
    )
    md = markdown_report(fake_results(label), [row], figures=["curves.png"])
    ranking, tuning = assert_tables_whole(md, [11, 4])
    assert unescape(ranking[0][3]) == "val acc|`m`" and unescape(ranking[2][1]) == flat(label)
    assert unescape(tuning[2][0]) == flat(label)
    lines = md.splitlines()
    assert unescape(lines[0]) == f"# unstuck compare: task {flat(HOSTILE)}"
    doctor = next(line for line in lines if line.startswith("- **"))
    assert unescape(doctor) == (f"- **{flat(label)}**: {flat(HOSTILE)} (confidence 0.8). "
                                f"{flat(DASH)} Try: {LEADING}")
    assert "![Learning curves](curves.png)" in lines
    assert_renders_literally(md, [label, HOSTILE, DASH, LEADING, "acc|`m`"], strong=1, code=0,
                             images=1)


def test_compare_report_file_escapes_the_task(tmp_path: Path):
    from unstuck.lab import compare as cmp

    torch.manual_seed(0)
    base = tasks.deep_linear(n=200)
    task = tasks.Task(**{**base.__dict__, "name": "t|*x*", "description": HOSTILE,
                         "epochs": 1, "batch_size": 40})
    cmp.compare(task, "sgd", seeds=[0], epochs=1, out_dir=tmp_path)
    md = (tmp_path / "report.md").read_text()
    assert_tables_whole(md, [11])
    assert unescape(md.splitlines()[0]) == "# unstuck compare: t|*x*"
    assert f"t|*x*: {flat(HOSTILE)}" in unescape(md)
    assert_renders_literally(md, ["t|*x*", HOSTILE], strong=1, code=0, images=md.count("!["))
