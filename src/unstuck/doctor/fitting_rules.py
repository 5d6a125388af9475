"""Rules on what the model fits and how it generalises: the guide "my network does not train".

The guide (Hung-yi Lee, ML 2022 spring, "What to do if my network fails to train"):

1. Training loss large: **model bias** (the model is too simple: even its best function has a
   large loss) or **optimisation** (a better function exists but the optimiser does not find it).
   Tell them apart by comparing with a simpler model that is easy to optimise (a shallower
   network, a linear model): a deeper network can represent the shallower one's solution, so if
   the shallower one reaches a lower *training* loss, the deeper one has an optimisation problem.
   That argument holds only when the model *can* represent the reference's function, so the
   reference's ``representable`` flag decides the confidence. The other side of the question is
   asked of a *bigger* model (``capacity``): if more capacity reaches a lower loss, the model is
   too simple (model bias); if it does no better and the training and validation losses agree,
   the run sits at the **noise floor** of the data (irreducible error), whatever the loss's size.
2. Training loss small, loss on held-out data large: **overfitting** (the model is too flexible
   for the data it saw) or **mismatch** (training and test data come from different
   distributions; more training data does not help). A train-dev split (held out from the
   *training* distribution) tells them apart: overfitting shows on it, mismatch only on test.

Thresholds are in :mod:`unstuck.doctor.thresholds`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from unstuck.doctor import thresholds as T
from unstuck.doctor.curves import finite, halves_drop, tail
from unstuck.doctor.evidence import RunOutcome
from unstuck.doctor.loss_rules import (
    g,
    is_large,
    is_plateau,
    make_verdict,
    near_zero,
    reference_does_better,
    run_score,
    still_falling,
)
from unstuck.doctor.verdicts import Verdict

__all__ = [
    "capacity_does_better",
    "mismatch",
    "model_bias",
    "noise_floor",
    "optimization_failure",
    "overfitting",
]

Curve = Sequence[float]


def capacity_does_better(
    train: Curve, val: Curve | None, capacity: RunOutcome | None, baseline: float
) -> bool:
    """A bigger model's score (validation loss, else training loss) is lower by both margins of
    :func:`~unstuck.doctor.loss_rules.reference_does_better` (``REFERENCE_MARGIN`` relative,
    ``REFERENCE_GAP`` of the scale)."""
    if capacity is None or not math.isfinite(capacity.score):
        return False
    return _lower(capacity.score, run_score(train, val), baseline)


def _lower(theirs: float, mine: float, baseline: float) -> bool:
    """``theirs`` is below ``mine`` by ``REFERENCE_MARGIN`` (relative) and ``REFERENCE_GAP`` of
    the scale (absolute): the margins every "another model does better" comparison uses."""
    return theirs <= mine * (1 - T.REFERENCE_MARGIN) and mine - theirs >= T.REFERENCE_GAP * baseline


def _gap(train_end: float, held_end: float, baseline: float) -> bool:
    """The held-out loss is above the training loss by ``OVERFIT_GAP`` of the scale and
    ``GAP_RATIO`` times (both: an absolute and a relative gap)."""
    return held_end - train_end >= T.OVERFIT_GAP * baseline and held_end >= T.GAP_RATIO * train_end


# ----------------------------------------------------------------------------- training loss large
def optimization_failure(
    train: Curve,
    reference: Curve | None,
    baseline: float,
    *,
    representable: bool | None = None,
    kind: str | None = None,
    val: Curve | None = None,
    reference_val: float | None = None,
) -> Verdict | None:
    """A simpler reference model reaches a lower training loss (guide step 1).

    Fires when the reference's final loss is lower by ``REFERENCE_MARGIN`` (relative) and
    ``REFERENCE_GAP`` (fraction of the scale), and the reference's function is representable by
    the model. When both runs have a validation loss (``val``, ``reference_val``), the
    reference's must be lower by the same margins too: a reference that fits the training set
    better but generalises no better has memorised it (a linear model on a one-hot input can),
    and a model that fitted more of the training set would do no better on new data, so there
    is no optimisation failure worth fixing.

    ``representable``: True when the model provably contains the reference's function
    (high confidence), None when that is not known (a reference passed by the user, a linear
    model on the flattened input of a CNN: medium confidence), False when it is known not to
    (never fires: a 2-unit bottleneck cannot represent a 10-output linear map; losing to it is
    model bias, not an optimisation failure).
    """
    if representable is False or not reference_does_better(train, reference, baseline):
        return None
    held = finite(val or [])
    if held and reference_val is not None and not _lower(reference_val, held[-1], baseline):
        return None
    mine, theirs = tail(finite(train)), tail(finite(reference or []))
    evidence = {
        "train_loss_end": mine,
        "reference_train_loss_end": theirs,
        "ratio": theirs / mine if mine else None,
        "baseline": baseline,
        "reference": kind,
        "reference_representable": representable,
    }
    which = f"a simpler reference model ({kind})" if kind else "a simpler reference model"
    message = f"{which} reaches training loss {g(theirs)}, this model only {g(mine)}"
    if representable:
        message += ": the model can represent the reference's function, so the optimiser fails " \
                   "to find it"
    else:
        message += " (that the model can represent the reference's function is assumed, not " \
                   "proven)"
    fixes = [
        "Change the optimisation, not the model: a tuned learning rate (lr_find) with a "
        "schedule, momentum, an adaptive optimizer.",
        "Make the deep model easier to optimise: residual connections, normalisation layers "
        "(BatchNorm/LayerNorm), ReLU-family activations instead of sigmoid, a careful init.",
        "Start from the shallower network and deepen it once it trains.",
    ]
    confidence = T.HIGH if representable else T.MEDIUM
    return make_verdict("optimization_failure", confidence, message + ".", evidence, fixes)


def model_bias(
    train: Curve,
    baseline: float,
    reference: Curve | None = None,
    critical: dict[str, Any] | None = None,
    *,
    val: Curve | None = None,
    capacity: RunOutcome | None = None,
) -> Verdict | None:
    """The model is too simple: a bigger one does better, or the loss is large and stuck.

    With a ``capacity`` run (a bigger model trained on the same data): fires when the loss
    is not still falling (:func:`still_falling`) above ``NEAR_ZERO`` and the bigger model's score
    is lower
    by both reference margins (high confidence); never when it does no better (that is the noise
    floor). Without one, on the curve alone: the loss ends at least ``LARGE_LOSS`` of the scale on
    a plateau, no simpler reference does better, and the point reached is not a saddle (medium
    confidence; high when a reference was tried or the Hessian says minimum).
    """
    values = finite(train)
    if len(values) < T.MIN_TREND_POINTS or still_falling(values):
        return None
    if capacity is None and not is_plateau(values, baseline):
        return None
    if near_zero(values, baseline):
        return None
    if capacity is None and reference_does_better(values, reference, baseline):
        return None  # on the curve alone, a better simpler model blames the optimiser
    kind = (critical or {}).get("verdict")
    if kind == "saddle point":
        return None
    end = tail(values)
    second = halves_drop(values)[1]
    evidence: dict[str, Any] = {
        "train_loss_end": end,
        "baseline": baseline,
        "fraction_of_baseline": end / baseline,
        "drop_second_half": second,
    }
    message = (
        f"the training loss stopped at {g(end)}, {g(100 * end / baseline)}% of the loss "
        f"scale {g(baseline)} (it fell by {g(second)} over the second half)"
    )
    fixes = [
        "Make the model more flexible: more features (inputs), more neurons, more layers.",
        "Check the inputs carry the information needed (feature engineering).",
    ]
    if capacity is not None:
        if not capacity_does_better(values, val, capacity, baseline):
            return None
        evidence["bigger_model"] = capacity.to_dict()
        message += (
            f"; a bigger model ({capacity.label}) reaches {g(capacity.score)} "
            f"({'validation' if capacity.val_loss_end is not None else 'training'} loss): more "
            "capacity helps"
        )
        return make_verdict("model_bias", T.HIGH, message + ".", evidence, fixes)
    if not is_large(values, baseline):
        return None
    confidence = T.MEDIUM
    if reference:
        evidence["reference_train_loss_end"] = tail(finite(reference) or [math.nan])
        message += f"; a simpler model does no better ({g(evidence['reference_train_loss_end'])})"
        confidence = T.HIGH
    if kind in ("local minimum", "degenerate"):
        evidence["hessian"] = kind
        evidence["lambda_min"] = critical.get("lambda_min") if critical else None
        message += f"; the Hessian says {kind}: the optimiser has converged"
        confidence = T.HIGH
    fixes.append("Before growing the model, rule out the optimiser: train a simpler model (a "
                 "shallower network, a linear model) and check it does no better.")
    return make_verdict("model_bias", confidence, message + ".", evidence, fixes)


def noise_floor(
    train: Curve, val: Curve | None, baseline: float, capacity: RunOutcome | None
) -> Verdict | None:
    """The run sits at the noise floor of its data: a bigger model does no better.

    Irreducible error (noisy labels, noisy targets) is not model bias: no model does better. This
    is decided by evidence, never by the loss's size: fires when the loss is not still falling
    (:func:`still_falling`) above ``NEAR_ZERO``, a bigger model trained on the same data
    (``capacity``) does not do better (:func:`capacity_does_better`), and the validation loss, when
    there is one, shows no overfitting gap (``OVERFIT_GAP`` and ``GAP_RATIO``: the model
    generalises what it learned). High confidence with a validation loss, medium without. A
    benign verdict: the fix is better data, not more training.
    """
    values = finite(train)
    if capacity is None or len(values) < T.MIN_TREND_POINTS:
        return None
    if near_zero(values, baseline) or still_falling(values):
        return None
    if not math.isfinite(capacity.score) or capacity_does_better(values, val, capacity, baseline):
        return None
    end = tail(values)
    held = finite(val or [])
    if held and _gap(end, held[-1], baseline):
        return None
    evidence: dict[str, Any] = {
        "train_loss_end": end,
        "val_loss_end": held[-1] if held else None,
        "baseline": baseline,
        "bigger_model": capacity.to_dict(),
    }
    message = (
        f"the training loss stopped at {g(end)}"
        + (f" and the validation loss at {g(held[-1])}" if held else "")
        + f"; a bigger model ({capacity.label}) does no better ({g(capacity.score)}): the "
        "remaining error is in the data (label or target noise), not in the model or the "
        "optimiser"
    )
    fixes = [
        "Nothing to fix in the training: more capacity or more steps will not lower this loss.",
        "Better data lowers it: fewer label errors, less noisy targets, more informative inputs.",
        "Stop tuning here; compare models on this loss with its noise in mind.",
    ]
    return make_verdict("noise_floor", T.HIGH if held else T.MEDIUM, message + ".", evidence,
                        fixes)


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
    if not _gap(mine, theirs, baseline):
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
    return make_verdict("overfitting", confidence, message + ".", evidence, fixes)


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
    return make_verdict("mismatch", T.HIGH if close else T.MEDIUM, message + ".", evidence, fixes)
