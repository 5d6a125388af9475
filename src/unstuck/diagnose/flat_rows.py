"""Flat row buffers for :class:`~unstuck.diagnose.Monitor`: copy now, reduce many rows at once.

On a small model a training step takes a few hundred microseconds and every torch call costs a
few, so a monitor that reduces each step on its own (a norm per tensor, a median, a read-back)
costs as much as the step. The monitor therefore only *copies* what it needs at each observe
into one row of preallocated buffers per device and dtype (:class:`RowBuffers`: parameters and
gradients with one ``torch._foreach_copy_``; second moments with :meth:`Layout.copy_row`), and
reduces all the rows of a buffer together when it is full or when the history is read: one
reduction per parameter tensor over every row, instead of one per tensor per step. On a large
model a row is large, the buffer holds one row (:func:`capacity`), and this is the plain
per-step computation.

Reductions per tensor ("segment" = the slice ``[start, stop)`` of a row that holds one tensor):

- :func:`segment_norms`: L2 norms, ``(rows, tensors)``, each as ``torch.linalg.vector_norm`` of
  the segment (few tensors: one call per tensor over all rows; many tensors: one
  ``torch._foreach_norm`` per row);
- :func:`segment_dots`: dot products of two buffers' segments;
- :func:`segment_reduce`: sums, largest or smallest values.

A layout of :data:`LARGE_LAYOUT` elements or more (a model of a million parameters) holds few
rows; there each segment of each row is reduced on its own: ``torch.dot`` for the dot products
(one pass over memory, no buffer of products) and one largest / smallest value per tensor
(``torch.segment_reduce`` is several times slower on the CPU). Which path a layout takes depends
only on its size, never on the number of rows, so the records do not depend on when they are
reduced.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = [
    "LARGE_LAYOUT",
    "ROW_BUDGET_BYTES",
    "Layout",
    "RowBuffers",
    "capacity",
    "flat_view",
    "layouts",
    "read_back",
    "segment_dots",
    "segment_norms",
    "segment_reduce",
]

ROW_BUDGET_BYTES = 64 * 2**20
"""Memory the row buffers of one layout may take (all buffers together), in bytes."""

MAX_ROWS = 128
"""At most this many observes are buffered before they are reduced."""

LARGE_LAYOUT = 2**20
"""Layouts of at least this many elements reduce each segment of each row on its own."""


def capacity(numel: int, element_size: int, buffers: int) -> int:
    """Rows per buffer: as many as ``buffers`` buffers of ``numel`` elements fit in
    :data:`ROW_BUDGET_BYTES`, between 1 and :data:`MAX_ROWS`."""
    per_row = max(numel * element_size * buffers, 1)
    return max(1, min(MAX_ROWS, ROW_BUDGET_BYTES // per_row))


class Layout:
    """Where each tensor of one (device, dtype) group sits in a flat row.

    Args:
        index: positions of the tensors in the caller's list (the parameter order).
        sizes: their numbers of elements.
        device, dtype: of the tensors and of the rows.
    """

    def __init__(
        self, index: Sequence[int], sizes: Sequence[int], device: torch.device, dtype: torch.dtype
    ) -> None:
        self.index = list(index)
        self.sizes = list(sizes)
        starts = [0]
        for size in self.sizes:
            starts.append(starts[-1] + size)
        self.bounds = list(zip(starts[:-1], starts[1:], strict=True))
        self.numel = starts[-1]
        self.device, self.dtype = device, dtype
        self.lengths = torch.tensor(self.sizes, dtype=torch.int64, device=device)
        self.large = self.numel >= LARGE_LAYOUT
        self.all_present = (True,) * len(self.sizes)
        """What :meth:`copy_row` returns when every tensor was there (the same object)."""

    def empty(self, rows: int) -> Tensor:
        """An uninitialised ``(rows, numel)`` buffer."""
        return torch.empty(rows, self.numel, device=self.device, dtype=self.dtype)

    def copy_row(
        self, row: Tensor, tensors: Sequence[Tensor | None], fill: float = math.nan
    ) -> Sequence[bool]:
        """Copy ``tensors`` (in :attr:`index` order) into ``row``; returns which were present
        (:attr:`all_present` itself when all were).

        The usual case (every tensor there, dense, of the row's dtype and device) is one
        ``torch.cat(..., out=row)``; one-dimensional tensors are taken as they are (pass flat views
        to save the reshapes). Otherwise each is copied on its own: a missing tensor (``None``)
        leaves NaN in its segment, a sparse one is densified, a complex one is copied as its real
        view (its segment is twice its number of elements).
        """
        if not any(t is None for t in tensors):
            try:
                torch.cat([t if t.dim() == 1 else t.reshape(-1) for t in tensors], out=row)  # type: ignore[union-attr]
                return self.all_present
            except (RuntimeError, TypeError):  # sparse, complex, other dtype: one by one
                pass
        with torch.no_grad():
            for t, (start, stop) in zip(tensors, self.bounds, strict=True):
                segment = row[start:stop]
                if t is None:
                    segment.fill_(fill)
                    continue
                if t.layout != torch.strided:
                    t = t.to_dense()
                if t.is_complex():
                    t = torch.view_as_real(t)
                segment.copy_(t.reshape(-1))
        return tuple(t is not None for t in tensors)

    def segments(self, row: Tensor) -> list[Tensor]:
        """Views of one row's segments, one per tensor."""
        return list(row.split(self.sizes))


class RowBuffers:
    """The Monitor's row buffers of one :class:`Layout`: parameters and gradients side by side
    in one buffer (one extra row for the frame kept from the last reduction), updates (row 0: the
    last update) and the products for the dot products.

    Rows are addressed by their *logical* number ``j`` (frame ``j`` of the monitor); physical row
    ``(base + j) % (rows + 1)`` holds it. With more than one row per buffer ``base`` stays 0 and
    the frame kept from a reduction is copied to row 0 (:meth:`keep`); with one row (a large
    model) :meth:`keep` swaps the two rows' roles instead of copying a whole row.
    """

    def __init__(self, layout: Layout, rows: int, complex_: bool) -> None:
        self.layout = layout
        self.complex = complex_  # holds complex parameters (copied as real views, one by one)
        self.both = torch.empty(rows + 1, 2 * layout.numel, device=layout.device,
                                dtype=layout.dtype)
        self.p, self.g = self.both[:, : layout.numel], self.both[:, layout.numel :]
        self.p_rows = list(self.p.unbind(0))  # row views made once
        self.u = layout.empty(rows + 1)
        self.scratch = None if layout.large else layout.empty(rows)
        self.base = 0
        self.last_update_norms: Tensor | None = None  # (1, tensors): of logical u[0], when known
        self._views: list[list[Tensor] | None] = [None] * (rows + 1)

    def row(self, j: int) -> int:
        """The physical row of logical row ``j``."""
        return (self.base + j) % self.p.shape[0]

    def span(self, buffer: Tensor, start: int, stop: int) -> Tensor:
        """Logical rows ``[start, stop)`` of ``buffer`` (``p``, ``g`` or ``u``) as one view."""
        first = self.row(start)
        assert first + stop - start <= buffer.shape[0], "a span wraps around the buffer"
        return buffer[first : first + stop - start]

    def keep(self, m: int) -> None:
        """Make logical row ``m - 1`` (parameters and update) the new logical row 0."""
        if m <= 1:
            return
        if self.p.shape[0] == 2:  # two rows: swap their roles
            self.base = (self.base + m - 1) % 2
            return
        self.p[0].copy_(self.p[m - 1])
        self.u[0].copy_(self.u[m - 1])

    def copy_both(self, j: int, params: list[Tensor], grads: list[Tensor | None]) -> bool:
        """Copy flat parameter views and the gradients into row ``j`` with one
        ``torch._foreach_copy_`` onto the row's segments (the gradients' viewed in their
        shapes; cached per row); ``False`` (nothing copied) when a gradient is missing or
        cannot be copied so (sparse, complex, another shape, dtype or device), and then
        :meth:`Layout.copy_row` copies them one by one."""
        if self.complex or any(g is None for g in grads):
            return False
        j = self.row(j)
        views = self._views[j]
        if views is None:
            segments = self.layout.segments(self.p[j])
            shaped = [
                s.view(g.shape) if s.numel() == g.numel() and g.layout == torch.strided else s
                for s, g in zip(self.layout.segments(self.g[j]), grads, strict=True)  # type: ignore[union-attr]
            ]
            views = self._views[j] = segments + shaped
        try:
            torch._foreach_copy_(views, params + grads)  # type: ignore[operator]
        except RuntimeError:
            return False
        return True


def segment_norms(rows: Tensor, layout: Layout) -> Tensor:
    """``(rows, tensors)`` L2 norms of every segment of every row."""
    n_rows, n = rows.shape[0], len(layout.sizes)
    if n_rows == 0:
        return rows.new_zeros(0, n)
    if n <= n_rows:
        return torch.stack(
            [torch.linalg.vector_norm(rows[:, a:b], dim=1) for a, b in layout.bounds], dim=1
        )
    return torch.stack([torch.stack(torch._foreach_norm(layout.segments(r))) for r in rows])


def segment_dots(a: Tensor, b: Tensor, layout: Layout, *, out: Tensor | None = None) -> Tensor:
    """``(rows, tensors)`` dot products of the segments of ``a`` and ``b`` row by row.

    ``out``: a buffer shaped like ``a`` for the elementwise products (saves an allocation).
    """
    n_rows = a.shape[0]
    if n_rows == 0:
        return a.new_zeros(0, len(layout.sizes))
    if layout.large:  # one pass per segment, no products buffer
        return torch.stack([
            torch.stack([torch.dot(x[s:e], y[s:e]) for s, e in layout.bounds])
            for x, y in zip(a, b, strict=True)
        ])
    products = torch.mul(a, b, out=out) if out is not None else a * b
    return segment_reduce(products, layout, "sum")


def segment_reduce(rows: Tensor, layout: Layout, reduce: str) -> Tensor:
    """``(rows, tensors)``: ``reduce`` (``"sum"``, ``"amax"`` or ``"amin"``) of every segment of
    every row. Few tensors: one reduction per tensor over all rows (``torch.segment_reduce`` is
    several times slower on the CPU); many: ``torch.segment_reduce``."""
    n_rows, n = rows.shape[0], len(layout.sizes)
    if n <= max(n_rows, 8) or layout.large:
        return torch.stack([getattr(rows[:, a:b], reduce)(1) for a, b in layout.bounds], dim=1)
    lengths = layout.lengths.expand(n_rows, -1)
    return torch.segment_reduce(rows, reduce.removeprefix("a"), lengths=lengths, axis=1)


def layouts(params: Sequence[Tensor]) -> list[Layout]:
    """One :class:`Layout` per (device, dtype) of ``params`` (a complex parameter goes with its
    real dtype and takes twice its number of elements)."""
    groups: dict[tuple[torch.device, torch.dtype], list[int]] = {}
    for i, p in enumerate(params):
        dtype = p.real.dtype if p.is_complex() else p.dtype
        groups.setdefault((p.device, dtype), []).append(i)
    return [
        Layout(index, [params[i].numel() * (2 if params[i].is_complex() else 1) for i in index],
               device, dtype)
        for (device, dtype), index in groups.items()
    ]


def flat_view(p: Tensor) -> Tensor | None:
    """A flat view of ``p``'s values (of its real view when complex); ``None`` when ``p`` is not
    contiguous (a flat copy would go stale)."""
    t = p.detach()
    if t.is_complex():
        t = torch.view_as_real(t)
    return t.view(-1) if t.is_contiguous() else None


def read_back(parts: Sequence[Tensor], device: torch.device) -> list[float]:
    """All ``parts`` as one list of floats, in one host synchronisation (one ``torch.cat``,
    which promotes mixed dtypes; parts on other devices are moved first)."""
    if not parts:
        return []
    flat = [t.reshape(-1) if t.device == device else t.reshape(-1).to(device) for t in parts]
    return torch.cat(flat).tolist()
