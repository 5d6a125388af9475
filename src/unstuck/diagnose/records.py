"""Records of :class:`unstuck.diagnose.Monitor`: decoding, summary, JSON Lines.

A raw record holds the per-tensor numbers in parameter order; :func:`decode` turns it into the
plain dict of ``Monitor.history``, :func:`summarize` sums up a history, :func:`write_jsonl` and
:func:`read_jsonl` store one (non-finite floats as the strings ``"NaN"``, ``"Infinity"``,
``"-Infinity"``).

A diverged run gives NaN and Inf statistics, and they are the diagnosis: nothing here raises on
them. Sums go through :func:`fsum` (``math.fsum`` raises on ``-inf + inf`` and on overflow), a
ratio to a NaN or infinite norm is NaN or Inf, and a ratio to a zero norm is ``None``.
"""

from __future__ import annotations

import json
import math
import os
import statistics
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from unstuck.files import write_text

__all__ = [
    "check_loss", "decode", "from_json", "fsum", "read_jsonl", "summarize", "tensors_in",
    "write_jsonl",
]

_SCALE = 2.0**-64
"""Scale under which finite values whose sum overflows are added (a power of two: exact)."""


def decode(r: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """A raw record of :class:`~unstuck.diagnose.Monitor` as the plain dict of its history."""
    n = len(names)
    grad, weight = r["grad"], r["weight"]
    update, cosine = r["update"], r["cosine"]
    layers = {}
    ratios = []
    for i in range(n):
        un = update[i] if update is not None else None
        ratio = _ratio(un, weight[i])
        ratios.append(ratio)
        layers[names[i]] = {
            "grad_norm": grad[i],
            "weight_norm": weight[i],
            "update_norm": un,
            "update_ratio": ratio,
            "update_cosine": cosine[i] if cosine is not None else None,
        }
    weight_norm = math.sqrt(fsum([w * w for w in weight]))
    update_norm = math.sqrt(fsum([x * x for x in update])) if update is not None else None
    return {
        "step": r["step"],
        "loss": r["loss"],
        "grad_norm": r["grad_norm"],
        "weight_norm": weight_norm,
        "update_norm": update_norm,
        "update_ratio": _ratio(update_norm, weight_norm),
        "update_cosine": r["global_cosine"],
        "layers": layers,
        "effective_lr": r["effective_lr"],
        "rectification": r["rectification"],
        "lr": r.get("lr"),
        "nonfinite_grads": list(r["nonfinite_grads"]),
        "nonfinite_forward": r["nonfinite_forward"],
    }


def summarize(
    records: list[dict[str, Any]],
    first_nonfinite: dict[str, int],
    forward: tuple[str, int] | None,
) -> dict[str, Any]:
    """The summary of decoded records (see ``Monitor.summary``)."""
    losses = [(r["step"], r["loss"]) for r in records if _finite(r["loss"])]
    grads = [r["grad_norm"] for r in records if _finite(r["grad_norm"])]
    spread, spread_step = None, None
    for r in records:
        ratios = [x["update_ratio"] for x in r["layers"].values() if _finite(x["update_ratio"])]
        if len(ratios) >= 2 and min(ratios) > 0:
            s = max(ratios) / min(ratios)
            if spread is None or s > spread:
                spread, spread_step = s, r["step"]
    cosines = [r["update_cosine"] for r in records if r["update_cosine"] is not None]
    effs = [r["effective_lr"] for r in records if r["effective_lr"] is not None]
    rects = [r["rectification"]["rectified"] for r in records if r["rectification"]]
    return {
        "steps": len(records),
        "last_loss": records[-1]["loss"] if records else None,
        "loss_trend": _slope(losses),
        "grad_norm": {
            "min": min(grads),
            "median": statistics.median(grads),
            "max": max(grads),
            "last": grads[-1],
        } if grads else None,
        "update_ratio_spread": {"max_over_min": spread, "step": spread_step}
        if spread is not None else None,
        "negative_cosine_fraction": sum(c < 0 for c in cosines) / len(cosines)
        if cosines else None,
        "nonfinite_grads": dict(first_nonfinite),
        "nonfinite_forward": {"module": forward[0], "step": forward[1]} if forward else None,
        "effective_lr": {
            "min": _extreme(min, [e["min"] for e in effs]),
            "max": _extreme(max, [e["max"] for e in effs]),
            "last": {key: effs[-1][key] for key in ("min", "median", "max")},
        } if effs else None,
        "rectified_fraction": sum(rects) / len(rects) if rects else None,
    }


def fsum(values: Iterable[float]) -> float:
    """The exact sum of ``values`` as :func:`math.fsum`, but never raising: NaN when a value is
    NaN or ``+inf`` meets ``-inf``, ``+inf`` or ``-inf`` when one of them is there, and ``+inf``
    or ``-inf`` when finite values overflow (:func:`math.fsum` raises ``ValueError`` and
    ``OverflowError`` there)."""
    xs = values if isinstance(values, list) else list(values)
    try:
        return math.fsum(xs)
    except (ValueError, OverflowError):
        pass
    if any(math.isnan(x) for x in xs):
        return math.nan
    up, down = math.inf in xs, -math.inf in xs
    if up or down:
        return math.nan if up and down else (math.inf if up else -math.inf)
    # finite values whose partial sums overflow: add them scaled down, then scale back (a sum
    # beyond the largest float becomes an infinity)
    return math.fsum([x * _SCALE for x in xs]) / _SCALE


def write_jsonl(
    records: list[dict[str, Any]], path: str | os.PathLike[str], *, overwrite: bool = False
) -> Path:
    """Write decoded records as JSON Lines, atomically (see ``Monitor.to_jsonl``)."""
    path = Path(path)
    lines = [json.dumps(_jsonable(r), allow_nan=False) for r in records]
    write_text(path, "".join(line + "\n" for line in lines), overwrite=overwrite)
    return path


def read_jsonl(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read a file written by :meth:`Monitor.to_jsonl` (non-finite strings back to floats)."""
    with open(path, encoding="utf-8") as f:
        return [from_json(json.loads(line)) for line in f if line.strip()]


def check_loss(loss: Any) -> Tensor | None:
    """``loss`` as a detached 0-dim real tensor (``None`` stays ``None``)."""
    if loss is None:
        return None
    if type(loss) is Tensor and loss.dim() == 0 and not loss.is_complex():  # the usual case
        return loss.detach()
    if isinstance(loss, Tensor):
        if loss.numel() != 1:
            raise ValueError(
                f"loss must be a scalar (one element), got a tensor of shape {tuple(loss.shape)}"
            )
        loss = loss.detach().reshape(())
        return loss.real if loss.is_complex() else loss
    if isinstance(loss, (int, float)) and not isinstance(loss, bool):
        return torch.tensor(float(loss), dtype=torch.float64)
    raise ValueError(f"loss must be a scalar tensor or a number, got {type(loss).__name__}")


def tensors_in(output: Any) -> Iterable[Tensor]:
    """The tensors in a forward output (nested lists, tuples, dicts)."""
    if isinstance(output, Tensor):
        yield output
    elif isinstance(output, (list, tuple)):
        for item in output:
            yield from tensors_in(item)
    elif isinstance(output, dict):
        for item in output.values():
            yield from tensors_in(item)



def _ratio(num: float | None, den: float | None) -> float | None:
    """``num / den``; ``None`` when either is missing or ``den`` is zero (no ratio to a zero
    weight), NaN or Inf when they are not finite."""
    if num is None or den is None or den == 0:
        return None
    return num / den


def _extreme(pick: Any, values: list[float]) -> float:
    """``pick`` (``min`` or ``max``) of the values that are not NaN; NaN when all are."""
    known = [v for v in values if not math.isnan(v)]
    return pick(known) if known else math.nan


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def _slope(points: list[tuple[int, float]]) -> float | None:
    if len(points) < 2:
        return None
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    mx, my = fsum(xs) / len(xs), fsum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx if sxx else None


_NONFINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
_NAMES = frozenset({"nonfinite_grads", "nonfinite_forward"})
"""Keys of a record whose values are names (a module may be called "NaN"): read as they are."""


def _jsonable(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return "NaN" if math.isnan(x) else ("Infinity" if x > 0 else "-Infinity")
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    return x


def from_json(record: Any) -> Any:
    """A record as :func:`write_jsonl` stored it, parsed (``json.loads`` of one line), back as
    the Monitor made it: non-finite strings back to floats, except in its names."""
    if not isinstance(record, dict):
        return _unjson(record)
    return {k: v if k in _NAMES else _unjson(v) for k, v in record.items()}


def _unjson(x: Any) -> Any:
    if isinstance(x, str) and x in _NONFINITE:
        return _NONFINITE[x]
    if isinstance(x, dict):
        return {k: _unjson(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_unjson(v) for v in x]
    return x
