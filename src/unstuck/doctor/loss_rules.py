"""Rules on broken loss curves (non-finite values, divergence) and the curve readers every rule
shares.

Each rule is a function of plain inputs (lists of floats, the loss scale ``baseline``) that
returns a :class:`~unstuck.doctor.verdicts.Verdict` with the measured numbers, or ``None`` when
its signal is absent. The guide's fitting rules are in :mod:`~unstuck.doctor.fitting_rules`, the
learning-rate rules in :mod:`~unstuck.doctor.lr_rules`, the rules on the model's structure
(symmetric units, dead units, critical points, batch size) in
:mod:`~unstuck.doctor.structure_rules`. Thresholds are in :mod:`unstuck.doctor.thresholds`.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

from unstuck.doctor import thresholds as T
from unstuck.doctor.curves import finite, first_nonfinite, halves_drop, tail
from unstuck.doctor.verdicts import TITLES, Verdict

__all__ = [
    "divergence",
    "head",
    "is_large",
    "is_plateau",
    "make_verdict",
    "near_zero",
    "nonfinite",
    "reference_does_better",
    "run_score",
    "still_falling",
]

Curve = Sequence[float]


def g(x: float | None) -> str:
    """A number for a sentence: 4 significant digits."""
    return "n/a" if x is None else f"{x:.4g}"


def make_verdict(code: str, confidence: float, message: str, evidence: dict[str, Any],
                 fixes: Sequence[str]) -> Verdict:
    """A :class:`Verdict` of ``code`` with its title."""
    return Verdict(code, TITLES[code], confidence, message, evidence, tuple(fixes))


def head(values: Curve) -> float:
    """The start of a curve: the median of its first ``MIN_WINDOW`` values (robust to a noisy
    first mini-batch)."""
    return statistics.median(values[: T.MIN_WINDOW])


def near_zero(train: Curve, baseline: float) -> bool:
    """The training loss ends below ``NEAR_ZERO`` of the loss scale."""
    values = finite(train)
    return bool(values) and tail(values) < T.NEAR_ZERO * baseline


def is_large(train: Curve, baseline: float) -> bool:
    """The training loss is large: its end is at least ``LARGE_LOSS`` of the loss scale."""
    values = finite(train)
    return bool(values) and tail(values) >= T.LARGE_LOSS * baseline


def is_plateau(train: Curve, baseline: float) -> bool:
    """The loss fell by less than ``PLATEAU_DROP`` of the scale over the second half."""
    values = finite(train)
    if len(values) < T.MIN_TREND_POINTS:
        return False
    return halves_drop(values)[1] < T.PLATEAU_DROP * baseline


def run_score(train: Curve, val: Curve | None) -> float:
    """The run's own score, as :attr:`~unstuck.doctor.evidence.RunOutcome.score` measures the
    checks' runs: the last validation loss, else the end of the training loss (inf if none)."""
    held = finite(val or [])
    if held:
        return held[-1]
    values = finite(train)
    return tail(values) if values else math.inf


