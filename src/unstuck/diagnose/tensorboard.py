"""The Monitor's records as TensorBoard scalars and histograms.

:class:`~unstuck.diagnose.Monitor` with ``tensorboard=writer_or_logdir`` hands its records to a
:class:`TensorBoardLog` as they are reduced (a record is written once its update is known, or at
``close()`` with what is known) and its parameters to :meth:`TensorBoardLog.histograms` at every
observe. The x axis is the record's ``step`` (the observe number). Tags (stable; ``<name>`` is the
parameter's name in ``model.named_parameters()``, ``<g>`` a parameter group's index):

==========================================  ===================================================
tag                                         value (the record's key)
==========================================  ===================================================
``unstuck/loss``                            ``loss``
``unstuck/grad_norm``                       ``grad_norm`` (global)
``unstuck/weight_norm``                     ``weight_norm`` (global)
``unstuck/update_norm``                     ``update_norm`` (global)
``unstuck/update_ratio``                    ``update_ratio`` (global)
``unstuck/update_cosine``                   ``update_cosine`` (global)
``unstuck/lr/<g>``                          ``lr[g]``
``unstuck/effective_lr/min|median|max``     ``effective_lr["min"|"median"|"max"]``
``unstuck/grad_norm/<name>``                ``layers[name]["grad_norm"]``
``unstuck/weight_norm/<name>``              ``layers[name]["weight_norm"]``
``unstuck/update_ratio/<name>``             ``layers[name]["update_ratio"]``
``unstuck/update_cosine/<name>``            ``layers[name]["update_cosine"]``
``unstuck/weights/<name>`` (histogram)      the parameter's values at the observe
``unstuck/grads/<name>`` (histogram)        its gradient at the observe (when it has one)
==========================================  ===================================================

A value that is ``None`` (undefined: no update yet, a ratio to a zero weight, no effective lr on
this record) is not written; NaN and Inf are written as they are (TensorBoard stores scalars as
32-bit floats). Histograms are written at the observes whose number is a multiple of
``histograms_every``, sampled or not.

TensorBoard is an optional dependency (``pip install 'unstuck[tensorboard]'``): it is imported
only when a log directory is given (a ``SummaryWriter`` passed in is used as it is).

Example:
    >>> import tempfile, torch
    >>> from unstuck.diagnose import Monitor
    >>> model = torch.nn.Linear(3, 1)
    >>> opt = torch.optim.SGD(model.parameters(), lr=0.1)
    >>> logdir = tempfile.mkdtemp()
    >>> with Monitor(model, opt, tensorboard=logdir, histograms_every=10) as monitor:
    ...     for _ in range(3):
    ...         opt.zero_grad()
    ...         loss = model(torch.ones(4, 3)).pow(2).mean()
    ...         loss.backward()
    ...         monitor.observe(loss)
    ...         opt.step()
    >>> # tensorboard --logdir <logdir> shows unstuck/loss, unstuck/grad_norm, ...
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

__all__ = ["PREFIX", "TensorBoardLog", "scalars", "summary_writer"]

PREFIX = "unstuck"
"""The first part of every tag."""

_GLOBAL = ("loss", "grad_norm", "weight_norm", "update_norm", "update_ratio", "update_cosine")
_LAYER = ("grad_norm", "weight_norm", "update_ratio", "update_cosine")


def summary_writer(logdir: str | os.PathLike[str]) -> Any:
    """A new ``torch.utils.tensorboard.SummaryWriter`` writing to ``logdir``.

    Raises:
        ImportError: the ``tensorboard`` package is not installed (the message names the extra).
    """
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as error:
        raise ImportError(
            "Monitor(tensorboard=...) needs the tensorboard package: "
            "pip install 'unstuck[tensorboard]'"
        ) from error
    return SummaryWriter(log_dir=os.fspath(logdir))


def scalars(record: dict[str, Any]) -> dict[str, float]:
    """Tag -> value of one Monitor record (a dict of ``Monitor.history``); ``None`` values are
    left out.

    Example:
        >>> scalars({"step": 0, "loss": 1.0, "lr": [0.1], "layers": {}})
        {'unstuck/loss': 1.0, 'unstuck/lr/0': 0.1}
    """
    out: dict[str, float] = {}
    for key in _GLOBAL:
        value = record.get(key)
        if value is not None:
            out[f"{PREFIX}/{key}"] = value
    for group, lr in enumerate(record.get("lr") or ()):
        out[f"{PREFIX}/lr/{group}"] = lr
    effective = record.get("effective_lr")
    if effective is not None:
        for key in ("min", "median", "max"):
            out[f"{PREFIX}/effective_lr/{key}"] = effective[key]
    for name, layer in record.get("layers", {}).items():
        for key in _LAYER:
            value = layer[key]
            if value is not None:
                out[f"{PREFIX}/{key}/{name}"] = value
    return out


class TensorBoardLog:
    """Writes Monitor records (:func:`scalars`) and parameter histograms to TensorBoard.

    Args:
        target: a ``SummaryWriter`` (anything with ``add_scalar``, ``add_histogram``, ``flush``)
            or a log directory (a writer is created there, and closed by :meth:`close`).
        names: the watched parameters' names, in order.
        histograms_every: write histograms at the observes whose number is a multiple of this
            (``None``: never).

    Example:
        >>> import tempfile, torch
        >>> log = TensorBoardLog(tempfile.mkdtemp(), ["w"], histograms_every=None)
        >>> log.write([{"step": 0, "loss": 2.0, "layers": {}}])
        >>> log.close()
    """

    def __init__(
        self, target: Any, names: Sequence[str], histograms_every: int | None = 100
    ) -> None:
        self.owned = not hasattr(target, "add_scalar")
        self.writer = summary_writer(target) if self.owned else target
        self.names = list(names)
        self.histograms_every = histograms_every

    def write(self, records: Sequence[dict[str, Any]]) -> None:
        """Write the scalars of ``records`` (plain dicts of ``Monitor.history``) at their step."""
        for record in records:
            step = record["step"]
            for tag, value in scalars(record).items():
                self.writer.add_scalar(tag, value, step)

    def histograms(self, step: int, params: Sequence[Tensor]) -> None:
        """At an observe whose number ``step`` is a multiple of ``histograms_every``, write
        histograms of the parameters (``unstuck/weights/<name>``) and of their gradients
        (``unstuck/grads/<name>``)."""
        every = self.histograms_every
        if every is None or step % every:
            return
        for name, p in zip(self.names, params, strict=True):
            self.writer.add_histogram(f"{PREFIX}/weights/{name}", _values(p), step)
            if p.grad is not None:
                self.writer.add_histogram(f"{PREFIX}/grads/{name}", _values(p.grad), step)

    def close(self) -> None:
        """Flush the events to disk; close the writer if this log created it."""
        self.writer.flush()
        if self.owned:
            self.writer.close()


def _values(t: Tensor) -> Tensor:
    """The values a histogram shows: real, dense, float, on the CPU."""
    t = t.detach()
    if t.layout != torch.strided:
        t = t.to_dense()
    if t.is_complex():
        t = t.abs()
    return t.float().cpu().reshape(-1)
