"""Hessian analysis without forming the Hessian: products, extreme eigenpairs, trace, density.

Every function here takes ``loss_fn`` (a callable returning the scalar loss) and ``params`` (a list
of tensors with ``requires_grad=True``) and touches the Hessian ``H = d^2 loss / d params^2`` only
through exact Hessian-vector products (double backward, Pearlmutter 1994):

- :func:`hvp`: ``H v`` for ``v`` shaped like ``params``.
- :func:`lanczos`: the ``k`` algebraically largest and smallest eigenvalues with unit
  eigenvectors (Lanczos with full re-orthogonalisation), so negative curvature is found even
  when it is smaller in magnitude than the positive curvature (power iteration, as in
  PyHessian, finds only the largest *magnitude*).
- :func:`trace`: Hutchinson or Hutch++ estimate of ``tr H`` with a standard error.
- :func:`spectrum`: the eigenvalue density by stochastic Lanczos quadrature (Ghorbani et al.
  2019), ready for :func:`unstuck.plots.spectrum_figure`.
- :func:`critical_point` (in :mod:`unstuck.diagnose.critical`, re-exported): is ``theta`` a local
  minimum, a maximum, a saddle point, or not a critical point at all?

Nothing here changes the parameters or their ``.grad``. Random vectors come from a CPU
``torch.Generator`` seeded with ``seed``, so results are reproducible.

Example::

    import torch
    from unstuck.diagnose.hessian import lanczos

    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    x, y = torch.randn(32, 4), torch.randn(32, 1)
    params = list(model.parameters())
    result = lanczos(lambda: torch.nn.functional.mse_loss(model(x), y), params, k=2)
    result.top_values, result.bottom_values, result.hvps
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from unstuck.diagnose.critical import CriticalPoint, critical_point
from unstuck.diagnose.krylov import (
    HessianOperator,
    LanczosResult,
    default_tol,
    run_lanczos,
    tridiagonalize,
)

__all__ = [
    "CriticalPoint",
    "LanczosResult",
    "Spectrum",
    "TraceEstimate",
    "critical_point",
    "hvp",
    "lanczos",
    "spectrum",
    "trace",
]

LossFn = Callable[[], torch.Tensor]


def _positive_int(name: str, value: int, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def hvp(
    loss_fn: LossFn, params: Sequence[torch.Tensor], v: Sequence[torch.Tensor]
) -> list[torch.Tensor]:
    """The exact Hessian-vector product ``H v`` of ``loss_fn()`` w.r.t. ``params``.

    ``H v = d/d(theta) (g(theta)^T v)`` with ``g = d loss / d theta``: one forward pass, one
    backward pass with ``create_graph=True`` and one more backward pass (Pearlmutter 1994,
    "Fast exact multiplication by the Hessian"). Exact up to rounding; float32 and float64.
    For a model with BatchNorm put it in eval mode first (in train mode the batch statistics
    make the loss a function of the whole batch and each call updates the running statistics).

    Args:
        loss_fn: ``loss_fn()`` -> a finite scalar tensor that depends on ``params``.
        params: tensors with ``requires_grad=True``.
        v: tensors shaped like ``params``.

    Returns:
        ``H v`` as tensors shaped and typed like ``params`` (detached).

    Raises:
        ValueError: the loss is not a scalar, not finite or does not depend on ``params``; ``v``
            does not match ``params``.

    Example::

        >>> w = torch.tensor([1.0, 2.0], requires_grad=True)
        >>> hvp(lambda: (w ** 2).sum() * w[0], [w], [torch.tensor([1.0, 0.0])])[0].tolist()
        [6.0, 4.0]
    """
    operator = HessianOperator(loss_fn, params)
    v = list(v) if not isinstance(v, torch.Tensor) else [v]
    if len(v) != len(operator.params):
        raise ValueError(
            f"v must hold one tensor per parameter ({len(operator.params)}), got {len(v)}"
        )
    for i, (t, p) in enumerate(zip(v, operator.params)):
        if not isinstance(t, torch.Tensor) or t.shape != p.shape:
            shape = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(
                f"v[{i}] must have the shape of params[{i}], {tuple(p.shape)}, got {shape}"
            )
    return operator.unflatten(operator.matvec(operator.flatten(v)))


def lanczos(
    loss_fn: LossFn,
    params: Sequence[torch.Tensor],
    k: int = 1,
    max_iter: int = 100,
    tol: float | None = None,
    seed: int = 0,
) -> LanczosResult:
    """The ``k`` algebraically largest and smallest Hessian eigenpairs, by Lanczos.

    Lanczos on the flattened parameter space with full re-orthogonalisation (see
    :mod:`unstuck.diagnose.krylov`) builds ``T_m = Q_m^T H Q_m``, eigendecomposed in float64 with
    :func:`torch.linalg.eigh`: ``T_m s_i = theta_i s_i``. The Ritz vector ``Q_m s_i`` has residual
    ``||H Q_m s_i - theta_i Q_m s_i|| = |beta_m s_i[m]|``, which bounds the distance of
    ``theta_i`` to an eigenvalue (and the error is usually near ``residual^2 / gap``). The
    iteration stops once the ``k`` largest and ``k`` smallest Ritz values all have residual
    ``<= tol * max_i |theta_i|`` (the Ritz values estimate ``|lambda|_max``), or after
    ``max_iter`` steps, one HVP each. Extreme eigenvalues converge first (Kaniel-Paige theory),
    typically in a few dozen steps whatever the number of parameters.

    At an invariant subspace (``beta ~ 0``, e.g. repeated eigenvalues) the process restarts with a
    random vector orthogonal to the basis so that further (and repeated) eigenvalues are found.
    Exact multiplicities beyond that are not guaranteed: Lanczos sees one copy of an eigenvalue
    per restart.

    Args:
        loss_fn: ``loss_fn()`` -> finite scalar tensor depending on ``params``.
        params: tensors with ``requires_grad=True``.
        k: how many eigenpairs at each end of the spectrum (``>= 1``).
        max_iter: the largest Krylov dimension (capped at the number of parameters).
        tol: residual tolerance relative to ``|lambda|_max``; default ``1e-6`` in float64 and
            ``1e-4`` in lower precision.
        seed: seed of the random start vector.

    Returns:
        A :class:`LanczosResult`; ``hvps`` counts the HVPs (= Krylov dimension).

    Reference:
        C. Lanczos (1950), "An iteration method for the solution of the eigenvalue problem of
        linear differential and integral operators"; Golub & Van Loan, *Matrix Computations*,
        sec. 10.1.

    Example::

        >>> x = torch.zeros(2, dtype=torch.float64, requires_grad=True)
        >>> r = lanczos(lambda: x[0] ** 2 - x[1] ** 2, [x])
        >>> [round(v, 12) for v in (*r.top_values.tolist(), *r.bottom_values.tolist())]
        [2.0, -2.0]
    """
    k = _positive_int("k", k)
    max_iter = _positive_int("max_iter", max_iter)
    operator = HessianOperator(loss_fn, params)
    tol = default_tol(operator.dtype) if tol is None else tol
    if not tol > 0:
        raise ValueError(f"tol must be > 0, got {tol}")
    return run_lanczos(operator, k, max_iter, tol, seed)


@dataclass(frozen=True)
class TraceEstimate:
    """A stochastic estimate of ``tr H``: ``value +- stderr`` after ``hvps`` products."""

    value: float
    stderr: float
    hvps: int


def _std_error(samples: torch.Tensor) -> float:
    return float(samples.std(unbiased=True) / math.sqrt(len(samples)))


def trace(
    loss_fn: LossFn,
    params: Sequence[torch.Tensor],
    n: int = 100,
    method: str = "hutchinson",
    seed: int = 0,
) -> TraceEstimate:
    """Estimate ``tr H`` with ``n`` Hessian-vector products and Rademacher probes.

    Hutchinson (1989): ``tr H = E[z^T H z]`` for ``z`` with independent +-1 entries; the estimate
    is the mean of ``n`` samples and ``stderr`` their standard deviation over ``sqrt(n)``.

    Hutch++ (Meyer, Musco, Musco & Woodruff 2021, "Hutch++: Optimal Stochastic Trace
    Estimation"): ``s = n // 3`` products ``H S`` give an orthonormal ``Q`` of the dominant range;
    ``tr(Q^T H Q)`` is computed exactly (``s`` products) and Hutchinson with the remaining
    ``n - 2s`` probes, projected by ``I - Q Q^T``, estimates the rest. ``stderr`` is that of the
    residual part. It beats Hutchinson when a few eigenvalues dominate.

    Args:
        loss_fn, params: as in :func:`hvp`.
        n: total number of HVPs: ``>= 2`` for Hutchinson, ``>= 4`` for Hutch++.
        method: ``"hutchinson"`` or ``"hutch++"``.
        seed: seed of the probes.

    Example::

        >>> w = torch.ones(3, dtype=torch.float64, requires_grad=True)
        >>> trace(lambda: (torch.arange(3.0, dtype=torch.float64) * w ** 2).sum(), [w], n=10).value
        6.0
    """
    if method not in ("hutchinson", "hutch++"):
        raise ValueError(f"method must be 'hutchinson' or 'hutch++', got {method!r}")
    n = _positive_int("n", n, 2 if method == "hutchinson" else 4)
    operator = HessianOperator(loss_fn, params)
    generator = torch.Generator().manual_seed(seed)

    def quadratic_form(z: torch.Tensor) -> torch.Tensor:
        return (z @ operator.matvec(z)).to(torch.float64)

    if method == "hutchinson":
        samples = torch.stack(
            [quadratic_form(operator.random(generator, "rademacher")) for _ in range(n)]
        )
        return TraceEstimate(float(samples.mean()), _std_error(samples), operator.matvecs)

    s = n // 3
    sketch = torch.stack(
        [operator.matvec(operator.random(generator, "rademacher")) for _ in range(s)], 1
    )
    q, _ = torch.linalg.qr(sketch)
    exact = sum(float(quadratic_form(q[:, i])) for i in range(s))
    samples = []
    for _ in range(n - 2 * s):
        z = operator.random(generator, "rademacher")
        samples.append(quadratic_form(z - q @ (q.T @ z)))
    residual = torch.stack(samples)
    return TraceEstimate(exact + float(residual.mean()), _std_error(residual), operator.matvecs)


@dataclass(frozen=True)
class Spectrum:
    """A Hessian eigenvalue density from :func:`spectrum`.

    Attributes:
        grid: eigenvalue grid (float64, ascending).
        density: the smoothed density on ``grid``; integrates to ~1.
        nodes: the quadrature nodes (Ritz values of all probes, float64).
        weights: their weights (``tau_i / n_probes``; sum to 1).
        sigma: the Gaussian broadening width.
        lambda_min: the smallest node (an estimate of the smallest eigenvalue).
        lambda_max: the largest node (an estimate of the largest eigenvalue).
        hvps: the number of Hessian-vector products used.
    """

    grid: torch.Tensor
    density: torch.Tensor
    nodes: torch.Tensor
    weights: torch.Tensor
    sigma: float
    lambda_min: float
    lambda_max: float
    hvps: int


def spectrum(
    loss_fn: LossFn,
    params: Sequence[torch.Tensor],
    n_probes: int = 1,
    steps: int = 100,
    *,
    sigma: float | None = None,
    grid_size: int = 1000,
    seed: int = 0,
) -> Spectrum:
    """The Hessian eigenvalue density by stochastic Lanczos quadrature (SLQ).

    For a unit start vector ``v``, ``v^T f(H) v = sum_j f(lambda_j) (u_j^T v)^2``, and ``m``
    Lanczos steps from ``v`` give the Gauss quadrature ``sum_i tau_i f(theta_i)`` with nodes
    ``theta_i`` (eigenvalues of ``T_m``) and weights ``tau_i = s_i[0]^2`` (which sum to 1).
    Averaging over random ``v`` (``E[(u_j^T v)^2] = 1/n``) and taking ``f`` a Gaussian of width
    ``sigma`` gives the smoothed density::

        phi(t) = (1 / n_probes) sum_probes sum_i tau_i exp(-(t - theta_i)^2 / (2 sigma^2))
                 / (sigma sqrt(2 pi)),

    which integrates to 1. Each probe costs ``min(steps, n)`` HVPs (fewer if the start vector
    reaches an invariant subspace, where the quadrature is exact).

    Args:
        loss_fn, params: as in :func:`hvp`.
        n_probes: number of random (Rademacher) start vectors.
        steps: Lanczos steps per probe (the number of nodes).
        sigma: broadening width; default ``0.01 * (theta_max - theta_min)`` (``0.01 *
            max(|theta|)`` or 1e-2 if the nodes coincide).
        grid_size: number of grid points, spanning ``[theta_min - 5 sigma, theta_max + 5 sigma]``.
        seed: seed of the probes.

    Reference:
        B. Ghorbani, S. Krishnan, Y. Xiao (2019), "An Investigation into Neural Net Optimization
        via Hessian Eigenvalue Density", ICML; Z. Yao et al. (2020), "PyHessian".

    Example::

        density = spectrum(loss_fn, params, n_probes=3, steps=80)
        unstuck.plots.spectrum_figure(density).savefig("spectrum.png")
    """
    n_probes = _positive_int("n_probes", n_probes)
    steps = _positive_int("steps", steps)
    grid_size = _positive_int("grid_size", grid_size, 2)
    if sigma is not None and not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    operator = HessianOperator(loss_fn, params)
    generator = torch.Generator().manual_seed(seed)
    nodes, weights = [], []
    for _ in range(n_probes):
        start = operator.random(generator, "rademacher")
        t = tridiagonalize(operator, steps, generator, start=start, restart=False)
        theta, s = t.eigh()
        nodes.append(theta)
        weights.append(s[0] ** 2 / n_probes)
    node = torch.cat(nodes)
    weight = torch.cat(weights)
    low, high = float(node.min()), float(node.max())
    if sigma is None:
        width = high - low
        sigma = 0.01 * (width if width > 0 else max(abs(low), abs(high))) or 1e-2
    grid = torch.linspace(low - 5 * sigma, high + 5 * sigma, grid_size, dtype=torch.float64)
    gauss = torch.exp(-((grid[:, None] - node[None, :]) ** 2) / (2 * sigma**2))
    density = gauss @ weight / (sigma * math.sqrt(2 * math.pi))
    return Spectrum(grid, density, node, weight, float(sigma), low, high, operator.matvecs)
