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

Cost: an observe only *copies*: the parameters and, when sampled, the gradients go into one row
of a preallocated buffer per device and dtype, with one ``torch._foreach_copy_`` (after a sampled
step of an adaptive optimizer its second moments go into a row of another buffer). The norms, dot
products, effective-lr statistics and the one read-back to the host are computed for all buffered
rows together when the buffer is full (up to 64 rows within 64 MiB; one row on a large model) or
when the history, the summary or the non-finite findings are read, so their fixed cost per torch
call is shared by many steps (:mod:`unstuck.diagnose.flat_rows`); the per-tensor Python lists of
the records are built only when the history is read (:mod:`unstuck.diagnose.reduced`).
:meth:`flush` reduces on demand. Observes that are neither sampled nor next to a sampled one cost
almost nothing. ``watch_forward`` adds one ``isfinite`` test per module per forward pass. The
exact per-tensor medians of the effective lr (one selection per tensor and one over all) cost
about as much as everything else together on a small model, so ``effective_lr`` is computed on
one sampled record in ``effective_lr_every`` (default 10; 1: on every one). Measured by
``benchmarks/monitor_overhead.py``. Nothing here changes the model, its gradients or the
optimizer. Summary and JSON Lines live in :mod:`unstuck.diagnose.records`.

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

