"""Readers of training logs, one per format: each returns every numeric series it found.

A reader turns one file (or one TensorBoard run directory) into :class:`Scalars`: a series of
``(step, value)`` pairs per column (CSV), key (JSON) or tag (TensorBoard), in the file's order.
Choosing which series is the training, validation and test loss is the job of
:mod:`unstuck.integrations.logs`, which also finds the file inside a directory.

- :func:`read_csv`: a CSV with a header row (any columns; sparse rows as in Lightning's
  ``metrics.csv``, where each row holds the metrics logged at one moment);
- :func:`read_jsonl`: JSON Lines, one object per line; records written by
  :meth:`unstuck.diagnose.Monitor.to_jsonl` are also kept whole (``Scalars.monitor``);
- :func:`read_huggingface`: the ``log_history`` of a Hugging Face ``trainer_state.json`` (the
  summary entry written at the end of training, an average over the run, is left out);
- :func:`read_tensorboard`: the scalars of TensorBoard event files (needs the ``tensorboard``
  package, imported here only).

Non-finite values (``nan``, ``inf``, ``NaN``, ``Infinity``) are kept: a loss that became NaN is
a finding. An empty cell or a missing key is no value. Every problem raises
:class:`LogReadError` with a one-line message naming the file.

Example::

    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "losses.csv")
    >>> _ = open(path, "w").write("epoch,loss\\n0,2.3\\n1,nan\\n")
    >>> read_csv(path, "csv").series["loss"]
    [(0, 2.3), (1, nan)]
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "FORMATS",
    "STEP_KEYS",
    "LogReadError",
    "Scalars",
    "read_csv",
    "read_huggingface",
    "read_jsonl",
    "read_tensorboard",
]

FORMATS = ("jsonl", "csv", "lightning", "huggingface", "tensorboard")
"""The formats a training log can be read in (``format=`` / ``--format``)."""

STEP_KEYS = ("step", "global_step", "trainer/global_step", "iteration", "iter", "epoch")
"""Columns or keys that give the step of a row, the first present wins; without one a row's
step is its position (0, 1, ...)."""

_MONITOR_KEYS = frozenset({"step", "loss", "grad_norm", "layers"})
"""Keys every record of :meth:`unstuck.diagnose.Monitor.to_jsonl` has."""


class LogReadError(ValueError):
    """A training log that cannot be read. ``str(error)`` is one line: the file, then the problem.

    Example::

        >>> str(LogReadError("runs/metrics.csv", "empty file"))
        'runs/metrics.csv: empty file'
    """

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        self.path = os.fspath(path)
        self.problem = " ".join(str(problem).split())  # one line, whatever the cause said
        super().__init__(f"{self.path}: {self.problem}")


@dataclass
class Scalars:
    """What a reader found in one log.

    Attributes:
        source: the file (or TensorBoard directory) that was read.
        noun: what a series is called in this format (``"column"``, ``"key"``, ``"tag"``), for
            messages.
        series: ``name -> [(step, value), ...]`` for every name that holds numbers, in the
            file's order; a step is an ``int`` unless the log's steps are fractional.
        bad: ``name -> where its first value that is not a number is`` (e.g.
            ``"line 7: 'abc'"``); such a name is only an error when it is chosen as a loss.
        names: every column, key or tag, in the file's order (numeric or not).
        step_key: the column or key the steps were read from (``None``: row positions, or
            TensorBoard's own steps).
        monitor: the Monitor's records, when the file was written by ``Monitor.to_jsonl``.
    """

    source: Path
    noun: str
    series: dict[str, list[tuple[float, float]]]
    bad: dict[str, str] = field(default_factory=dict)
    names: list[str] = field(default_factory=list)
    step_key: str | None = None
    monitor: list[dict[str, Any]] | None = None


def read_csv(path: str | os.PathLike[str], format: str = "csv") -> Scalars:
    """The columns of a CSV file with a header row (comma, tab or semicolon separated).

    Rows may be sparse (Lightning's ``metrics.csv`` writes the step metrics, the epoch metrics
    and the validation metrics on separate rows): an empty cell is no value. ``format`` is only
    used in messages.

    Raises:
        LogReadError: the file is empty, not text, has no header, or a row has more cells than
            the header names.
    """
    path = Path(path)
    text = _read_text(path)
    lines = text.splitlines()
    first = next((line for line in lines if line.strip()), None)
    if first is None:
        raise LogReadError(path, "empty file")
    delimiter = max(",\t;", key=first.count)
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    try:
        header = [cell.strip() for cell in next(reader)]
        while not any(header):
            header = [cell.strip() for cell in next(reader)]
        if all(_is_number(cell) for cell in header):
            raise LogReadError(
                path, f"the first line ({first.strip()[:60]}) holds numbers, not column names: "
                "a header row naming the columns is needed"
            )
        rows: list[tuple[str, dict[str, Any]]] = []
        for cells in reader:
            if not any(cell.strip() for cell in cells):
                continue
            extra = [c for c in cells[len(header):] if c.strip()]
            if extra:
                raise LogReadError(
                    path, f"line {reader.line_num} has {len(cells)} cells but the header names "
                    f"{len(header)} columns"
                )
            rows.append((f"line {reader.line_num}", dict(zip(header, cells))))
    except csv.Error as error:
        raise LogReadError(path, f"line {reader.line_num}: not valid CSV ({error})") from None
    if not rows:
        raise LogReadError(path, f"no rows after the header (columns: {_names(header)})")
    return _from_rows(path, "column", rows, [h for h in header if h])


def read_jsonl(path: str | os.PathLike[str], format: str = "jsonl") -> Scalars:
    """The keys of a JSON Lines file (one JSON object per line).

    A file written by :meth:`unstuck.diagnose.Monitor.to_jsonl` is recognised by its records'
    keys (``step``, ``loss``, ``grad_norm``, ``layers``) and its records are kept whole in
    ``Scalars.monitor`` (decoded as :func:`unstuck.diagnose.read_jsonl` does), for the doctor's
    step rules.

    Raises:
        LogReadError: the file is empty, not text, or a line is not a JSON object.
    """
    path = Path(path)
    rows: list[tuple[str, dict[str, Any]]] = []
    for number, line in enumerate(_read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise LogReadError(path, f"line {number} is not valid JSON ({error.msg})") from None
        if not isinstance(record, dict):
            raise LogReadError(
                path, f"line {number} is a JSON {type(record).__name__}, not an object: each "
                "line must be one record"
            )
        rows.append((f"line {number}", record))
    if not rows:
        raise LogReadError(path, "empty file")
    scalars = _from_rows(path, "key", rows, _keys(record for _, record in rows))
    if all(record.keys() >= _MONITOR_KEYS for _, record in rows):
        from unstuck.diagnose.records import from_json

        scalars.monitor = [from_json(record) for _, record in rows]
    return scalars


def read_huggingface(path: str | os.PathLike[str], format: str = "huggingface") -> Scalars:
    """The ``log_history`` of a Hugging Face ``trainer_state.json``.

    Each entry is a row (``loss``, ``grad_norm``, ``learning_rate`` every ``logging_steps``;
    ``eval_loss`` at each evaluation; ``step`` and ``epoch`` in all). The entry the Trainer adds
    at the end of training (``train_loss``: the average over the whole run, with
    ``train_runtime``) is not a point of the curve and is left out.

    Raises:
        LogReadError: not valid JSON, no ``log_history`` list, or nothing logged in it.
    """
    path = Path(path)
    try:
        state = json.loads(_read_text(path))
    except json.JSONDecodeError as error:
        raise LogReadError(
            path, f"not valid JSON (line {error.lineno}, column {error.colno}: {error.msg})"
        ) from None
    history = state.get("log_history") if isinstance(state, dict) else None
    if not isinstance(history, list):
        raise LogReadError(
            path, "has no 'log_history' list: not a Hugging Face trainer_state.json"
        )
    rows = [(f"log_history[{i}]", entry) for i, entry in enumerate(history)
            if isinstance(entry, dict) and "train_runtime" not in entry]
    if not rows:
        raise LogReadError(
            path, "log_history holds no logged step (was logging_steps larger than the run?)"
        )
    return _from_rows(path, "key", rows, _keys(entry for _, entry in rows))


def read_tensorboard(path: str | os.PathLike[str], format: str = "tensorboard") -> Scalars:
    """The scalars of TensorBoard event files: a run directory (every event file in it, not in
    its subdirectories) or one ``events.out.tfevents.*`` file.

    Read with TensorBoard's ``EventAccumulator`` (every value kept, no sampling). Scalars written
    as tensors (TensorFlow 2's summary API) are not read.

    Raises:
        LogReadError: the ``tensorboard`` package is missing (the message says what to install),
            the files cannot be read, or they hold no scalar.
    """
    path = Path(path)
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    except ImportError:
        raise LogReadError(
            path, "reading TensorBoard event files needs the tensorboard package: "
            "pip install 'unstuck[tensorboard]'"
        ) from None
    try:
        accumulator = EventAccumulator(str(path), size_guidance={"scalars": 0})
        accumulator.Reload()
        tags = list(accumulator.Tags().get("scalars", []))
        series: dict[str, list[tuple[float, float]]] = {
            tag: [(event.step, float(event.value)) for event in accumulator.Scalars(tag)]
            for tag in tags
        }
    except Exception as error:  # TensorBoard's own errors: corrupt records, a vanished file
        raise LogReadError(
            path, f"cannot read the event files ({type(error).__name__}: {error})"
        ) from None
    if not series:
        raise LogReadError(path, "the event files hold no scalar")
    return Scalars(source=path, noun="tag", series=series, names=tags)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise LogReadError(path, "not a text file (not UTF-8)") from None
    except OSError as error:
        raise LogReadError(path, f"cannot read it ({error.strerror or error})") from None


def _from_rows(
    path: Path, noun: str, rows: list[tuple[str, dict[str, Any]]], names: list[str]
) -> Scalars:
    """Series from rows of ``name -> value``; the step of each row from the first of
    :data:`STEP_KEYS` present (carried forward over rows that lack it), else its position."""
    step_key = next((key for key in STEP_KEYS if key in names), None)
    series: dict[str, list[tuple[float, float]]] = {}
    bad: dict[str, str] = {}
    step: float = 0
    for position, (where, row) in enumerate(rows):
        if step_key is None:
            step = position
        else:
            value = _number_or_none(row.get(step_key))
            if value is not None and math.isfinite(value):
                step = int(value) if value.is_integer() else value
        for name, raw in row.items():
            if name == step_key or name in bad:
                continue
            try:
                value = _number(raw)
            except ValueError:
                bad[name] = f"{where}: {_short(raw)}"
                series.pop(name, None)
                continue
            if value is not None:
                series.setdefault(name, []).append((step, value))
    return Scalars(source=path, noun=noun, series=series, bad=bad, names=names,
                   step_key=step_key)


def _number(raw: Any) -> float | None:
    """A cell or JSON value as a float (``None``: empty or missing).

    Raises:
        ValueError: a value that is not a number (text, a bool, a list, an object).
    """
    if raw is None:
        return None
    if isinstance(raw, bool):
        raise ValueError(raw)
    if isinstance(raw, (int, float)):
        return float(raw)
    if isinstance(raw, str):
        text = raw.strip()
        return float(text) if text else None  # float() reads nan, inf, NaN, Infinity, -inf
    raise ValueError(raw)


def _number_or_none(raw: Any) -> float | None:
    try:
        return _number(raw)
    except ValueError:
        return None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _keys(records: Any) -> list[str]:
    """Every key of the records, in order of first appearance."""
    keys: dict[str, None] = {}
    for record in records:
        keys.update(dict.fromkeys(record))
    return list(keys)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _names(names: list[str], limit: int = 12) -> str:
    """``a, b, c`` (the first ``limit`` names, then how many more)."""
    shown = ", ".join(names[:limit]) or "none"
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")
