"""Many optimizers on one task, several seeds, one report: the lab's comparison.

:func:`compare` trains the task once per (optimizer, seed) with :func:`unstuck.lab.training.train`:

- **same start, same batches**: for a seed, every optimizer starts from ``task.make_model(seed)``
  and sees the mini-batches in the same order;
- **learning rates**: an optimizer's ``lr=`` when its spec gives one, else the task's documented
  default for it (``Task.default_lrs``, e.g. :data:`unstuck.lab.tasks.DIGITS_LRS`), else
  :data:`GENERAL_LRS`, else the class default;
- **schedule**: :data:`DEFAULT_SCHEDULE`, a linear warm-up over the first 5% of the steps then a
  cosine decay to 0, written in the text form of :mod:`unstuck.schedules` with placeholders
  ``{steps}`` (optimizer steps of the run), ``{warmup}`` (``max(1, round(0.05 * steps))``) and
  ``{decay}`` (``steps - warmup``) filled in per run;
- **tuning** (``tune_lr=True``): per optimizer, a grid of five learning rates
  ``lr * 10**(k/2)``, ``k = -2..2``, around the lr above, each trained with the first seed for
  ``tune_epochs`` (default: all the epochs, with the same schedule: shorter runs favour too
  large a learning rate, the short-horizon bias of Wu, Ren, Liao & Grosse, ICLR 2018); the lr
  with the lowest final *validation* loss wins (diverged: infinite; ties: the smaller lr). The
  report's test numbers stay unbiased; its validation numbers are then slightly optimistic;
- **recorded** per run (see :class:`~unstuck.lab.training.TrainingRun`): per-epoch train/val/test
  loss and metric, per-step loss and lr, step time, divergence (a non-finite loss stops the run);
  the first seed of each optimizer is also watched by a :class:`~unstuck.diagnose.monitor.Monitor`
  (about 100 samples) for the doctor. "Steps to target" is
  :func:`~unstuck.lab.training.steps_to_target` of the run's mini-batch losses with the task's
  ``target_loss``.

With ``out_dir``, ``results.json`` holds the configuration and every run, rewritten atomically
after each finished run. Calling again with the same folder and configuration **resumes**:
finished runs are read back, not redone. A folder that holds another configuration's results
(or report files without results) is refused with :class:`CompareFolderError` unless
``overwrite=True``. At the end the report is written (:mod:`unstuck.lab.compare_report`): a
ranked table, learning curves with seed bands, lr curves, and the top verdict of the doctor
(:func:`unstuck.doctor.diagnose`) on the first seed of each optimizer.

``jobs > 1`` trains runs in that many worker processes (spawned; torch uses one thread in each),
which rebuild the task by its registered name. With ``jobs=1`` runs train in this process, with
torch's intra-op threads set to 1 meanwhile (fastest for models this small).

Example:
    >>> results = compare("digits-mlp", "sgd, adam", seeds=[0], epochs=2)  # doctest: +SKIP
    >>> [run.optimizer for run in results.runs]                             # doctest: +SKIP
    ['sgd', 'adam']
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from unstuck.lab.compare_runner import (
    RESULTS_FILE,
    RESULTS_FORMAT,
    CompareFolderError,
    Job,
    Runner,
    jsonable,
    open_folder,
    resolve_schedule,
)
from unstuck.lab.tasks import TASKS, Task, get_task
from unstuck.lab.training import TrainingRun, steps_to_target

__all__ = [
    "DEFAULT_OPTIMIZERS",
    "DEFAULT_SCHEDULE",
    "DEFAULT_SEEDS",
    "GENERAL_LRS",
    "TUNE_FACTORS",
    "CompareFolderError",
    "CompareProgress",
    "CompareResults",
    "compare",
    "default_lr",
    "resolve_schedule",
]

DEFAULT_OPTIMIZERS = "sgd, momentum, adagrad, rmsprop, adam, adamw, radam, ranger, lars, rangerlars"
"""The optimizers of ``unstuck compare`` without arguments, in the text form."""
DEFAULT_SCHEDULE = "warmup(cosine({decay}), {warmup})"
"""Linear warm-up over 5% of the steps, then cosine decay to 0 (placeholders filled per run)."""
DEFAULT_SEEDS = (0, 1, 2)
TUNE_FACTORS = (0.1, 10**-0.5, 1.0, 10**0.5, 10.0)
"""Multipliers of the default lr tried by ``tune_lr`` (half a decade apart)."""
MONITOR_SAMPLES = 100
GENERAL_LRS = {
    "sgd": 0.1, "momentum": 0.01, "nesterov": 0.01, "adagrad": 0.01, "rmsprop": 1e-3,
    "adam": 1e-3, "adamw": 1e-3, "radam": 1e-3, "ranger": 1e-3, "lars": 0.1, "rangerlars": 1e-3,
}
"""Learning rates for tasks without their own ``default_lrs``: the optimizers' usual ones."""


