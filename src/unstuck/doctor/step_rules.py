"""Rules on the Monitor's per-step records: how the optimiser moves, not just where the loss is.

Each rule reads :attr:`unstuck.diagnose.Monitor.history` (a list of record dicts) and returns a
:class:`~unstuck.doctor.verdicts.Verdict` with the measured numbers, or ``None``. The reasoning
follows the lectures (Hung-yi Lee, ML 2022 spring, "adaptive learning rate"; the optimizer
lectures on warm-up and LARS):

- *Training stuck is not the same as a small gradient*: when the loss stops falling while the
  gradient stays large, the iterate bounces between the walls of a valley (**oscillation**): the
  learning rate is too large for the steep direction.
- Adaptive methods divide by ``sigma``, a summary of past gradients; after a long flat stretch
  ``sigma`` is tiny and ``eta / sigma`` huge, and the step blows up (**adagrad_blowup**): use
  a decaying learning rate (or RMSProp/Adam, whose ``sigma`` forgets).
- At the beginning the estimate of ``sigma`` rests on a few samples and has a large variance:
  **warm-up** keeps the steps small until it is reliable (RAdam does it by rectification).
- Different layers need different learning rates: when the update/weight ratios of the layers
  differ by orders of magnitude, one learning rate cannot suit all (**layer_ratio_spread**;
  LARS/LAMB scale each layer's step by its trust ratio).

Thresholds are in :mod:`unstuck.doctor.thresholds`.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from typing import Any

from unstuck.doctor import thresholds as T
from unstuck.doctor.curves import median, series, window
from unstuck.doctor.loss_rules import g, make_verdict
from unstuck.doctor.verdicts import Verdict

__all__ = [
    "adagrad_blowup",
    "exploding_gradients",
    "layer_ratio_spread",
    "median_update_ratio",
    "needs_warmup",
    "oscillation",
    "warmup_ramp",
]

History = Sequence[dict[str, Any]]


def _values(pairs: list[tuple[int, float]]) -> list[float]:
    return [v for _, v in pairs if math.isfinite(v)]


def median_update_ratio(history: History) -> float | None:
    """The median global update/weight ratio over the records that have one."""
    ratios = _values(series(history, "update_ratio"))
    return median(ratios) if ratios else None


def oscillation(history: History) -> Verdict | None:
    """Stuck with a large gradient: consecutive updates point against each other.

    Fires when the median update cosine over the second half of the records is below
    ``OSCILLATION_COSINE`` and the gradient norm there is at least ``OSCILLATION_GRADIENT_KEPT``
    of its median over the first quarter. Needs ``2 * MIN_WINDOW`` records with a cosine.
    """
    cosines = series(history, "update_cosine")
    grads = _values(series(history, "grad_norm"))
    if len(cosines) < 2 * T.MIN_WINDOW or len(grads) < 2 * T.MIN_WINDOW:
        return None
    late_cos = median([c for _, c in cosines[len(cosines) // 2 :]])
    early_grad = median(grads[: max(1, len(grads) // 4)])
    late_grad = median(grads[len(grads) // 2 :])
    kept = late_grad >= T.OSCILLATION_GRADIENT_KEPT * early_grad
    if not (late_cos < T.OSCILLATION_COSINE and kept):
        return None
    late = [c for _, c in cosines[len(cosines) // 2 :]]
    negative = sum(c < 0 for c in late) / len(late)
    losses = _values(series(history, "loss"))
    evidence = {
        "median_update_cosine": late_cos,
        "negative_cosine_fraction": negative,
        "grad_norm_early": early_grad,
        "grad_norm_late": late_grad,
        "loss_first": losses[0] if losses else None,
        "loss_last": losses[-1] if losses else None,
    }
    message = (
        f"over the second half the median cosine between consecutive updates is {g(late_cos)} "
        f"({g(100 * negative)}% negative) while the gradient norm stays at {g(late_grad)} "
        f"({g(late_grad / early_grad if early_grad else math.inf)} times its early value): the "
        "parameters bounce between the walls of a valley instead of going down it."
    )
    fixes = [
        "Lower the learning rate: it is too large for the steep directions of the error surface.",
        "Use an adaptive optimizer (Adam, RMSProp): a small step where the surface is steep, a "
        "large one where it is flat.",
        "Add learning-rate decay, so the steps shrink as training nears the valley floor.",
        "Momentum (0.9) averages the back-and-forth out of the steps.",
    ]
    confidence = T.HIGH if negative > 0.8 else T.MEDIUM
    return make_verdict("oscillation", confidence, message, evidence, fixes)


def exploding_gradients(history: History) -> Verdict | None:
    """Gradient spikes: a gradient norm more than ``EXPLODING_SPIKE`` times the median of the
    records before it (at least ``MIN_WINDOW`` of them; a window of up to 10% of the run) and
    more than ``EXPLODING_EARLY`` times the median of the run's first window (after convergence
    the recent median is tiny, and an ordinary step is not an explosion).

    The fix is clipping at ``CLIP_MEDIAN_FACTOR`` times the median of the observed norms: the
    typical steps are unchanged, the huge ones are cut to size.
    """
    grads = [(s, v) for s, v in series(history, "grad_norm") if math.isfinite(v)]
    n = len(grads)
    if n < 2 * T.MIN_WINDOW:
        return None
    w = window(n, 0.1)
    early = median([v for _, v in grads[:w]])
    spikes = []
    for i in range(T.MIN_WINDOW, n):
        before = median([v for _, v in grads[max(0, i - w) : i]])
        if (
            before > 0
            and grads[i][1] > T.EXPLODING_SPIKE * before
            and grads[i][1] > T.EXPLODING_EARLY * early
        ):
            spikes.append((grads[i][0], grads[i][1], grads[i][1] / before))
    if not spikes:
        return None
    typical = median([v for _, v in grads])
    clip = T.CLIP_MEDIAN_FACTOR * typical
    worst = max(spikes, key=lambda s: s[2])
    evidence = {
        "spikes": len(spikes),
        "first_spike_step": spikes[0][0],
        "worst_spike_step": worst[0],
        "worst_spike_norm": worst[1],
        "worst_spike_factor": worst[2],
        "median_grad_norm": typical,
        "early_grad_norm": early,
        "clip_grad_norm": clip,
    }
    message = (
        f"{len(spikes)} gradient spike(s): the largest at step {worst[0]}, norm {g(worst[1])}, "
        f"{g(worst[2])} times the median before it; the median norm is {g(typical)}."
    )
    fixes = [
        f"Clip the gradient norm at about {g(clip)} ({g(T.CLIP_MEDIAN_FACTOR)} times the median "
        f"norm): torch.nn.utils.clip_grad_norm_(model.parameters(), {clip:.3g}).",
        "Look for the batches behind the spikes (outliers, wrong units, label noise).",
        "Lower the learning rate; normalisation layers and a careful init keep gradients in scale.",
    ]
    return make_verdict("exploding_gradients", T.HIGH, message, evidence, fixes)


def adagrad_blowup(history: History, family: str | None = None) -> Verdict | None:
    """An adaptive step blows up after a flat stretch (lectures: Adagrad's ``eta / sigma``).

    With ``r = update_norm / grad_norm`` (the step taken per unit of gradient, a measured
    effective learning rate), fires at the first record whose update norm is more than
    ``BLOWUP_SPIKE`` times the median of the records before it, when over those records ``r``
    had grown more than ``BLOWUP_GROWTH`` times since the first ``MIN_WINDOW`` records and the
    gradient had fallen below ``FLAT_GRADIENT`` of its early value. Plain SGD has a constant
    ``r`` and never fires. ``family`` (``"adagrad"``, ``"adam"``, ...) only tunes the fixes.
    """
    rows = []
    for i, r in enumerate(history):
        u, gn = r.get("update_norm"), r.get("grad_norm")
        numbers = isinstance(u, (int, float)) and isinstance(gn, (int, float))
        if numbers and math.isfinite(u) and math.isfinite(gn) and gn > 0 and u >= 0:
            rows.append((int(r.get("step", i)), u, gn, u / gn))
    n = len(rows)
    if n < 3 * T.MIN_WINDOW:
        return None
    head = rows[: T.MIN_WINDOW]
    r0, g0 = median([x[3] for x in head]), median([x[2] for x in head])
    w = window(n, 0.1)
    for i in range(2 * T.MIN_WINDOW, n):
        before = rows[max(T.MIN_WINDOW, i - w) : i]
        u_before = median([x[1] for x in before])
        r_before = median([x[3] for x in before])
        g_before = median([x[2] for x in before])
        if (
            u_before > 0
            and rows[i][1] > T.BLOWUP_SPIKE * u_before
            and r_before > T.BLOWUP_GROWTH * r0
            and g_before < T.FLAT_GRADIENT * g0
        ):
            step = rows[i][0]
            losses = series(history, "loss")
            before_loss = [v for s, v in losses if s < step]
            after_loss = [v for s, v in losses if s > step]
            evidence = {
                "blowup_step": step,
                "update_norm": rows[i][1],
                "update_norm_before": u_before,
                "spike_factor": rows[i][1] / u_before,
                "step_per_gradient_early": r0,
                "step_per_gradient_before": r_before,
                "grad_norm_early": g0,
                "grad_norm_before": g_before,
                "loss_before": before_loss[-1] if before_loss else None,
                "loss_peak_after": max(after_loss) if after_loss else None,
                "optimizer_family": family,
            }
            message = (
                f"at step {step} the update jumps to {g(rows[i][1])}, {g(rows[i][1] / u_before)} "
                f"times the steps before it, after a flat stretch (gradient {g(g_before)}, "
                f"{g(g_before / g0)} of its early value) in which the step per unit gradient grew "
                f"{g(r_before / r0)}-fold: sigma shrank and eta / sigma blew up"
            )
            if evidence["loss_peak_after"] is not None and evidence["loss_before"] is not None:
                message += f"; the loss goes from {g(evidence['loss_before'])} up to " \
                           f"{g(evidence['loss_peak_after'])}"
            fixes = [
                "Decay the learning rate (eta^t shrinking with t): the lectures' fix for exactly "
                "this blow-up.",
                "Raise eps (1e-10 -> 1e-6 or more): it bounds eta / sigma when sigma is tiny.",
                "Clip the update or gradient norm.",
            ]
            if family == "adagrad":
                fixes.insert(1, "Use RMSProp or Adam: their sigma follows recent gradients and "
                                "forgets the flat stretch faster.")
            return make_verdict("adagrad_blowup", T.HIGH, message + ".", evidence, fixes)
    return None


def needs_warmup(history: History, family: str | None = None) -> Verdict | None:
    """An adaptive optimizer takes large, harmful steps at the start: it needs a warm-up.

    Over the first ``WARMUP_FRACTION`` of the records (at least ``MIN_WINDOW``): fires when the
    loss rose more than ``WARMUP_LOSS_RISE`` above its first value and the largest update was
    more than ``WARMUP_UPDATE_RATIO`` of the weights, for an adaptive optimizer (``family``
    ``"adam"``, ``"rmsprop"``, ``"adagrad"``, or, unknown, records with an effective lr); not for
    RAdam, whose rectification is a built-in warm-up. Evidence includes the early effective-lr
    spread (max / median) and RAdam's ``rho_t`` regime where recorded. When the records show a
    warm-up already (:func:`warmup_ramp`), the verdict (medium confidence) asks for a longer one
    or a lower peak instead.
    """
    if family == "radam" or family == "none":
        return None
    adaptive = family in ("adam", "rmsprop", "adagrad") or (
        family is None and any(r.get("effective_lr") for r in history)
    )
    if not adaptive:
        return None
    losses = series(history, "loss")
    if len(losses) < 2 * T.MIN_WINDOW or not losses[0][1] > 0:
        return None
    w = window(len(history), T.WARMUP_FRACTION)
    early_steps = {int(r.get("step", i)) for i, r in enumerate(history[:w])}
    early_loss = [v for s, v in losses if s in early_steps]
    ratios = [
        v for s, v in series(history, "update_ratio") if s in early_steps and math.isfinite(v)
    ]
    if not early_loss or not ratios:
        return None
    first, peak = early_loss[0], max(early_loss)
    biggest = max(ratios)
    if not (peak > (1 + T.WARMUP_LOSS_RISE) * first and biggest > T.WARMUP_UPDATE_RATIO):
        return None
    evidence: dict[str, Any] = {
        "early_records": w,
        "loss_first": first,
        "loss_peak_early": peak,
        "max_update_ratio_early": biggest,
        "median_update_ratio_later": median([v for s, v in series(history, "update_ratio")
                                             if s not in early_steps] or [math.nan]),
        "optimizer_family": family,
    }
    effs = [r["effective_lr"] for r in history[:w] if r.get("effective_lr")]
    if effs and effs[0].get("median"):
        evidence["effective_lr_spread_early"] = effs[0]["max"] / effs[0]["median"]
    message = (
        f"in the first {w} steps the loss rises from {g(first)} to {g(peak)} while single updates "
        f"change the weights by up to {g(100 * biggest)}%: the adaptive sigma rests on a few "
        "gradients and its estimate has a large variance"
    )
    ramp = warmup_ramp(history)
    if ramp is not None:
        evidence["warmup_schedule"] = ramp
        message += (
            f", although the learning rate already warms up (from {g(ramp['first_lr'])} to "
            f"{g(ramp['peak_lr'])} at step {ramp['peak_step']}): the warm-up is too short or "
            "its peak too high"
        )
        fixes = [
            "Lengthen the warm-up (two to five times as many steps) so that sigma has more "
            "gradients behind it before the learning rate peaks.",
            "Lower the peak learning rate.",
            "Or use RAdam (unstuck.RAdam), whose rectification adapts to the variance itself.",
        ]
        return make_verdict("needs_warmup", T.MEDIUM, message + ".", evidence, fixes)
    fixes = [
        "Add a learning-rate warm-up (linear over the first few hundred to thousand steps; "
        "unstuck.schedules: warmup(cosine(total), steps)).",
        "Or use RAdam (unstuck.RAdam): it rectifies the variance of the adaptive learning rate "
        "while rho_t is small, a warm-up built in.",
        "Lower the peak learning rate; for Transformers, pre-LN blocks are less sensitive.",
    ]
    return make_verdict("needs_warmup", T.HIGH, message + ".", evidence, fixes)


def warmup_ramp(history: History) -> dict[str, Any] | None:
    """``{"first_lr", "peak_lr", "peak_step"}`` when the records' learning rate (the largest of
    the groups') rises to ``WARMUP_LR_RAMP`` times its first value: a warm-up schedule is in
    place. ``None`` otherwise or when the records carry no ``lr``."""
    lrs = [
        (int(r.get("step", i)), max(r["lr"])) for i, r in enumerate(history)
        if r.get("lr") and all(math.isfinite(x) for x in r["lr"])
    ]
    if len(lrs) < 2 or not lrs[0][1] >= 0:
        return None
    peak_step, peak_lr = max(lrs, key=lambda point: point[1])
    if not peak_lr > 0 or peak_lr < T.WARMUP_LR_RAMP * lrs[0][1]:
        return None
    return {"first_lr": lrs[0][1], "peak_lr": peak_lr, "peak_step": peak_step}


def layer_ratio_spread(
    history: History, weights: Collection[str] | None = None
) -> Verdict | None:
    """The update/weight ratios of the layers differ by orders of magnitude.

    Per record, ``max / min`` of the update/weight ratios of the weight tensors (``weights``: the
    names of the tensors with two or more dimensions; when unknown, every tensor whose name does
    not end in ``bias``); fires when the median of that spread over the second half of the
    records exceeds ``LAYER_RATIO_SPREAD``. Evidence: the fastest and slowest tensors.
    """
    rows = []
    for r in history[len(history) // 2 :]:
        layers = r.get("layers") or {}
        ratios = {
            name: x["update_ratio"]
            for name, x in layers.items()
            if (name in weights if weights is not None else not name.endswith("bias"))
            and isinstance(x.get("update_ratio"), (int, float))
            and math.isfinite(x["update_ratio"])
            and x["update_ratio"] > 0
        }
        if len(ratios) >= 2:
            rows.append(ratios)
    if len(rows) < T.MIN_WINDOW:
        return None
    spreads = [max(x.values()) / min(x.values()) for x in rows]
    spread = median(spreads)
    if not spread > T.LAYER_RATIO_SPREAD:
        return None
    names = list(rows[-1])
    typical = {n: median([x[n] for x in rows if n in x]) for n in names}
    fast = max(typical, key=typical.__getitem__)
    slow = min(typical, key=typical.__getitem__)
    evidence = {
        "median_spread": spread,
        "fastest_tensor": fast,
        "fastest_ratio": typical[fast],
        "slowest_tensor": slow,
        "slowest_ratio": typical[slow],
        "per_tensor_median_ratio": typical,
    }
    message = (
        f"per step, {fast} changes by {g(typical[fast])} of its norm but {slow} by only "
        f"{g(typical[slow])}: the layers' update/weight ratios differ {g(spread)}-fold (median "
        "over the second half), so one learning rate is too large for some layers or too small "
        "for others."
    )
    fixes = [
        "Use a layer-wise trust ratio: LARS (unstuck.LARS) for SGD, LAMB-style trust ratios for "
        "Adam, so each layer's step is proportional to its weight norm.",
        "Or an adaptive optimizer (Adam), and normalise the inputs / add normalisation layers so "
        "the layers' gradients are on one scale.",
        "Per-layer learning rates with parameter groups.",
    ]
    return make_verdict("layer_ratio_spread", T.MEDIUM, message, evidence, fixes)