import math
import os
from collections import deque
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from unstuck.diagnose.effective_lr import Scale, optimizer_family, unwrap
from unstuck.diagnose.flat_rows import (
    RowBuffers,
    capacity,
    flat_view,
    layouts,
    read_back,
    segment_dots,
    segment_norms,
)
from unstuck.diagnose.moments import Copy, SecondMoments
from unstuck.diagnose.records import (
    check_loss,
    decode,
    read_jsonl,
    summarize,
    tensors_in,
    write_jsonl,
)
from unstuck.diagnose.reduced import Chunk, Part, materialize, pending

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

    Raises:
        ValueError: ``every``, ``history`` or ``effective_lr_every`` below 1, a name that is not
            a trainable parameter, or a model without trainable parameters.
        TypeError: ``model`` is not a Module or ``optimizer`` not an Optimizer.
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
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if not isinstance(optimizer, Optimizer):
            raise TypeError(
                f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}"
            )
        checks = {"every": every, "history": history, "effective_lr_every": effective_lr_every}
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
        self._layouts = layouts(self._params)
        self._pointers: list[int] = []
        self._flats: list[list[Tensor]] = []
        numel = max(layout.numel for layout in self._layouts)
        element = max(p.element_size() for p in self._params)
        family = optimizer_family(optimizer)
        self._capacity = capacity(numel, element, buffers=4 if family is None else 5)
        self._moments = None if family is None else SecondMoments(
            unwrap(optimizer), family, self._params, self._layouts, self._capacity, self._device
        )
        self._rows: list[RowBuffers] | None = None  # allocated at the first observe
        self._frames: list[_Frame] = []
        self._carried = False  # frames[0] was reduced already (kept for its update)
        self._prev_update_valid = False  # rows.u[0] holds the update that ends at frames[0]
        self._first_nonfinite: dict[str, int] = {}
        self._first_nonfinite_forward: tuple[str, int] | None = None
        self._flags: list[tuple[str, Tensor]] = []
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
        loss_t = check_loss(loss)
        k = self._count
        self._count += 1
        sampled = k % self.every == 0
        before_sampled = (k + 1) % self.every == 0  # its update precedes a sampled one's
        last = self._frames[-1] if self._frames else None
        after_sampled = last is not None and last.record is not None
        if not (sampled or before_sampled or after_sampled):
            self._flags = []
            return
        if len(self._frames) == self._capacity + self._carried:
            self._reduce()
        frame, present = self._add_frame(sampled)
        if sampled:
            frame.loss, frame.flags = loss_t, self._flags
            wants_lr = (k // self.every) % self.effective_lr_every == 0
            lrs = [g["lr"] for g in self.optimizer.param_groups]
            if not all(type(x) is float for x in lrs):  # a tensor lr: a copy, read later
                lrs = [x.detach().clone() if isinstance(x, Tensor) else x for x in lrs]
            frame.record = pending(k, present, wants_lr, lrs)
        self._flags = []

    def _add_frame(self, sampled: bool = False) -> tuple[_Frame, list[bool] | None]:
        """Snapshot the parameters (and, sampled, the gradients; after a sampled step, the
        optimizer state) now. Returns the frame and which tensors had a gradient (``None``:
        all, or not sampled)."""
        if self._rows is None:
            complex_ = [any(self._params[i].is_complex() for i in x.index) for x in self._layouts]
            self._rows = [
                RowBuffers(layout, self._capacity, has_complex)
                for layout, has_complex in zip(self._layouts, complex_, strict=True)
            ]
        j = len(self._frames)
        grads = [p.grad for p in self._params] if sampled else None
        present: list[bool] | None = None
        for rows, p_views in zip(self._rows, self._flat_params(), strict=True):
            layout = rows.layout
            if grads is None:
                layout.copy_row(rows.p[j], p_views)
                continue
            g_views = [grads[i] for i in layout.index]
            if rows.copy_both(j, p_views, g_views):
                continue
            layout.copy_row(rows.p[j], p_views)
            copied = layout.copy_row(rows.g[j], g_views, fill=0.0)
            if copied is not layout.all_present:
                present = present or [True] * len(self._params)
                for i, there in zip(layout.index, copied, strict=True):
                    present[i] = there
        frame = _Frame(self._steps, sampled)
        previous = self._frames[-1] if self._frames else None
        if (
            self._moments is not None
            and previous is not None
            and previous.record is not None
            and previous.record["wants_lr"]
            and self._steps - previous.steps == 1
        ):
            frame.moments, previous.rect = self._moments.copy()
        self._frames.append(frame)
        return frame, present

    def _flat_params(self) -> list[list[Tensor]]:
        """Per layout, flat views of its parameters (real views of complex ones), cached while
        every parameter keeps its storage (``p.data = ...`` replaces it)."""
        pointers = [p.data_ptr() for p in self._params]
        if pointers != self._pointers:
            self._pointers = pointers
            flats = [flat_view(p) for p in self._params]
            views = [p if f is None else f for p, f in zip(self._params, flats, strict=True)]
            self._flats = [[views[i] for i in layout.index] for layout in self._layouts]
        return self._flats

    # ----------------------------------------------------------------------------- reduce
    def _reduce(self, final: bool = False) -> None:
        """Reduce the buffered frames into records; keep the last frame for the next update.

        ``final``: first snapshot the parameters now if that completes the last record (exactly
        one optimizer step since it), as when the history is read.
        """
        if final and self._frames:
            last = self._frames[-1]
            if last.record is not None and self._steps - last.steps == 1:
                if len(self._frames) == self._capacity + self._carried:
                    self._reduce()
                self._add_frame()
        frames = self._frames
        m = len(frames)
        if m == 0 or (m == 1 and self._carried):
            return
        assert self._rows is not None
        start = 1 if self._carried else 0  # frames whose norms are still to compute
        sampled = [j for j in range(start, m) if frames[j].sampled]
        valid = [self._prev_update_valid] + [
            frames[j].steps - frames[j - 1].steps == 1 for j in range(1, m)
        ]
        parts: list[Tensor] = []
        plan: list[Part] = []
        r = len(sampled)
        if sampled:
            contiguous = sampled[-1] - sampled[0] == r - 1
            pick = (
                slice(sampled[0], sampled[-1] + 1) if contiguous
                else torch.tensor(sampled, device=self._device)
            )
        for rows in self._rows:
            layout, n, index = rows.layout, len(rows.layout.index), rows.layout.index
            if sampled:
                parts += [segment_norms(rows.g[pick], layout), segment_norms(rows.p[pick], layout)]
                plan += [Part("grad", index, r, n), Part("weight", index, r, n)]
            # u[0]: the update that ended at frames[0]; u[j] = p[j] - p[j-1]
            torch.sub(rows.p[1:m], rows.p[: m - 1], out=rows.u[1:m])
            parts.append(segment_norms(rows.u[:m], layout))
            parts.append(
                segment_dots(rows.u[1:m], rows.u[: m - 1], layout, out=rows.scratch[: m - 1])
            )
            plan += [Part("update", index, m, n), Part("dot", index, m - 1, n)]
        losses = [frames[j].loss for j in sampled if frames[j].loss is not None]
        if losses:
            try:
                parts.append(torch.stack(losses))
            except RuntimeError:  # losses of different dtypes or devices
                parts.append(torch.stack([x.to(self._device, torch.float64) for x in losses]))
        lr_frames = [j for j in range(1, m) if frames[j].moments is not None]
        if lr_frames:
            assert self._moments is not None
            parts.append(self._moments.statistics([frames[j].moments for j in lr_frames]))
        parts += [f for j in sampled for _, f in frames[j].flags]
        values = read_back(parts, self._device)
        self._store(frames, sampled, valid, plan, values, lr_frames)
        # keep the last frame (its update needs the next snapshot) and the last update
        for rows in self._rows:
            rows.p[0].copy_(rows.p[m - 1])
            rows.u[0].copy_(rows.u[m - 1])
        last = frames[-1]
        last.sampled = False  # reduced already
        last.moments = None
        self._prev_update_valid = valid[m - 1]
        self._frames = [last]
        self._carried = True
        if self._moments is not None:
            self._moments.reset()

    def _store(
        self,
        frames: list[_Frame],
        sampled: list[int],
        valid: list[bool],
        plan: list[Part],
        values: list[float],
        lr_frames: list[int],
    ) -> None:
        """Point the reduced frames' records at the read-back ``values`` (decoded when read) and
        act now on what cannot wait: non-finite gradients and forward outputs."""
        pos = sum(part.rows * part.columns for part in plan)
        loss_at: dict[int, int] = {}
        for j in sampled:
            if frames[j].loss is not None:
                loss_at[j], pos = pos, pos + 1
        lr: dict[int, tuple[int, list[Scale | None]]] = {}
        for j in lr_frames:
            found = frames[j].moments.scales()  # type: ignore[union-attr]
            lr[j] = (pos, found)
            pos += 3 * sum(s is not None for s in found) + 1
        chunk = Chunk(plan, values, len(self._params), lr)
        finite = chunk.gradients_finite()
        for r, j in enumerate(sampled):
            frame = frames[j]
            record = frame.record
            assert record is not None
            record["sample"] = (chunk, r, loss_at.get(j))
            if not finite:
                grad, _, norm = chunk.gradients(r, record["present"])
                if norm is not None and not math.isfinite(norm):
                    record["nonfinite_grads"] = self._nonfinite(j, record, grad)
            if frame.flags:
                flags = values[pos : pos + len(frame.flags)]
                pos += len(frame.flags)
                forward = next((name for (name, _), ok in zip(frame.flags, flags) if not ok), None)
                record["nonfinite_forward"] = forward
                if forward is not None and self._first_nonfinite_forward is None:
                    self._first_nonfinite_forward = (forward, record["step"])
                frame.flags = []
            frame.loss = None
        # row j + 1 of the update table is the update that followed frames[j]
        for j in range(len(frames) - 1):
            record = frames[j].record
            if record is None:
                continue
            if valid[j + 1]:
                lr_key = j + 1 if record["wants_lr"] else None
                record["update"] = (chunk, j, valid[j], lr_key)
                record["rectification"] = frames[j].rect
            self._records.append(record)
            frames[j].record = None

    def _nonfinite(self, j: int, record: dict[str, Any], grad: list[float | None]) -> list[str]:
        """Names of the tensors whose copied gradient (frame ``j``) holds NaN or Inf (a norm
        that overflowed on finite values does not count); records the first step of each."""
        assert self._rows is not None
        bad = []
        for rows in self._rows:
            for i, (start, stop) in zip(rows.layout.index, rows.layout.bounds, strict=True):
                norm = grad[i]
                if norm is None or math.isfinite(norm):
                    continue
                if not bool(torch.isfinite(rows.g[j, start:stop]).all()):
                    bad.append(self.names[i])
                    self._first_nonfinite.setdefault(self.names[i], record["step"])
        return bad

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
        if self._carried and self._frames[0].record is not None:
            return self._frames[0].record
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
        """Remove the hooks (idempotent); the history stays readable."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"Monitor({len(self.names)} tensors, every={self.every}, "
            f"records={len(self._records)}, buffered observes={len(self._frames)})"
        )


class _Frame:
    """One observe that was snapshotted: row ``j`` of the parameter buffers for frame ``j``."""

    __slots__ = (
        "flags", "loss", "moments", "record", "rect", "sampled", "steps",
    )

    def __init__(self, steps: int, sampled: bool) -> None:
        self.steps = steps  # optimizer steps counted when it was taken
        self.sampled = sampled  # its gradients were copied (and are not reduced yet)
        self.loss: Tensor | None = None
        self.flags: list[tuple[str, Tensor]] = []
        self.record: dict[str, Any] | None = None  # sampled: its record, until complete
        self.rect: dict[str, Any] | None = None
        self.moments: Copy | None = None  # the second moments the step before it left