@dataclass(frozen=True)
class CompareProgress:
    """What :func:`compare` sends to its ``progress`` callback: after every epoch of every run,
    and once when a run finishes (``finished``) or is read back from the folder (``resumed``).

    ``done`` and ``total`` count epochs over the whole comparison (tuning included); a run that
    diverged or was resumed counts all its epochs as done.
    """

    phase: str  # "tune" or "run"
    optimizer: str
    seed: int
    lr: float
    epoch: int
    epochs: int
    loss: float
    done: int
    total: int
    finished: bool = False
    diverged: bool = False
    resumed: bool = False


@dataclass
class CompareResults:
    """The configuration, the tuning and every run of a comparison (see :func:`compare`).

    Attributes:
        config: what identifies the comparison (task, optimizers, lrs, schedule, seeds, ...).
        task: the task's name, description, metric name and split sizes.
        tuning: optimizer label -> ``{"grid", "scores", "epochs", "chosen"}`` (``tune_lr``).
        runs: every finished main run, in the order of ``config["optimizers"]`` then seeds.
        out_dir: the output folder (None: nothing written).
        files: the files written there.
        summary: one :class:`~unstuck.lab.compare_report.OptimizerSummary` per optimizer, ranked.
    """

    config: dict[str, Any]
    task: dict[str, Any]
    tuning: dict[str, Any] = field(default_factory=dict)
    runs: list[TrainingRun] = field(default_factory=list)
    out_dir: Path | None = None
    files: list[Path] = field(default_factory=list)
    summary: list[Any] = field(default_factory=list)

    def runs_of(self, label: str) -> list[TrainingRun]:
        """The runs of one optimizer, by seed."""
        return sorted((r for r in self.runs if r.optimizer == label), key=lambda r: r.seed)

    def steps_to_target(self, run: TrainingRun) -> int | None:
        """Steps of ``run`` to the target loss (None: not reached or no target)."""
        target = self.config.get("target_loss")
        return None if target is None else steps_to_target(run.step_loss, target)

    def _repr_html_(self) -> str:
        """Jupyter's inline view: the report (settings, ranking, figures, doctor) as a fragment
        (:func:`unstuck.lab.compare_report.notebook_html`)."""
        from unstuck.lab.compare_report import notebook_html

        return notebook_html(self)

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        """IPython's text view: the ranked table, not the dataclass repr with every run."""
        from unstuck.lab.compare_report import notebook_text

        p.text(notebook_text(self))


def default_lr(task: Task, name: str) -> float | None:
    """The documented default lr of optimizer ``name`` on ``task`` (None: the class default).

    ``torch.<name>`` falls back to the lr of the unstuck optimizer of the same name.
    """
    for key in (name, name.removeprefix("torch.")):
        for table in (task.default_lrs, GENERAL_LRS):
            if key in table:
                return float(table[key])
    return None


def _check_schedule(text: str | None) -> None:
    """Parse ``text`` for a 100-step run, so a bad schedule fails before any training."""
    if text is not None:
        from unstuck.schedules import parse

        parse(resolve_schedule(text, 100))  # type: ignore[arg-type]


