"""Effective learning rates of adaptive optimizers, read from their state.

An adaptive optimizer divides the (momentum of the) gradient by a per-element scale ``sigma``
before multiplying by the learning rate, so each element moves with its own *effective learning
rate* ``lr / sigma``. This module reads ``sigma`` from the optimizer's state (torch.optim's state
names, which unstuck's optimizers share) *after* a step, so it describes the step just taken:

- Adam, AdamW (torch.optim and unstuck), RAdam (torch.optim and unstuck), unstuck.Ranger:
  ``sigma = sqrt(v / (1 - beta2^t)) + eps`` with ``v = exp_avg_sq`` (``max_exp_avg_sq`` with
  ``amsgrad``) and ``t = state["step"]``. RAdam and Ranger multiply this by their rectification
  ``r_t`` only while ``rho_t > threshold`` (see :func:`rectification`); the effective lr reported
  here is the un-rectified ``lr / sigma``.
- Adagrad: ``sigma = sqrt(sum) + eps`` and ``lr`` decayed to ``lr / (1 + (t - 1) lr_decay)``.
- RMSprop: ``sigma = sqrt(square_avg) + eps``, centred: ``sqrt(square_avg - grad_avg^2) + eps``
  (momentum, if any, then accumulates ``g / sigma``).

Wrappers (:class:`unstuck.Lookahead`, :func:`unstuck.centralize`, anything with an
``.optimizer`` that is an Optimizer) are unwrapped. Other optimizers (SGD, LARS, ...) have no
per-element scale: their effective lr is reported as ``None``; so is a parameter that has no state
yet (before the first step).

Example:
    >>> import torch
    >>> w = torch.nn.Parameter(torch.ones(3))
    >>> opt = torch.optim.Adam([w], lr=0.1)
    >>> w.sum().backward(); opt.step()
    >>> lo, med, hi = effective_lr(opt, [w])[0]
    >>> round(lo, 4), round(hi, 4)   # g = 1: v_hat = 1, lr / (1 + eps)
    (0.1, 0.1)
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
from torch import Tensor
from torch.optim import Optimizer

__all__ = [
    "Scale",
    "batched",
    "effective_lr",
    "group_of",
    "optimizer_family",
    "rectification",
    "same_scale",
    "scales",
    "unbatch",
    "unwrap",
]


def unwrap(optimizer: Optimizer) -> Optimizer:
    """The innermost optimizer of a chain of wrappers (each one's ``.optimizer``)."""
    seen = {id(optimizer)}
    while True:
        inner = getattr(optimizer, "optimizer", None)
        if not isinstance(inner, Optimizer) or id(inner) in seen:
            return optimizer
        seen.add(id(inner))
        optimizer = inner


def optimizer_family(optimizer: Optimizer) -> str | None:
    """``"adam"``, ``"radam"``, ``"adagrad"``, ``"rmsprop"`` or ``None`` (no per-element scale)
    for the innermost optimizer of ``optimizer``."""
    import unstuck.optim as uo

    opt = unwrap(optimizer)
    if isinstance(opt, (torch.optim.RAdam, uo.RAdam, uo.Ranger)):
        return "radam"
    if isinstance(opt, (torch.optim.Adam, torch.optim.AdamW, uo.Adam)):
        return "adam"
    if isinstance(opt, (torch.optim.Adagrad, uo.Adagrad)):
        return "adagrad"
    if isinstance(opt, (torch.optim.RMSprop, uo.RMSprop)):
        return "rmsprop"
    return None


class Scale(NamedTuple):
    """One tensor's effective lr, elementwise ``lr_t / (sqrt(c * x) + eps)``."""

    x: Tensor
    """The second-moment tensor (not copied; read it before the next step)."""
    lr: float
    """The learning rate of the step (Adagrad: decayed)."""
    c: float
    """``1 / (1 - beta2^t)`` for the Adam family, else 1."""
    eps: float

    def of(self, x: float) -> float:
        """The effective lr at second-moment value ``x`` (NaN where ``x`` is NaN or < 0; Inf,
        as ``lr / 0``, where ``sqrt(c x) + eps`` is zero: ``x = 0`` with ``eps = 0``)."""
        if not x >= 0:
            return math.nan
        sigma = math.sqrt(self.c * x) + self.eps
        if sigma == 0:
            return math.copysign(math.inf, self.lr) if self.lr else math.nan
        return self.lr / sigma


def _float(value: Any) -> float:
    return float(value.item()) if isinstance(value, Tensor) else float(value)


def group_of(optimizer: Optimizer) -> dict[int, dict[str, Any]]:
    """``id(parameter)`` -> its parameter group, for every parameter of ``optimizer``."""
    return {id(p): group for group in optimizer.param_groups for p in group["params"]}


def scales(
    optimizer: Optimizer,
    params: list[Tensor],
    *,
    family: str | None = None,
    groups: dict[int, dict[str, Any]] | None = None,
) -> list[Scale | None] | None:
    """Per parameter, the :class:`Scale` of its last step; ``None`` for a parameter without state
    (or not in the optimizer, or complex); ``None`` overall for an optimizer without a scale.

    ``family`` (:func:`optimizer_family`) and ``groups`` (:func:`group_of` of the innermost
    optimizer) may be passed when the caller has them already, to save their cost."""
    family = family if family is not None else optimizer_family(optimizer)
    if family is None:
        return None
    opt = unwrap(optimizer)
    if groups is None:
        groups = group_of(opt)
    out: list[Scale | None] = []
    constants: dict[int, tuple[float, float, float, str | None]] = {}  # per group
    corrections: dict[tuple[float, float, float], float] = {}  # c (Adam) or decayed lr (Adagrad)
    for p in params:
        group = groups.get(id(p))
        state = opt.state.get(p) if group is not None else None
        if not state or "step" not in state or p.is_complex():
            out.append(None)
            continue
        known = constants.get(id(group))
        if known is None:
            known = constants[id(group)] = _group_constants(group, family)
        lr, eps, rate, key = known
        t = _float(state["step"])
        x = state.get(key) if key is not None else _rmsprop_square(group, state)
        if x is None or x.numel() == 0:
            out.append(None)
            continue
        correction = corrections.get((lr, rate, t))
        if correction is None:
            correction = corrections[lr, rate, t] = _correction(family, lr, rate, t)
        if family == "adagrad":
            out.append(Scale(x, correction, 1.0, eps))
        else:
            out.append(Scale(x, lr, correction, eps))
    return out


def _group_constants(
    group: dict[str, Any], family: str
) -> tuple[float, float, float, str | None]:
    """``(lr, eps, rate, state key)`` of a group: ``rate`` is beta2 (Adam family), lr_decay
    (Adagrad) or 0; the key is ``None`` for RMSprop (see :func:`_rmsprop_square`)."""
    lr, eps = _float(group["lr"]), float(group["eps"])
    if family in ("adam", "radam"):
        key = "max_exp_avg_sq" if group.get("amsgrad") else "exp_avg_sq"
        return lr, eps, float(group["betas"][1]), key
    if family == "adagrad":
        return lr, eps, float(group["lr_decay"]), "sum"
    return lr, eps, 0.0, None


def _correction(family: str, lr: float, rate: float, t: float) -> float:
    """``c = 1 / (1 - beta2^t)`` for the Adam family, Adagrad's decayed lr, else 1."""
    if family in ("adam", "radam"):
        return 1.0 / (1.0 - rate**t) if t > 0 else math.nan
    if family == "adagrad":
        return lr / (1.0 + (t - 1.0) * rate)
    return 1.0


def _rmsprop_square(group: dict[str, Any], state: dict[str, Any]) -> Tensor | None:
    """RMSprop's ``square_avg``, centred (``- grad_avg^2``) when the group is."""
    x = state.get("square_avg")
    if x is not None and group.get("centered") and "grad_avg" in state:
        x = torch.addcmul(x, state["grad_avg"], state["grad_avg"], value=-1.0)
    return x


def rectification(
    optimizer: Optimizer,
    params: list[Tensor],
    *,
    family: str | None = None,
    groups: dict[int, dict[str, Any]] | None = None,
) -> dict[str, float | bool] | None:
    """RAdam's (and Ranger's) rectification of the last step, from the first parameter with state.

    ``rho_inf = 2 / (1 - beta2) - 1``, ``rho_t = rho_inf - 2 t beta2^t / (1 - beta2^t)``; the step
    is rectified (adaptive) when ``rho_t > threshold`` (the group's ``n_sma_threshold``, torch's 5),
    with ``r_t = sqrt((rho_t - 4)(rho_t - 2) rho_inf / ((rho_inf - 4)(rho_inf - 2) rho_t))``.
    Returns ``{"rho_t", "threshold", "rectified", "r_t"}`` (``r_t`` is ``None`` when not rectified),
    or ``None`` for another optimizer or before the first step.
    """
    family = family if family is not None else optimizer_family(optimizer)
    if family != "radam":
        return None
    opt = unwrap(optimizer)
    if groups is None:
        groups = group_of(opt)
    for p in params:
        group = groups.get(id(p))
        state = opt.state.get(p) if group is not None else None
        if state and "step" in state:
            t = _float(state["step"])
            beta2 = float(group["betas"][1])
            threshold = float(group.get("n_sma_threshold", 5.0))
            return rho(t, beta2, threshold)
    return None


def rho(t: float, beta2: float, threshold: float = 5.0) -> dict[str, float | bool]:
    """RAdam's ``rho_t``, whether step ``t`` is rectified, ``r_t`` (see :func:`rectification`)."""
    rho_inf = 2.0 / (1.0 - beta2) - 1.0
    rho_t = rho_inf - 2.0 * t * beta2**t / (1.0 - beta2**t)
    rectified = rho_t > threshold
    r_t = None
    if rectified:  # NaN where a threshold below 4 lets the square root's argument go negative
        num = (rho_t - 4.0) * (rho_t - 2.0) * rho_inf
        den = (rho_inf - 4.0) * (rho_inf - 2.0) * rho_t
        r_t = math.sqrt(num / den) if den != 0 and num / den >= 0 else math.nan
    return {"rho_t": rho_t, "threshold": threshold, "rectified": rectified, "r_t": r_t}


def effective_lr(
    optimizer: Optimizer, params: list[Tensor]
) -> list[tuple[float, float, float] | None] | None:
    """Per parameter ``(min, median, max)`` of its elementwise effective lr ``lr / sigma``.

    The median is the lower median (:func:`torch.median`'s). ``None`` where :func:`scales` gives
    none. Eager and simple (a few host syncs per tensor); :class:`~unstuck.diagnose.Monitor`
    computes the same numbers batched.
    """
    found = scales(optimizer, params)
    if found is None:
        return None
    out: list[tuple[float, float, float] | None] = []
    for s in found:
        if s is None:
            out.append(None)
            continue
        flat = s.x.detach().reshape(-1)
        n = flat.numel()
        lo_x, hi_x = flat.min().item(), flat.max().item()
        # lr / sigma decreases in x: its lower median is the (n - (n + 1) // 2 + 1)-th smallest x
        med_x = flat.kthvalue(n - (n + 1) // 2 + 1).values.item()
        out.append((s.of(hi_x), s.of(med_x), s.of(lo_x)))
    return out


def batched(found: list[Scale | None]) -> list[Tensor]:
    """The 0-dim tensors :func:`unbatch` needs, to be read in one host sync with others.

    Per present tensor the largest ``x`` and ``-x`` and the lower median of ``-x``, then one
    global median; empty when no tensor has a scale. lr / sigma decreases in ``x``, so its lower
    median is ``-median(-x)`` (torch's lower median of ``-x`` is the upper median of ``x``).
    """
    present = [s for s in found if s is not None]
    if not present:
        return []
    xs = [s.x.detach().reshape(-1) for s in present]
    negs = torch._foreach_neg(xs)
    out = [*torch._foreach_max(xs), *torch._foreach_max(negs), *(x.median() for x in negs)]
    if same_scale(present):  # one scale: the median of -x, mapped to lr / sigma on the host
        out.append((torch.cat(negs) if len(negs) > 1 else negs[0]).median())
    else:  # the lower median of lr / sigma itself, negated so that decoding is uniform
        effs = torch.cat(
            [(x.double() * s.c).sqrt_().add_(s.eps).reciprocal_().mul_(s.lr) for s, x in zip(
                present, xs, strict=True)]
        )
        out.append(-effs.kthvalue((effs.numel() + 1) // 2).values)
    return out


def unbatch(found: list[Scale | None], values: list[float]) -> dict[str, Any] | None:
    """``{"min", "median", "max", "layers"}`` (layers: per tensor ``{min, median, max}`` or
    ``None``) from the values of :func:`batched`'s tensors; ``None`` when none has a scale."""
    present = [s for s in found if s is not None]
    m = len(present)
    if not m:
        return None
    his, negs, meds = values[:m], values[m : 2 * m], values[2 * m : 3 * m]
    gmed = values[3 * m]
    it = iter(zip(his, negs, meds, strict=True))
    layers: list[dict[str, float] | None] = []
    for s in found:
        if s is None:
            layers.append(None)
            continue
        hi, neg, med = next(it)
        layers.append({"min": s.of(hi), "median": s.of(-med), "max": s.of(-neg)})
    known = [v for v in layers if v is not None]
    return {
        "min": _nan_or(min, [v["min"] for v in known]),
        "median": present[0].of(-gmed) if same_scale(present) else -gmed,
        "max": _nan_or(max, [v["max"] for v in known]),
        "layers": layers,
    }


def _nan_or(pick: Any, values: list[float]) -> float:
    """NaN when a value is NaN (as torch's ``min`` and ``max`` of all the elements), else
    ``pick(values)`` (Python's ``min`` and ``max`` depend on where a NaN is)."""
    return math.nan if any(math.isnan(v) for v in values) else pick(values)


def same_scale(present: list[Scale]) -> bool:
    """Whether every scale has the same ``lr``, ``c`` and ``eps`` (then lr / sigma is one
    decreasing function of ``x`` for all of them)."""
    first = present[0]
    return all((s.lr, s.c, s.eps) == (first.lr, first.c, first.eps) for s in present)
