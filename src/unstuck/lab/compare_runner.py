"""The machinery of :func:`unstuck.lab.compare.compare`: jobs, worker processes, results folder.

- :class:`Job`: one training run to do (phase ``"tune"`` or ``"run"``, optimizer label, lr,
  seed, ...), picklable, identified by :attr:`Job.key` in ``results.json``.
- :func:`execute`: train one job in this process (torch intra-op threads set to 1 meanwhile).
- :class:`Runner`: runs a list of jobs, reading finished ones back from the folder instead of
  training them again, in this process or in ``jobs`` spawned worker processes (which rebuild
  the task by its registered name and send per-epoch progress through a queue), and rewrites
  ``results.json`` atomically after every finished run.
- :func:`open_folder`: checks an output folder before any work: returns the finished runs of the
  same configuration, or refuses another configuration's folder with
  :class:`CompareFolderError`.

``results.json`` is standard JSON (non-finite numbers are written as the strings ``"NaN"``,
``"Infinity"``, ``"-Infinity"``; :func:`read_results` turns them back into floats)::

    {"format": "unstuck-compare/1", "config": {...}, "task": {...}, "environment": {...},
     "tuning": {label: {"grid", "scores", "epochs", "chosen"}},
     "finished": {job key: run (see unstuck.lab.training.run_to_dict)},
     "summary": [one row per optimizer, ranked (see unstuck.lab.compare_report)]}
"""

from __future__ import annotations

import functools
import json
import math
import os
import queue as queues
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from unstuck.lab import training
from unstuck.lab.tasks import Task, get_task
from unstuck.lab.training import TrainingRun, run_from_dict, run_to_dict

__all__ = [
    "OUTPUT_FILES",
    "RESULTS_FILE",
    "RESULTS_FORMAT",
    "CompareFolderError",
    "Job",
    "Runner",
    "execute",
    "jsonable",
    "open_folder",
    "read_results",
    "resolve_schedule",
]

RESULTS_FORMAT = "unstuck-compare/1"
RESULTS_FILE = "results.json"
OUTPUT_FILES = (RESULTS_FILE, "report.md", "report.html", "curves.png", "lr_curves.png")
WARMUP_FRACTION = 0.05


class CompareFolderError(FileExistsError):
    """The output folder holds results of another comparison (or report files without them)."""


@dataclass(frozen=True)
class Job:
    """One training run to do (picklable: crosses into worker processes)."""

    phase: str  # "tune" or "run"
    label: str
    lr: float | None
    seed: int
    epochs: int
    batch_size: int
    schedule: str | None
    monitor_every: int | None = None

    @property
    def key(self) -> str:
        """The run's key in ``results.json``, e.g. ``"run adam seed=0"``."""
        lr = "" if self.phase == "run" else f" lr={self.lr!r}"
        return f"{self.phase} {self.label} seed={self.seed}{lr}"


def resolve_schedule(text: str | None, steps: int) -> str | None:
    """``text`` with ``{steps}``, ``{warmup}`` and ``{decay}`` filled in for a run of ``steps``.

    ``{warmup}`` is ``max(1, round(0.05 * steps))`` and ``{decay}`` is ``steps - warmup``.

    Example:
        >>> resolve_schedule("warmup(cosine({decay}), {warmup})", 1000)
        'warmup(cosine(950), 50)'
    """
    if text is None:
        return None
    warmup = max(1, round(WARMUP_FRACTION * steps)) if steps > 1 else 0
    values = {"steps": steps, "warmup": warmup, "decay": max(1, steps - warmup)}
    out = text
    for name, value in values.items():
        out = out.replace("{" + name + "}", str(value))
    if "{" in out or "}" in out:
        raise ValueError(
            f"schedule may use only the placeholders {{steps}}, {{warmup}} and {{decay}}, "
            f"got {text!r}"
        )
    return out


