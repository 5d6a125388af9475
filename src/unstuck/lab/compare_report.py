"""The report of a comparison: a ranked table, curves, lr curves and the doctor's verdicts.

:func:`summarize` turns the runs of :class:`~unstuck.lab.compare.CompareResults` into one
:class:`OptimizerSummary` per optimizer, ranked; :func:`text_table` prints them for a terminal;
:func:`write_report` writes ``report.md`` (figures beside it as PNG files) and ``report.html``
(self-contained: figures embedded) into the output folder; :func:`notebook_html` is the same
HTML content as a fragment a notebook shows inline (``CompareResults._repr_html_``).

Ranking: optimizers with fewer diverged seeds first; then by mean final validation metric
(higher first), then by mean final validation loss. Means and standard deviations (sample,
``n - 1``; 0 for one seed) are over the seeds that did not diverge. "Steps to target" is the mean
over the seeds that reached the target loss, with their count when not all did.

The doctor (:func:`unstuck.doctor.diagnose`) reads the first seed of each optimizer: its per-epoch
train/validation/test losses and the Monitor's records; its top verdict goes into the report.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from unstuck.lab.compare_runner import resolve_schedule
from unstuck.lab.training import TrainingRun

if TYPE_CHECKING:
    from unstuck.lab.compare import CompareResults

__all__ = [
    "OptimizerSummary",
    "doctor_verdict",
    "markdown_report",
    "notebook_html",
    "notebook_text",
    "summarize",
    "table",
    "text_table",
    "write_report",
]


@dataclass(frozen=True)
class OptimizerSummary:
    """One optimizer over its seeds. ``(mean, std)`` pairs are NaN when every seed diverged."""

    rank: int
    optimizer: str
    lr: float
    seeds: int
    diverged: int
    val_metric: tuple[float, float]
    test_metric: tuple[float, float]
    val_loss: tuple[float, float]
    test_loss: tuple[float, float]
    steps_to_target: float | None
    reached_target: int
    step_time: float
    """Mean seconds per optimizer step over the seeds."""
    verdict: dict[str, Any] | None = None
    """The doctor's top verdict on the first seed (``Verdict.to_dict()``), or None."""

    def as_dict(self) -> dict[str, Any]:
        """Plain data for ``results.json``."""
        return asdict(self)


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    values = [v for v in values if math.isfinite(v)]
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarize(results: CompareResults, *, doctor: bool = True) -> list[OptimizerSummary]:
    """One :class:`OptimizerSummary` per optimizer, ranked (see the module docstring)."""
    rows = []
    for label in results.config["optimizers"]:
        runs = results.runs_of(label)
        if not runs:
            continue
        steps = [results.steps_to_target(run) for run in runs]
        reached = [s for s in steps if s is not None]
        rows.append(OptimizerSummary(
            rank=0,
            optimizer=label,
            lr=runs[0].lr,
            seeds=len(runs),
            diverged=sum(run.diverged for run in runs),
            val_metric=_mean_std([run.final("val_metric") for run in runs]),
            test_metric=_mean_std([run.final("test_metric") for run in runs]),
            val_loss=_mean_std([run.final("val_loss") for run in runs]),
            test_loss=_mean_std([run.final("test_loss") for run in runs]),
            steps_to_target=statistics.fmean(reached) if reached else None,
            reached_target=len(reached),
            step_time=statistics.fmean(run.step_time for run in runs if run.step_loss)
            if any(run.step_loss for run in runs) else math.nan,
            verdict=doctor_verdict(runs[0])[0] if doctor else None,
        ))

    def key(row: OptimizerSummary) -> tuple[float, float, float]:
        metric, loss = row.val_metric[0], row.val_loss[0]
        return (row.diverged, -metric if math.isfinite(metric) else math.inf,
                loss if math.isfinite(loss) else math.inf)

    return [
        OptimizerSummary(**{**asdict(row), "rank": i + 1})
        for i, row in enumerate(sorted(rows, key=key))
    ]


_FAMILIES = {"adam": "adam", "adamw": "adam", "radam": "radam", "ranger": "radam",
             "rangerlars": "radam", "adagrad": "adagrad", "rmsprop": "rmsprop"}
"""The doctor's optimizer family of each optimizer name (the rest: ``"none"``, not adaptive)."""


