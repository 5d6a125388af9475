"""What the Lightning and Hugging Face callbacks share: their options, loss curves kept without
waiting for the device, the parameters an optimizer steps, running the doctor and publishing its
verdicts (log lines and the HTML report).

Nothing here imports a framework.

Example:
    >>> import torch
    >>> curve = LossCurve()
    >>> curve.append(torch.tensor(2.0)); curve.append(1.5)
    >>> curve.values(), len(curve)
    ([2.0, 1.5], 2)
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from unstuck.diagnose import Monitor
from unstuck.doctor import Diagnosis, diagnose

__all__ = [
    "LossCurve",
    "check_options",
    "set_options",
    "first_key",
    "key_variants",
    "publish",
    "report_path",
    "run_doctor",
    "stepped_names",
    "verdict_metrics",
    "watch_optimizer",
]

log = logging.getLogger("unstuck.integrations")

_COMPACT = 1024
"""A curve reads its pending device values back in one transfer once this many are pending."""


class LossCurve:
    """A loss curve appended to at every step without waiting for the device.

    Tensors are kept (detached) and read back together, ``_COMPACT`` at a time or when
    :meth:`values` is called, so a step never synchronises with the GPU. Non-finite values are
    kept: they are a finding.
    """

    def __init__(self) -> None:
        self._floats: list[float] = []
        self._pending: list[Tensor | float] = []

    def append(self, value: Tensor | float) -> None:
        """Add one value (a one-element tensor or a number)."""
        if isinstance(value, Tensor):
            value = value.detach().reshape(())
        else:
            value = float(value)
        self._pending.append(value)
        if len(self._pending) >= _COMPACT:
            self._read_back()

    def _read_back(self) -> None:
        tensors = [x for x in self._pending if isinstance(x, Tensor)]
        if tensors:
            try:
                read = iter(torch.stack([t.to(torch.float64) for t in tensors]).tolist())
            except RuntimeError:  # values on different devices
                read = iter([float(t) for t in tensors])
            self._floats += [next(read) if isinstance(x, Tensor) else x for x in self._pending]
        else:
            self._floats += self._pending  # type: ignore[arg-type]
        self._pending = []

    def values(self) -> list[float]:
        """The curve as plain floats, oldest first."""
        self._read_back()
        return list(self._floats)

    def __len__(self) -> int:
        return len(self._floats) + len(self._pending)


def check_options(
    monitor_every: Any, every_n_epochs: Any, report: Any, keys: Mapping[str, Any]
) -> None:
    """Check a callback's options; raise ``ValueError`` naming the bad one.

    Example:
        >>> check_options(1, None, "doctor.html", {"train_key": "loss"})
        >>> check_options(0, None, None, {})
        Traceback (most recent call last):
        ...
        ValueError: monitor_every must be an integer >= 1, got 0
    """
    if isinstance(monitor_every, bool) or not isinstance(monitor_every, int) or monitor_every < 1:
        raise ValueError(f"monitor_every must be an integer >= 1, got {monitor_every!r}")
    if every_n_epochs is not None and (
        isinstance(every_n_epochs, bool) or not isinstance(every_n_epochs, int)
        or every_n_epochs < 1
    ):
        raise ValueError(f"every_n_epochs must be None or an integer >= 1, got {every_n_epochs!r}")
    if report is not None and (
        not isinstance(report, (str, os.PathLike)) or not os.fspath(report).strip()
    ):
        raise ValueError(f"report must be None or a file name, got {report!r}")
    for name, key in keys.items():
        if not isinstance(key, str) or not key:
            raise ValueError(f"{name} must be a non-empty string, got {key!r}")


def set_options(callback: Any, *, train_key: str, val_key: str, test_key: str,
                monitor_every: int, every_n_epochs: int | None, report: str | None) -> None:
    """Check the options every doctor callback takes (:func:`check_options`) and keep them as
    attributes of ``callback`` under their own names."""
    keys = {"train_key": train_key, "val_key": val_key, "test_key": test_key}
    check_options(monitor_every, every_n_epochs, report, keys)
    for name, value in {**keys, "monitor_every": monitor_every,
                        "every_n_epochs": every_n_epochs, "report": report}.items():
        setattr(callback, name, value)


def key_variants(key: str, *variants: str) -> list[str]:
    """``key`` first, then the common ``variants`` (duplicates dropped, order kept).

    Example:
        >>> key_variants("val_loss", "val_loss", "val/loss")
        ['val_loss', 'val/loss']
    """
    return list(dict.fromkeys((key, *variants)))


def first_key(candidates: Sequence[str], names: Iterable[str]) -> str | None:
    """The first of ``candidates`` that is among ``names``, or ``None``.

    Example:
        >>> first_key(["train_loss", "loss"], ["loss", "acc"])
        'loss'
    """
    present = set(names)
    return next((key for key in candidates if key in present), None)


def stepped_names(model: nn.Module, optimizer: Optimizer) -> list[str]:
    """Names (as in ``model.named_parameters()``) of the trainable parameters ``optimizer``
    steps, in the model's order.

    A Monitor watching only these does not count another optimizer's step (or a frozen part)
    as this optimizer's update.
    """
    held = {id(p) for group in optimizer.param_groups for p in group["params"]}
    return [n for n, p in model.named_parameters() if p.requires_grad and id(p) in held]


def watch_optimizer(
    model: nn.Module, optimizer: Optimizer, every: int, title: str
) -> Monitor | None:
    """A :class:`~unstuck.diagnose.Monitor` of the parameters of ``model`` that ``optimizer``
    steps, or ``None`` (with a warning) when it is not a ``torch.optim.Optimizer`` or steps none
    of them: the training goes on unmonitored rather than failing."""
    if not isinstance(optimizer, Optimizer):
        log.warning("unstuck doctor: %s (%s) is not a torch.optim.Optimizer; it is not monitored",
                    title, type(optimizer).__name__)
        return None
    names = stepped_names(model, optimizer)
    if not names:
        log.warning(
            "unstuck doctor: %s (%s) steps no trainable parameter of %s; it is not monitored",
            title, type(optimizer).__name__, type(model).__name__,
        )
        return None
    return Monitor(model, optimizer, every=every, names=names)


def run_doctor(
    train: list[float] | None,
    val: list[float] | None,
    test: list[float] | None,
    monitor: Monitor | None,
    *,
    val_steps: list[int] | None = None,
    test_steps: list[int] | None = None,
    title: str = "unstuck doctor",
) -> Diagnosis | None:
    """:func:`unstuck.doctor.diagnose` on what a callback collected, or ``None`` (with a
    warning) when there is no training loss at all (no step was taken).

    Steps that do not match their curve's length are dropped (the report then spreads the
    points evenly).
    """
    if not train and (monitor is None or not monitor.history):
        log.warning("unstuck doctor: no training loss was recorded: nothing to diagnose")
        return None
    if val_steps is not None and (val is None or len(val_steps) != len(val)):
        val_steps = None
    if test_steps is not None and (test is None or len(test_steps) != len(test)):
        test_steps = None
    return diagnose(
        train_loss=train or None, val_loss=val or None, test_loss=test or None, monitor=monitor,
        val_steps=val_steps, test_steps=test_steps, title=title,
    )


def report_path(directory: str | os.PathLike[str], report: str | os.PathLike[str],
                index: int, count: int) -> Path:
    """Where the report of optimizer ``index`` (of ``count``) goes: ``report`` inside
    ``directory`` (an absolute ``report`` is used as is), ``doctor-optimizer1.html`` for the
    second of several optimizers.

    Example:
        >>> report_path("logs", "doctor.html", 1, 2).as_posix()
        'logs/doctor-optimizer1.html'
    """
    path = Path(directory) / report
    if index:
        path = path.with_name(f"{path.stem}-optimizer{index}{path.suffix}")
    return path


def publish(diagnosis: Diagnosis, path: Path | None) -> Path | None:
    """Log the verdicts (``WARNING`` unless healthy) and write the HTML report to ``path``
    (created with its directory, replaced if there). Returns the path written, or ``None``.

    A report that cannot be written (matplotlib missing, a figure that fails on extreme values,
    a directory that cannot be created) is a warning with its traceback, never an error:
    training must not fail for its report.
    """
    level = logging.INFO if diagnosis.healthy else logging.WARNING
    for verdict in diagnosis.verdicts:
        log.log(level, "unstuck doctor: [%s] %s (confidence %.1f): %s", verdict.code,
                verdict.title, verdict.confidence, verdict.message)
    if path is None:
        return None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        written = diagnosis.save_html(path, overwrite=True)
    except Exception as error:  # the report is a by-product: training goes on without it
        log.warning("unstuck doctor: the report %s was not written: %s", path, error,
                    exc_info=True)
        return None
    log.info("unstuck doctor: report written to %s", written)
    return written


def verdict_metrics(diagnosis: Diagnosis) -> dict[str, float]:
    """The verdicts as numbers for a metrics logger: ``doctor/healthy`` (1 or 0) and
    ``doctor/confidence/<code>`` for each verdict.

    Example:
        >>> d = diagnose([2.3, 1.2, 0.6, 0.4, 0.35, 0.3], val_loss=[2.3, 1.3, 0.7, 0.5, 0.4, 0.38])
        >>> sorted(verdict_metrics(d))
        ['doctor/confidence/healthy', 'doctor/healthy']
    """
    out = {"doctor/healthy": 1.0 if diagnosis.healthy else 0.0}
    for verdict in diagnosis.verdicts:
        out[f"doctor/confidence/{verdict.code}"] = float(verdict.confidence)
    return out
