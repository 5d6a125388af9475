"""``diagnose``: from measurements to ranked verdicts with evidence and fixes.

The doctor implements the classic guide for "my network does not train" (Hung-yi Lee, ML 2022
spring; the lecture notes behind unstuck): first the training loss (large: model bias or
optimisation, told apart by a simpler reference model; stuck with a large gradient: oscillation;
stuck with a small gradient: the Hessian decides between a saddle point and a local minimum),
then the held-out losses (overfitting, or mismatch, told apart by a train-dev split), and the
step-level failures the Monitor sees (non-finite values, divergence, exploding gradients, an
adaptive step blowing up, a missing warm-up, layers that need different step sizes, a learning
rate too small or too large), and what the checks of :mod:`~unstuck.doctor.evidence` found
(symmetric or dead units, a bigger model doing no better: the noise floor). The rules live in
the modules ``loss_rules``, ``fitting_rules``, ``lr_rules``, ``structure_rules`` and
``step_rules`` of :mod:`unstuck.doctor`, their thresholds in
:mod:`~unstuck.doctor.thresholds`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

from unstuck.doctor import fitting_rules as F
from unstuck.doctor import loss_rules as L
from unstuck.doctor import lr_rules as R
from unstuck.doctor import step_rules as S
from unstuck.doctor import structure_rules as U
from unstuck.doctor.curves import as_curve, finite, median, records, window
from unstuck.doctor.evidence import Evidence, RunOutcome
from unstuck.doctor.thresholds import FIX_CHECK_MARGIN, MIN_TREND_POINTS, MIN_WINDOW
from unstuck.doctor.verdicts import CODES, TITLES, Diagnosis, Verdict

__all__ = ["EXPLAINED_BY", "critical_dict", "diagnose"]

_TRAINING = frozenset(CODES[: CODES.index("model_bias")])
"""Verdicts that find the training itself failing (everything ranked above ``model_bias``)."""

EXPLAINED_BY: dict[str, frozenset[str]] = {
    "model_bias": _TRAINING,
    "noise_floor": _TRAINING | {"model_bias"},
    "exploding_gradients": frozenset({"divergence", "lr_too_large"}),
    "oscillation": frozenset({"divergence", "lr_too_large"}),
    "lr_too_large": frozenset({"needs_warmup", "symmetric_init"}),
    "dead_units": frozenset({"lr_too_large", "divergence"}),
    "needs_warmup": frozenset({"symmetric_init"}),
    "lr_too_small": frozenset({"divergence", "lr_too_large", "symmetric_init", "saddle_point",
                               "dead_units"}),
}
"""A verdict is not reported when one of the verdicts that explain it fired (a cause before its
symptom): a large loss is first the optimiser's fault when the optimiser is seen failing; spikes
are the symptom of a learning rate that is too large; a missing warm-up is the specific form of a
learning rate too large for an adaptive optimizer's first steps; units killed by a learning rate
that a lower one measurably beats are its symptom; dead or symmetric units, not the learning rate,
make the steps tiny; a run with a failure is not "at the noise floor"."""


def critical_dict(critical_point: Any) -> dict[str, Any] | None:
    """A :class:`~unstuck.diagnose.CriticalPoint` (or a dict) as a plain, JSON-ready dict.

    The escape direction (tensors) is replaced by its shapes (``escape_direction_shapes``).
    """
    if critical_point is None:
        return None
    if isinstance(critical_point, dict):
        out = dict(critical_point)
    elif dataclasses.is_dataclass(critical_point):
        out = {f.name: getattr(critical_point, f.name) for f in dataclasses.fields(critical_point)}
    else:
        raise TypeError(
            "critical_point must be an unstuck.diagnose.CriticalPoint or a dict, got "
            f"{type(critical_point).__name__}"
        )
    direction = out.pop("escape_direction", None)
    if isinstance(direction, (list, tuple)) and all(hasattr(d, "shape") for d in direction):
        out["escape_direction_shapes"] = [list(d.shape) for d in direction]
    if "verdict" not in out:
        raise ValueError(f"critical_point must have a 'verdict', got keys {sorted(out)}")
    return out


def _fix_checked(verdict: Verdict, check: RunOutcome | None, own: float, start: float,
                 notes: list[str]) -> Verdict | None:
    """``verdict`` after its fix check: as it is when no check ran; None (with a note) when the
    run ended well (``own``, its score, finite: it did not diverge) and the fix did no better,
    so that what the rule saw did the run no harm; else with the check in its evidence.

    The fix does better when its score is below ``own`` by ``FIX_CHECK_MARGIN`` of it and by 1%
    of ``start``, the typical loss at the start (the median of the first window: a first batch
    with an outlier does not set the scale). A run that diverged keeps its verdict whatever the
    fix did: the harm is done, and the fix alone may not undo it."""
    if check is None:
        return verdict
    facts = {"fix": check.label, "score_with_fix": check.score, "score_without": own}
    versus = f"{L.g(check.score)} against {L.g(own)}"
    if not math.isfinite(own):
        did = "did too" if not math.isfinite(check.score) else f"ended at {L.g(check.score)}"
        return dataclasses.replace(
            verdict, evidence={**verdict.evidence, "fix_check": facts},
            message=f"{verdict.message.rstrip('.')}; the run diverged (a loss not finite, or an "
                    f"end above twice its first loss), and a run with {check.label} {did}.")
    if check.score <= own * (1 - FIX_CHECK_MARGIN) and own - check.score >= 0.01 * start:
        return dataclasses.replace(
            verdict, evidence={**verdict.evidence, "fix_check": facts},
            message=f"{verdict.message.rstrip('.')}; a run with {check.label} does better "
                    f"({versus}).")
    notes.append(
        f"not reported ({verdict.code}): {verdict.message.rstrip('.')}, but a run with "
        f"{check.label} did no better ({versus}): the run took no harm from it"
    )
    return None


def _baseline(train: list[float], baseline: float | None, notes: list[str]) -> float:
    if baseline is not None:
        if isinstance(baseline, bool) or not isinstance(baseline, (int, float)) or not (
            math.isfinite(baseline) and baseline > 0
        ):
            raise ValueError(f"baseline must be a finite number > 0, got {baseline!r}")
        return float(baseline)
    values = finite(train)
    if values and values[0] > 0:
        return values[0]
    scale = max((abs(v) for v in values), default=0.0)
    notes.append(
        "the first training loss is not a positive number, so the loss scale is "
        f"{'max |loss|' if scale > 0 else '1'}: pass baseline= (e.g. the loss of a constant "
        "prediction) for meaningful loss thresholds"
    )
    return scale if scale > 0 else 1.0


def _monitor_facts(monitor: Any, history: list[dict[str, Any]] | None) -> dict[str, Any]:
    """Optimizer family, weight-tensor names and first non-finite places, where known."""
    facts: dict[str, Any] = {"family": None, "weights": None, "grads": {}, "forward": None,
                             "forward_watched": bool(getattr(monitor, "watch_forward", False)),
                             "n_params": None}
    if history is None:
        return facts
    names = getattr(monitor, "names", None)
    if names is not None:
        facts["n_params"] = len(names)
    optimizer = getattr(monitor, "optimizer", None)
    if optimizer is not None:
        from unstuck.diagnose.effective_lr import optimizer_family

        facts["family"] = optimizer_family(optimizer) or "none"
    model, names = getattr(monitor, "model", None), getattr(monitor, "names", None)
    if model is not None and names is not None:
        dims = {n: p.dim() for n, p in model.named_parameters()}
        facts["weights"] = {n for n in names if dims.get(n, 0) >= 2}
    grads = dict(getattr(monitor, "first_nonfinite", {}) or {})
    forward = getattr(monitor, "first_nonfinite_forward", None)
    for i, r in enumerate(history):
        for name in r.get("nonfinite_grads") or ():
            grads.setdefault(name, int(r.get("step", i)))
        if forward is None and r.get("nonfinite_forward"):
            forward = (r["nonfinite_forward"], int(r.get("step", i)))
    facts["grads"] = grads
    if forward is not None:
        facts["forward"] = {"module": forward[0], "step": forward[1]}
    return facts


def diagnose(
    train_loss: Sequence[float] | Any = None,
    val_loss: Sequence[float] | float | None = None,
    test_loss: Sequence[float] | float | None = None,
    monitor: Any = None,
    reference_train_loss: Sequence[float] | float | None = None,
    critical_point: Any = None,
    *,
    baseline: float | None = None,
    optimizer_family: str | None = None,
    spectrum: Any = None,
    val_steps: Sequence[int] | None = None,
    test_steps: Sequence[int] | None = None,
    title: str = "unstuck doctor",
    evidence: Evidence | None = None,
) -> Diagnosis:
    """Diagnose a training run from its measurements: ranked verdicts with evidence and fixes.

    Every input but the training loss is optional; each rule runs on what it needs and the
    :attr:`Diagnosis.notes` say what could not be checked. The simplest use, per-epoch losses::

        >>> from unstuck.doctor import diagnose
        >>> d = diagnose(train_loss=[2.3, 0.9, 0.3, 0.08, 0.02, 0.01],
        ...              val_loss=[2.3, 1.0, 0.7, 0.9, 1.2, 1.5])
        >>> d.codes
        ['overfitting']
        >>> diagnose([2.3, 1.2, 0.6, 0.4, 0.35, 0.3],
        ...          val_loss=[2.3, 1.3, 0.7, 0.5, 0.4, 0.38]).healthy
        True

    Args:
        train_loss: the training loss per step or per epoch (a list, tuple, 1-D tensor or
            array; NaN/Inf allowed: they are a finding). May be left out when ``monitor``
            recorded losses.
        val_loss: loss on data held out from the *training* distribution (train-dev), per
            evaluation (or one number: the final value). Only the last value and the minimum are
            read, so its length need not match ``train_loss``.
        test_loss: loss on the test/dev data (possibly another distribution), likewise. With
            ``val_loss`` too, a gap between them is *mismatch*; without ``val_loss``, a gap to the
            training loss is reported as overfitting with low confidence.
        monitor: an :class:`unstuck.diagnose.Monitor` (its optimizer family and parameter shapes
            are read too) or its ``history`` (a list of record dicts): enables the step rules.
        reference_train_loss: the training loss of a simpler model trained the same way (a
            shallower network, a linear model); tells optimisation failure from model bias.
        critical_point: an :class:`unstuck.diagnose.CriticalPoint` (or its dict) probed at the
            end of training: a saddle point or a local minimum.
        baseline: the loss scale the loss thresholds are fractions of; default the first
            training loss (a fresh model's loss, about that of a constant prediction). Pass it
            when ``train_loss`` starts late (e.g. per-epoch averages): for cross-entropy ``ln C``
            with ``C`` balanced classes, for MSE the variance of the targets.
        optimizer_family: ``"adam"``, ``"radam"``, ``"adagrad"``, ``"rmsprop"`` or ``"none"``
            (not adaptive), when ``monitor`` is a plain history (a Monitor says it itself).
        spectrum: a Hessian density (:func:`unstuck.diagnose.spectrum`) to show in the report.
        val_steps, test_steps: the training step of each val/test value (for the report).
        title: the report's title.
        evidence: the checks :func:`~unstuck.doctor.examine` ran (a bigger model, probes at
            other learning rates, symmetric and dead units, the gradient noise scale; see
            :mod:`unstuck.doctor.evidence`). Without it the rules that need them say so in their
            confidence and message, or do not fire.

    Returns:
        A :class:`~unstuck.doctor.Diagnosis`; ``verdicts`` ranked in :data:`CODES` order, or the
        single ``healthy`` verdict. A verdict explained by another that fired is not reported
        (:data:`EXPLAINED_BY`): e.g. ``model_bias`` when the optimiser is seen failing.

    Raises:
        ValueError: no training loss at all (empty and no Monitor losses); ``baseline`` not a
            finite positive number; a curve with more than one dimension.
        TypeError: a curve that is not numbers; ``monitor`` or ``critical_point`` of a wrong type.
    """
    notes: list[str] = []
    train = as_curve("train_loss", train_loss) or []
    history = records(monitor)
    if not train and history:
        train = [float(r["loss"]) for r in history if isinstance(r.get("loss"), (int, float))]
    if not train:
        raise ValueError(
            "train_loss must hold at least one value (or monitor must have recorded losses), got "
            f"{'an empty sequence' if train_loss is not None else 'None'}"
        )
    val = as_curve("val_loss", val_loss)
    test = as_curve("test_loss", test_loss)
    reference = as_curve("reference_train_loss", reference_train_loss)
    critical = critical_dict(critical_point)
    scale = _baseline(train, baseline, notes)
    facts = _monitor_facts(monitor, history)
    family = optimizer_family or facts["family"]
    if family is not None and family not in ("adam", "radam", "adagrad", "rmsprop", "none"):
        raise ValueError(
            "optimizer_family must be one of adam, radam, adagrad, rmsprop, none, got "
            f"{optimizer_family!r}"
        )

    ev = evidence or Evidence()
    ratio = S.median_update_ratio(history) if history else None
    broken = any(not math.isfinite(v) for v in train)
    found: list[Verdict | None] = [
        L.nonfinite(train, facts["grads"], facts["forward"],
                    forward_watched=facts["forward_watched"], n_params=facts["n_params"]),
        L.divergence(train),
        U.saddle_point(critical),
        U.symmetric_init(ev.degenerate_start, ev.degenerate_end),
    ]
    if not broken:  # a curve that broke off says nothing about fitting or generalising
        found += [
            R.lr_too_large(train, scale, ratio, val=val, evidence=evidence),
            F.optimization_failure(train, reference, scale,
                                   representable=ev.reference_representable,
                                   kind=ev.reference_kind, val=val,
                                   reference_val=ev.reference.val_loss_end
                                   if ev.reference else None),
            F.model_bias(train, scale, reference, critical, val=val, capacity=ev.capacity),
            F.noise_floor(train, val, scale, ev.capacity),
            R.lr_too_small(train, scale, ratio, val=val, family=family, evidence=evidence),
            U.local_minimum(critical, train, scale, reference),
            U.dead_units(ev.dead_units, F.capacity_does_better(train, val, ev.capacity, scale),
                         ev.dead_units_start),
            F.overfitting(train, val, scale, test),
            F.mismatch(train, val, test, scale),
        ]
    if history:
        found += [
            S.oscillation(history),
            S.exploding_gradients(history),
            S.adagrad_blowup(history, family),
            S.needs_warmup(history, family),
            S.layer_ratio_spread(history, facts["weights"]),
        ]
    own = RunOutcome.of("this run", train, val[-1] if val else None).score
    head = finite(train)
    start = median(head[: window(len(head), 0.1)]) if head else scale
    verdicts = [
        checked for v in found if v is not None
        and (checked := _fix_checked(v, ev.fix_checks.get(v.code), own, start, notes)) is not None
    ]
    fired = {v.code for v in verdicts}
    explained = dict(EXPLAINED_BY)
    if any(v.code == "dead_units" and "share_at_start" in v.evidence for v in verdicts):
        # dead from the first step: the initialisation is the cause, not the learning rate
        explained["dead_units"] = frozenset()
        explained["lr_too_large"] = explained["lr_too_large"] | {"dead_units"}
    verdicts = [v for v in verdicts if not fired & explained.get(v.code, frozenset())]
    verdicts.sort(key=lambda v: CODES.index(v.code))
    notes += ev.notes

    if len(finite(train)) < MIN_TREND_POINTS:
        notes.append(
            f"train_loss has {len(finite(train))} finite value(s): the rules that read the "
            f"curve's shape (plateau, steady fall, divergence) need at least {MIN_TREND_POINTS}"
        )
    if val is None and test is None:
        notes.append("no val_loss or test_loss: overfitting and mismatch were not checked")
    elif val is None:
        notes.append("no val_loss (train-dev): overfitting cannot be told from mismatch")
    elif test is None:
        notes.append("no test_loss: mismatch was not checked")
    if history is None:
        notes.append(
            "no Monitor history: oscillation, exploding gradients, step blow-up, warm-up and "
            "layer-ratio rules were not checked"
        )
    elif len(history) < 2 * MIN_WINDOW:
        notes.append(
            f"the Monitor has {len(history)} record(s): the step rules need at least "
            f"{2 * MIN_WINDOW}"
        )
    if reference is None and L.is_large(train, scale):
        notes.append(
            "the training loss is large and no reference_train_loss was given: model bias and "
            "optimisation failure are told apart by a simpler model's training loss"
        )
    if critical and critical.get("verdict") in ("not a critical point", "degenerate"):
        notes.append(f"the Hessian probe says: {critical['verdict']}")

    if not verdicts:
        message = "no rule fired: " + (
            "the training loss went down"
            if len(finite(train)) >= 2 and finite(train)[-1] < finite(train)[0]
            else "nothing abnormal was measured"
        )
        message += (
            f" (from {train[0]:.4g} to {train[-1]:.4g})" if len(train) >= 2 else ""
        ) + "."
        verdicts = [Verdict("healthy", TITLES["healthy"], 0.9 if not notes else 0.6, message,
                            {"train_loss_end": train[-1]}, ())]
    return Diagnosis(
        verdicts=verdicts,
        train_loss=train,
        val_loss=val,
        test_loss=test,
        reference_train_loss=reference,
        baseline=scale,
        val_steps=list(val_steps) if val_steps is not None else None,
        test_steps=list(test_steps) if test_steps is not None else None,
        history=history,
        critical_point=critical,
        spectrum=spectrum,
        notes=notes,
        title=title,
    )
