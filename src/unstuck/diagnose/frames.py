"""The Monitor's snapshots: which observes are copied, into which rows, and what they measure.

An observe that is sampled, or next to a sampled one, becomes a :class:`Frame`: the parameters
(and, when sampled, the gradients) are copied into logical row ``j`` of the row buffers of every
layout (:class:`~unstuck.diagnose.flat_rows.RowBuffers`), and after a sampled step of an adaptive
optimizer its second moments go into a row of :class:`~unstuck.diagnose.moments.SecondMoments`.
:meth:`Snapshots.measure` turns the buffered rows into the per-tensor norms and dot products of
a reduction (tensors, read back by the caller together with its own), and :meth:`Snapshots.keep`
keeps the last frame, whose update needs the next snapshot.

Cost: an observe only *copies*: the parameters and, when sampled, the gradients go into one row
of a preallocated buffer per device and dtype, with one ``torch._foreach_copy_`` (after a sampled
step of an adaptive optimizer its second moments go into a row of another buffer). The norms, dot
products, effective-lr statistics and the one read-back to the host are computed for all buffered
rows together when the buffer is full (up to 128 rows within 64 MiB) or when the history, the
summary or the non-finite findings are read, so their fixed cost per torch call is shared by many
steps (:mod:`unstuck.diagnose.flat_rows`); the per-tensor Python lists of the records are built
only when the history is read (:mod:`unstuck.diagnose.reduced`). On a large model a buffer holds
one row, and a reduction makes a few passes over memory per observe: the two rows then swap roles
instead of being copied, the norms of the last update are kept rather than recomputed, and the dot
products run segment by segment (``torch.dot``). Observes that are neither sampled nor next to a
sampled one copy nothing. The exact per-tensor medians of the effective lr (one selection per
tensor and one over all) cost about as much as everything else together on a small model, hence
the Monitor's ``effective_lr_every`` (default 10).

Example:
    >>> import torch
    >>> from unstuck.diagnose.flat_rows import layouts
    >>> w = torch.nn.Parameter(torch.ones(3))
    >>> snaps = Snapshots([w], layouts([w]), capacity=4, moments=None)
    >>> frame, present = snaps.add(steps=0, sampled=False)
    >>> len(snaps.frames), frame.sampled, present
    (1, False, None)
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from unstuck.diagnose.effective_lr import Scale
from unstuck.diagnose.flat_rows import (
    Layout,
    RowBuffers,
    flat_view,
    segment_dots,
    segment_norms,
)
from unstuck.diagnose.moments import Copy, SecondMoments
from unstuck.diagnose.reduced import Chunk, Part

__all__ = ["Frame", "Measured", "Snapshots"]


class Frame:
    """One observe that was snapshotted: logical row ``j`` of the row buffers for frame ``j``."""

    __slots__ = (
        "bad", "flags", "grad_norms", "loss", "moments", "record", "rect", "sampled", "steps",
    )

    def __init__(self, steps: int, sampled: bool) -> None:
        self.steps = steps  # optimizer steps counted when it was taken
        self.sampled = sampled  # its gradients were copied (and are not reduced yet)
        self.loss: Tensor | None = None
        self.flags: list[tuple[str, Tensor]] = []
        self.record: dict[str, Any] | None = None  # sampled: its record, until complete
        self.rect: dict[str, Any] | None = None
        self.moments: Copy | None = None  # the second moments the step before it left
        # large layouts on the CPU: gradient norms taken at the observe instead of a copy
        # (layout number -> (1, tensors) norms), and the names of non-finite gradients found then
        self.grad_norms: dict[int, Tensor] = {}
        self.bad: dict[int, list[str]] = {}


class Measured:
    """What :meth:`Snapshots.measure` computed: the sampled frames, whether each frame's
    incoming update is one optimizer step (``valid``), the :class:`Part` s of ``parts``."""

    __slots__ = ("parts", "plan", "sampled", "valid")

    def __init__(
        self, sampled: list[int], valid: list[bool], plan: list[Part], parts: list[Tensor]
    ) -> None:
        self.sampled, self.valid, self.plan, self.parts = sampled, valid, plan, parts


class Snapshots:
    """The buffered frames of a :class:`~unstuck.diagnose.Monitor` and their row buffers.

    Args:
        params: the watched parameters, in order.
        layouts: their layouts (:func:`~unstuck.diagnose.flat_rows.layouts`).
        capacity: rows per buffer (frames buffered before a reduction, besides the kept one).
        moments: the second-moment buffers of an adaptive optimizer, else ``None``.
        names: the parameters' names (for ``nonfinite_grads``).
    """

    def __init__(
        self,
        params: list[Tensor],
        layouts: list[Layout],
        capacity: int,
        moments: SecondMoments | None,
        names: list[str] | None = None,
    ) -> None:
        self.params, self.layouts, self.capacity, self.moments = params, layouts, capacity, moments
        self.names = names if names is not None else [str(i) for i in range(len(params))]
        self.device = params[0].device
        self.rows: list[RowBuffers] | None = None  # allocated at the first snapshot
        self.frames: list[Frame] = []
        self.carried = False  # frames[0] was reduced already (kept for its update)
        self.prev_update_valid = False  # logical u[0] holds the update that ends at frames[0]
        self._pointers: list[int] = []
        self._flats: list[list[Tensor]] = []
        self._flat = False  # every parameter has a flat view

    def full(self) -> bool:
        """Whether every row is taken (reduce before the next snapshot)."""
        return len(self.frames) == self.capacity + self.carried

    def pending(self) -> bool:
        """Whether frames wait for a reduction."""
        return len(self.frames) > self.carried

    def add(
        self, steps: int, sampled: bool = False, wants_moments: bool = False
    ) -> tuple[Frame, list[bool] | None]:
        """Snapshot the parameters (and, sampled, the gradients) now as a new frame.

        ``steps``: optimizer steps so far. ``wants_moments``: copy the optimizer's second
        moments too (the previous frame is a sampled one that wants the effective lr, and one
        step was taken since). Returns the frame and which tensors had a gradient (``None``:
        all, or not sampled).
        """
        if self.rows is None:
            self.rows = [
                RowBuffers(x, self.capacity, any(self.params[i].is_complex() for i in x.index))
                for x in self.layouts
            ]
        j = len(self.frames)
        grads = [p.grad for p in self.params] if sampled else None
        present: list[bool] | None = None
        frame = Frame(steps, sampled)
        for number, (rows, p_views) in enumerate(zip(self.rows, self._flat_params(), strict=True)):
            layout = rows.layout
            row = rows.row(j)
            if grads is None or self._direct_norms(frame, number, grads):
                if self._flat:  # flat views of every parameter: one torch.cat
                    torch.cat(p_views, out=rows.p_rows[row])
                else:
                    layout.copy_row(rows.p_rows[row], p_views)
                continue
            g_views = [grads[i] for i in layout.index]
            if rows.copy_both(j, p_views, g_views):
                continue
            layout.copy_row(rows.p[row], p_views)
            copied = layout.copy_row(rows.g[row], g_views, fill=0.0)
            if copied is not layout.all_present:
                present = present or [True] * len(self.params)
                for i, there in zip(layout.index, copied, strict=True):
                    present[i] = there
        if wants_moments and self.moments is not None:
            frame.moments, self.frames[-1].rect = self.moments.copy()
        self.frames.append(frame)
        return frame, present

    def _direct_norms(self, frame: Frame, number: int, grads: list[Tensor | None]) -> bool:
        """On a large layout on the CPU whose gradients are all there, dense and real, take their
        norms now (one ``torch._foreach_norm``, one pass over them) rather than copying them (two
        passes, and one more to reduce the copy); a non-finite norm is looked into at once (the
        CPU has nothing to wait for). Returns whether it did."""
        layout = self.layouts[number]
        if not layout.large or layout.device.type != "cpu" or self.rows[number].complex:  # type: ignore[index]
            return False
        tensors = [grads[i] for i in layout.index]
        if any(g is None or g.layout != torch.strided or g.dtype != layout.dtype
               for g in tensors):
            return False
        norms = torch.stack(torch._foreach_norm(tensors))  # type: ignore[arg-type]
        if not bool(torch.isfinite(norms).all()):
            frame.bad[number] = [self.names[i] for i, g in zip(layout.index, tensors, strict=True)
                                 if not bool(torch.isfinite(g).all())]  # type: ignore[union-attr]
        frame.grad_norms[number] = norms.unsqueeze(0)
        return True

    def _flat_params(self) -> list[list[Tensor]]:
        """Per layout, flat views of its parameters (real views of complex ones), cached while
        every parameter keeps its storage (``p.data = ...`` replaces it)."""
        pointers = [p.data_ptr() for p in self.params]
        if pointers != self._pointers:
            self._pointers = pointers
            flats = [flat_view(p) for p in self.params]
            self._flat = None not in flats
            views = [p if f is None else f for p, f in zip(self.params, flats, strict=True)]
            self._flats = [[views[i] for i in layout.index] for layout in self.layouts]
        return self._flats

    def measure(self) -> Measured:
        """The norms and dot products of the buffered frames, as tensors (not read back).

        Per layout: gradient and weight norms of the sampled frames not reduced yet, the norms of
        the updates ``u[j] = p[j] - p[j - 1]`` (row 0: the update that ended at ``frames[0]``,
        known from the last reduction) and the dot products ``u[j + 1] . u[j]``.
        """
        assert self.rows is not None
        frames = self.frames
        m = len(frames)
        start = 1 if self.carried else 0  # frames whose norms are still to compute
        sampled = [j for j in range(start, m) if frames[j].sampled]
        valid = [self.prev_update_valid] + [
            frames[j].steps - frames[j - 1].steps == 1 for j in range(1, m)
        ]
        parts: list[Tensor] = []
        plan: list[Part] = []
        r = len(sampled)
        for number, rows in enumerate(self.rows):
            layout, n, index = rows.layout, len(rows.layout.index), rows.layout.index
            if sampled:
                if sampled[-1] - sampled[0] == r - 1:
                    g = rows.span(rows.g, sampled[0], sampled[-1] + 1)
                    p = rows.span(rows.p, sampled[0], sampled[-1] + 1)
                else:
                    pick = torch.tensor([rows.row(j) for j in sampled], device=self.device)
                    g, p = rows.g[pick], rows.p[pick]
                if all(number in frames[j].grad_norms for j in sampled):
                    grad = torch.cat([frames[j].grad_norms[number] for j in sampled])
                else:
                    grad = segment_norms(g, layout)
                parts += [grad, segment_norms(p, layout)]
                plan += [Part("grad", index, r, n), Part("weight", index, r, n)]
            # u[j] = p[j] - p[j-1], j >= 1; the norms of u[0] were computed by the last reduction
            first = rows.last_update_norms
            if first is None:
                first = rows.u.new_full((1, n), torch.nan)
            if layout.large and m == 2 and not valid[1]:
                # one row, not one step since the last frame: nothing reads this update
                norms = dots = rows.u.new_full((1, n), torch.nan)
            else:
                after = rows.span(rows.u, 1, m)
                torch.sub(rows.span(rows.p, 1, m), rows.span(rows.p, 0, m - 1), out=after)
                norms = segment_norms(after, layout)
                before = rows.span(rows.u, 0, m - 1)
                out = None if rows.scratch is None else rows.scratch[: m - 1]
                dots = segment_dots(after, before, layout, out=out)
            parts += [torch.cat([first, norms]), dots]
            plan += [Part("update", index, m, n), Part("dot", index, m - 1, n)]
            if m > 1:
                rows.last_update_norms = norms[-1:]
        return Measured(sampled, valid, plan, parts)

    def attach(
        self, measured: Measured, values: list[float], lr_frames: list[int]
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Point the reduced frames' records at the read-back ``values`` (``measured.parts``,
        then the losses of the sampled frames, the effective-lr statistics of ``lr_frames``, the
        forward flags; decoded when read) and find now what cannot wait: non-finite gradients
        and forward outputs. Returns the records completed (their update known, in order) and
        the records with a non-finite finding."""
        frames, sampled, valid, plan = self.frames, measured.sampled, measured.valid, measured.plan
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
        chunk = Chunk(plan, values, len(self.params), lr)
        finite = chunk.gradients_finite()
        flagged = []
        for r, j in enumerate(sampled):
            frame = frames[j]
            record = frame.record
            assert record is not None
            record["sample"] = (chunk, r, loss_at.get(j))
            if not finite:
                grad, _, norm = chunk.gradients(r, record["present"])
                if norm is not None and not math.isfinite(norm):
                    record["nonfinite_grads"] = self._nonfinite(j, grad)
            if frame.flags:
                flags = values[pos : pos + len(frame.flags)]
                pos += len(frame.flags)
                forward = next((name for (name, _), ok in zip(frame.flags, flags) if not ok), None)
                record["nonfinite_forward"] = forward
                frame.flags = []
            if record["nonfinite_grads"] or record["nonfinite_forward"] is not None:
                flagged.append(record)
            frame.loss = None
        # row j + 1 of the update table is the update that followed frames[j]
        done = []
        for j in range(len(frames) - 1):
            record = frames[j].record
            if record is None:
                continue
            if valid[j + 1]:
                lr_key = j + 1 if record["wants_lr"] else None
                record["update"] = (chunk, j, valid[j], lr_key)
                record["rectification"] = frames[j].rect
            done.append(record)
            frames[j].record = None
        return done, flagged

    def _nonfinite(self, j: int, grad: list[float | None]) -> list[str]:
        """Names of the tensors whose copied gradient (frame ``j``) holds NaN or Inf (a norm
        that overflowed on finite values does not count)."""
        assert self.rows is not None
        bad = []
        for number, rows in enumerate(self.rows):
            if number in self.frames[j].grad_norms:  # looked into at the observe
                bad += self.frames[j].bad.get(number, [])
                continue
            g = rows.g[rows.row(j)]
            for i, (start, stop) in zip(rows.layout.index, rows.layout.bounds, strict=True):
                norm = grad[i]
                infinite = norm is not None and not math.isfinite(norm)
                if infinite and not bool(torch.isfinite(g[start:stop]).all()):
                    bad.append(self.names[i])
        return bad

    def keep(self, valid: list[bool]) -> None:
        """After a reduction: keep the last frame (its update needs the next snapshot) and the
        last update; free the second-moment rows."""
        assert self.rows is not None
        m = len(self.frames)
        for rows in self.rows:
            rows.keep(m)
        last = self.frames[-1]
        last.sampled = False  # reduced already
        last.moments = None
        self.prev_update_valid = valid[m - 1]
        self.frames = [last]
        self.carried = True
        if self.moments is not None:
            self.moments.reset()
