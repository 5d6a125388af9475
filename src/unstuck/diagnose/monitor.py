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
module per forward pass. Nothing here changes the model, its gradients or the optimizer.

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

import json
import math
import os
import statistics
import tempfile
from collections import deque
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from unstuck.diagnose.effective_lr import rectification, scales

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

    Raises:
        ValueError: ``every`` or ``history`` below 1, a name that is not a trainable parameter,
            or a model without trainable parameters.
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
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if not isinstance(optimizer, Optimizer):
            raise TypeError(
                f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}"
            )
        for arg, value in (("every", every), ("history", history)):
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
                for t in _tensors(output):
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
        loss_t = _check_loss(loss)
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
            if found is not None:
                xs = [s.x.detach().reshape(-1) for s in found if s is not None]
                if xs:
                    scalars += torch._foreach_max(xs)
                    scalars += torch._foreach_max(torch._foreach_neg(xs))
                    scalars += [x.kthvalue(x.numel() - (x.numel() + 1) // 2 + 1).values for x in xs]
                    scalars += self._global_median(found, xs)
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
            _finish_update(pending, un, sn if cos else None, dn if cos else None)
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
                m = sum(s is not None for s in found)
                if m:
                    his, negs = values[sc : sc + m], values[sc + m : sc + 2 * m]
                    meds, gmed = values[sc + 2 * m : sc + 3 * m], values[sc + 3 * m]
                    sc += 3 * m + 1
                    pending["effective_lr"] = _effective(found, his, negs, meds, gmed)
                else:
                    pending["effective_lr"] = None
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

    @staticmethod
    def _global_median(found: list[Any], xs: list[Tensor]) -> list[Tensor]:
        """One 0-dim tensor: the lower median of lr / sigma over all watched elements, as the
        matching x value when every tensor shares one scale, else as the lr / sigma value
        itself (negated, so that decoding is uniform)."""
        present = [s for s in found if s is not None]
        first = present[0]
        if all((s.lr, s.c, s.eps) == (first.lr, first.c, first.eps) for s in present):
            flat = torch.cat(xs) if len(xs) > 1 else xs[0]
            total = flat.numel()
            return [flat.kthvalue(total - (total + 1) // 2 + 1).values]
        effs = torch.cat(
            [(x.double() * s.c).sqrt_().add_(s.eps).reciprocal_().mul_(s.lr) for s, x in zip(
                present, xs, strict=True)]
        )
        return [-effs.kthvalue((effs.numel() + 1) // 2).values]

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
        return [self._decode(r) for r in raw[-self._records.maxlen :]]  # type: ignore[misc]

    def _decode(self, r: dict[str, Any]) -> dict[str, Any]:
        names, n = self.names, len(self.names)
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
        weight_norm = math.sqrt(sum(w * w for w in weight))
        update_norm = math.sqrt(sum(x * x for x in update)) if update is not None else None
        global_cos = None
        if r["s2d2"] is not None:
            s2, d2 = r["s2d2"]
            prev2 = _prev_norm2(update_norm, s2, d2)
            global_cos = _cosine(s2, d2, update_norm, prev2)
        return {
            "step": r["step"],
            "loss": r["loss"],
            "grad_norm": r["grad_norm"],
            "weight_norm": weight_norm,
            "update_norm": update_norm,
            "update_ratio": _ratio(update_norm, weight_norm),
            "update_cosine": global_cos,
            "layers": layers,
            "effective_lr": r["effective_lr"],
            "rectification": r["rectification"],
            "nonfinite_grads": list(r["nonfinite_grads"]),
            "nonfinite_forward": r["nonfinite_forward"],
        }

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
        records = self.history
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
        forward = self.first_nonfinite_forward
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
            "nonfinite_grads": dict(self.first_nonfinite),
            "nonfinite_forward": {"module": forward[0], "step": forward[1]} if forward else None,
            "effective_lr": {
                "min": min(e["min"] for e in effs),
                "max": max(e["max"] for e in effs),
                "last": {key: effs[-1][key] for key in ("min", "median", "max")},
            } if effs else None,
            "rectified_fraction": sum(rects) / len(rects) if rects else None,
        }

    def to_jsonl(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Write :attr:`history` as JSON Lines (one record a line), atomically.

        Non-finite numbers are written as the strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"``
        (standard JSON has no such numbers); :func:`read_jsonl` turns them back into floats.

        Raises:
            FileExistsError: ``path`` exists and ``overwrite`` is False.
        """
        path = Path(path)
        if path.exists() and not overwrite:
            raise FileExistsError(f"path {str(path)!r} exists; pass overwrite=True to replace it")
        lines = [json.dumps(_jsonable(r), allow_nan=False) for r in self.history]
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write("".join(line + "\n" for line in lines))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

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


def read_jsonl(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read a file written by :meth:`Monitor.to_jsonl` (non-finite strings back to floats)."""
    with open(path, encoding="utf-8") as f:
        return [_unjson(json.loads(line)) for line in f if line.strip()]


# --------------------------------------------------------------------------------- helpers
def _check_loss(loss: Any) -> Tensor | None:
    if loss is None:
        return None
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


def _tensors(output: Any) -> Iterable[Tensor]:
    if isinstance(output, Tensor):
        yield output
    elif isinstance(output, (list, tuple)):
        for item in output:
            yield from _tensors(item)
    elif isinstance(output, dict):
        for item in output.values():
            yield from _tensors(item)


def _finish_update(
    record: dict[str, Any], un: list[float], sn: list[float] | None, dn: list[float] | None
) -> None:
    record["update"] = un
    if sn is None or dn is None:
        return
    cos = []
    for u, s, d in zip(un, sn, dn, strict=True):
        s2, d2 = s * s, d * d
        cos.append(_cosine(s2, d2, u, _prev_norm2(u, s2, d2)))
    record["cosine"] = cos
    record["s2d2"] = (sum(s * s for s in sn), sum(d * d for d in dn))


def _prev_norm2(u: float | None, s2: float, d2: float) -> float:
    """``|b|^2`` from ``|a + b|^2 + |a - b|^2 = 2 |a|^2 + 2 |b|^2``."""
    return max((s2 + d2) / 2.0 - (u or 0.0) ** 2, 0.0)


def _cosine(s2: float, d2: float, u: float | None, prev2: float) -> float | None:
    """``a.b / (|a| |b|)`` with ``a.b = (|a + b|^2 - |a - b|^2) / 4`` (polarization)."""
    denom = (u or 0.0) * math.sqrt(prev2)
    if not denom > 0 or not math.isfinite(denom):
        return None
    return max(-1.0, min(1.0, (s2 - d2) / 4.0 / denom))


def _effective(
    found: list[Any], his: list[float], negs: list[float], meds: list[float], gmed: float
) -> dict[str, Any]:
    layers: list[dict[str, float] | None] = []
    it = iter(zip(his, negs, meds, strict=True))
    present = []
    for s in found:
        if s is None:
            layers.append(None)
            continue
        hi, neg, med = next(it)
        layers.append({"min": s.of(hi), "median": s.of(med), "max": s.of(-neg)})
        present.append(s)
    values = [v for v in layers if v is not None]
    first = present[0]
    uniform = all((s.lr, s.c, s.eps) == (first.lr, first.c, first.eps) for s in present)
    return {
        "min": min(v["min"] for v in values),
        "median": first.of(gmed) if uniform else -gmed,
        "max": max(v["max"] for v in values),
        "layers": layers,
    }


def _ratio(num: float | None, den: float | None) -> float | None:
    if num is None or den is None or not den > 0:
        return None
    return num / den


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def _slope(points: list[tuple[int, float]]) -> float | None:
    if len(points) < 2:
        return None
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx if sxx else None


_NONFINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def _jsonable(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return "NaN" if math.isnan(x) else ("Infinity" if x > 0 else "-Infinity")
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    return x


def _unjson(x: Any) -> Any:
    if isinstance(x, str) and x in _NONFINITE:
        return _NONFINITE[x]
    if isinstance(x, dict):
        return {k: _unjson(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_unjson(v) for v in x]
    return x