def doctor_verdict(run: TrainingRun) -> tuple[dict[str, Any] | None, str | None]:
    """The doctor's top verdict on ``run`` (as a dict) and a note when there is none.

    The doctor gets the run's per-epoch losses on the train, validation and test splits after
    epochs 1, 2, ... (a diverged run's training curve ends with the non-finite loss that stopped
    it), the fresh model's training loss (epoch 0) as its ``baseline``, the Monitor's records
    when the run was monitored, and the optimizer's family (adam, radam, adagrad, rmsprop or
    none) read from its name.
    """
    try:
        from unstuck.doctor import diagnose
    except ImportError as error:
        return None, f"the doctor is not available ({error})"
    from unstuck.lab.optimizer_specs import parse_optimizer

    curves = run.curves
    skip = 1 if run.eval_epochs and run.eval_epochs[0] == 0 else 0
    train_loss = curves.get("train_loss", [])[skip:]
    if run.diverged:  # the doctor sees the non-finite loss that stopped the run
        train_loss = [*train_loss, run.step_loss[-1]]
    baseline = curves["train_loss"][0] if skip and math.isfinite(curves["train_loss"][0]) else None
    name = parse_optimizer(run.optimizer).name.removeprefix("torch.")
    steps = [epoch * run.steps_per_epoch for epoch in run.eval_epochs[skip:]]
    val_loss = curves.get("val_loss", [])[skip:]
    history = (run.monitor or {}).get("history")
    try:
        diagnosis = diagnose(
            train_loss,
            val_loss=val_loss or None,
            test_loss=curves.get("test_loss", [])[skip:] or None,
            monitor=history or None,
            baseline=baseline,
            optimizer_family=_FAMILIES.get(name, "none"),
            val_steps=steps[: len(val_loss)] or None,
            test_steps=steps[: len(val_loss)] or None,
        )
    except (TypeError, ValueError) as error:
        return None, f"the doctor could not read this run ({error})"
    return diagnosis.verdicts[0].to_dict(), None


# -- tables ---------------------------------------------------------------------------------------


def _is_fraction(name: str) -> bool:
    return name.lower() in ("accuracy", "acc", "error", "error rate")


def _metric(pair: tuple[float, float], name: str) -> str:
    mean, std = pair
    if not math.isfinite(mean):
        return "-"
    if _is_fraction(name):
        return f"{100 * mean:.2f} ± {100 * std:.2f}%"
    return f"{mean:.4f} ± {std:.4f}"


def _loss(pair: tuple[float, float]) -> str:
    mean, std = pair
    return f"{mean:.4f} ± {std:.4f}" if math.isfinite(mean) else "-"


def _steps(row: OptimizerSummary, target: float | None) -> str:
    if target is None:
        return "n/a"
    if row.steps_to_target is None:
        return "not reached"
    text = f"{row.steps_to_target:.0f}"
    return text if row.reached_target == row.seeds else f"{text} ({row.reached_target}/{row.seeds})"


SLOW_FACTOR = 3.0
"""A run that needs more than this many times the best optimizer's steps to reach the target is
*slow* in the doctor column, even when the doctor found nothing wrong with it."""


def doctor_cell(row: OptimizerSummary, best_steps: float | None, target: float | None) -> str:
    """The doctor column: the doctor's top code, or, where it found nothing wrong (``healthy``,
    ``noise_floor``), what the comparison shows: the target missed on some seeds, or reached
    more than ``SLOW_FACTOR`` times later than the best optimizer."""
    if not row.verdict:
        return "-"
    code = row.verdict["code"]
    if code not in ("healthy", "noise_floor") or target is None:
        return code
    if row.reached_target < row.seeds:
        return f"missed target ({row.seeds - row.reached_target}/{row.seeds} seeds)"
    if best_steps and row.steps_to_target and row.steps_to_target > SLOW_FACTOR * best_steps:
        return f"slow ({row.steps_to_target / best_steps:.1f}x the best steps)"
    return code


def table(
    rows: Sequence[OptimizerSummary], metric_name: str, target: float | None
) -> tuple[list[str], list[list[str]]]:
    """Headers and cells (strings) of the ranked table."""
    reached = [r.steps_to_target for r in rows if r.steps_to_target is not None]
    best_steps = min(reached) if reached else None
    headers = ["#", "optimizer", "lr", f"val {metric_name}", f"test {metric_name}", "val loss",
               "test loss", "steps to target", "step (ms)", "diverged", "doctor"]
    cells = [
        [
            str(row.rank), row.optimizer, f"{row.lr:.3g}",
            _metric(row.val_metric, metric_name), _metric(row.test_metric, metric_name),
            _loss(row.val_loss), _loss(row.test_loss), _steps(row, target),
            f"{1000 * row.step_time:.2f}" if math.isfinite(row.step_time) else "-",
            f"{row.diverged}/{row.seeds}",
            doctor_cell(row, best_steps, target),
        ]
        for row in rows
    ]
    return headers, cells


def text_table(rows: Sequence[OptimizerSummary], metric_name: str, target: float | None) -> str:
    """The ranked table as aligned plain text (for a terminal)."""
    headers, cells = table(rows, metric_name, target)
    widths = [max(len(r[i]) for r in (headers, *cells)) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        return "  ".join(
            c.ljust(w) if i in (1, 10) else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths))
        ).rstrip()

    return "\n".join([line(headers), *(line(r) for r in cells)])


