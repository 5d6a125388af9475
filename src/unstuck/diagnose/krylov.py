"""The matrix-free machinery under :mod:`unstuck.diagnose.hessian`: the Hessian as an operator on
the flattened parameter vector, and Lanczos tridiagonalisation with full re-orthogonalisation.

Everything here works on one flat vector of length ``n`` (all parameters concatenated, in the
order given); :class:`HessianOperator` converts between that vector and tensors shaped like the
parameters. Only torch is imported.

The Lanczos process (Lanczos 1950; Golub & Van Loan, *Matrix Computations*, 4th ed., sec. 10.1)
builds an orthonormal basis ``Q = [q_1 .. q_m]`` of the Krylov space
``span{q_1, H q_1, .., H^(m-1) q_1}`` and the tridiagonal ``T = Q^T H Q``::

    w = H q_j - alpha_j q_j - beta_(j-1) q_(j-1),   alpha_j = q_j^T H q_j,
    beta_j = ||w||,   q_(j+1) = w / beta_j.

In floating point the ``q_j`` lose orthogonality as soon as a Ritz value converges (Paige 1971),
which produces spurious copies of converged eigenvalues; here every new ``w`` is re-orthogonalised
against *all* previous basis vectors, twice ("twice is enough", Giraud et al. 2005), so ``Q``
stays orthonormal to working precision. The eigenpairs ``(theta_i, s_i)`` of ``T`` give the Ritz
pairs ``(theta_i, Q s_i)``, with residual ``||H Q s_i - theta_i Q s_i|| = beta_m |s_i[m]|``, and
``|lambda - theta_i| <= beta_m |s_i[m]|`` for some eigenvalue ``lambda`` of ``H``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

__all__ = [
    "HessianOperator",
    "LanczosResult",
    "Tridiagonal",
    "default_tol",
    "run_lanczos",
    "tridiagonalize",
]


def default_tol(dtype: torch.dtype) -> float:
    """The default Lanczos residual tolerance: ``1e-6`` in float64, ``1e-4`` in lower precision.

    A float32 Hessian-vector product carries relative rounding noise near ``1e-6``, so a residual
    much below ``1e-4 * |lambda_max|`` is often out of reach there.
    """
    return 1e-6 if dtype == torch.float64 else 1e-4


def _check_params(params: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    if isinstance(params, torch.Tensor):
        raise TypeError("params must be a list of tensors, got a single tensor (wrap it: [p])")
    params = list(params)
    if not params:
        raise ValueError("params must hold at least one tensor, got none")
    for i, p in enumerate(params):
        if not isinstance(p, torch.Tensor):
            raise TypeError(f"params[{i}] must be a torch.Tensor, got {type(p).__name__}")
        if not p.is_floating_point():
            raise ValueError(f"params[{i}] must have a floating dtype, got {p.dtype}")
        if not p.requires_grad:
            raise ValueError(f"params[{i}] must have requires_grad=True, got requires_grad=False")
    return params


def checked_loss(loss_fn: Callable[[], torch.Tensor], name: str = "loss_fn()") -> torch.Tensor:
    """Call ``loss_fn()`` and check that it is a finite scalar tensor; errors call it ``name``."""
    loss = loss_fn()
    if not isinstance(loss, torch.Tensor):
        raise TypeError(f"{name} must return a scalar tensor, got {type(loss).__name__}")
    if loss.numel() != 1:
        raise ValueError(
            f"{name} must return a scalar tensor, got shape {tuple(loss.shape)}; "
            "reduce it first (e.g. .mean())"
        )
    if not torch.isfinite(loss.detach()).all():
        raise ValueError(
            f"{name} returned a non-finite loss ({loss.item()}); the Hessian of a NaN/Inf "
            "loss is undefined"
        )
    return loss.reshape(())


class HessianOperator:
    """The Hessian of ``loss_fn()`` w.r.t. ``params`` as a linear operator on flat vectors.

    The loss and its gradient (with ``create_graph=True``) are computed once, at construction;
    each :meth:`matvec` is then one extra backward pass through that retained graph (Pearlmutter
    1994, "Fast exact multiplication by the Hessian"): ``H v = d/d(theta) (g(theta)^T v)``.

    Attributes:
        loss: the loss at ``params`` (detached).
        grad: the gradient at ``params``, flattened (detached).
        n: the number of scalar parameters.
        dtype: the promoted dtype of ``params``, used for flat vectors.
        matvecs: how many Hessian-vector products have been computed.

    Example::

        >>> w = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True)
        >>> op = HessianOperator(lambda: (w ** 3).sum(), [w])
        >>> op.matvec(torch.ones(2, dtype=torch.float64)).tolist()  # diag(6 w) @ 1
        [6.0, 12.0]
    """

    def __init__(
        self,
        loss_fn: Callable[[], torch.Tensor],
        params: Sequence[torch.Tensor],
        name: str = "loss_fn()",
    ):
        self.params = _check_params(params)
        self.shapes = [p.shape for p in self.params]
        self.numels = [p.numel() for p in self.params]
        self.n = sum(self.numels)
        self.dtype = self.params[0].dtype
        for p in self.params[1:]:
            self.dtype = torch.promote_types(self.dtype, p.dtype)
        self.device = self.params[0].device
        self.matvecs = 0
        with torch.enable_grad():
            loss = checked_loss(loss_fn, name)
            if not loss.requires_grad:
                raise ValueError(f"{name} must depend on params, got a loss with no grad_fn")
            grads = torch.autograd.grad(loss, self.params, create_graph=True, allow_unused=True)
        self.loss = loss.detach()
        self.grad = self.flatten([None if g is None else g.detach() for g in grads])
        # gradients that are constant in the parameters (a linear loss) contribute H v = 0
        self._live = [(i, g) for i, g in enumerate(grads) if g is not None and g.requires_grad]

    def flatten(self, tensors: Sequence[torch.Tensor | None]) -> torch.Tensor:
        """Concatenate tensors shaped like ``params`` into one vector (``None`` reads as zeros)."""
        parts = [
            torch.zeros(n, dtype=self.dtype, device=self.device)
            if t is None
            else t.detach().reshape(-1).to(dtype=self.dtype, device=self.device)
            for t, n in zip(tensors, self.numels)
        ]
        return torch.cat(parts)

    def unflatten(self, vector: torch.Tensor) -> list[torch.Tensor]:
        """Split a flat vector into tensors shaped (and typed) like ``params``."""
        chunks = torch.split(vector, self.numels)
        return [c.reshape(s).to(p.dtype) for c, s, p in zip(chunks, self.shapes, self.params)]

    def matvec(self, vector: torch.Tensor) -> torch.Tensor:
        """``H @ vector`` for a flat vector of length ``n`` (one Hessian-vector product)."""
        self.matvecs += 1
        if not self._live:
            return torch.zeros_like(vector)
        pieces = torch.split(vector, self.numels)
        outputs = [g for _, g in self._live]
        grad_outputs = [pieces[i].reshape(g.shape).to(g.dtype) for i, g in self._live]
        with torch.enable_grad():
            products = torch.autograd.grad(
                outputs, self.params, grad_outputs, retain_graph=True, allow_unused=True
            )
        return self.flatten(products)

    def random(self, generator: torch.Generator, kind: str = "gaussian") -> torch.Tensor:
        """A random flat vector: standard Gaussian or Rademacher (+-1), drawn on the CPU."""
        if kind == "rademacher":
            v = torch.randint(0, 2, (self.n,), generator=generator, dtype=torch.float64) * 2 - 1
        else:
            v = torch.randn(self.n, generator=generator, dtype=torch.float64)
        return v.to(dtype=self.dtype, device=self.device)


class Tridiagonal:
    """The result of :func:`tridiagonalize`: ``T = Q^T H Q`` and the basis ``Q``.

    Attributes:
        basis: ``Q`` as an ``(m, n)`` tensor with orthonormal rows.
        alpha: the diagonal of ``T`` (float64, length ``m``).
        beta: the off-diagonal of ``T`` (float64, length ``m - 1``); 0 where the process found an
            invariant subspace and restarted with a fresh random vector.
        residual: ``beta_m``, the norm of the part of ``H q_m`` outside the Krylov space (0 at an
            invariant subspace).
    """

    def __init__(self, basis: torch.Tensor, alpha: list[float], beta: list[float], residual: float):
        self.basis = basis
        self.alpha = torch.tensor(alpha, dtype=torch.float64)
        self.beta = torch.tensor(beta, dtype=torch.float64)
        self.residual = residual

    @property
    def size(self) -> int:
        """``m``, the dimension of the Krylov space."""
        return len(self.alpha)

    def matrix(self) -> torch.Tensor:
        """``T`` as a dense ``(m, m)`` float64 matrix."""
        return torch.diag(self.alpha) + torch.diag(self.beta, 1) + torch.diag(self.beta, -1)

    def eigh(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Ritz values (ascending, float64) and the eigenvectors of ``T`` (columns)."""
        return torch.linalg.eigh(self.matrix())