def execute(
    task: Task, job: Job, epoch: Callable[[training.EpochReport], None] | None = None
) -> TrainingRun:
    """Train one job on ``task`` in this process (torch threads set to 1 meanwhile)."""
    from unstuck.lab.optimizer_specs import parse_optimizer
    from unstuck.schedules import parse

    spec = parse_optimizer(job.label)
    if job.lr is not None:
        spec = spec.with_options(lr=job.lr)
    steps = math.ceil(len(task.train) / job.batch_size) * job.epochs
    text = resolve_schedule(job.schedule, steps)
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run = training.train(
            task, spec.build, epochs=job.epochs, seed=job.seed, batch_size=job.batch_size,
            schedule=None if text is None else parse(text), label=job.label,
            monitor_every=job.monitor_every, progress=epoch,
        )
    finally:
        torch.set_num_threads(previous)
    return replace(run, optimizer=job.label)


# -- results.json ---------------------------------------------------------------------------------


def jsonable(value: Any) -> Any:
    """``value`` as JSON data: tuples as lists, non-finite floats as "NaN" / "Infinity"."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


_NONFINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def _unjson(value: Any) -> Any:
    if isinstance(value, str):
        return _NONFINITE.get(value, value)
    if isinstance(value, dict):
        return {k: _unjson(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unjson(v) for v in value]
    return value


def read_results(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The data of a ``results.json`` (non-finite numbers back as floats)."""
    with open(path, encoding="utf-8") as stream:
        return _unjson(json.load(stream))


def open_folder(folder: Path, config: dict[str, Any], overwrite: bool) -> dict[str, Any]:
    """Check ``folder`` (creating it if missing) and return its finished runs for ``config``.

    Returns ``{job key: run data}`` of the runs stored for the same configuration (empty for a
    new folder, or when ``overwrite`` replaces another configuration's results).

    Raises:
        CompareFolderError: ``folder`` is a file; or it holds results of another configuration,
            an unreadable ``results.json``, or report files without results, and ``overwrite``
            is False. The message says what differs.
    """
    if folder.exists() and not folder.is_dir():
        raise CompareFolderError(f"out_dir {folder} exists and is not a directory")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / RESULTS_FILE
    if not path.exists():
        ours = [name for name in OUTPUT_FILES if (folder / name).exists()]
        if ours and not overwrite:
            raise CompareFolderError(
                f"out_dir {folder} holds {', '.join(ours)} but no {RESULTS_FILE}; choose "
                "another folder or pass overwrite=True (--force) to replace them"
            )
        return {}
    reason = "is not an unstuck compare result"
    try:
        data = read_results(path)
        stored = data.get("config") if data.get("format") == RESULTS_FORMAT else None
    except (OSError, ValueError, AttributeError) as error:
        stored, data = None, {}
        reason = f"cannot be read ({error})"
    if stored == config:
        return dict(data.get("finished", {}))
    if overwrite:
        return {}
    if not isinstance(stored, dict):
        raise CompareFolderError(
            f"{path} {reason}; choose another folder or pass overwrite=True (--force)"
        )
    differences = [
        f"{key}: {stored.get(key)!r} there, {config.get(key)!r} now"
        for key in sorted(set(config) | set(stored))
        if stored.get(key) != config.get(key)
    ]
    raise CompareFolderError(
        f"out_dir {folder} holds the results of a different comparison ("
        + "; ".join(differences)
        + "); choose another folder, or pass overwrite=True (--force) to replace them"
    )


# -- running --------------------------------------------------------------------------------------


