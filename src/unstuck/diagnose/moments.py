"""Copies of an adaptive optimizer's second moments: the Monitor's effective learning rates.

After a sampled step, :class:`~unstuck.diagnose.Monitor` copies the second-moment tensors the
step left (``exp_avg_sq``, ``sum``, ``square_avg``: see :mod:`unstuck.diagnose.effective_lr`)
into one row of a buffer per layout, one ``torch.cat`` each, with the scalars that turn them into
``lr / sigma``; :meth:`SecondMoments.statistics` turns the buffered rows into the numbers
:func:`~unstuck.diagnose.effective_lr.unbatch` decodes. ``lr / sigma`` decreases in the second
moment ``x``, so per tensor the smallest and largest effective lr and its median come from the
largest and smallest ``x`` and the median of ``-x`` (torch's lower median of ``-x`` is the upper
median of ``x``, whose ``lr / sigma`` is the lower median of ``lr / sigma``).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import Tensor
from torch.optim import Optimizer

from unstuck.diagnose.effective_lr import Scale, batched, group_of, rectification, scales
from unstuck.diagnose.flat_rows import Layout, segment_reduce

__all__ = ["Copy", "SecondMoments", "lower_median"]

NARROWED_MEDIAN = 2**16
"""A median over at least this many elements on the CPU is narrowed down first
(:func:`lower_median`)."""


def lower_median(x: Tensor) -> Tensor:
    """``x.median()`` of a 1-D tensor exactly (the lower median; NaN when ``x`` holds a NaN),
    faster on a large CPU tensor: a strided sample of a few thousand elements brackets the
    median by ``[lo, hi]``, two comparisons count the elements below and above, and the median
    is selected among the few elements in between: a few passes over memory (``torch.median``
    copies and partitions all of them, tens of nanoseconds an element). When the bracket misses,
    the plain ``x.median()``.

    Example:
        >>> x = torch.rand(100_000)
        >>> bool(lower_median(x) == x.median())
        True
    """
    n = x.numel()
    if n < NARROWED_MEDIAN or x.device.type != "cpu" or not x.is_floating_point():
        return x.median()
    k = (n - 1) // 2  # 0-based rank of the lower median
    sample = x[:: n // 4096].sort().values
    m = sample.numel()
    centre = k * m // n
    lo, hi = sample[max(centre - 64, 0)], sample[min(centre + 64, m - 1)]
    if bool(lo.isnan() | hi.isnan()):
        return x.median()
    low, high = x < lo, x > hi
    below, above = int(torch.count_nonzero(low)), int(torch.count_nonzero(high))
    inside = x[~(low | high)]  # NaN compares false both ways: it is inside
    if bool(inside.isnan().any()):
        return x.new_tensor(float("nan"))
    if not below <= k < n - above:
        return x.median()
    return inside.kthvalue(k - below + 1).values


class Copy(NamedTuple):
    """One copied optimizer state: its ``row`` in the buffers, the ``(lr, c, eps)`` of each
    tensor (``None``: no state), and whether all tensors have one and the same scale."""

    row: int
    constants: list[tuple[float, float, float] | None]
    uniform: bool

    def scales(self) -> list[Scale | None]:
        """The scales without their tensors (what decoding needs)."""
        return [None if s is None else Scale(None, *s) for s in self.constants]  # type: ignore[arg-type]


class SecondMoments:
    """Row buffers of an adaptive optimizer's second moments (allocated at the first copy).

    Args:
        optimizer: the innermost optimizer (wrappers removed).
        family: its :func:`~unstuck.diagnose.effective_lr.optimizer_family`.
        params: the watched parameters, in order.
        layouts: their layouts, one per (device, dtype).
        capacity: rows per buffer.
        device: where the statistics are gathered.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        family: str,
        params: list[Tensor],
        layouts: list[Layout],
        capacity: int,
        device: torch.device,
    ) -> None:
        self.optimizer, self.family, self.params = optimizer, family, params
        self.layouts, self.capacity, self.device = layouts, capacity, device
        self.rows: list[Tensor] | None = None
        self.used = 0
        self._groups: dict[int, dict[str, Any]] = {}
        self._groups_key: tuple[int, ...] = ()

    def copy(self) -> tuple[Copy | None, dict[str, Any] | None]:
        """Copy the state of the step just taken into the next row; returns the copy (``None``
        when no tensor has state) and RAdam's rectification of that step (else ``None``)."""
        opt = self.optimizer
        key = tuple(id(g["params"]) for g in opt.param_groups)
        if key != self._groups_key:
            self._groups, self._groups_key = group_of(opt), key
        found = scales(opt, self.params, family=self.family, groups=self._groups)
        rect = rectification(opt, self.params, family=self.family, groups=self._groups)
        if found is None or all(s is None for s in found):
            return None, rect
        if self.rows is None:
            self.rows = [layout.empty(self.capacity) for layout in self.layouts]
        row, self.used = self.used, self.used + 1
        for layout, buffer in zip(self.layouts, self.rows, strict=True):
            layout.copy_row(buffer[row], [None if found[i] is None else found[i].x  # type: ignore[union-attr]
                                          for i in layout.index])
        constants = [None if s is None else (s.lr, s.c, s.eps) for s in found]
        uniform = None not in constants and len(set(constants)) == 1
        return Copy(row, constants, uniform), rect

    def reset(self) -> None:
        """Free every row (after a reduction)."""
        self.used = 0

    def statistics(self, copies: list[Copy]) -> Tensor:
        """:func:`~unstuck.diagnose.effective_lr.batched`'s numbers for ``copies``, copy after
        copy: per tensor the largest ``x`` and ``-x`` and the median of ``-x``, then the global
        median.

        The usual case (one layout, every tensor present, one scale per row) takes the largest
        and smallest values of all the rows together and the medians row by row (a median along
        a dimension is several times slower than medians of contiguous rows). Otherwise every
        statistic row by row."""
        assert self.rows is not None
        first = copies[0].row
        together = (
            len(self.layouts) == 1
            and all(c.row == first + r for r, c in enumerate(copies))
            and all(c.uniform for c in copies)
        )
        if not together:
            return torch.cat([
                torch.stack([t.to(self.device, torch.float64) for t in batched(self._scales(c))])
                for c in copies
            ])
        layout = self.layouts[0]
        x = self.rows[0][first : first + len(copies)]
        negated = torch.neg(x)
        top = segment_reduce(x, layout, "amax")
        bottom = segment_reduce(x, layout, "amin").neg_()
        medians = torch.stack([
            torch.stack([lower_median(row[a:b]) for a, b in layout.bounds] + [lower_median(row)])
            for row in negated
        ])
        return torch.cat([top, bottom, medians], dim=1).to(torch.float64)

    def _scales(self, copy: Copy) -> list[Scale | None]:
        """The :class:`Scale` of every parameter, its second moment a view of the copied row."""
        assert self.rows is not None
        views: list[Tensor | None] = [None] * len(self.params)
        for layout, buffer in zip(self.layouts, self.rows, strict=True):
            for i, view in zip(layout.index, layout.segments(buffer[copy.row]), strict=True):
                views[i] = view
        return [
            None if s is None else Scale(views[i], *s)  # type: ignore[arg-type]
            for i, s in enumerate(copy.constants)
        ]