def _orthogonalize(w: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """Remove from ``w`` its components along the rows of ``basis`` (classical Gram-Schmidt x2)."""
    for _ in range(2):
        w = w - basis.T @ (basis @ w)
    return w


def tridiagonalize(
    operator: HessianOperator,
    steps: int,
    generator: torch.Generator,
    *,
    start: torch.Tensor | None = None,
    restart: bool = True,
    done: Callable[[Tridiagonal], bool] | None = None,
) -> Tridiagonal:
    """Run at most ``steps`` Lanczos steps with full re-orthogonalisation.

    Args:
        operator: the symmetric operator (one :meth:`HessianOperator.matvec` per step).
        steps: the largest Krylov dimension to build (capped at ``operator.n``).
        generator: the source of the start vector and of restart vectors.
        start: the start vector (normalised here); default a Gaussian random vector.
        restart: at an invariant subspace (``beta_j ~ 0``: the Krylov space holds exact
            eigenvectors) continue with a random vector orthogonal to ``Q`` and ``beta_j = 0``,
            so that eigenvalues the start vector did not reach (and repeated eigenvalues) are
            found too; with ``restart=False`` stop there instead.
        done: called after each step with the current :class:`Tridiagonal`; ``True`` stops.
    """
    steps = min(steps, operator.n)
    basis = torch.zeros(steps, operator.n, dtype=operator.dtype, device=operator.device)
    q = operator.random(generator) if start is None else start.to(operator.dtype)
    q = q / torch.linalg.vector_norm(q)
    alpha: list[float] = []
    beta: list[float] = []
    scale = 0.0  # a running estimate of ||H||, for the breakdown test
    breakdown_tol = 100 * torch.finfo(operator.dtype).eps
    for j in range(steps):
        basis[j] = q
        w = operator.matvec(q)
        a = float(w @ q)
        w = w - a * q
        if j > 0:
            w = w - beta[-1] * basis[j - 1]
        w = _orthogonalize(w, basis[: j + 1])
        b = float(torch.linalg.vector_norm(w))
        alpha.append(a)
        scale = max(scale, abs(a), b)
        invariant = b <= breakdown_tol * max(scale, torch.finfo(torch.float64).tiny)
        residual = 0.0 if invariant else b
        result = Tridiagonal(basis[: j + 1], alpha, beta, residual)
        if j + 1 == steps or (done is not None and done(result)):
            return result
        if invariant:
            if not restart:
                return result
            w = _orthogonalize(operator.random(generator), basis[: j + 1])
            norm = float(torch.linalg.vector_norm(w))
            if norm <= breakdown_tol * math.sqrt(operator.n):  # Q spans everything reachable
                return result
            beta.append(0.0)
            q = w / norm
        else:
            beta.append(b)
            q = w / b
    raise AssertionError("unreachable")  # pragma: no cover


@dataclass(frozen=True)
class LanczosResult:
    """Extreme eigenpairs of the Hessian found by :func:`lanczos`.

    Attributes:
        top_values: the ``k`` algebraically largest eigenvalues, descending (float64 tensor).
        top_vectors: their unit eigenvectors, each a list of tensors shaped like ``params``.
        bottom_values: the ``k`` algebraically smallest eigenvalues, ascending (float64 tensor).
        bottom_vectors: their unit eigenvectors, shaped like ``params``.
        hvps: the number of Hessian-vector products used.
        converged: whether every returned eigenvalue met the residual tolerance.
        residuals: ``beta_m |s_m|`` for the Ritz values of the Krylov space (ascending order,
            aligned with ``ritz_values``): a bound on each value's distance to an eigenvalue.
        ritz_values: all Ritz values (ascending); when the Krylov space is smaller than ``2k``
            the top and bottom lists overlap and this is the set of distinct eigenvalues found.
    """

    top_values: torch.Tensor
    top_vectors: list[list[torch.Tensor]]
    bottom_values: torch.Tensor
    bottom_vectors: list[list[torch.Tensor]]
    hvps: int
    converged: bool
    residuals: torch.Tensor
    ritz_values: torch.Tensor


def _extreme_indices(m: int, k: int) -> tuple[list[int], list[int]]:
    k = min(k, m)
    return list(range(m - 1, m - 1 - k, -1)), list(range(k))


def run_lanczos(
    operator: HessianOperator, k: int, max_iter: int, tol: float, seed: int
) -> LanczosResult:
    """:func:`lanczos` on an already built :class:`HessianOperator` (shared by critical_point)."""
    wanted = min(2 * k, operator.n)

    def converged(t: Tridiagonal) -> bool:
        if t.size < wanted:
            return False
        theta, s = t.eigh()
        residuals = t.residual * s[-1].abs()
        top, bottom = _extreme_indices(t.size, k)
        scale = float(theta.abs().max())
        return bool((residuals[top + bottom] <= tol * scale).all())

    generator = torch.Generator().manual_seed(seed)
    start = operator.matvecs
    t = tridiagonalize(operator, max_iter, generator, done=converged)
    theta, s = t.eigh()
    residuals = t.residual * s[-1].abs()
    top, bottom = _extreme_indices(t.size, k)
    scale = float(theta.abs().max())

    def vector(i: int) -> list[torch.Tensor]:
        y = s[:, i].to(dtype=t.basis.dtype, device=t.basis.device) @ t.basis
        return operator.unflatten(y / torch.linalg.vector_norm(y))

    return LanczosResult(
        top_values=theta[top],
        top_vectors=[vector(i) for i in top],
        bottom_values=theta[bottom],
        bottom_vectors=[vector(i) for i in bottom],
        hvps=operator.matvecs - start,
        converged=bool((residuals[top + bottom] <= tol * scale).all()),
        residuals=residuals,
        ritz_values=theta,
    )
