"""A cheap per-step monitor of training: gradients, weights, updates, effective learning rates.

Usage (the one obvious way)::

    monitor = Monitor(model, optimizer)
    for inputs, targets in loader:
        optimizer.zero_grad()
        loss = criterion(model(inputs), targets)
        loss.backward()
        monitor.observe(loss)        # after backward, before step
        optimizer.step()
    monitor.summary()                # a plain dict
    monitor.to_jsonl("run.jsonl")    # one JSON record per sampled step
    monitor.close()                  # or use ``with Monitor(...) as monitor:``

``Monitor(model, optimizer, tensorboard="runs/exp")`` also writes the records' scalars and
histograms of the weights and gradients to TensorBoard (:mod:`unstuck.diagnose.tensorboard`).

Observe number ``k`` (0, 1, 2, ...) is *sampled* when ``k % every == 0``; its record describes
the optimizer step that follows it:

- ``lr``: the learning rate of each parameter group at the observe (what a scheduler set);
- ``loss``, ``grad_norm`` (the global L2 norm of all gradients, as
  :func:`torch.nn.utils.get_total_norm`), per tensor ``grad_norm`` and ``weight_norm`` (before the
  step), read at the observe;
- per tensor and global ``update_norm`` (``||p_after - p_before||``, the change the step made, as
  measured), ``update_ratio = update_norm / weight_norm`` and ``update_cosine``, the cosine between
  this step's update and the previous step's (negative: the iterate goes back and forth, a sign of
  a learning rate too large for the curvature);
- ``effective_lr``: ``min``, ``median``, ``max`` of ``lr / sigma`` per tensor and over all of them,
  for Adam/AdamW/RAdam/Ranger/Adagrad/RMSprop (unstuck's and torch.optim's; see
  :mod:`unstuck.diagnose.effective_lr`); ``None`` for other optimizers;
- ``rectification`` (RAdam, Ranger): ``rho_t``, ``threshold``, ``rectified``, ``r_t``;
- ``nonfinite_grads``: names of the tensors whose gradient holds NaN or Inf, and with
  ``watch_forward=True``, ``nonfinite_forward``: the first module (qualified name, ``"(root)"``
  for the model itself) whose forward output held NaN or Inf in the forward passes before the
  observe.

When training diverges the statistics become NaN or Inf (the norms, ratios and effective lrs of
non-finite numbers, or of finite ones whose norm overflows), which is the diagnosis: reading the
history, the summary or the JSON Lines never raises on them. A ratio to a zero weight norm and a
cosine with a zero or non-finite update are ``None`` (undefined).

The update of step ``k`` and the optimizer state it left are read at the next observe (or when
:attr:`history`, :meth:`summary` or :meth:`to_jsonl` is called), so the optimizer is never wrapped
and no observe waits for the device (the buffered rows are read back together); a post-step hook
only counts steps, so a step that was skipped (``GradScaler`` on overflow) or several steps between
two observes leave the update ``None`` rather than a wrong number. Anything else that changes the
parameters between two observes counts as part of the update.

Cost: an observe only copies (parameters and, when sampled, gradients; after a sampled step of
an adaptive optimizer its second moments) into preallocated row buffers; norms, dot products,
effective-lr statistics and the one read-back to the host are computed for many buffered observes
together (:mod:`unstuck.diagnose.frames`, :mod:`unstuck.diagnose.flat_rows`), and the per-tensor
lists of the records are built only when read (:mod:`unstuck.diagnose.reduced`). Observes that are
neither sampled nor next to a sampled one copy nothing. ``effective_lr_every`` (default 10) and
``watch_forward`` trade statistics for time; ``benchmarks/monitor_overhead.py`` measures the
overhead. Nothing here changes the model, its gradients or the optimizer. Summary and JSON Lines
live in :mod:`unstuck.diagnose.records`, TensorBoard in :mod:`unstuck.diagnose.tensorboard`.

Example:
    >>> import torch
    >>> model = torch.nn.Linear(3, 1)
    >>> opt = torch.optim.Adam(model.parameters(), lr=0.1)
    >>> with Monitor(model, opt) as monitor:
    ...     for _ in range(3):
    ...         opt.zero_grad()
    ...         loss = model(torch.ones(4, 3)).pow(2).mean()
    ...         loss.backward()
    ...         monitor.observe(loss)
    ...         opt.step()
    ...     len(monitor.history), sorted(monitor.history[0]["layers"])
    (3, ['bias', 'weight'])
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from unstuck.diagnose.effective_lr import optimizer_family, unwrap
from unstuck.diagnose.flat_rows import capacity, layouts, read_back
from unstuck.diagnose.frames import Snapshots
from unstuck.diagnose.moments import SecondMoments
from unstuck.diagnose.records import (
    check_loss,
    decode,
    read_jsonl,
    summarize,
    tensors_in,
    write_jsonl,
)
from unstuck.diagnose.reduced import materialize, pending
from unstuck.diagnose.tensorboard import TensorBoardLog

__all__ = ["Monitor", "read_jsonl"]

_MAX_FORWARD_FLAGS = 100_000
ROOT = "(root)"
"""The name :class:`Monitor` gives the model itself in ``nonfinite_forward``."""


class Monitor:
    """Record cheap statistics of every ``every``-th training step (see the module docstring).

    Args:
        model: the module being trained; its trainable parameters (``requires_grad``) are
            watched, named as in ``model.named_parameters()``.
        optimizer: the optimizer that steps them (any ``torch.optim.Optimizer``, wrappers too).
        every: sample one observe in ``every`` (``>= 1``).
        history: keep at most this many records (the oldest are dropped; ``>= 1``).
        names: watch only these parameter names (default: all trainable parameters).
        watch_forward: find the first module whose forward output is non-finite (forward hooks).
        effective_lr_every: compute ``effective_lr`` on one sampled record in
            ``effective_lr_every`` (the first sampled record and every ``effective_lr_every``-th
            after it; the others hold ``None``). The exact per-tensor medians are the monitor's
            largest cost on small models, hence the default 10; 1 computes them on every record
            (``benchmarks/monitor_overhead.py`` measures both).
        tensorboard: a ``torch.utils.tensorboard.SummaryWriter``, or a log directory to create
            one in, to write the records' scalars to as they are reduced and histograms of the
            weights and gradients (:mod:`unstuck.diagnose.tensorboard`; needs the ``tensorboard``
            package: ``pip install 'unstuck[tensorboard]'``). ``None`` (default): nothing is
            written and nothing is imported.
        histograms_every: with ``tensorboard``, write histograms at the observes whose number
            is a multiple of this (``None``: no histograms).

    Raises:
        ValueError: ``every``, ``history``, ``effective_lr_every`` or ``histograms_every``
            below 1, a name that is not a trainable parameter, or a model without trainable
            parameters.
        TypeError: ``model`` is not a Module or ``optimizer`` not an Optimizer.
        ImportError: ``tensorboard`` is a log directory and the package is not installed.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: Optimizer,
        every: int = 1,
        history: int = 10_000,
        names: Iterable[str] | None = None,
        watch_forward: bool = False,
        effective_lr_every: int = 10,
        tensorboard: Any = None,
        histograms_every: int | None = 100,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if not isinstance(optimizer, Optimizer):
            raise TypeError(
                f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}"
            )
        checks = {"every": every, "history": history, "effective_lr_every": effective_lr_every}
        if histograms_every is not None:
            checks["histograms_every"] = histograms_every
        for arg, value in checks.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{arg} must be an integer >= 1, got {value!r}")
        trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
        if not trainable:
            raise ValueError(
                f"model has no trainable parameters (none of {type(model).__name__}'s "
                "parameters requires grad): there is nothing to monitor"
            )
        if names is not None:
            names = list(names)
            unknown = [n for n in names if n not in trainable]
            if unknown:
                raise ValueError(
                    f"names must be trainable parameters of the model, got unknown {unknown} "
                    f"(known: {sorted(trainable)})"
                )
            if not names:
                raise ValueError("names must name at least one parameter, got []")
            trainable = {n: trainable[n] for n in dict.fromkeys(names)}
        self.model, self.optimizer, self.every = model, optimizer, every
        self.watch_forward = watch_forward
        self.effective_lr_every = effective_lr_every
        self.names: list[str] = list(trainable)
        self._params: list[Tensor] = list(trainable.values())
        self._device = self._params[0].device
        self._records: deque[dict[str, Any]] = deque(maxlen=history)
        self._count = 0  # observes so far
        self._steps = 0  # optimizer steps so far (post-step hook)
        found = layouts(self._params)
        numel = max(layout.numel for layout in found)
        element = max(p.element_size() for p in self._params)
        family = optimizer_family(optimizer)
        rows = capacity(numel, element, buffers=4 if family is None else 5)
        self._moments = None if family is None else SecondMoments(
            unwrap(optimizer), family, self._params, found, rows, self._device
        )
        self._snaps = Snapshots(self._params, found, rows, self._moments, self.names)
        self._first_nonfinite: dict[str, int] = {}
        self._first_nonfinite_forward: tuple[str, int] | None = None
        self._flags: list[tuple[str, Tensor]] = []
        self._board: TensorBoardLog | None = None
        if tensorboard is not None:
            self._board = TensorBoardLog(tensorboard, self.names, histograms_every)
        self._handles = [optimizer.register_step_post_hook(self._count_step)]
        if watch_forward:
            for name, module in model.named_modules():
                self._handles.append(module.register_forward_hook(self._forward_hook(name or ROOT)))

    # ----------------------------------------------------------------------------- hooks
    def _count_step(self, *_: Any) -> None:
        self._steps += 1

    def _forward_hook(self, name: str) -> Any:
        def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
            if self._count % self.every or len(self._flags) >= _MAX_FORWARD_FLAGS:
                return
            with torch.no_grad():
                for t in tensors_in(output):
                    if t.is_floating_point() or t.is_complex():
                        self._flags.append((name, torch.isfinite(t).all()))

        return hook

    # ----------------------------------------------------------------------------- observe
    def observe(self, loss: Tensor | float | None = None) -> None:
        """Record this step (if sampled): call after ``backward()`` and before ``step()``.

        ``loss`` is the scalar loss (a one-element tensor or a number; ``None`` records none).

        Raises:
            ValueError: ``loss`` has more than one element.
        """
        k = self._count
        self._count = k + 1
        if self._board is not None:
            self._board.histograms(k, self._params)
        phase = k % self.every
        sampled = phase == 0
        frames = self._snaps.frames
        previous = frames[-1].record if frames else None
        # an observe whose update precedes a sampled one's, or follows one, is snapshotted
        if not sampled and previous is None and phase != self.every - 1:
            if type(loss) is not Tensor or loss.dim():  # else a scalar tensor: valid
                check_loss(loss)
            if self._flags:
                self._flags = []
            return
        loss_t = check_loss(loss)
        if self._snaps.full():
            self._reduce()
        wants_moments = (
            previous is not None and previous["wants_lr"] and self._steps - frames[-1].steps == 1
        )
        frame, present = self._snaps.add(self._steps, sampled, wants_moments)
        if sampled:
            frame.loss, frame.flags = loss_t, self._flags
            wants_lr = (k // self.every) % self.effective_lr_every == 0
            lrs = [g["lr"] for g in self.optimizer.param_groups]
            if not all(type(x) is float for x in lrs):  # a tensor lr: a copy, read later
                lrs = [x.detach().clone() if isinstance(x, Tensor) else x for x in lrs]
            frame.record = pending(k, present, wants_lr, lrs)
        self._flags = []

    # ----------------------------------------------------------------------------- reduce
    def _reduce(self, final: bool = False) -> None:
        """Reduce the buffered frames into records; keep the last frame for the next update.

        ``final``: first snapshot the parameters now if that completes the last record (exactly
        one optimizer step since it), as when the history is read.
        """
        snaps = self._snaps
        if final and snaps.frames:
            last = snaps.frames[-1]
            if last.record is not None and self._steps - last.steps == 1:
                if snaps.full():
                    self._reduce()
                snaps.add(self._steps, wants_moments=last.record["wants_lr"])
        if not snaps.pending():
            return
        frames = snaps.frames
        measured = snaps.measure()
        parts, sampled = measured.parts, measured.sampled
        losses = [frames[j].loss for j in sampled if frames[j].loss is not None]
        if losses:
            try:
                parts.append(torch.stack(losses))
            except RuntimeError:  # losses of different dtypes or devices
                parts.append(torch.stack([x.to(self._device, torch.float64) for x in losses]))
        lr_frames = [j for j in range(1, len(frames)) if frames[j].moments is not None]
        if lr_frames:
            assert self._moments is not None
            parts.append(self._moments.statistics([frames[j].moments for j in lr_frames]))
        parts += [f for j in sampled for _, f in frames[j].flags]
        values = read_back(parts, self._device)
        done, flagged = snaps.attach(measured, values, lr_frames)
        for record in flagged:
            for name in record["nonfinite_grads"]:
                self._first_nonfinite.setdefault(name, record["step"])
            forward = record["nonfinite_forward"]
            if forward is not None and self._first_nonfinite_forward is None:
                self._first_nonfinite_forward = (forward, record["step"])
        self._records.extend(done)
        snaps.keep(measured.valid)
        if self._board is not None and done:
            self._board.write(self._decoded(done))

    def _decoded(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Records of the history (completed) as the plain dicts of :attr:`history`."""
        return [decode(materialize(r, cache=True), self.names) for r in records]

    @property
    def history(self) -> list[dict[str, Any]]:
        """The records, oldest first, as plain dicts (JSON-ready; see the module docstring).

        The last record's update fields are ``None`` until the optimizer has stepped after it.
        """
        self.flush()
        raw = [materialize(r, cache=True) for r in self._records]
        last = self._pending_record()
        if last is not None:
            raw.append(materialize(last, cache=False))
        return [decode(r, self.names) for r in raw[-self._records.maxlen :]]  # type: ignore[misc]

    def _pending_record(self) -> dict[str, Any] | None:
        """The last sampled record while its update is still unknown (reduced already)."""
        if self._snaps.carried and self._snaps.frames[0].record is not None:
            return self._snaps.frames[0].record
        return None

    def flush(self) -> None:
        """Reduce the buffered observes into records now (reading :attr:`history` does it too)."""
        self._reduce(final=True)

    @property
    def first_nonfinite(self) -> dict[str, int]:
        """Parameter name -> first sampled step at which its gradient was non-finite."""
        self._reduce()
        return dict(self._first_nonfinite)

    @property
    def first_nonfinite_forward(self) -> tuple[str, int] | None:
        """``(module name, step)`` of the first non-finite forward output seen (watch_forward)."""
        self._reduce()
        return self._first_nonfinite_forward

    def summary(self) -> dict[str, Any]:
        """A plain dict that sums up the history (``None`` where there is nothing to sum up).

        Keys: ``steps`` (records), ``last_loss``, ``loss_trend`` (least-squares slope of the loss
        per step over the records), ``grad_norm`` (``min``, ``median``, ``max``, ``last``),
        ``update_ratio_spread`` (the largest, over the records, of max/min of the per-tensor
        update/weight ratios, with its ``step``), ``negative_cosine_fraction`` (of the records
        with a global update cosine), ``nonfinite_grads`` (name -> first step),
        ``nonfinite_forward`` (``{"module", "step"}``), ``effective_lr`` (``min``, ``max`` over the
        records and the ``last`` record's ``{min, median, max}``), ``rectified_fraction``.
        """
        return summarize(self.history, self.first_nonfinite, self.first_nonfinite_forward)

    def to_jsonl(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Write :attr:`history` as JSON Lines (one record a line), atomically.

        Non-finite numbers are written as the strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"``
        (standard JSON has no such numbers); :func:`read_jsonl` turns them back into floats.

        Raises:
            FileExistsError: ``path`` exists and ``overwrite`` is False.
        """
        return write_jsonl(self.history, path, overwrite=overwrite)

    def close(self) -> None:
        """Remove the hooks (idempotent); the history stays readable. With ``tensorboard``:
        reduce what is buffered, write the last record (its update fields as far as known) and
        flush the events (closing a writer the monitor created)."""
        for handle in self._handles:
            handle.remove()
        self._handles = []
        if self._board is not None:
            self.flush()
            last = self._pending_record()
            if last is not None:
                self._board.write([decode(materialize(last, cache=False), self.names)])
            self._board.close()
            self._board = None

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()

    def _repr_html_(self) -> str:
        """Jupyter's inline view: :meth:`summary` as a small table."""
        from unstuck.diagnose.summary_html import summary_html
        return summary_html(self.summary(), repr(self))

    def __repr__(self) -> str:
        return (
            f"Monitor({len(self.names)} tensors, every={self.every}, "
            f"records={len(self._records)}, buffered observes={len(self._snaps.frames)})"
        )