class Runner:
    """Runs jobs, reads stored ones back, saves ``results.json`` after each finished run.

    ``on_epoch(job, epoch, loss, diverged)`` is called after every epoch trained;
    ``on_finished(job, run, skipped_epochs, resumed)`` once per job, where ``skipped_epochs``
    is how many of its epochs sent no ``on_epoch`` (a diverged, resumed or late-reporting run).
    """

    def __init__(
        self,
        task: Task,
        task_name: str,
        jobs: int,
        *,
        stored: dict[str, Any],
        folder: Path | None,
        header: dict[str, Any],
        on_epoch: Callable[[Job, int, float, bool], None],
        on_finished: Callable[[Job, TrainingRun, int, bool], None],
    ) -> None:
        self.task, self.task_name, self.jobs = task, task_name, jobs
        self.stored, self.folder, self.header = stored, folder, header
        self.on_epoch, self.on_finished = on_epoch, on_finished
        self.finished: dict[str, Any] = {}

    def run(self, jobs: list[Job]) -> dict[str, TrainingRun]:
        """Every job's run (stored ones read back), by :attr:`Job.key`."""
        out: dict[str, TrainingRun] = {}
        todo = []
        for job in jobs:
            if job.key in self.stored:
                self.finished[job.key] = jsonable(self.stored[job.key])
                out[job.key] = run = run_from_dict(self.stored[job.key])
                self.on_finished(job, run, job.epochs, True)
            else:
                todo.append(job)
        if self.jobs > 1 and len(todo) > 1:
            finished = self._in_processes(todo)
        else:
            finished = (self._here(job) for job in todo)
        for job, run, reported in finished:
            out[job.key] = run
            self.finished[job.key] = jsonable(run_to_dict(run))
            self.save()
            self.on_finished(job, run, job.epochs - reported, False)
        return out

    def _here(self, job: Job) -> tuple[Job, TrainingRun, int]:
        reported = 0

        def epoch(report: training.EpochReport) -> None:
            nonlocal reported
            reported += 1
            self.on_epoch(job, report.epoch, report.train_loss, report.diverged)

        return job, execute(self.task, job, epoch), reported

    def _in_processes(self, todo: list[Job]) -> Iterator[tuple[Job, TrainingRun, int]]:
        import multiprocessing
        from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

        context = multiprocessing.get_context("spawn")  # fork + OpenMP threads can deadlock
        events = context.Queue()
        by_key = {job.key: job for job in todo}
        reported = dict.fromkeys(by_key, 0)
        done: set[str] = set()

        def drain() -> None:
            while True:
                try:
                    key, epoch, loss, diverged = events.get_nowait()
                except queues.Empty:
                    return
                if key not in done:  # a late event of a finished run was counted as skipped
                    reported[key] += 1
                    self.on_epoch(by_key[key], epoch, loss, diverged)

        pool = ProcessPoolExecutor(
            max_workers=min(self.jobs, len(todo)),
            mp_context=context,
            initializer=_start_worker,
            initargs=(events,),
        )
        try:
            futures = {pool.submit(_work, self.task_name, job): job for job in todo}
            pending = set(futures)
            while pending:
                finished, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
                drain()
                for future in finished:
                    job = futures[future]
                    run = run_from_dict(future.result())
                    done.add(job.key)
                    yield job, run, reported[job.key]
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def save(self, **extra: Any) -> None:
        """Write ``results.json`` (header, finished runs, ``extra``) atomically."""
        if self.folder is None:
            return
        from unstuck.files import write_text

        data = {**self.header, "finished": self.finished, **jsonable(extra)}
        text = json.dumps(data, allow_nan=False, separators=(",", ":"))
        write_text(self.folder / RESULTS_FILE, text + "\n", overwrite=True)


# -- in a worker process --------------------------------------------------------------------------

_events: Any = None  # the worker's end of the progress queue (set once per worker process)


def _start_worker(events: Any) -> None:
    global _events
    _events = events
    torch.set_num_threads(1)


@functools.lru_cache(maxsize=4)
def _worker_task(name: str) -> Task:
    return get_task(name)


def _work(task_name: str, job: Job) -> dict[str, Any]:
    def epoch(report: training.EpochReport) -> None:
        if _events is not None:
            _events.put((job.key, report.epoch, report.train_loss, report.diverged))

    return run_to_dict(execute(_worker_task(task_name), job, epoch))
