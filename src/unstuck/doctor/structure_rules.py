"""Rules on the model's structure and state: symmetric units, dead units, critical points.

- **Symmetric initialisation** (lectures: "do not initialise all weights to the same value"):
  units whose incoming weights are identical get identical gradients and stay identical forever;
  all-zero weights of a product of layers are a degenerate critical point (gradient exactly 0).
- **Dead units**: a ReLU unit whose pre-activation is negative on every example passes no
  gradient and never recovers.
- **Critical points**: at a point where the gradient vanishes the Hessian decides between a
  saddle point (eigenvalues of both signs, an escape direction) and a local minimum.

Thresholds are in :mod:`unstuck.doctor.thresholds`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from unstuck.doctor import thresholds as T
from unstuck.doctor.curves import finite, tail
from unstuck.doctor.loss_rules import (
    g,
    make_verdict,
    reference_does_better,
)
from unstuck.doctor.verdicts import Verdict

__all__ = ["dead_units", "local_minimum", "saddle_point", "symmetric_init"]

Curve = Sequence[float]


def symmetric_init(
    degenerate_start: list[dict[str, Any]] | None, degenerate_end: list[dict[str, Any]] | None
) -> Verdict | None:
    """Weight tensors whose units were identical at the start are still identical at the end.

    Fires on the tensors found degenerate (all zero, or identical units) both before and after
    training: training could not break the symmetry, so a layer of ``n`` units works as one.
    A tensor that was zero at the start but differs at the end (a zero-initialised last layer
    behind random ones, a common and harmless choice) is not reported.
    """
    if not degenerate_start or degenerate_end is None:
        return None
    still = {d["name"] for d in degenerate_end}
    stuck = [d for d in degenerate_start if d["name"] in still]
    if not stuck:
        return None
    names = [d["name"] for d in stuck]
    kinds = sorted({d["kind"] for d in stuck})
    evidence = {"tensors": stuck, "kinds": kinds}
    described = ", ".join(f"{d['name']} ({d['kind'].replace('_', ' ')})" for d in stuck[:4])
    message = (
        f"{len(stuck)} weight tensor(s) started symmetric and are still symmetric after "
        f"training: {described}; identical units get identical gradients, so they can never "
        "learn different features"
    )
    if "zero" in kinds:
        message += " (with all-zero weights in a product of layers the gradient is exactly 0: " \
                   "a degenerate critical point)"
    fixes = [
        "Initialise the weights randomly: keep PyTorch's default (Kaiming/Xavier-uniform) init, "
        "or call nn.init.kaiming_normal_ / xavier_uniform_ on " + ", ".join(names[:3]) + ".",
        "Zero (or constant) initialisation is only safe for biases and for the last layer.",
    ]
    return make_verdict("symmetric_init", T.HIGH, message + ".", evidence, fixes)


def dead_units(
    dead: dict[str, dict[str, Any]] | None,
    capacity_helps: bool = False,
    dead_start: dict[str, dict[str, Any]] | None = None,
) -> Verdict | None:
    """ReLU units that never activate on the training data after training.

    Fires when a ReLU module has at least ``DEAD_SHARE_ALONE`` of its units dead; or at least
    ``DEAD_SHARE`` and either a bigger model does better (``capacity_helps``: the dead units cost
    the model capacity it needs) or the module had at least ``DEAD_SHARE`` dead already as
    initialised (``dead_start``: dead from the first step, never recovered: an initialisation
    problem, not something training did). Many units that died during training in a model that
    does as well as a bigger one are not a problem. ``dead`` and ``dead_start`` map module names
    to ``{"units", "dead", "share"}`` (:func:`unstuck.diagnose.dead_units`).
    """
    if not dead:
        return None
    layers = {n: d for n, d in dead.items() if d.get("units")}
    worst = max(layers, key=lambda n: layers[n]["share"], default=None)
    if worst is None:
        return None
    share = layers[worst]["share"]
    from_start = (dead_start or {}).get(worst, {}).get("share", 0.0) >= T.DEAD_SHARE
    if not (share >= T.DEAD_SHARE_ALONE or (share >= T.DEAD_SHARE
                                             and (capacity_helps or from_start))):
        return None
    evidence = {"per_module": layers, "worst_module": worst, "worst_share": share}
    listing = ", ".join(
        f"{n} {d['dead']}/{d['units']}" for n, d in layers.items() if d["share"] >= T.DEAD_SHARE
    )
    message = (
        f"{g(100 * share)}% of the units after {worst} never activate on the training data "
        f"(dead units by module: {listing}): they pass no gradient and never recover"
    )
    if from_start:
        evidence["share_at_start"] = dead_start[worst]["share"]  # type: ignore[index]
        message += (f"; {g(100 * evidence['share_at_start'])}% were dead already at "
                    "initialisation")
    if capacity_helps and share < T.DEAD_SHARE_ALONE:
        message += "; a bigger model does better, so the model misses those units"
    fixes = [
        "Initialise biases at zero or slightly positive and the weights with Kaiming init; "
        "normalise the inputs.",
        "Use LeakyReLU, ELU or GELU: their gradient is not exactly zero for negative inputs.",
        "Lower the learning rate (a large step can push units into the dead region), add "
        "normalisation layers (BatchNorm/LayerNorm) before the activations.",
    ]
    confidence = T.HIGH if share >= T.DEAD_SHARE_ALONE else T.MEDIUM
    return make_verdict("dead_units", confidence, message + ".", evidence, fixes)


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
    return make_verdict("saddle_point", confidence, message + ".", evidence, fixes)


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
    return make_verdict("local_minimum", T.HIGH, message, evidence, fixes)


