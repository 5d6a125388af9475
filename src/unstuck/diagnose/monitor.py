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

The update of step ``k`` and the optimizer state it left are read at the next observe (or when
:attr:`history`, :meth:`summary` or :meth:`to_jsonl` is called), so each observe makes one host
synchronisation and the optimizer is never wrapped; a post-step hook only counts steps, so a step
that was skipped (``GradScaler`` on overflow) or several steps between two observes leave the
update ``None`` rather than a wrong number. Anything else that changes the parameters between
two observes counts as part of the update.

Cost: the norms are multi-tensor (``torch._foreach_norm``); sampled steps keep two flat copies of
the parameters (the previous parameters and the previous update). Observes that are not sampled,
nor next to a sampled one, cost almost nothing. ``watch_forward`` adds one ``isfinite`` test per
module per forward pass. The effective-lr medians (one selection per tensor and one over all)
are about half of what a sampled observe costs on a small model; ``effective_lr_every=k``
computes the effective lr on one sampled record in ``k`` only (default 1: on every one).
Measured by ``benchmarks/monitor_overhead.py``. Nothing here changes the model, its gradients or
the optimizer. Decoding, summary and JSON Lines live in :mod:`unstuck.diagnose.records`.

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

from unstuck.diagnose.effective_lr import batched, rectification, scales, unbatch
from unstuck.diagnose.records import (
    check_loss,
    decode,
    finish_update,
    read_jsonl,
    summarize,
    tensors_in,
    write_jsonl,
)

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
            ``effective_lr_every`` (default 1: on every one; the others hold ``None``). The
            per-tensor medians are most of the monitor's cost on small models: 10 cuts the
            overhead at ``every=1`` by about half (``benchmarks/monitor_overhead.py``).

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
        effective_lr_every: int = 1,
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
        self.effective_lr_every = effective_lr_every
        self.names: list[str] = list(trainable)
        self._params: list[Tensor] = list(trainable.values())
        self._sizes = [p.numel() for p in self._params]
        flat_groups: dict[tuple[torch.device, torch.dtype], list[int]] = {}
        for i, p in enumerate(self._params):
            flat_groups.setdefault((p.device, p.dtype), []).append(i)
        self._flat_groups = list(flat_groups.values())
        self._device = self._params[0].device
        self._one_device = all(p.device == self._device for p in self._params)
        self._records: deque[dict[str, Any]] = deque(maxlen=history)
        self._pending: dict[str, Any] | None = None
        self._count = 0
        self._steps = 0
        self._snap: list[Tensor] | None = None  # flat parameters per flat group
        self._snap_steps = 0
        self._prev_u: list[Tensor] | None = None  # flat update per flat group
        self._prev_u_id = -1
        self.first_nonfinite: dict[str, int] = {}
        """Parameter name -> first sampled step at which its gradient was non-finite."""
        self.first_nonfinite_forward: tuple[str, int] | None = None
        """``(module name, step)`` of the first non-finite forward output seen (watch_forward)."""
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
        every = self.every
        sampled = k % every == 0
        keep_snap = sampled or (k + 1) % every == 0
        stepped = self._steps - self._snap_steps
        measure = self._snap is not None and stepped == 1
        pending = self._pending
        self._pending = None
        if pending is not None and not measure:
            self._records.append(pending)  # no single step since: update unknown
            pending = None
        if not (sampled or keep_snap or measure):
            self._snap = self._prev_u = None
            return
        self._run(k, loss_t, sampled, keep_snap, measure, pending)

    def _run(
        self,
        k: int | None,
        loss_t: Tensor | None,
        sampled: bool,
        keep_snap: bool,
        measure: bool,
        pending: dict[str, Any] | None,
    ) -> None:
        params = self._params
        n = len(params)
        norm_in: list[Tensor] = []
        scalars: list[Tensor] = []
        grads: list[int] = []
        if sampled:
            gs = []
            for i, p in enumerate(params):
                g = p.grad
                if g is not None:
                    if g.is_sparse:
                        g = g.coalesce()._values()
                    gs.append(g.detach())
                    grads.append(i)
            norm_in += gs
            norm_in += [p.detach() for p in params]
        flat = u = None
        cos = False
        if measure or keep_snap:
            flat = [
                torch.cat([params[i].detach().reshape(-1) for i in idx])
                for idx in self._flat_groups
            ]
        if measure:
            u = [a - b for a, b in zip(flat, self._snap, strict=True)]
            u_id = self._snap_steps + 1
            if pending is not None:
                norm_in += self._views(u)
                cos = self._prev_u is not None and self._prev_u_id == u_id - 1
                if cos:
                    norm_in += self._views([a + b for a, b in zip(u, self._prev_u, strict=True)])
                    norm_in += self._views([a - b for a, b in zip(u, self._prev_u, strict=True)])
        norms = torch._foreach_norm(norm_in) if norm_in else []
        if sampled and grads:
            scalars.append(torch.linalg.vector_norm(torch.stack(norms[: len(grads)])))
        if sampled and loss_t is not None:
            scalars.append(loss_t)
        found = rect = None
        if pending is not None:
            found = scales(self.optimizer, params)
            rect = rectification(self.optimizer, params)
            if found is not None and (pending["step"] // self.every) % self.effective_lr_every:
                found = None  # not an effective-lr record: skip the selections
                pending["effective_lr"] = None
            if found is not None:
                selections = batched(found)
                scalars += selections
        flags = self._flags
        self._flags = []
        scalars += [f for _, f in flags]
        everything = list(norms) + scalars
        if not everything:
            values: list[float] = []
        elif self._one_device:
            values = torch.stack(everything).tolist()
        else:
            values = torch.stack([t.to(self._device) for t in everything]).tolist()

        # ---- decode (host side)
        pos = 0
        if sampled:
            gn = values[: len(grads)]
            wn = values[len(grads) : len(grads) + n]
            pos = len(grads) + n
        if pending is not None and u is not None:
            un = values[pos : pos + n]
            pos += n
            if cos:
                sn = values[pos : pos + n]
                dn = values[pos + n : pos + 2 * n]
                pos += 2 * n
            finish_update(pending, un, sn if cos else None, dn if cos else None)
        sc = len(norms)
        if sampled:
            grad_norms: list[float | None] = [None] * n
            for i, v in zip(grads, gn, strict=True):
                grad_norms[i] = v
            total = None
            if grads:
                total = values[sc]
                sc += 1
            loss_v = None
            if loss_t is not None:
                loss_v = values[sc]
                sc += 1
        if pending is not None:
            if found is not None:
                m = len(selections)
                pending["effective_lr"] = unbatch(found, values[sc : sc + m])
                sc += m
            pending["rectification"] = rect
            self._records.append(pending)
        forward = None
        for (name, _), ok in zip(flags, values[sc:], strict=True):
            if not ok:
                forward = name
                break
        if sampled:
            bad = [
                self.names[i]
                for i, v in zip(grads, gn, strict=True)
                if not math.isfinite(v) and not bool(torch.isfinite(params[i].grad).all())
            ]
            for name in bad:
                self.first_nonfinite.setdefault(name, k)
            if forward is not None and self.first_nonfinite_forward is None:
                self.first_nonfinite_forward = (forward, k)
            self._pending = {
                "step": k,
                "loss": loss_v,
                "grad_norm": total,
                "grad": grad_norms,
                "weight": wn,
                "update": None,
                "cosine": None,
                "s2d2": None,
                "effective_lr": None,
                "rectification": None,
                "nonfinite_grads": bad,
                "nonfinite_forward": forward,
            }
        # ---- buffers for the next observe
        if u is not None:  # kept while it can still be the previous update of a sampled step
            if sampled or k is None:
                self._prev_u, self._prev_u_id = u, self._snap_steps + 1
            else:
                self._prev_u = None
        if keep_snap:
            self._snap, self._snap_steps = flat, self._steps
        else:
            self._snap = None

    def _views(self, flats: list[Tensor]) -> list[Tensor]:
        """Per-parameter views (in parameter order) of per-flat-group tensors."""
        out: list[Tensor] = [None] * len(self._params)  # type: ignore[list-item]
        for idx, flat in zip(self._flat_groups, flats, strict=True):
            for i, view in zip(idx, flat.split([self._sizes[i] for i in idx]), strict=True):
                out[i] = view
        return out

    # ----------------------------------------------------------------------------- results
    def _flush(self) -> None:
        """Complete the last sampled record if exactly one step was taken since it."""
        if self._pending is None:
            return
        if self._snap is not None and self._steps - self._snap_steps == 1:
            pending, self._pending = self._pending, None
            self._run(None, None, False, True, True, pending)
        # else: keep it pending (no step yet) and show it as it is

    @property
    def history(self) -> list[dict[str, Any]]:
        """The records, oldest first, as plain dicts (JSON-ready; see the module docstring).

        The last record's update fields are ``None`` until the optimizer has stepped after it.
        """
        self._flush()
        raw = list(self._records)
        if self._pending is not None:
            raw.append(self._pending)
        return [decode(r, self.names) for r in raw[-self._records.maxlen :]]  # type: ignore[misc]

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
            f"records={len(self._records) + (self._pending is not None)})"
        )

