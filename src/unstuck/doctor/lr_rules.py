"""Rules on the learning rate: too small (the loss falls, far too slowly) or too large (no
progress under huge steps).

The advice of these rules changes what the user does next, so it must not make a run worse: each
is checked against probes at other learning rates where :func:`~unstuck.doctor.examine` ran them
(:attr:`Evidence.lr_probes <unstuck.doctor.evidence.Evidence>`). "Raise the learning rate" is
said only when a higher one measurably did better (and the verdict is dropped when the probes say
it would not); without probes the verdict carries low confidence and says it is unconfirmed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from unstuck.doctor import thresholds as T
from unstuck.doctor.curves import finite, halves_drop, tail, thirds
from unstuck.doctor.evidence import Evidence, RunOutcome
from unstuck.doctor.loss_rules import g, head, is_large, make_verdict, near_zero, run_score
from unstuck.doctor.verdicts import Verdict

__all__ = ["lr_too_large", "lr_too_small"]

Curve = Sequence[float]

def _probe_text(probe: RunOutcome) -> str:
    which = "validation" if probe.val_loss_end is not None else "training"
    return f"a run at {probe.label} reached {which} loss {g(probe.score)}"


def lr_too_small(
    train: Curve,
    baseline: float,
    update_ratio: float | None = None,
    *,
    val: Curve | None = None,
    family: str | None = None,
    evidence: Evidence | None = None,
) -> Verdict | None:
    """The loss falls, but far too slowly: the learning rate is too small.

    Signals, on a curve that went *down* (its end below its start: a rising or broken curve is
    never "too slow"):

    - a steady slow fall: the means of the thirds decrease, the second half fell at least
      ``STEADY_FALL`` of what the first half fell (no flattening), and the whole run fell by less
      than ``SLOW_DROP`` of the scale;
    - tiny steps: the median update/weight ratio is below ``SMALL_UPDATE_RATIO`` while the loss
      is still large;
    - stuck high: the loss stopped above ``NEAR_ZERO`` and a run at a higher learning rate did
      better (the guide's optimisation question, answered by a probe, before model bias).

    Then the probes decide: when a run at a higher learning rate did better by
    ``LR_PROBE_MARGIN`` the verdict is confirmed (high confidence, the fix names that lr); when
    higher learning rates ran and none did better, it does not fire (the run is already at a good
    lr: its pace is the problem's); without probes it fires with low confidence. "Use an adaptive
    optimizer" is offered only to runs known to use a non-adaptive one.
    """
    values = finite(train)
    if len(values) < 2:
        return None
    start = head(values)
    total = start - tail(values)
    if not total > 0:
        return None
    facts: dict[str, Any] = {"total_fall": total, "baseline": baseline}
    steady = False
    if len(values) >= T.MIN_TREND_POINTS:
        m1, m2, m3 = thirds(values)
        first, second = halves_drop(values)
        steady = (
            m1 > m2 > m3
            and second > 0
            and second >= T.STEADY_FALL * first
            and total < T.SLOW_DROP * baseline
        )
        facts.update(fall_first_half=first, fall_second_half=second)
    tiny = (
        update_ratio is not None
        and update_ratio < T.SMALL_UPDATE_RATIO
        and is_large(values, baseline)
    )
    own = run_score(train, val)
    confirmed = (
        evidence.lr_probe_verdict("higher", own, baseline, T.LR_PROBE_MARGIN) if evidence else None
    )
    stuck_high = confirmed is not None and not near_zero(values, baseline)
    if not (steady or tiny or stuck_high):
        return None
    parts = []
    if steady:
        parts.append(
            f"the loss still falls at a steady rate ({g(facts['fall_second_half'])} over the "
            f"second half, {g(facts['fall_first_half'])} over the first) but only {g(total)} in "
            f"all, {g(100 * total / baseline)}% of the loss scale"
        )
    if update_ratio is not None:
        facts["median_update_ratio"] = update_ratio
        parts.append(f"the median update is {g(update_ratio)} of the weights per step")
    if confirmed is None and evidence is not None and evidence.probed("higher"):
        return None  # a higher lr was tried and did no better: not the lr's fault
    fixes = []
    if confirmed is not None:
        facts["probe"] = confirmed.to_dict()
        parts.append(f"{_probe_text(confirmed)}, against {g(own)} for this run")
        fixes.append(f"Raise the learning rate to {confirmed.label.removeprefix('lr x')} times "
                     "its value: that run did better in the same number of steps.")
        confidence = T.HIGH
    else:
        facts["note"] = "no probe at a higher learning rate ran"
        parts.append("no run at a higher learning rate confirmed it (examine() runs one)")
        fixes.append("Try a 3x-10x larger learning rate for a few hundred steps and keep it only "
                     "if the validation loss falls faster (unstuck lr-find suggests one).")
        confidence = T.LOW
    if family == "none":
        fixes.append("Or an adaptive optimizer (Adam, RMSProp): its per-parameter step does not "
                     "shrink with a flat error surface.")
    fixes.append("Train longer if a larger learning rate makes things worse.")
    return make_verdict("lr_too_small", confidence, "; ".join(parts) + ".", facts, fixes)


def lr_too_large(
    train: Curve,
    baseline: float,
    update_ratio: float | None = None,
    *,
    val: Curve | None = None,
    evidence: Evidence | None = None,
) -> Verdict | None:
    """The learning rate is too large: the loss makes no progress while the steps are huge.

    Fires when the training loss made no progress (its end above ``1 - NO_PROGRESS`` of its
    first value, the model as initialised: flat, bouncing or rising without the geometric
    growth of divergence) and one of:
    the median update/weight ratio exceeds ``LARGE_UPDATE_RATIO`` (each step changes the
    weights by more than 5%), the reference model trained with the same recipe diverged, or a
    run at a lower learning rate did better by ``LR_PROBE_MARGIN``. High confidence when the
    lower-lr probe confirms it; when lower learning rates ran and none did better it does not
    fire.
    """
    values = finite(train)
    if len(values) < T.MIN_TREND_POINTS:
        return None
    start, end = values[0], tail(values)
    if not end >= (1 - T.NO_PROGRESS) * start:
        return None
    facts: dict[str, Any] = {"loss_start": start, "loss_end": end, "baseline": baseline}
    parts = [f"the training loss made no progress (from {g(start)} to {g(end)})"]
    big = update_ratio is not None and math.isfinite(update_ratio) and (
        update_ratio > T.LARGE_UPDATE_RATIO
    )
    if update_ratio is not None:
        facts["median_update_ratio"] = update_ratio
    if big:
        parts.append(f"the median step changes the weights by {g(100 * update_ratio)}%")
    reference_broke = bool(evidence and evidence.reference and evidence.reference.diverged)
    if reference_broke:
        facts["reference_diverged"] = True
        parts.append("the reference model trained with the same optimizer settings diverged")
    own = run_score(train, val)
    confirmed = (
        evidence.lr_probe_verdict("lower", own, baseline, T.LR_PROBE_MARGIN) if evidence else None
    )
    if confirmed is None and evidence is not None and evidence.probed("lower"):
        return None
    if confirmed is None and not (big or reference_broke):
        return None
    fixes = []
    if confirmed is not None:
        facts["probe"] = confirmed.to_dict()
        parts.append(f"{_probe_text(confirmed)}, against {g(own)} for this run")
        fixes.append(f"Lower the learning rate to {confirmed.label.removeprefix('lr x')} times "
                     "its value: that run did better in the same number of steps.")
    else:
        fixes.append("Lower the learning rate 10x (unstuck lr-find suggests one).")
    fixes += [
        "Add a warm-up and a decaying schedule, so the first steps are small.",
        "Clip the gradient norm so a single step cannot throw the weights far.",
    ]
    confidence = T.HIGH if confirmed is not None else T.MEDIUM
    return make_verdict("lr_too_large", confidence, "; ".join(parts) + ".", facts, fixes)