# -- the report -----------------------------------------------------------------------------------


def _setup_lines(results: CompareResults) -> list[str]:
    """The comparison's settings, one plain-text line each."""
    config, task = results.config, results.task
    sizes = task["sizes"]
    runs = results.runs
    steps = runs[0].steps_per_epoch * config["epochs"] if runs else 0
    schedule = config["schedule"]
    resolved = resolve_schedule(schedule, steps) if schedule is not None else "constant"
    lines = [
        f"task: {task['name']}: {task['description']} (train/val/test: {sizes['train']}/"
        f"{sizes['val']}/{sizes['test']} examples)",
        f"runs: {len(config['optimizers'])} optimizers x {len(config['seeds'])} seeds "
        f"(seeds {', '.join(map(str, config['seeds']))}): same initial weights and batch order "
        "per seed",
        f"training: {config['epochs']} epochs of batch {config['batch_size']} ({steps} steps)",
        f"schedule: {schedule} -> {resolved}",
        "learning rates: tuned on the validation split (see below)" if config["tune_lr"]
        else "learning rates: the documented defaults for this task (or the lr= given)",
    ]
    if config["target_loss"] is not None:
        lines.append(
            f"steps to target: optimizer steps until the smoothed mini-batch loss (EMA, beta "
            f"0.9) reaches {config['target_loss']:g}"
        )
    return lines


def _figures(results: CompareResults) -> dict[str, Any]:
    """The figures of the report by file name (empty when matplotlib is missing)."""
    try:
        from unstuck.plots.compare import compare_curves_figure, compare_lr_figure
    except ImportError:  # pragma: no cover - matplotlib is an optional dependency
        return {}
    labels = [label for label in results.config["optimizers"] if results.runs_of(label)]
    runs = {
        label: [
            {"epochs": run.eval_epochs, "diverged": run.diverged, **run.curves}
            for run in results.runs_of(label)
        ]
        for label in labels
    }
    name = results.task["metric_name"]
    try:
        curves = compare_curves_figure(runs, metric_name=name, title=(
            f"{results.task['name']}: mean over {len(results.config['seeds'])} seed(s), "
            "band = min..max"))
        first = {label: results.runs_of(label)[0] for label in labels}
        lr = compare_lr_figure({label: run.lr_curve for label, run in first.items()},
                               steps_per_epoch=next(iter(first.values())).steps_per_epoch,
                               title="learning rate per step (first seed)")
    except ImportError:  # pragma: no cover
        return {}
    return {"curves.png": curves, "lr_curves.png": lr}


def _doctor_lines(results: CompareResults, rows: Sequence[OptimizerSummary]) -> list[tuple]:
    """``(optimizer, verdict dict or None, note)`` per optimizer, in rank order."""
    out = []
    for row in rows:
        verdict, note = (row.verdict, None) if row.verdict else doctor_verdict(
            results.runs_of(row.optimizer)[0])
        out.append((row.optimizer, verdict, note))
    return out


def markdown_report(results: CompareResults, rows: Sequence[OptimizerSummary],
                    figures: Sequence[str] = ("curves.png", "lr_curves.png")) -> str:
    """``report.md``: settings, ranked table, figures (by file name), doctor, tuning."""
    from unstuck.report import markdown_escape as md
    from unstuck.report import markdown_table

    metric, target = results.task["metric_name"], results.config["target_loss"]
    out = [f"# {md(_title(results))}", ""]
    out += [f"- {md(line)}" for line in _setup_lines(results)] + ["", "## Ranking", ""]
    out += [markdown_table(*table(rows, metric, target)), "", md(_ranking_note(results)), ""]
    captions = {"curves.png": "Learning curves", "lr_curves.png": "Learning rates"}
    for name in figures:
        out += [f"![{md(captions.get(name, name))}]({name})", ""]
    out += ["## The doctor (first seed of each optimizer)", ""]
    for optimizer, verdict, note in _doctor_lines(results, rows):
        if verdict is None:
            out.append(f"- **{md(optimizer)}**: {md(note)}")
        else:
            fix = f" Try: {verdict['fixes'][0]}" if verdict.get("fixes") else ""
            out.append(f"- **{md(optimizer)}**: {md(verdict['title'])} (confidence "
                       f"{verdict['confidence']:.1f}). {md(verdict['message'] + fix)}")
    out.append("")
    if results.tuning:
        out += ["## Learning-rate tuning", "", markdown_table(*_tuning_table(results)), ""]
    return "\n".join(out)


def _ranking_note(results: CompareResults) -> str:
    n = len(results.config["seeds"])
    return (
        f"Final values after the last epoch: mean ± standard deviation over {n} seed(s) that did "
        "not diverge. Ranked by diverged seeds, then validation "
        f"{results.task['metric_name']}, then validation loss. Step time: wall time of forward, "
        "backward and optimizer step (one thread), mean over the seeds. Doctor: the code of its "
        "top verdict on the first seed."
    )