def compare(
    task: str | Task = "digits-mlp",
    optimizers: str | Sequence[Any] = DEFAULT_OPTIMIZERS,
    *,
    schedule: str | None = DEFAULT_SCHEDULE,
    seeds: Sequence[int] = DEFAULT_SEEDS,
    epochs: int | None = None,
    batch_size: int | None = None,
    tune_lr: bool = False,
    tune_epochs: int | None = None,
    target_loss: float | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    jobs: int = 1,
    progress: Callable[[CompareProgress], None] | None = None,
    report: bool = True,
) -> CompareResults:
    """Train ``task`` with every optimizer and seed; record, resume, report (module docstring).

    Args:
        task: a registered task name (:data:`unstuck.lab.tasks.TASKS`) or a :class:`Task`.
        optimizers: the text form (``"sgd(lr=0.1), adam"``, see
            :mod:`unstuck.lab.optimizer_specs`) or a list of specs or their texts.
        schedule: the lr schedule's text form with placeholders; None: constant lr.
        seeds: initial weights and batch order of each run (at least one, no repeats).
        epochs, batch_size: per run; the task's defaults when None.
        tune_lr: pick each optimizer's lr on the validation split first (module docstring).
        tune_epochs: epochs of each tuning run; ``epochs`` when None.
        target_loss: the loss of "steps to target"; the task's ``target_loss`` when None.
        out_dir: write ``results.json`` and the report there (created if missing).
        overwrite: replace results of another configuration found in ``out_dir``.
        jobs: worker processes (1: in this process).
        progress: called with a :class:`CompareProgress` after every epoch and run.
        report: write the report files at the end (needs ``out_dir``).

    Raises:
        ValueError: a bad argument (the message names it); also a schedule or optimizer text
            that does not parse.
        CompareFolderError: ``out_dir`` holds another comparison and ``overwrite`` is False.
    """
    from unstuck.lab.optimizer_specs import OptimizerSpec, parse_optimizer, parse_optimizers

    if isinstance(task, str):
        task_name, task = task, get_task(task)
    elif isinstance(task, Task):
        task_name = task.name
    else:
        raise TypeError(f"task must be a task name or a Task, got {task!r}")
    if isinstance(optimizers, str):
        specs = parse_optimizers(optimizers)
    else:
        specs = [s if isinstance(s, OptimizerSpec) else parse_optimizer(s) for s in optimizers]
    if not specs:
        raise ValueError("optimizers must name at least one optimizer, got none")
    labels = [s.label for s in specs]
    if len(set(labels)) != len(labels):
        raise ValueError(f"optimizers must not repeat, got {labels}")
    seeds = list(seeds)
    if not seeds or len(set(seeds)) != len(seeds) or not all(isinstance(s, int) for s in seeds):
        raise ValueError(f"seeds must be distinct integers, at least one, got {seeds}")
    epochs = task.epochs if epochs is None else epochs
    batch_size = task.batch_size if batch_size is None else batch_size
    tune_epochs = epochs if tune_epochs is None else tune_epochs
    checks = (("epochs", epochs), ("batch_size", batch_size), ("jobs", jobs),
              ("tune_epochs", tune_epochs))
    for name, value in checks:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    if jobs > 1 and TASKS.get(task_name) is None:
        raise ValueError(
            f"jobs > 1 needs a task registered by name (register_task), got unregistered "
            f"{task_name!r}; use jobs=1"
        )
    target = task.target_loss if target_loss is None else float(target_loss)
    _check_schedule(schedule)
    for spec in specs:  # a bad option fails now, not in the middle of the comparison
        spec.build([torch.zeros(1, requires_grad=True)], default_lr=default_lr(task, spec.name))

    config = jsonable({
        "task": task_name,
        "optimizers": labels,
        "lrs": {s.label: s.lr if s.lr is not None else default_lr(task, s.name) for s in specs},
        "schedule": schedule,
        "seeds": seeds,
        "epochs": epochs,
        "batch_size": batch_size,
        "tune_lr": bool(tune_lr),
        "tune_epochs": tune_epochs if tune_lr else None,
        "target_loss": target,
    })
    results = CompareResults(config=config, task=_task_info(task))
    folder = Path(out_dir) if out_dir is not None else None
    stored = open_folder(folder, config, overwrite) if folder is not None else {}
    results.out_dir = folder
    from unstuck import __version__

    header: dict[str, Any] = {
        "format": RESULTS_FORMAT,
        "config": config,
        "task": results.task,
        "environment": {"unstuck": __version__, "torch": torch.__version__},
        "tuning": {},
    }
    count = {"done": 0, "total": epochs * len(labels) * len(seeds)}
    if tune_lr:
        count["total"] += tune_epochs * len(TUNE_FACTORS) * len(labels)

    def on_epoch(job: Job, epoch: int, loss: float, diverged: bool) -> None:
        count["done"] += 1
        if progress is not None:
            lr = math.nan if job.lr is None else job.lr
            progress(CompareProgress(job.phase, job.label, job.seed, lr, epoch, job.epochs,
                                     loss, count["done"], count["total"], diverged=diverged))

    def on_finished(job: Job, run: TrainingRun, skipped: int, resumed: bool) -> None:
        count["done"] += skipped
        if progress is not None:
            loss = run.epoch_loss[-1] if run.epoch_loss and not run.diverged else math.nan
            progress(CompareProgress(job.phase, job.label, job.seed, run.lr,
                                     len(run.epoch_loss), job.epochs, loss, count["done"],
                                     count["total"], finished=True, diverged=run.diverged,
                                     resumed=resumed))

    runner = Runner(task, task_name, jobs, stored=stored, folder=folder, header=header,
                    on_epoch=on_epoch, on_finished=on_finished)
    lrs: dict[str, float | None] = dict(config["lrs"])
    if tune_lr:
        grids = {
            label: [
                Job("tune", label, _grid_lr(task, spec, factor), seeds[0], tune_epochs,
                    batch_size, schedule)
                for factor in TUNE_FACTORS
            ]
            for label, spec in zip(labels, specs)
        }
        done = runner.run([job for grid in grids.values() for job in grid])
        for label, grid in grids.items():
            scores = [_tune_score(done[job.key]) for job in grid]
            best = min(range(len(grid)), key=lambda i: (scores[i], grid[i].lr))
            results.tuning[label] = {
                "grid": [job.lr for job in grid],
                "scores": scores,
                "epochs": tune_epochs,
                "chosen": grid[best].lr,
            }
            lrs[label] = grid[best].lr
        header["tuning"] = jsonable(results.tuning)

    steps = math.ceil(len(task.train) / batch_size) * epochs
    monitor_every = max(1, steps // MONITOR_SAMPLES)
    main_jobs = [
        Job("run", label, lrs[label], seed, epochs, batch_size, schedule,
            monitor_every if seed == seeds[0] else None)
        for label in labels
        for seed in seeds
    ]
    done = runner.run(main_jobs)
    results.runs = [done[job.key] for job in main_jobs]
    from unstuck.lab.compare_report import summarize

    results.summary = summarize(results)
    if folder is not None:
        runner.save(summary=[row.as_dict() for row in results.summary])
        results.files = [folder / RESULTS_FILE]
        if report:
            from unstuck.lab.compare_report import write_report

            results.files += write_report(results, folder, results.summary)
    return results


def _grid_lr(task: Task, spec: Any, factor: float) -> float:
    base = spec.lr if spec.lr is not None else default_lr(task, spec.name)
    if base is None:
        base = float(spec.build([torch.zeros(1, requires_grad=True)]).param_groups[0]["lr"])
    return float(f"{base * factor:.3g}")


def _tune_score(run: TrainingRun) -> float:
    """Final validation loss of a tuning run; infinite when it diverged."""
    value = run.final("val_loss")
    return value if math.isfinite(value) else math.inf


def _task_info(task: Task) -> dict[str, Any]:
    return {
        "name": task.name,
        "description": task.description,
        "metric_name": task.metric_name,
        "sizes": {"train": len(task.train), "val": len(task.val), "test": len(task.test)},
    }