def still_falling(train: Curve) -> bool:
    """The loss still falls at the end of the run, as much as it did before: the second half's
    fall is significant (least-squares slope over the second half below zero by more than 3
    standard errors) and at least ``STEADY_FALL`` of the first half's. A run that converged
    (fast fall, then flat) or sits on a noisy floor is not still falling; a slow straight line is.
    """
    values = finite(train)
    if len(values) < 2 * T.MIN_TREND_POINTS:
        return False
    first, second = halves_drop(values)
    if not (second > 0 and second >= T.STEADY_FALL * first):
        return False
    late = values[len(values) // 2 :]
    n = len(late)
    mean_t, mean_y = (n - 1) / 2, statistics.fmean(late)
    sxx = sum((t - mean_t) ** 2 for t in range(n))
    slope = sum((t - mean_t) * (y - mean_y) for t, y in enumerate(late)) / sxx
    residual = sum((y - mean_y - slope * (t - mean_t)) ** 2 for t, y in enumerate(late))
    if n <= 2 or residual <= 0:
        return slope < 0
    error = math.sqrt(residual / (n - 2) / sxx)
    return slope < -3 * error


def reference_does_better(train: Curve, reference: Curve | None, baseline: float) -> bool:
    """The simpler model's final training loss is lower by both margins (relative, absolute)."""
    values, ref = finite(train), finite(reference or [])
    if not values or not ref:
        return False
    mine, theirs = tail(values), tail(ref)
    return theirs <= mine * (1 - T.REFERENCE_MARGIN) and mine - theirs >= T.REFERENCE_GAP * baseline


# ----------------------------------------------------------------------------- broken numbers
def nonfinite(
    train: Curve,
    nonfinite_grads: dict[str, int] | None = None,
    nonfinite_forward: dict[str, Any] | None = None,
    *,
    forward_watched: bool = False,
    n_params: int | None = None,
) -> Verdict | None:
    """NaN or Inf in the training loss, in a gradient (which parameter first) or in a module's
    output (which module first; the Monitor's ``watch_forward``).

    Fires on any of them. Evidence: the first step with a non-finite loss, the first parameters
    with a non-finite gradient and their step, the first module with a non-finite output. The
    blame goes where the numbers first broke: a module whose output broke; the loss function when
    every module's output was finite (``forward_watched``) but the loss was not (a ``log(0)``, a
    division by zero in a hand-written loss); "every parameter" when all gradients broke at once
    (the source is downstream of all of them), not the first name in alphabetical order.
    """
    bad = first_nonfinite(train)
    grads = dict(nonfinite_grads or {})
    if bad is None and not grads and not nonfinite_forward:
        return None
    evidence: dict[str, Any] = {}
    parts = []
    if bad is not None:
        evidence["first_nonfinite_loss_step"] = bad
        evidence["first_nonfinite_loss"] = str(train[bad])
        evidence["finite_losses_before"] = bad
        parts.append(f"the training loss is {train[bad]} at step {bad}")
    forward_step = nonfinite_forward.get("step") if nonfinite_forward else None
    loss_first = bad is not None and forward_watched and (
        forward_step is None or forward_step > bad
    )
    if loss_first:
        evidence["source"] = "loss function"
        parts.append(
            "every module's output was finite at that step: the loss function itself produced "
            "the NaN/Inf (a log of 0, a division by 0, a sqrt of a negative number)"
        )
    if grads:
        first = min(grads.values())
        names = sorted(n for n, s in grads.items() if s == first)
        evidence["first_nonfinite_grad_step"] = first
        evidence["first_nonfinite_grad_params"] = names
        if n_params is not None and len(names) >= n_params > 1:
            parts.append(f"every parameter's gradient is non-finite from step {first}")
        else:
            parts.append(f"the gradient of {', '.join(names[:3])} is non-finite from step {first}")
    if nonfinite_forward:
        evidence["first_nonfinite_module"] = nonfinite_forward.get("module")
        evidence["first_nonfinite_module_step"] = forward_step
        evidence.setdefault("source", f"module {nonfinite_forward.get('module')}")
        parts.append(
            f"module {nonfinite_forward.get('module')} output NaN/Inf first "
            f"(step {forward_step}): its input or its weights were already bad"
        )
    fixes = [
        "Look at the first module / parameter named above: a log, a division, a sqrt or an exp "
        "of a value out of its domain is the usual source (add an eps, clamp, use log_softmax).",
        "Check the data of that step for NaN/Inf (torch.isfinite(inputs).all()).",
        "If the loss grew before it broke, this is divergence: lower the learning rate, clip the "
        "gradient norm.",
        "With float16, use torch.autocast with a GradScaler (it skips non-finite steps).",
    ]
    if loss_first:
        fixes.insert(0, "Compute the loss in a numerically safe form: F.cross_entropy or "
                        "log_softmax instead of log(softmax), torch.log(p.clamp_min(1e-12)), "
                        "an eps in every division.")
    return make_verdict("nonfinite", T.HIGH, "; ".join(parts) + ".", evidence, fixes)


def divergence(train: Curve) -> Verdict | None:
    """The loss grows: the end of the finite curve is more than ``DIVERGENCE_FACTOR`` times its
    first value, and the means of its last three quarters increase (still growing at the end,
    not a spike it recovers from; positive losses, ``MIN_TREND_POINTS`` values at least).

    The learning rate is too large for the steepest direction of the error surface: each step
    overshoots the valley floor by more than it started from, so the loss grows geometrically.
    """
    values = finite(train)
    if len(values) < T.MIN_TREND_POINTS or not values[0] > 0:
        return None
    end = tail(values)
    n = len(values)
    q2, q3, q4 = (statistics.fmean(values[i * n // 4 : (i + 1) * n // 4]) for i in (1, 2, 3))
    if not (end > T.DIVERGENCE_FACTOR * values[0] and q2 < q3 < q4):
        return None
    best = min(values)
    growth = end / values[0]
    evidence = {
        "first_loss": values[0],
        "best_loss": best,
        "best_step": values.index(best),
        "end_loss": end,
        "growth": growth,
        "factor_threshold": T.DIVERGENCE_FACTOR,
    }
    message = (
        f"the training loss ends at {g(end)}, {g(growth)} times its first value {g(values[0])} "
        f"(best {g(best)} at step {values.index(best)})."
    )
    fixes = [
        "Lower the learning rate (10x to start with; unstuck lr-find / lr_find suggests one).",
        "Clip the gradient norm (torch.nn.utils.clip_grad_norm_).",
        "Use a warm-up, or an adaptive optimizer (Adam, RMSProp) that scales steps per parameter.",
    ]
    return make_verdict("divergence", T.HIGH, message, evidence, fixes)
