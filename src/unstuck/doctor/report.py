"""The doctor's report: a plain dict, Markdown, and a self-contained HTML page.

The HTML puts the verdicts first (title, the sentence with the measured numbers, the evidence
table, the fixes), then the figures that show them: loss curves (train, validation, test, the
reference model), gradient norm and update cosine, per-layer update/weight ratios and effective
learning rates (:func:`unstuck.plots.monitor_figure`), and the Hessian spectrum when probed.
Every string that may come from the user's model (parameter and module names, titles) is escaped
by :mod:`unstuck.report`'s pieces; figures are embedded as PNG data URIs, so the file needs
nothing beside it. :func:`diagnosis_fragment` is the same content as a fragment for a notebook
(``Diagnosis._repr_html_``).
"""

from __future__ import annotations

import importlib.util
import math
from typing import TYPE_CHECKING, Any

from unstuck.report import (
    escape,
    html_figure,
    html_page,
    html_table,
    markdown_escape,
    markdown_table,
)

if TYPE_CHECKING:
    from unstuck.doctor.verdicts import Diagnosis, Verdict

__all__ = ["diagnosis_dict", "diagnosis_fragment", "diagnosis_html", "diagnosis_markdown",
           "html_fragment"]


def _json(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return "NaN" if math.isnan(x) else ("Infinity" if x > 0 else "-Infinity")
    if isinstance(x, dict):
        return {str(k): _json(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json(v) for v in x]
    return x


def diagnosis_dict(d: Diagnosis) -> dict[str, Any]:
    """The diagnosis as a JSON-ready dict (non-finite floats as ``"NaN"``/``"Infinity"``)."""
    spectrum = None
    if d.spectrum is not None:
        spectrum = {"lambda_min": d.spectrum.lambda_min, "lambda_max": d.spectrum.lambda_max,
                    "hvps": d.spectrum.hvps}
    return _json({
        "title": d.title,
        "codes": d.codes,
        "verdicts": [v.to_dict() for v in d.verdicts],
        "notes": list(d.notes),
        "baseline": d.baseline,
        "train_loss": d.train_loss,
        "val_loss": d.val_loss,
        "test_loss": d.test_loss,
        "reference_train_loss": d.reference_train_loss,
        "val_steps": d.val_steps,
        "test_steps": d.test_steps,
        "critical_point": d.critical_point,
        "spectrum": spectrum,
        "monitor_records": len(d.history) if d.history is not None else None,
    })


def _show(x: Any) -> str:
    if isinstance(x, float):
        return f"{x:.4g}"
    if isinstance(x, dict):
        return ", ".join(f"{k}: {_show(v)}" for k, v in x.items())
    if isinstance(x, (list, tuple)):
        return ", ".join(_show(v) for v in x)
    return str(x)


def _evidence_rows(v: Verdict) -> list[list[str]]:
    return [[str(k), _show(x)] for k, x in v.evidence.items()]


_TRIAL_HEADER = ["fix", "loss before", "loss after", "helped"]


def _trial_rows(v: Any) -> list[list[str]]:
    """One row per fix tried: its score (validation loss, else training) before and after."""
    return [
        [t["fix"], f"{t['score_before']:.4g}",
         "diverged" if t["diverged"] else f"{t['score_after']:.4g}",
         "yes" if t["helped"] else "no"]
        for t in v.trials
    ]


def diagnosis_markdown(d: Diagnosis) -> str:
    """The verdicts with their evidence and fixes, and the notes, as GitHub Markdown.

    Every string that may come from the user (title, messages, parameter names in the evidence,
    fixes, notes) goes through :func:`unstuck.report.markdown_escape` (tables: inside
    :func:`~unstuck.report.markdown_table`), so it shows literally and keeps the tables whole.
    """
    md = markdown_escape
    parts = [f"# {md(d.title)}", ""]
    for i, v in enumerate(d.verdicts, 1):
        code = str(v.code).replace("`", "")  # a code span cannot escape a backtick
        parts += [f"## {i}. {md(v.title)} (`{code}`, confidence {v.confidence:.1f})", "",
                  md(v.message), ""]
        if v.evidence:
            parts += [markdown_table(["evidence", "value"], _evidence_rows(v)), ""]
        if v.fixes:
            parts += ["**Fixes**", ""] + [f"- {md(fix)}" for fix in v.fixes] + [""]
        if v.trials:
            parts += ["**Fixes tried** (same steps, batches and seed as the run)", "",
                      markdown_table(_TRIAL_HEADER, _trial_rows(v)), ""]
    if d.notes:
        parts += ["## Notes", ""] + [f"- {md(n)}" for n in d.notes] + [""]
    return "\n".join(parts)


def _verdicts_html(d: Diagnosis) -> str:
    out = []
    for i, v in enumerate(d.verdicts, 1):
        css = "verdict ok" if v.code == "healthy" else "verdict"
        out.append(f'<section class="{css}">\n<h2>{i}. {escape(v.title)}</h2>\n')
        out.append(f"<p><code>{escape(v.code)}</code> &middot; confidence "
                   f"{v.confidence:.1f}</p>\n<p>{escape(v.message)}</p>\n")
        if v.evidence:
            out.append(html_table(["evidence", "value"], _evidence_rows(v)))
        if v.fixes:
            out.append("<p><strong>Fixes</strong></p>\n<ul>\n")
            out += [f"<li>{escape(fix)}</li>\n" for fix in v.fixes]
            out.append("</ul>\n")
        if v.trials:
            out.append("<p><strong>Fixes tried</strong> (same steps, batches and seed as the "
                       "run)</p>\n")
            out.append(html_table(_TRIAL_HEADER, _trial_rows(v)))
        out.append("</section>\n")
    if d.notes:
        out.append("<h2>Notes</h2>\n<ul>\n" + "".join(f"<li>{escape(n)}</li>\n" for n in d.notes)
                   + "</ul>\n")
    return "".join(out)


def _figures_html(d: Diagnosis) -> str:
    from unstuck.plots import (
        gradient_figure,
        loss_curves_figure,
        monitor_figure,
        spectrum_figure,
    )

    out = ["<h2>Figures</h2>\n"]
    figure = loss_curves_figure(d.train_loss, d.val_loss, d.test_loss, d.reference_train_loss,
                                val_steps=d.val_steps, test_steps=d.test_steps)
    out.append(html_figure(figure, "Loss curves: training, validation (train-dev), test and the "
                                   "simpler reference model"))
    if d.history:
        out.append(html_figure(gradient_figure(d.history),
                               "Gradient norm and the cosine between consecutive updates"))
        out.append(html_figure(monitor_figure(d.history),
                               "Monitor: loss, gradient norm, per-tensor update/weight ratio, "
                               "effective learning rate"))
    if d.spectrum is not None:
        cp = d.critical_point or {}
        out.append(html_figure(
            spectrum_figure(d.spectrum, cp.get("lambda_min"), cp.get("lambda_max")),
            f"Hessian spectrum at the end of training (verdict: {cp.get('verdict', 'n/a')})"))
    return "".join(out)


def _body_html(d: Diagnosis) -> str:
    """The report's content: verdicts, the Hessian probe, the figures (needs matplotlib)."""
    body = [_verdicts_html(d)]
    if d.critical_point:
        rows = [[k, _show(v)] for k, v in d.critical_point.items()]
        body.append("<h2>Hessian probe</h2>\n" + html_table(["quantity", "value"], rows))
    body.append(_figures_html(d))
    return "".join(body)


def diagnosis_html(d: Diagnosis) -> str:
    """The self-contained HTML report (needs matplotlib for the figures)."""
    return html_page(d.title, _body_html(d))


_FRAGMENT_STYLE = """
.unstuck-report .verdict { border-left: 4px solid #c0392b; padding: 0.2rem 0 0.2rem 0.8rem;
                           margin: 1rem 0; }
.unstuck-report .verdict.ok { border-color: #27ae60; }
.unstuck-report figure { margin: 1.2rem 0; }
.unstuck-report figure img { max-width: 100%; height: auto; border: 1px solid #e5e5e5; }
.unstuck-report figcaption { color: #555; font-size: 0.9rem; }
"""


def html_fragment(title: str, body: str) -> str:
    """``body`` under an escaped ``title`` in one ``<div class="unstuck-report">``: what a
    notebook shows inline. No ``<html>`` and no page-wide CSS (the page's ``body`` rules would
    restyle the whole notebook); the few rules the reports need are scoped to the div."""
    return (f'<div class="unstuck-report">\n<style>{_FRAGMENT_STYLE}</style>\n'
            f"<h2>{escape(title)}</h2>\n{body}</div>\n")


def _has_matplotlib() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


def diagnosis_fragment(d: Diagnosis) -> str:
    """The report as an HTML fragment for a notebook (``Diagnosis._repr_html_``): the same
    verdicts, evidence, fixes tried and figures (PNG data URIs) as :func:`diagnosis_html`,
    without the page around them. Without matplotlib: the text form (``str(d)``) in ``<pre>``."""
    if not _has_matplotlib():
        return f"<pre>{escape(str(d))}</pre>\n"
    return html_fragment(d.title, _body_html(d))
