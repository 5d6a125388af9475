"""Diagnose a training from the log files it already wrote.

:func:`read_log` reads one of the logs users have, finds the training, validation and test
losses in it and returns a :class:`TrainingLog`, whose :meth:`~TrainingLog.diagnose` runs
:func:`unstuck.doctor.diagnose` on them:

- ``jsonl``: JSON Lines; the records of :meth:`unstuck.diagnose.Monitor.to_jsonl` are also
  passed to the doctor as the Monitor history, so its step rules run (oscillation, exploding
  gradients, warm-up, ...);
- ``csv``: any CSV of per-step or per-epoch losses with a header row;
- ``lightning``: Lightning's ``CSVLogger`` ``metrics.csv`` (or a ``version_N/`` directory
  holding it, or ``lightning_logs/``: the latest version);
- ``huggingface``: a Hugging Face ``trainer_state.json`` (or a ``checkpoint-N/`` directory, or
  the ``output_dir`` holding them: its own ``trainer_state.json``, else the latest checkpoint);
- ``tensorboard``: a directory of TensorBoard event files (or one event file, or a directory
  whose subdirectories hold runs: the most recently written one). Needs ``tensorboard``.

The format is told from the path (``format=`` forces one). The loss columns, keys or tags are
guessed from their names (:func:`guess_key`) unless named (``train_key=``, ...); which ones were
used is in :attr:`TrainingLog.keys` and :meth:`TrainingLog.describe`. A training loss logged
per step is preferred over one logged per epoch. Non-finite values are kept: they are a finding.
A log that cannot be read raises :class:`LogReadError`, whose message is one line naming the file.

Example::

    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "losses.csv")
    >>> rows = ["epoch,train_loss,val_loss", "0,2.3,2.3", "1,0.9,1.0", "2,0.3,0.7",
    ...         "3,0.08,0.9", "4,0.02,1.2", "5,0.01,1.5"]
    >>> _ = open(path, "w").write("\\n".join(rows))
    >>> log = read_log(path)
    >>> log.format, log.keys
    ('csv', {'train': 'train_loss', 'val': 'val_loss', 'test': None})
    >>> log.diagnose().codes
    ['overfitting']
"""

from __future__ import annotations

import bisect
import logging
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unstuck.integrations.log_formats import (
    FORMATS,
    LogReadError,
    Scalars,
    _names,
    read_csv,
    read_huggingface,
    read_jsonl,
    read_tensorboard,
)

__all__ = ["FORMATS", "ROLES", "LogReadError", "TrainingLog", "guess_key", "locate", "read_log"]

logger = logging.getLogger(__name__)

ROLES = ("train", "val", "test")
"""The losses a log is read for: training, validation (held out from the training data) and
test."""

_READERS = {
    "jsonl": read_jsonl,
    "csv": read_csv,
    "lightning": read_csv,
    "huggingface": read_huggingface,
    "tensorboard": read_tensorboard,
}

_ROLE_WORDS = {
    "train": frozenset({"train", "training", "trn"}),
    "val": frozenset({"val", "valid", "validation", "eval", "evaluation", "dev", "holdout"}),
    "test": frozenset({"test", "testing"}),
}
_NOT_THE_LOSS = frozenset({"best", "min", "max", "std", "var", "scale", "scaler", "weight",
                           "coef", "ratio", "runtime", "lr", "delta", "diff"})
"""Words of a name that make it something about a loss, not the loss itself
(``best_val_loss``, ``loss_scale``)."""

_OPTION = {"train": "train_key= (--train-key)", "val": "val_key= (--val-key)",
           "test": "test_key= (--test-key)"}
_LOSS_NAME = {"train": "training loss", "val": "validation loss", "test": "test loss"}