def _tuning_table(results: CompareResults) -> tuple[list[str], list[list[str]]]:
    rows = []
    for label, tuning in results.tuning.items():
        grid = ", ".join(
            f"{lr:.3g}: {score:.4f}" if math.isfinite(score) else f"{lr:.3g}: diverged"
            for lr, score in zip(tuning["grid"], tuning["scores"])
        )
        rows.append([label, f"{tuning['chosen']:.3g}", str(tuning["epochs"]), grid])
    return ["optimizer", "chosen lr", "epochs", "lr: final validation loss"], rows


def html_report(results: CompareResults, rows: Sequence[OptimizerSummary],
                figures: dict[str, Any]) -> str:
    """``report.html``: the same content, self-contained (figures embedded, text escaped)."""
    from unstuck.report import html_page

    return html_page(_title(results), _html_body(results, rows, figures))


def notebook_html(results: CompareResults) -> str:
    """The report as an HTML fragment for a notebook (``CompareResults._repr_html_``): the
    settings, the ranked table, the figures embedded as PNG (when matplotlib is there), the
    doctor and the tuning, without the page around them."""
    from unstuck.doctor.report import html_fragment

    rows = results.summary or summarize(results)
    figures = _figures(results) if results.runs else {}
    return html_fragment(_title(results), _html_body(results, rows, figures))


def notebook_text(results: CompareResults) -> str:
    """The title and the ranked table as plain text (IPython's text view of the results)."""
    rows = results.summary or summarize(results)
    metric, target = results.task["metric_name"], results.config["target_loss"]
    return f"{_title(results)}\n{text_table(rows, metric, target)}"


def _title(results: CompareResults) -> str:
    return f"unstuck compare: {results.task['name']}"


def _html_body(results: CompareResults, rows: Sequence[OptimizerSummary],
               figures: dict[str, Any]) -> str:
    from unstuck.report import escape, html_figure, html_table

    metric, target = results.task["metric_name"], results.config["target_loss"]
    body = ["<ul>", *(f"<li>{escape(line)}</li>" for line in _setup_lines(results)), "</ul>",
            "<h2>Ranking</h2>", html_table(*table(rows, metric, target)),
            f"<p>{escape(_ranking_note(results))}</p>"]
    captions = {"curves.png": "Learning curves: mean over the seeds, band = min..max",
                "lr_curves.png": "Learning rate per step (first seed)"}
    body += [html_figure(figure, captions.get(name, name)) for name, figure in figures.items()]
    body.append("<h2>The doctor (first seed of each optimizer)</h2>")
    for optimizer, verdict, note in _doctor_lines(results, rows):
        if verdict is None:
            body.append(f'<div class="verdict"><b>{escape(optimizer)}</b>: {escape(note)}</div>')
            continue
        css = "verdict ok" if verdict["code"] == "healthy" else "verdict"
        fixes = "".join(f"<li>{escape(fix)}</li>" for fix in verdict.get("fixes", ())[:3])
        body.append(
            f'<div class="{css}"><b>{escape(optimizer)}</b>: {escape(verdict["title"])} '
            f"(confidence {verdict['confidence']:.1f})<br>{escape(verdict['message'])}"
            + (f"<ul>{fixes}</ul>" if fixes else "") + "</div>"
        )
    if results.tuning:
        body += ["<h2>Learning-rate tuning</h2>", html_table(*_tuning_table(results))]
    return "\n".join(body) + "\n"


class _Rendered:
    """A figure already rendered to PNG bytes, with the ``savefig`` that
    :func:`unstuck.report.html_figure` calls: each figure is drawn once, for the file and the
    HTML page both."""

    def __init__(self, png: bytes) -> None:
        self.png = png

    def savefig(self, stream: Any, **_: Any) -> None:
        stream.write(self.png)


def write_report(results: CompareResults, folder: Path,
                 rows: Sequence[OptimizerSummary] | None = None) -> list[Path]:
    """Write ``report.md``, ``report.html`` and the figures as PNG into ``folder``; the paths."""
    from unstuck.files import write_bytes, write_text
    from unstuck.report import figure_png

    rows = summarize(results) if rows is None else rows
    figures = {name: _Rendered(figure_png(figure)) for name, figure in _figures(results).items()}
    written = []
    for name, figure in figures.items():
        write_bytes(folder / name, figure.png, overwrite=True)
        written.append(folder / name)
    write_text(folder / "report.md", markdown_report(results, rows, list(figures)) + "\n",
               overwrite=True)
    write_text(folder / "report.html", html_report(results, rows, figures), overwrite=True)
    return [*written, folder / "report.md", folder / "report.html"]
