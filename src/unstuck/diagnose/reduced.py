"""What one reduction of :class:`~unstuck.diagnose.Monitor` read back, decoded on demand.

A reduction reads back one flat list of floats for all the observes it reduced: per sampled
observe the gradient and weight norm of every tensor and the loss, per update the update norm of
every tensor and its dot product with the previous update, per copied optimizer state the
effective-lr statistics. Turning them into the per-tensor lists of a record (cosines, global
norms) costs more Python than computing them costs torch, so a :class:`Chunk` keeps the list, a
pending record keeps ``(chunk, row)`` references, and :func:`materialize` builds the record when
the history is read (once: the result is cached in the record). The numbers of a diverged run
are NaN and Inf; the sums here never raise on them (:func:`unstuck.diagnose.records.fsum`).

A pending record is a dict with the keys ``step``, ``present`` (which tensors had a gradient;
``None``: all), ``sample`` (``(chunk, row, loss position or None)`` once reduced), ``update``
(``(chunk, row, cosine known, effective-lr key or None)`` once the update is known),
``rectification``, ``nonfinite_grads``, ``nonfinite_forward``, ``wants_lr`` and ``lr`` (each
parameter group's learning rate at the observe; a tensor learning rate is kept as a copy and
read when the record is built).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

from unstuck.diagnose.effective_lr import Scale, unbatch
from unstuck.diagnose.records import fsum

__all__ = ["Chunk", "Part", "materialize", "pending"]


class Part(NamedTuple):
    """One block of read-back numbers: ``rows x columns`` values of one ``kind`` for the tensors
    at positions ``index`` of the parameter list (one layout). Kinds: ``grad`` and ``weight``
    (norms, one row per sampled observe), ``update`` (norms of the updates, row ``j`` the one
    that ended at frame ``j``; row 0 the update before the first frame) and ``dot`` (row ``j``:
    the dot product of updates ``j + 1`` and ``j``)."""

    kind: str
    index: list[int]
    rows: int
    columns: int


class Chunk:
    """The numbers of one reduction: ``values`` holds the :class:`Part` s of ``plan`` in order,
    then whatever the monitor appended (losses, effective-lr statistics) at the positions it
    keeps in the records and in :attr:`lr`.

    Args:
        plan: the per-tensor and per-layout parts at the start of ``values``.
        values: the read-back floats.
        n_params: number of watched tensors.
        lr: frame key -> (position in ``values``, the scales without tensors) of each copied
            optimizer state.
    """

    __slots__ = ("_tables", "lr", "n_params", "plan", "values")

    def __init__(
        self,
        plan: list[Part],
        values: list[float],
        n_params: int,
        lr: dict[int, tuple[int, list[Scale | None]]],
    ) -> None:
        self.plan, self.values, self.n_params, self.lr = plan, values, n_params, lr
        self._tables: dict[str, list[list[float]]] | None = None

    def tables(self) -> dict[str, list[list[float]]]:
        """``tables[kind][row]``: one number per tensor, in parameter order."""
        if self._tables is None:
            self._tables = split(self.plan, self.values, self.n_params)
        return self._tables

    def gradients_finite(self) -> bool:
        """Whether every gradient norm is finite (then no record needs a closer look)."""
        pos, total = 0, 0.0
        for part in self.plan:
            size = part.rows * part.columns
            if part.kind == "grad":
                total += fsum(self.values[pos : pos + size])
            pos += size
        return math.isfinite(total)

    def gradients(
        self, row: int, present: list[bool] | None
    ) -> tuple[list[float | None], list[float], float | None]:
        """Per-tensor gradient norms (``None`` where absent), weight norms, global grad norm."""
        tables = self.tables()
        grad: list[float | None] = list(tables["grad"][row])
        if present is not None:
            grad = [v if there else None for v, there in zip(grad, present, strict=True)]
        known = [v * v for v in grad if v is not None]
        norm = math.sqrt(fsum(known)) if known else None
        return grad, tables["weight"][row], norm

    def update(self, row: int, cosine_known: bool, lr_key: int | None) -> dict[str, Any]:
        """The update fields of a raw record: the update after frame ``row``."""
        tables = self.tables()
        update = tables["update"][row + 1]
        out: dict[str, Any] = {
            "update": update, "cosine": None, "global_cosine": None, "effective_lr": None,
        }
        if cosine_known:
            previous, dots = tables["update"][row], tables["dot"][row]
            out["cosine"] = [
                _cosine(d, a * b) for d, a, b in zip(dots, update, previous, strict=True)
            ]
            denominator = math.sqrt(
                fsum([a * a for a in update]) * fsum([b * b for b in previous])
            )
            out["global_cosine"] = _cosine(fsum(dots), denominator)
        if lr_key is not None and lr_key in self.lr:
            pos, found = self.lr[lr_key]
            width = 3 * sum(s is not None for s in found) + 1
            out["effective_lr"] = unbatch(found, self.values[pos : pos + width])
        return out


def _cosine(dot: float, denominator: float) -> float | None:
    """``dot / denominator`` clamped to [-1, 1]; ``None`` when not a finite number."""
    if not denominator > 0:
        return None
    c = dot / denominator
    return max(-1.0, min(1.0, c)) if math.isfinite(c) else None


def split(plan: list[Part], values: list[float], n_params: int) -> dict[str, list[list[float]]]:
    """The per-kind tables of :meth:`Chunk.tables` from the first values of ``values``."""
    tables: dict[str, list[list[float]]] = {}
    pos = 0
    for kind, index, n_rows, columns in plan:
        chunk = values[pos : pos + n_rows * columns]
        pos += n_rows * columns
        rows = [chunk[r * columns : (r + 1) * columns] for r in range(n_rows)]
        if len(index) == n_params:  # one layout: the tensors in parameter order
            tables[kind] = rows
            continue
        table = tables.get(kind)
        if table is None:
            table = tables[kind] = [[math.nan] * n_params for _ in range(n_rows)]
        for row, part in zip(table, rows, strict=True):
            for i, v in zip(index, part, strict=True):
                row[i] = v
    return tables


def pending(
    step: int, present: list[bool] | None, wants_lr: bool, lr: list[Any]
) -> dict[str, Any]:
    """A new pending record (see the module docstring)."""
    return {
        "step": step, "present": present, "sample": None, "update": None,
        "rectification": None, "nonfinite_grads": [], "nonfinite_forward": None,
        "wants_lr": wants_lr, "lr": lr,
    }


def materialize(record: dict[str, Any], *, cache: bool) -> dict[str, Any]:
    """The raw record (what :func:`unstuck.diagnose.records.decode` reads) of a pending one.

    ``cache``: keep the result in the record and drop its chunk references (for a complete
    record; the last one may still get its update)."""
    raw = record.get("raw")
    if raw is not None:
        return raw
    chunk, row, loss_pos = record["sample"]
    grad, weight, grad_norm = chunk.gradients(row, record["present"])
    raw = {
        "step": record["step"],
        "loss": chunk.values[loss_pos] if loss_pos is not None else None,
        "grad_norm": grad_norm, "grad": grad, "weight": weight,
        "update": None, "cosine": None, "global_cosine": None, "effective_lr": None,
        "rectification": record["rectification"],
        "lr": [float(x) for x in record["lr"]],
        "nonfinite_grads": record["nonfinite_grads"],
        "nonfinite_forward": record["nonfinite_forward"],
    }
    if record["update"] is not None:
        update_chunk, update_row, cosine_known, lr_key = record["update"]
        raw.update(update_chunk.update(update_row, cosine_known, lr_key))
    if cache:
        record["raw"] = raw
        record["sample"] = record["update"] = None
    return raw