@dataclass
class TrainingLog:
    """The losses read from one training log, ready for the doctor.

    Steps are as the log has them (a step, or an epoch where the log has no step column; a
    row's position where it has neither), so they may start anywhere and skip.

    Attributes:
        path: the file (or TensorBoard directory) that was read.
        format: the format it was read as (one of :data:`FORMATS`).
        train_loss, train_steps: the training loss and the step of each value.
        val_loss, val_steps: the validation loss and its steps (``None`` when not found).
        test_loss, test_steps: the test loss and its steps (``None`` when not found).
        monitor: the records of a :class:`~unstuck.diagnose.Monitor` (``Monitor.to_jsonl``),
            else ``None``.
        keys: the column, key or tag used per role (``"train"``, ``"val"``, ``"test"``;
            ``None``: not found).
        guessed: the roles whose key was guessed rather than named.
        noun: what a key is called in this format (``"column"``, ``"key"``, ``"tag"``).
        names: every column, key or tag the log holds.

    Example::

        log = read_log("lightning_logs/version_0")
        print(log.describe())
        log.diagnose().save_html("doctor.html")
    """

    path: Path
    format: str
    train_loss: list[float]
    train_steps: list[float]
    val_loss: list[float] | None = None
    val_steps: list[float] | None = None
    test_loss: list[float] | None = None
    test_steps: list[float] | None = None
    monitor: list[dict[str, Any]] | None = None
    keys: dict[str, str | None] = field(default_factory=dict)
    guessed: frozenset[str] = frozenset()
    noun: str = "column"
    names: list[str] = field(default_factory=list)

    def describe(self, *, command_line: bool = False) -> str:
        """What was read, one line per loss: the file, the format, each key and its values
        (``command_line``: a missing loss hints at ``--test-key`` rather than ``test_key=``).

        Example output::

            read lightning_logs/version_0/metrics.csv as lightning
              training loss:   column 'train_loss_step' (12 values, steps 0-11; guessed)
              validation loss: column 'val_loss' (3 values, steps 3-11; guessed)
              test loss:       none (no column looks like one; name one with test_key=)
        """
        lines = [f"read {self.path} as {self.format}"]
        width = max(len(name) for name in _LOSS_NAME.values()) + 1
        for role in ROLES:
            key = self.keys.get(role)
            label = f"{_LOSS_NAME[role]}:".ljust(width)
            if key is None:
                option = f"--{role}-key" if command_line else f"{role}_key="
                lines.append(f"  {label} none (no {self.noun} looks like one; name one with "
                             f"{option})")
                continue
            values, steps = self.curve(role)
            if len(steps) > 1:
                span = f", steps {_step_text(steps[0])}-{_step_text(steps[-1])}"
            else:
                span = f", step {_step_text(steps[0])}" if steps else ""
            how = "guessed" if role in self.guessed else "named"
            lines.append(f"  {label} {self.noun} {key!r} ({len(values)} value"
                         f"{'s' if len(values) != 1 else ''}{span}; {how})")
        if self.monitor is not None:
            lines.append(f"  Monitor records: {len(self.monitor)} (the step rules run)")
        return "\n".join(lines)

    def curve(self, role: str) -> tuple[list[float], list[float]]:
        """``(values, steps)`` of ``role`` (``"train"``, ``"val"`` or ``"test"``; empty lists
        when that loss was not found)."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
        values = getattr(self, f"{role}_loss")
        steps = getattr(self, f"{role}_steps")
        return list(values or []), list(steps or [])

    def diagnose(self, **kwargs: Any) -> Any:
        """Run :func:`unstuck.doctor.diagnose` on the losses (and the Monitor records).

        The validation and test steps are placed on the training curve (the doctor plots the
        training loss against its index); the title names the file. ``kwargs`` are passed on
        and win over these (``baseline=``, ``optimizer_family=``, ``reference_train_loss=``,
        ``title=``, ...): for per-epoch losses pass ``baseline=`` (e.g. ``ln C`` for
        cross-entropy over ``C`` classes), since the first logged value is already a trained
        model's.

        Returns:
            A :class:`unstuck.doctor.Diagnosis`.
        """
        from unstuck.doctor import diagnose

        arguments: dict[str, Any] = {
            "train_loss": self.train_loss,
            "val_loss": self.val_loss,
            "test_loss": self.test_loss,
            "monitor": self.monitor,
            "val_steps": _positions(self.val_steps, self.train_steps),
            "test_steps": _positions(self.test_steps, self.train_steps),
            "title": f"unstuck doctor: {self.path}",
        }
        arguments.update(kwargs)
        return diagnose(**arguments)


def read_log(
    path: str | os.PathLike[str],
    format: str | None = None,
    *,
    train_key: str | None = None,
    val_key: str | None = None,
    test_key: str | None = None,
) -> TrainingLog:
    """Read a training log file or directory: its training, validation and test losses.

    Args:
        path: a file (``.jsonl``, ``.csv``, ``trainer_state.json``, an event file) or a
            directory holding one (see :func:`locate`).
        format: one of :data:`FORMATS`; default: told from the path.
        train_key, val_key, test_key: the column, key or tag of each loss; default: guessed
            (:func:`guess_key`). A named key must exist and hold numbers.

    Returns:
        A :class:`TrainingLog`; ``keys`` says which column, key or tag was used for what.

    Raises:
        LogReadError: the path does not exist, its format cannot be told, the file cannot be
            read, or no training loss is found (one line naming the file).
        ValueError: ``format`` is not one of :data:`FORMATS`.

    Example::

        log = read_log("output/checkpoint-500")      # Hugging Face: trainer_state.json
        log = read_log("runs.csv", train_key="loss", val_key="val_loss")
    """
    if format is not None and format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
    source, fmt = locate(path, format)
    scalars = _READERS[fmt](source, fmt)
    named = {"train": train_key, "val": val_key, "test": test_key}
    keys: dict[str, str | None] = {}
    curves: dict[str, tuple[list[float], list[float]] | None] = {}
    candidates = [n for n in scalars.names if n in scalars.series or n in scalars.bad]
    for role in ROLES:
        key = named[role] if named[role] is not None else guess_key(candidates, role)
        if key is None and role == "train":
            raise LogReadError(
                source, f"no {scalars.noun} looks like a training loss ({scalars.noun}s: "
                f"{_names(scalars.names)}); name one with {_OPTION[role]}"
            )
        keys[role] = key
        curves[role] = None if key is None else _series(scalars, key, role)
    train = curves["train"]
    assert train is not None  # a training key was found (else raised above)
    log = TrainingLog(
        path=source,
        format=fmt,
        train_loss=train[0],
        train_steps=train[1],
        val_loss=curves["val"][0] if curves["val"] else None,
        val_steps=curves["val"][1] if curves["val"] else None,
        test_loss=curves["test"][0] if curves["test"] else None,
        test_steps=curves["test"][1] if curves["test"] else None,
        monitor=scalars.monitor,
        keys=keys,
        guessed=frozenset(role for role in ROLES if named[role] is None and keys[role]),
        noun=scalars.noun,
        names=list(scalars.names),
    )
    logger.info("%s", log.describe())
    return log


def guess_key(names: Iterable[str], role: str) -> str | None:
    """The name in ``names`` that looks most like the ``role`` loss, or ``None``.

    A name is split into words (``train/loss_step`` -> train, loss, step; ``valLoss`` -> val,
    loss). It must hold the word ``loss`` and none of best, min, max, std, scale, ... (things
    about a loss). A validation loss has a word like val, valid, validation, eval or dev; a
    test loss the word test; a training loss neither (``loss``, ``train_loss``,
    ``Loss/train``). Among several, a training loss logged per step (``_step``) beats one
    without the word, which beats one per epoch (``_epoch``); for validation and test it is
    the other way round after the plain name (a per-batch validation loss is noise); then
    fewer other words (the total ``train_loss`` before ``train_kl_loss``); then file order.

    Example::

        >>> guess_key(["epoch", "train_loss_epoch", "train_loss_step"], "train")
        'train_loss_step'
        >>> guess_key(["loss", "eval_loss", "eval_runtime"], "val")
        'eval_loss'
        >>> guess_key(["acc"], "test") is None
        True
    """
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    others = frozenset().union(*(_ROLE_WORDS[r] for r in ROLES if r not in ("train", role)))
    best: tuple[tuple[int, int, int], str] | None = None
    for order, name in enumerate(names):
        words = _words(name)
        if "loss" not in words or words & _NOT_THE_LOSS or words & others:
            continue
        if role != "train" and not words & _ROLE_WORDS[role]:
            continue
        if role == "train":
            level = 0 if "step" in words else (2 if "epoch" in words else 1)
        else:
            level = 0 if not words & {"step", "epoch"} else (1 if "epoch" in words else 2)
        extra = len(words - {"loss", "step", "epoch"} - _ROLE_WORDS[role])
        rank = (level, extra, order)
        if best is None or rank < best[0]:
            best = (rank, name)
    return None if best is None else best[1]


def locate(path: str | os.PathLike[str], format: str | None = None) -> tuple[Path, str]:
    """The file (or TensorBoard directory) to read for ``path``, and its format.

    A file's format is told from its name: ``events.out.tfevents.*`` (tensorboard), ``.jsonl``
    or ``.ndjson`` (jsonl), ``trainer_state.json`` (huggingface; another ``.json`` is jsonl when
    its first line is a whole JSON object), ``metrics.csv`` (lightning), ``.csv`` or ``.tsv``
    (csv). In a directory, the first found of: ``trainer_state.json``, the latest
    ``checkpoint-N/trainer_state.json``; ``metrics.csv``, the latest ``version_N/metrics.csv``
    (also under ``lightning_logs/``); TensorBoard event files in it, or else in the most recently
    written subdirectory that has some; the one ``.jsonl``; the one ``.csv``. ``format``
    restricts the search to its own kind.

    Raises:
        LogReadError: the path does not exist, a file's format cannot be told from its name, or
            a directory holds no log (or several candidates of one kind).
    """
    path = Path(path)
    if not path.exists():
        raise LogReadError(path, "no such file or directory")
    if not path.is_dir():
        return path, format or _file_format(path)
    for fmt in [format] if format else ["huggingface", "lightning", "tensorboard", "jsonl", "csv"]:
        try:
            found = _FINDERS[fmt](path)
        except OSError as error:
            raise LogReadError(path, f"cannot list it ({error.strerror or error})") from None
        if found is not None:
            if found != path:
                logger.info("%s: reading %s", path, found)
            return found, fmt
    looked = ("trainer_state.json, checkpoint-N/, metrics.csv, version_N/, TensorBoard event "
              "files, a .jsonl or a .csv") if format is None else f"a {format} log"
    raise LogReadError(path, f"no training log in this directory (looked for {looked})")


def _file_format(path: Path) -> str:
    name, suffix = path.name.lower(), path.suffix.lower()
    if name.startswith("events.out.tfevents"):
        return "tensorboard"
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if name == "trainer_state.json":
        return "huggingface"
    if suffix == ".json":
        return "jsonl" if _first_line_is_object(path) else "huggingface"
    if name == "metrics.csv":
        return "lightning"
    if suffix in (".csv", ".tsv"):
        return "csv"
    raise LogReadError(
        path, f"cannot tell the format from the file name; pass format= (--format): one of "
        f"{', '.join(FORMATS)}"
    )


def _first_line_is_object(path: Path) -> bool:
    import json

    try:
        with open(path, encoding="utf-8-sig") as f:
            line = next((line for line in f if line.strip()), "")
        return isinstance(json.loads(line), dict)
    except (OSError, UnicodeDecodeError, ValueError):
        return False


def _latest(directory: Path, pattern: str, inner: str) -> Path | None:
    """``directory/<pattern with the largest N>/inner`` where it exists (``pattern``: a
    regular expression with one group, the number)."""
    numbered = []
    for child in directory.iterdir():
        match = re.fullmatch(pattern, child.name)
        if match and (child / inner).is_file():
            numbered.append((int(match.group(1)), child / inner))
    return max(numbered)[1] if numbered else None


def _find_huggingface(directory: Path) -> Path | None:
    if (directory / "trainer_state.json").is_file():
        return directory / "trainer_state.json"
    return _latest(directory, r"checkpoint-(\d+)", "trainer_state.json")


def _find_lightning(directory: Path) -> Path | None:
    if (directory / "metrics.csv").is_file():
        return directory / "metrics.csv"
    found = _latest(directory, r"version_(\d+)", "metrics.csv")
    if found is None and (directory / "lightning_logs").is_dir():
        found = _latest(directory / "lightning_logs", r"version_(\d+)", "metrics.csv")
    return found


def _has_events(directory: Path) -> bool:
    return any(p.name.startswith("events.out.tfevents") and p.is_file()
               for p in directory.iterdir())


def _find_tensorboard(directory: Path, depth: int = 3) -> Path | None:
    if _has_events(directory):
        return directory
    runs = []
    for root, dirs, _files in os.walk(directory):
        level = len(Path(root).relative_to(directory).parts)
        if level >= depth:
            dirs.clear()
        if level and _has_events(Path(root)):
            newest = max(p.stat().st_mtime for p in Path(root).iterdir()
                         if p.name.startswith("events.out.tfevents"))
            runs.append((newest, root))
    return Path(max(runs)[1]) if runs else None


def _find_one(suffixes: tuple[str, ...]) -> Any:
    def find(directory: Path) -> Path | None:
        files = sorted(p for p in directory.iterdir()
                       if p.suffix.lower() in suffixes and p.is_file())
        if len(files) > 1:
            raise LogReadError(
                directory, f"holds several {' / '.join(suffixes)} files "
                f"({_names([p.name for p in files], 5)}): pass one"
            )
        return files[0] if files else None

    return find


_FINDERS = {
    "huggingface": _find_huggingface,
    "lightning": _find_lightning,
    "tensorboard": _find_tensorboard,
    "jsonl": _find_one((".jsonl", ".ndjson")),
    "csv": _find_one((".csv", ".tsv")),
}


def _words(name: str) -> frozenset[str]:
    """``name`` split into lower-case words at non-alphanumerics and camelCase humps."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name)
    return frozenset(w for w in re.split(r"[^a-z0-9]+", spaced.lower()) if w)


