"""Is the model at a critical point, and which kind? The second-order test, matrix-free.

:func:`critical_point` measures the gradient and the extreme Hessian eigenpairs of
``criterion(model(inputs), targets)`` (PyHessian's convention) with Lanczos (see
:func:`unstuck.diagnose.hessian.lanczos`) and applies the second-order test: all eigenvalues
positive -> local minimum, all negative -> local maximum, both signs -> saddle point, where the
eigenvector of the most negative eigenvalue is a direction in which the loss goes down.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from unstuck.diagnose.krylov import HessianOperator, default_tol, run_lanczos

__all__ = ["VERDICTS", "CriticalPoint", "critical_point"]

VERDICTS = ("local minimum", "local maximum", "saddle point", "not a critical point", "degenerate")
"""The possible values of :attr:`CriticalPoint.verdict`."""


@dataclass(frozen=True)
class CriticalPoint:
    """What :func:`critical_point` found.

    Attributes:
        grad_norm: ``||g||``, the Euclidean norm of the gradient over all trainable parameters.
        lambda_min: the algebraically smallest Hessian eigenvalue.
        lambda_max: the algebraically largest Hessian eigenvalue.
        n_positive, n_negative, n_zero: signs among the eigenvalues found (the ``k`` smallest and
            ``k`` largest, each counted once); "zero" means ``|lambda| <= zero_tol *
            max(|lambda_min|, |lambda_max|)``.
        verdict: one of :data:`VERDICTS` (rule in :func:`critical_point`).
        escape_direction: for a saddle point (or a local maximum) the unit eigenvector of
            ``lambda_min``, shaped like the trainable parameters; else ``None``.
        escape_loss_change: ``loss(theta + eps * d) - loss(theta)`` measured along the better of
            ``d = +-escape_direction`` (negative when the escape works); ``None`` without one.
        predicted_loss_change: ``0.5 * lambda_min * eps^2``, the quadratic model's prediction.
        eps: the step length used for ``escape_loss_change``.
        loss: the loss at ``theta``.
        newton_distance: ``||g|| / max(|lambda_min|, |lambda_max|)`` (see the verdict rule).
        converged: whether Lanczos met its tolerance for every eigenvalue returned.
        hvps: the number of Hessian-vector products used.
    """

    grad_norm: float
    lambda_min: float
    lambda_max: float
    n_positive: int
    n_negative: int
    n_zero: int
    verdict: str
    escape_direction: list[torch.Tensor] | None
    escape_loss_change: float | None
    predicted_loss_change: float | None
    eps: float
    loss: float
    newton_distance: float
    converged: bool
    hvps: int


def critical_point(
    model: nn.Module,
    criterion: Callable[[Any, Any], torch.Tensor],
    batch: tuple[Any, Any],
    k: int = 3,
    *,
    zero_tol: float = 1e-3,
    grad_tol: float = 1e-3,
    eps: float | None = None,
    max_iter: int = 100,
    tol: float | None = None,
    seed: int = 0,
    eval_mode: bool = True,
) -> CriticalPoint:
    """Classify the point ``theta`` (the model's trainable parameters) by the second-order test.

    The loss is ``L(theta) = criterion(model(inputs), targets)`` with ``batch = (inputs,
    targets)``. With ``g = grad L``, ``lambda_min <= .. <= lambda_max`` the Hessian eigenvalues
    (from :func:`~unstuck.diagnose.hessian.lanczos` with ``k`` pairs at each end),
    ``s = max(|lambda_min|, |lambda_max|)`` the curvature scale and ``z = zero_tol * s``:

    1. **"not a critical point"** when ``||g|| / s > grad_tol * max(||theta||, 1)``.
       ``||g|| / s`` is a lower bound on the length of the Newton step ``||H^-1 g||`` to the
       critical point of the local quadratic model, so the rule reads: even the nearest possible
       critical point is farther than ``grad_tol`` times the size of the parameters (with a floor
       of 1 so that ``theta = 0`` works). Scale-free in the loss (multiplying L by ``c`` scales
       both ``g`` and ``s``). With ``s = 0`` any nonzero gradient fails the test.
    2. else **"saddle point"** when ``lambda_min < -z`` and ``lambda_max > z``;
    3. else **"local minimum"** when ``lambda_min > z`` (H positive definite);
    4. else **"local maximum"** when ``lambda_max < -z``;
    5. else **"degenerate"**: eigenvalues of one sign and "zero" ones (or H = 0): the
       second-order test cannot decide (flat valleys of over-parameterised networks give this).

    For a saddle point or a local maximum the escape direction ``d`` is the unit eigenvector of
    ``lambda_min``; the loss is measured at ``theta + eps d`` and ``theta - eps d`` (an
    eigenvector's sign is arbitrary and higher-order terms can favour one side) and
    ``escape_loss_change`` is the smaller change, ``escape_direction`` the sign that gave it
    (the quadratic model predicts
    ``0.5 lambda_min eps^2 < 0``).

    The model is left as found: the parameters are restored bit for bit, buffers (BatchNorm
    running statistics) too, every module's train/eval flag is put back, and ``.grad`` is not
    touched (gradients come from :func:`torch.autograd.grad`).

    Args:
        model: the model; its parameters with ``requires_grad=True`` are ``theta``.
        criterion: ``criterion(outputs, targets)`` -> scalar loss.
        batch: ``(inputs, targets)``; ``model(inputs)`` is called as is.
        k: eigenpairs at each end of the spectrum (``>= 1``).
        zero_tol: eigenvalues with ``|lambda| <= zero_tol * s`` count as zero (default 1e-3).
        grad_tol: tolerance of the gradient test above (default 1e-3).
        eps: length of the escape step; default ``1e-2 * max(||theta||, 1)``.
        max_iter: Lanczos steps at most (HVPs).
        tol: Lanczos residual tolerance (default ``1e-6`` in float64, ``1e-4`` otherwise).
        seed: seed of the Lanczos start vector.
        eval_mode: evaluate with the model in eval mode (default): dropout off and BatchNorm on
            its running statistics, so that L is a deterministic function of ``theta``. With
            ``False`` the model's own mode is used.

    Raises:
        ValueError: no trainable parameters; ``batch`` not a pair; a NaN/Inf or non-scalar loss;
            an argument out of range.

    Example::

        >>> model = torch.nn.Linear(2, 1, bias=False)
        >>> with torch.no_grad():
        ...     _ = model.weight.zero_()
        >>> x = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
        >>> saddle = lambda out, y: (out[0] ** 2 - out[1] ** 2).sum()
        >>> critical_point(model, saddle, (x, None)).verdict
        'saddle point'
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("model must have trainable parameters (requires_grad=True), got none")
    if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
        raise ValueError(f"batch must be a pair (inputs, targets), got {type(batch).__name__}")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"max_iter must be an integer >= 1, got {max_iter!r}")
    if not 0 <= zero_tol < 1:
        raise ValueError(f"zero_tol must be in [0, 1), got {zero_tol}")
    if not grad_tol > 0:
        raise ValueError(f"grad_tol must be > 0, got {grad_tol}")
    if eps is not None and not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps}")
    if tol is not None and not tol > 0:
        raise ValueError(f"tol must be > 0, got {tol}")
    inputs, targets = batch

    def loss_fn() -> torch.Tensor:
        return criterion(model(inputs), targets)

    name = "criterion(model(inputs), targets)"
    modes = [(module, module.training) for module in model.modules()]
    saved_params = [p.detach().clone() for p in params]
    saved_buffers = [(b, b.detach().clone()) for b in model.buffers()]
    try:
        if eval_mode:
            model.eval()
        operator = HessianOperator(loss_fn, params, name=name)
        result = run_lanczos(
            operator, k, max_iter, default_tol(operator.dtype) if tol is None else tol, seed
        )
        loss = float(operator.loss)
        grad_norm = float(torch.linalg.vector_norm(operator.grad))
        theta_norm = float(torch.linalg.vector_norm(operator.flatten(saved_params)))
        del operator  # free the retained double-backward graph before touching the parameters

        lambda_min = float(result.bottom_values[0])
        lambda_max = float(result.top_values[0])
        scale = max(abs(lambda_min), abs(lambda_max))
        zero = zero_tol * scale
        found = result.ritz_values
        if len(found) > 2 * k:
            found = torch.cat([result.bottom_values, result.top_values])
        n_positive = int((found > zero).sum())
        n_negative = int((found < -zero).sum())
        n_zero = len(found) - n_positive - n_negative
        if scale > 0:
            newton_distance = grad_norm / scale
        else:
            newton_distance = math.inf if grad_norm > 0 else 0.0

        if newton_distance > grad_tol * max(theta_norm, 1.0):
            verdict = "not a critical point"
        elif lambda_min < -zero and lambda_max > zero:
            verdict = "saddle point"
        elif lambda_min > zero:
            verdict = "local minimum"
        elif lambda_max < -zero:
            verdict = "local maximum"
        else:
            verdict = "degenerate"

        step = 1e-2 * max(theta_norm, 1.0) if eps is None else float(eps)
        direction = change = predicted = None
        if verdict in ("saddle point", "local maximum"):
            direction = result.bottom_vectors[0]
            predicted = 0.5 * lambda_min * step**2
            changes = {}
            for sign in (1.0, -1.0):
                with torch.no_grad():
                    for p, d in zip(params, direction):
                        p.add_(d, alpha=sign * step)
                    changes[sign] = float(loss_fn().reshape(())) - loss
                    for p, saved in zip(params, saved_params):
                        p.copy_(saved)
            sign = 1.0 if not changes[-1.0] < changes[1.0] else -1.0
            change = changes[sign]
            if sign < 0:
                direction = [-d for d in direction]
    finally:
        with torch.no_grad():
            for p, saved in zip(params, saved_params):
                p.copy_(saved)
            for b, saved in saved_buffers:
                b.copy_(saved)
        for module, training in modes:
            module.training = training

    return CriticalPoint(
        grad_norm=grad_norm,
        lambda_min=lambda_min,
        lambda_max=lambda_max,
        n_positive=n_positive,
        n_negative=n_negative,
        n_zero=n_zero,
        verdict=verdict,
        escape_direction=direction,
        escape_loss_change=change,
        predicted_loss_change=predicted,
        eps=step,
        loss=loss,
        newton_distance=newton_distance,
        converged=result.converged,
        hvps=result.hvps,
    )
