"""Rules on the loss curves: the guide "my network does not train" (lectures, step by step).

Each rule is a function of plain inputs (lists of floats, the loss scale ``baseline``) that
returns a :class:`~unstuck.doctor.verdicts.Verdict` with the measured numbers, or ``None`` when
its signal is absent. The guide (Hung-yi Lee, ML 2022 spring, "What to do if my network fails to
train"):

1. Training loss large: **model bias** (the model is too simple: even its best function has a
   large loss) or **optimisation** (a better function exists but the optimiser does not find it).
   Tell them apart by comparing with a simpler model that is easy to optimise (a shallower
   network, a linear model): a deeper network can represent the shallower one's solution, so if
   the shallower one reaches a lower *training* loss, the deeper one has an optimisation problem.
2. Training loss small, loss on held-out data large: **overfitting** (the model is too flexible
   for the data it saw) or **mismatch** (training and test data come from different
   distributions; more training data does not help). A train-dev split (held out from the
   *training* distribution) tells them apart: overfitting shows on it, mismatch only on test.

Thresholds are in :mod:`unstuck.doctor.thresholds`.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

from unstuck.doctor import thresholds as T
from unstuck.doctor.curves import finite, first_nonfinite, halves_drop, tail, thirds
from unstuck.doctor.verdicts import TITLES, Verdict

__all__ = [
    "divergence",
    "is_large",
    "is_plateau",
    "local_minimum",
    "lr_too_small",
    "mismatch",
    "model_bias",
    "nonfinite",
    "optimization_failure",
    "overfitting",
    "reference_does_better",
    "saddle_point",
]

Curve = Sequence[float]


def g(x: float | None) -> str:
    """A number for a sentence: 4 significant digits."""
    return "n/a" if x is None else f"{x:.4g}"


def _verdict(code: str, confidence: float, message: str, evidence: dict[str, Any],
             fixes: Sequence[str]) -> Verdict:
    return Verdict(code, TITLES[code], confidence, message, evidence, tuple(fixes))


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
) -> Verdict | None:
    """NaN or Inf in the training loss, in a gradient (which parameter first) or in a module's
    output (which module first; the Monitor's ``watch_forward``).

    Fires on any of them. Evidence: the first step with a non-finite loss, the first parameters
    with a non-finite gradient and their step, the first module with a non-finite output.
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
    if grads:
        first = min(grads.values())
        names = sorted(n for n, s in grads.items() if s == first)
        evidence["first_nonfinite_grad_step"] = first
        evidence["first_nonfinite_grad_params"] = names
        parts.append(f"the gradient of {', '.join(names[:3])} is non-finite from step {first}")
    if nonfinite_forward:
        evidence["first_nonfinite_module"] = nonfinite_forward.get("module")
        evidence["first_nonfinite_module_step"] = nonfinite_forward.get("step")
        parts.append(
            f"module {nonfinite_forward.get('module')} output NaN/Inf first "
            f"(step {nonfinite_forward.get('step')})"
        )
    fixes = [
        "Look at the first module / parameter named above: a log, a division, a sqrt or an exp "
        "of a value out of its domain is the usual source (add an eps, clamp, use log_softmax).",
        "Check the data of that step for NaN/Inf (torch.isfinite(inputs).all()).",
        "If the loss grew before it broke, this is divergence: lower the learning rate, clip the "
        "gradient norm.",
        "With float16, use torch.autocast with a GradScaler (it skips non-finite steps).",
    ]
    return _verdict("nonfinite", T.HIGH, "; ".join(parts) + ".", evidence, fixes)


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
    return _verdict("divergence", T.HIGH, message, evidence, fixes)


# ----------------------------------------------------------------------------- training loss large
def optimization_failure(train: Curve, reference: Curve | None, baseline: float) -> Verdict | None:
    """A simpler reference model reaches a lower training loss (guide step 1).

    The deeper model could represent the simpler one's solution (extra layers can compute the
    identity), so a higher training loss means the optimiser failed to find it. Fires when the
    reference's final loss is lower by ``REFERENCE_MARGIN`` (relative) and ``REFERENCE_GAP``
    (fraction of the scale).
    """
    if not reference_does_better(train, reference, baseline):
        return None
    mine, theirs = tail(finite(train)), tail(finite(reference or []))
    evidence = {
        "train_loss_end": mine,
        "reference_train_loss_end": theirs,
        "ratio": theirs / mine if mine else None,
        "baseline": baseline,
    }
    message = (
        f"a simpler reference model reaches training loss {g(theirs)}, this model only {g(mine)}: "
        "the model could represent the reference's solution, so the optimiser fails to find it."
    )
    fixes = [
        "Change the optimisation, not the model: an adaptive optimizer (Adam), a tuned learning "
        "rate (lr_find) with a schedule, momentum.",
        "Make the deep model easier to optimise: residual connections, normalisation layers "
        "(BatchNorm/LayerNorm), ReLU-family activations instead of sigmoid, a careful init.",
        "Start from the shallower network and deepen it once it trains.",
    ]
    return _verdict("optimization_failure", T.HIGH, message, evidence, fixes)


def model_bias(
    train: Curve,
    baseline: float,
    reference: Curve | None = None,
    critical: dict[str, Any] | None = None,
) -> Verdict | None:
    """The training loss is large and has plateaued, and nothing says the optimiser is to blame.

    Fires when the loss ends at least ``LARGE_LOSS`` of the scale and fell by less than
    ``PLATEAU_DROP`` of it over the second half, no reference model does better, and the point
    reached is not a saddle (the caller drops this verdict when an optimisation verdict fires).
    Confidence is high when a reference was tried, or the Hessian says the model sits at a
    minimum (the best a convex model can do); medium on the curve alone.
    """
    values = finite(train)
    if len(values) < T.MIN_TREND_POINTS or not is_large(values, baseline):
        return None
    if not is_plateau(values, baseline) or reference_does_better(values, reference, baseline):
        return None
    kind = (critical or {}).get("verdict")
    if kind == "saddle point":
        return None
    end = tail(values)
    first, second = halves_drop(values)
    evidence: dict[str, Any] = {
        "train_loss_end": end,
        "baseline": baseline,
        "fraction_of_baseline": end / baseline,
        "drop_second_half": second,
    }
    confidence = T.MEDIUM
    message = (
        f"the training loss has plateaued at {g(end)}, {g(100 * end / baseline)}% of the loss "
        f"scale {g(baseline)} (it fell by {g(second)} over the second half)"
    )
    if reference:
        evidence["reference_train_loss_end"] = tail(finite(reference) or [math.nan])
        message += f"; a simpler model does no better ({g(evidence['reference_train_loss_end'])})"
        confidence = T.HIGH
    if kind in ("local minimum", "degenerate"):
        evidence["hessian"] = kind
        evidence["lambda_min"] = critical.get("lambda_min") if critical else None
        message += f"; the Hessian says {kind}: the optimiser has converged"
        confidence = T.HIGH
    fixes = [
        "Make the model more flexible: more features (inputs), more neurons, more layers.",
        "Check the inputs carry the information needed (feature engineering).",
        "Before growing the model, rule out the optimiser: train a simpler model (a shallower "
        "network, a linear model) and check it does no better.",
    ]
    return _verdict("model_bias", confidence, message + ".", evidence, fixes)


def lr_too_small(
    train: Curve, baseline: float, update_ratio: float | None = None
) -> Verdict | None:
    """The loss falls, but far too slowly: the learning rate is too small.

    Fires when the loss falls steadily (means of the thirds decrease, and the second half fell at
    least ``STEADY_FALL`` of what the first half fell: no flattening) but by less than
    ``SLOW_DROP`` of the scale over the whole run; or when the median update/weight ratio of the
    Monitor is below ``SMALL_UPDATE_RATIO`` while the loss is still large. High confidence with
    both signals.
    """
    values = finite(train)
    evidence: dict[str, Any] = {}
    steady = False
    if len(values) >= T.MIN_TREND_POINTS:
        m1, m2, m3 = thirds(values)
        first, second = halves_drop(values)
        total = values[0] - tail(values)
        steady = (
            m1 > m2 > m3
            and second > 0
            and second >= T.STEADY_FALL * first
            and total < T.SLOW_DROP * baseline
        )
        evidence.update(
            fall_first_half=first, fall_second_half=second, total_fall=total, baseline=baseline
        )
    tiny = (
        update_ratio is not None
        and update_ratio < T.SMALL_UPDATE_RATIO
        and is_large(values, baseline)
    )
    if not (steady or tiny):
        return None
    parts = []
    if steady:
        parts.append(
            f"the loss still falls at a steady rate ({g(evidence['fall_second_half'])} over the "
            f"second half, {g(evidence['fall_first_half'])} over the first) but only "
            f"{g(evidence['total_fall'])} in all, {g(100 * evidence['total_fall'] / baseline)}% "
            "of the loss scale"
        )
    if update_ratio is not None:
        evidence["median_update_ratio"] = update_ratio
        parts.append(f"the median update is {g(update_ratio)} of the weights per step")
    fixes = [
        "Raise the learning rate (try 3x-10x; unstuck lr-find / lr_find suggests one).",
        "Use an adaptive optimizer (Adam, RMSProp): its per-parameter step does not shrink with "
        "a flat error surface.",
        "Train longer only if a larger learning rate diverges.",
    ]
    confidence = T.HIGH if steady and tiny else T.MEDIUM
    return _verdict("lr_too_small", confidence, "; ".join(parts) + ".", evidence, fixes)


# ----------------------------------------------------------------------------- critical points
def saddle_point(critical: dict[str, Any] | None) -> Verdict | None:
    """The critical-point probe found a saddle point (or a local maximum).

    At a critical point the gradient vanishes and the Hessian decides (lectures, Taylor series):
    eigenvalues of both signs make a saddle, and the eigenvector ``u`` of a negative eigenvalue
    ``lambda`` is a way out: ``L(theta + eps u) ~ L(theta) + 0.5 lambda eps^2 < L(theta)``.
    """
    if not critical or critical.get("verdict") not in ("saddle point", "local maximum"):
        return None
    evidence = {
        k: critical.get(k)
        for k in ("verdict", "grad_norm", "lambda_min", "lambda_max", "n_negative",
                  "n_positive", "escape_loss_change", "eps", "hvps")
    }
    change = critical.get("escape_loss_change")
    message = (
        f"the gradient is small ({g(critical.get('grad_norm'))}) and the Hessian has eigenvalues "
        f"of both signs (lambda_min {g(critical.get('lambda_min'))}, lambda_max "
        f"{g(critical.get('lambda_max'))}): a {critical.get('verdict')}"
    )
    if change is not None:
        message += (
            f"; a step of {g(critical.get('eps'))} along the eigenvector of lambda_min changes "
            f"the loss by {g(change)}"
        )
    fixes = [
        "Escape along the negative-curvature direction: theta + eps * u, u the eigenvector of "
        "lambda_min (CriticalPoint.escape_direction).",
        "Use momentum (SGD momentum 0.9, Adam): it carries the iterate through flat saddles.",
        "Use smaller batches: the gradient noise of small batches pushes off a saddle.",
        "Do not initialise at a symmetric point (all-zero or tiny weights): use the default "
        "(Kaiming/Xavier) initialisation.",
    ]
    confidence = T.HIGH if change is not None and change < 0 else T.MEDIUM
    return _verdict("saddle_point", confidence, message + ".", evidence, fixes)


def local_minimum(
    critical: dict[str, Any] | None, train: Curve, baseline: float, reference: Curve | None
) -> Verdict | None:
    """Stuck in a local minimum: the Hessian is positive definite at a training loss that a
    simpler model beats (by the margins of :func:`reference_does_better`).

    Without a better reference a minimum at a large loss is the best the model does (model
    bias): a convex model's only minimum is global, and the lectures note that in many
    dimensions true local minima are rare; so this verdict needs the reference to fire.
    """
    if not critical or critical.get("verdict") != "local minimum":
        return None
    if not reference_does_better(train, reference, baseline):
        return None
    evidence = {
        k: critical.get(k) for k in ("grad_norm", "lambda_min", "lambda_max", "n_positive", "hvps")
    }
    evidence["train_loss_end"] = tail(finite(train))
    evidence["reference_train_loss_end"] = tail(finite(reference or []))
    message = (
        f"the Hessian is positive definite (lambda_min {g(critical.get('lambda_min'))} > 0) with "
        f"a small gradient ({g(critical.get('grad_norm'))}) at training loss "
        f"{g(evidence['train_loss_end'])}, while a simpler model reaches "
        f"{g(evidence['reference_train_loss_end'])}."
    )
    fixes = [
        "Restart from another initialisation (several seeds) and keep the best.",
        "Use momentum or a larger learning rate early (then decay it): it can roll over small "
        "bumps of the error surface.",
        "Use smaller batches (noisier gradients), or reparameterise the model (a smoother one).",
    ]
    return _verdict("local_minimum", T.HIGH, message, evidence, fixes)


# ----------------------------------------------------------------------------- generalisation
def overfitting(
    train: Curve, val: Curve | None, baseline: float, test: Curve | None = None
) -> Verdict | None:
    """Small training loss, large validation (train-dev) loss (guide step 2).

    Fires when the training loss is not large and the validation loss ends above it by
    ``OVERFIT_GAP`` of the scale and ``GAP_RATIO`` times. Confidence: high when the validation
    loss also rose from its minimum (the textbook curve: early stopping would have helped),
    medium otherwise; without ``val`` the test loss stands in, with low confidence (mismatch
    cannot be ruled out without a train-dev split).
    """
    values = finite(train)
    held = finite(val) if val is not None else None
    proxy = False
    if not held and test is not None:
        held, proxy = finite(test), True
    if not values or not held or is_large(values, baseline):
        return None
    mine, theirs = tail(values), held[-1]
    if not (theirs - mine >= T.OVERFIT_GAP * baseline and theirs >= T.GAP_RATIO * mine):
        return None
    best = min(held)
    evidence: dict[str, Any] = {
        "train_loss_end": mine,
        ("test_loss_end" if proxy else "val_loss_end"): theirs,
        "gap": theirs - mine,
        "baseline": baseline,
        "val_min": best,
        "val_min_index": held.index(best),
    }
    rose = len(held) >= 3 and theirs > best * 1.1 and held.index(best) < len(held) - 1
    which = "test" if proxy else "validation"
    message = (
        f"the training loss ends at {g(mine)} but the {which} loss at {g(theirs)} "
        f"(gap {g(theirs - mine)}, {g(100 * (theirs - mine) / baseline)}% of the loss scale)"
    )
    if rose:
        message += f"; the {which} loss was lowest ({g(best)}) at evaluation {held.index(best)}"
    fixes = [
        "More training data, or data augmentation.",
        "A less flexible model: fewer parameters, shared parameters, fewer features.",
        "Early stopping at the best validation loss; regularisation (weight decay); dropout.",
    ]
    if proxy:
        evidence["note"] = "no train-dev loss: mismatch cannot be ruled out"
        message += "; without a train-dev split this may also be mismatch"
        fixes.append(
            "Hold out part of the training data (train-dev) and pass it as val_loss: overfitting "
            "shows there, mismatch only on test."
        )
    confidence = T.LOW if proxy else (T.HIGH if rose else T.MEDIUM)
    return _verdict("overfitting", confidence, message + ".", evidence, fixes)


def mismatch(
    train: Curve, val: Curve | None, test: Curve | None, baseline: float
) -> Verdict | None:
    """Training and test data come from different distributions (guide step 2).

    With a train-dev loss (``val``, held out from the training distribution) and a test loss:
    fires when the test loss ends above the train-dev loss by ``MISMATCH_GAP`` of the scale and
    ``GAP_RATIO`` times. High confidence when train-dev itself is close to the training loss
    (no overfitting to explain the gap).
    """
    held, other = finite(val or []), finite(test or [])
    if not held or not other:
        return None
    dev, tst = held[-1], other[-1]
    if not (tst - dev >= T.MISMATCH_GAP * baseline and tst >= T.GAP_RATIO * dev):
        return None
    mine = tail(finite(train)) if finite(train) else math.nan
    evidence = {
        "train_loss_end": mine,
        "val_loss_end": dev,
        "test_loss_end": tst,
        "gap": tst - dev,
        "baseline": baseline,
    }
    close = math.isfinite(mine) and dev - mine < T.OVERFIT_GAP * baseline
    message = (
        f"the train-dev loss ends at {g(dev)} (training {g(mine)}) but the test loss at {g(tst)}: "
        "the model generalises within its training distribution, not to the test data"
    )
    fixes = [
        "Training and test data come from different distributions: more training data of the "
        "same kind will not help.",
        "Collect or synthesise training data like the test data; check the preprocessing of both "
        "is the same (scaling, channel order, units).",
        "Domain adaptation, or re-weighting training examples towards the test distribution.",
    ]
    return _verdict("mismatch", T.HIGH if close else T.MEDIUM, message + ".", evidence, fixes)
