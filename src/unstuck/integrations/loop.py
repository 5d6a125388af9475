"""The doctor in your own training loop: :func:`watch` holds a
:class:`~unstuck.diagnose.Monitor` and the loss curves, and diagnoses them at the end.

It saves what the plain three lines (``monitor = Monitor(model, opt)``,
``monitor.observe(loss)``, ``diagnose(monitor=monitor)``) leave to you: every training loss is
kept (the Monitor keeps only the steps it samples), each validation or test loss is placed at
the step it was measured, the Monitor's hooks are removed at the end of the ``with`` block, and
the report is written on request. Nothing waits for the device: losses stay tensors until
:meth:`Watch.diagnose` reads them.

Example:
    >>> import torch
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> model = torch.nn.Linear(3, 1)
    >>> optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    >>> x, y = torch.randn(32, 3), torch.randn(32, 1)
    >>> with watch(model, optimizer) as doctor:
    ...     for step in range(30):
    ...         optimizer.zero_grad()
    ...         loss = torch.nn.functional.mse_loss(model(x), y)
    ...         loss.backward()
    ...         doctor.observe(loss)          # after backward, before step
    ...         optimizer.step()
    ...         if step % 10 == 9:
    ...             doctor.record(val_loss=torch.nn.functional.mse_loss(model(x), y))
    >>> diagnosis = doctor.diagnose()         # or doctor.diagnose(report="doctor.html")
    >>> len(diagnosis.train_loss), diagnosis.val_steps
    (30, [9, 19, 29])
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from torch import Tensor, nn
from torch.optim import Optimizer

from unstuck.diagnose import Monitor
from unstuck.doctor import Diagnosis, diagnose
from unstuck.integrations._reporting import LossCurve

__all__ = ["Watch", "watch"]


class Watch:
    """A :class:`~unstuck.diagnose.Monitor` of one training loop and its loss curves.

    Use it as a context manager (:func:`watch`); see the module docstring for an example.

    Args:
        model, optimizer, every, watch_forward: as for :class:`~unstuck.diagnose.Monitor`
            (its checks and errors apply).

    Attributes:
        monitor: the Monitor (its ``history`` stays readable after the ``with`` block).
    """

    def __init__(self, model: nn.Module, optimizer: Optimizer, *, every: int = 1,
                 watch_forward: bool = False) -> None:
        self.monitor = Monitor(model, optimizer, every=every, watch_forward=watch_forward)
        self._train = LossCurve()
        self._val, self._test = LossCurve(), LossCurve()
        self._val_steps: list[int] = []
        self._test_steps: list[int] = []

    def observe(self, loss: Tensor | float | None) -> None:
        """Record this step: call after ``backward()`` and before ``optimizer.step()``, with
        the step's loss (a one-element tensor or a number; ``None``: no loss this step)."""
        self.monitor.observe(loss)
        if loss is not None:
            self._train.append(loss)

    def record(self, val_loss: Tensor | float | None = None,
               test_loss: Tensor | float | None = None) -> None:
        """Add a validation (train-dev) and/or test loss, measured after the last observed step.
        """
        step = max(len(self._train) - 1, 0)
        if val_loss is not None:
            self._val.append(val_loss)
            self._val_steps.append(step)
        if test_loss is not None:
            self._test.append(test_loss)
            self._test_steps.append(step)

    def diagnose(self, report: str | os.PathLike[str] | None = None, **kwargs: Any) -> Diagnosis:
        """:func:`unstuck.doctor.diagnose` on the curves and the Monitor; with ``report``, the
        HTML report is also written there (replaced if it exists).

        ``kwargs`` go to :func:`~unstuck.doctor.diagnose` (``baseline``,
        ``reference_train_loss``, ``critical_point``, ``title``, ...); a ``val_loss`` or
        ``test_loss`` given here replaces the recorded one.

        Raises:
            ValueError: no loss was observed and the Monitor recorded none (as ``diagnose``).
            Whatever drawing or writing the report raises (the diagnosis is not lost: call
            again without ``report``).
        """
        curves: dict[str, Any] = {"train_loss": self._train.values() or None}
        for name, curve, steps in (("val", self._val, self._val_steps),
                                   ("test", self._test, self._test_steps)):
            if f"{name}_loss" not in kwargs and len(curve):
                curves[f"{name}_loss"], curves[f"{name}_steps"] = curve.values(), list(steps)
        diagnosis = diagnose(monitor=self.monitor, **{**curves, **kwargs})
        if report is not None:
            Path(report).parent.mkdir(parents=True, exist_ok=True)
            diagnosis.save_html(report, overwrite=True)
        return diagnosis

    def close(self) -> None:
        """Remove the Monitor's hooks (idempotent)."""
        self.monitor.close()

    def __enter__(self) -> Watch:
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()


def watch(model: nn.Module, optimizer: Optimizer, *, every: int = 1,
          watch_forward: bool = False) -> Watch:
    """Watch a training loop: ``with watch(model, optimizer) as doctor: ... doctor.observe(loss)
    ...``, then ``doctor.diagnose()`` (see the module docstring)."""
    return Watch(model, optimizer, every=every, watch_forward=watch_forward)