def _series(scalars: Scalars, key: str, role: str) -> tuple[list[float], list[float]]:
    """``(values, steps)`` of ``key``."""
    if key in scalars.bad:
        raise LogReadError(
            scalars.source, f"{scalars.noun} {key!r} ({_LOSS_NAME[role]}): "
            f"{scalars.bad[key]} is not a number"
        )
    if key not in scalars.series:
        if key in scalars.names:
            raise LogReadError(scalars.source, f"{scalars.noun} {key!r} holds no values")
        raise LogReadError(
            scalars.source, f"no {scalars.noun} {key!r} ({scalars.noun}s: "
            f"{_names(scalars.names)})"
        )
    pairs = scalars.series[key]
    return [value for _, value in pairs], [step for step, _ in pairs]


def _positions(steps: list[float] | None, train_steps: list[float]) -> list[int] | None:
    """Each step as the index of the last training value logged at or before it (the doctor
    plots the training loss against its index); ``None`` when the training steps are not
    sorted (the report then spreads the values evenly)."""
    if steps is None:
        return None
    if any(b < a for a, b in zip(train_steps, train_steps[1:])):
        return None
    return [max(0, bisect.bisect_right(train_steps, s) - 1) for s in steps]


def _step_text(step: float) -> str:
    return str(step) if isinstance(step, int) else f"{step:g}"
