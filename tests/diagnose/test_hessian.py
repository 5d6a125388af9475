"""Hessian diagnostics against exact answers: dense Hessians, quadratics with known spectra, and
the textbook critical points x^2 + y^2, -(x^2 + y^2), x^2 - y^2."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn
from torch.func import functional_call

from unstuck.diagnose.critical import VERDICTS
from unstuck.diagnose.hessian import critical_point, hvp, lanczos, spectrum, trace

# ---------------------------------------------------------------------------- helpers


def _mlp(seed: int = 0, dtype: torch.dtype = torch.float64, batchnorm: bool = False) -> nn.Module:
    torch.manual_seed(seed)
    layers: list[nn.Module] = [nn.Linear(3, 8)]
    if batchnorm:
        layers.append(nn.BatchNorm1d(8))
    layers += [nn.Tanh(), nn.Linear(8, 2)]
    return nn.Sequential(*layers).to(dtype)


def _data(dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(16, 3, generator=g, dtype=dtype), torch.randn(
        16, 2, generator=g, dtype=dtype
    )


def _exact_hessian(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The dense Hessian of the MSE loss over all parameters, flattened in parameters() order."""
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    sizes = [p.numel() for p in model.parameters()]
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def loss(theta: torch.Tensor) -> torch.Tensor:
        pieces = [c.reshape(s) for c, s in zip(torch.split(theta, sizes), shapes)]
        return nn.functional.mse_loss(functional_call(model, dict(zip(names, pieces)), (x,)), y)

    return torch.autograd.functional.hessian(loss, flat)


class Rotated(nn.Module):
    """0.5 (x - c)^T A (x - c) with A = P diag(eigenvalues) P, P = I - 2 u u^T (a reflection)."""

    def __init__(self, eigenvalues: torch.Tensor, seed: int = 0, at: torch.Tensor | None = None):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        u = torch.randn(len(eigenvalues), generator=g, dtype=torch.float64)
        self.register_buffer("u", u / u.norm())
        self.register_buffer("eigenvalues", eigenvalues.to(torch.float64))
        self.register_buffer("center", torch.zeros_like(self.u))
        self.x = nn.Parameter(self.center.clone() if at is None else at.clone())

    def reflect(self, v: torch.Tensor) -> torch.Tensor:
        return v - 2 * self.u * (self.u @ v)

    def forward(self) -> torch.Tensor:
        z = self.reflect(self.x - self.center)
        return 0.5 * (self.eigenvalues * z * z).sum()


def _known_spectrum(n: int = 2000) -> torch.Tensor:
    """A bulk in [-0.5, 1] with outliers at both ends, negatives included."""
    bulk = torch.linspace(-0.5, 1.0, n - 6, dtype=torch.float64)
    outliers = torch.tensor([100.0, 60.0, 30.0, -20.0, -8.0, -4.0], dtype=torch.float64)
    return torch.cat([outliers, bulk])


class Point(nn.Module):
    """A model whose output is its own parameter vector (for loss = f(x, y))."""

    def __init__(self, *coords: float):
        super().__init__()
        self.theta = nn.Parameter(torch.tensor(coords, dtype=torch.float64))

    def forward(self, inputs: object) -> torch.Tensor:
        return self.theta


def _on(f):
    return lambda out, target: f(out[0], out[1])


# ---------------------------------------------------------------------------- hvp


@pytest.mark.parametrize("batchnorm", [False, True])
def test_hvp_equals_exact_hessian_times_v(batchnorm: bool) -> None:
    model, (x, y) = _mlp(batchnorm=batchnorm), _data()
    if batchnorm:  # eval mode with non-trivial running statistics
        bn = model[1]
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        model.eval()
    params = list(model.parameters())
    hessian = _exact_hessian(model, x, y)
    v = [torch.randn_like(p) for p in params]
    got = hvp(lambda: nn.functional.mse_loss(model(x), y), params, v)
    want = hessian @ torch.cat([t.reshape(-1) for t in v])
    assert [g.shape for g in got] == [p.shape for p in params]
    torch.testing.assert_close(
        torch.cat([g.reshape(-1) for g in got]), want, rtol=1e-10, atol=1e-12
    )
    assert all(p.grad is None for p in params)


def test_hvp_float32_keeps_dtype_and_matches_float64() -> None:
    model64, (x, y) = _mlp(), _data()
    model32 = _mlp().float()
    v64 = [torch.randn_like(p) for p in model64.parameters()]
    got32 = hvp(
        lambda: nn.functional.mse_loss(model32(x.float()), y.float()),
        list(model32.parameters()),
        [t.float() for t in v64],
    )
    got64 = hvp(lambda: nn.functional.mse_loss(model64(x), y), list(model64.parameters()), v64)
    assert all(g.dtype == torch.float32 for g in got32)
    for a, b in zip(got32, got64):
        torch.testing.assert_close(a.double(), b, rtol=1e-4, atol=1e-5)


def test_hvp_bad_input_is_named() -> None:
    w = torch.ones(3, requires_grad=True)
    with pytest.raises(ValueError, match="scalar"):
        hvp(lambda: w * 2, [w], [w.detach()])
    with pytest.raises(ValueError, match="non-finite"):
        hvp(lambda: (w * float("nan")).sum(), [w], [w.detach()])
    with pytest.raises(ValueError, match="shape"):
        hvp(lambda: (w**2).sum(), [w], [torch.ones(2)])
    with pytest.raises(ValueError, match="at least one"):
        hvp(lambda: (w**2).sum(), [], [])
    with pytest.raises(ValueError, match="requires_grad"):
        hvp(lambda: (w**2).sum(), [torch.ones(3)], [torch.ones(3)])
    with pytest.raises(ValueError, match="depend"):
        hvp(lambda: torch.tensor(1.0), [w], [torch.ones(3)])
    # a loss linear in w: the Hessian is zero, not an autograd error
    assert hvp(lambda: (2 * w).sum(), [w], [torch.ones(3)])[0].tolist() == [0.0, 0.0, 0.0]


# ---------------------------------------------------------------------------- lanczos


def test_lanczos_extremes_match_eigvalsh_on_mlp() -> None:
    model, (x, y) = _mlp(), _data()  # 3*8 + 8 + 8*2 + 2 = 50 parameters
    params = list(model.parameters())
    hessian = _exact_hessian(model, x, y)
    exact = torch.linalg.eigvalsh(hessian)
    k = 3
    result = lanczos(lambda: nn.functional.mse_loss(model(x), y), params, k=k, max_iter=50)
    scale = exact.abs().max()
    torch.testing.assert_close(result.top_values, exact.flip(0)[:k], rtol=0, atol=1e-6 * scale)
    torch.testing.assert_close(result.bottom_values, exact[:k], rtol=0, atol=1e-6 * scale)
    assert abs(result.top_values[0] - exact[-1]) <= 1e-6 * abs(exact[-1])
    assert abs(result.bottom_values[0] - exact[0]) <= 1e-6 * abs(exact[0])
    assert result.converged and result.hvps <= 50
    for values, vectors in (
        (result.top_values, result.top_vectors),
        (result.bottom_values, result.bottom_vectors),
    ):
        for value, vector in zip(values, vectors):
            v = torch.cat([t.reshape(-1) for t in vector])
            assert [t.shape for t in vector] == [p.shape for p in params]
            assert abs(float(v.norm()) - 1) < 1e-10
            assert float((hessian @ v - value * v).norm()) <= 1e-5 * float(scale)


def test_lanczos_known_spectrum_with_few_hvps() -> None:
    eigenvalues = _known_spectrum()
    model = Rotated(eigenvalues)
    result = lanczos(model, [model.x], k=1, max_iter=200)
    assert result.converged
    assert abs(float(result.top_values[0]) - 100.0) <= 1e-6 * 100
    assert abs(float(result.bottom_values[0]) + 20.0) <= 1e-6 * 20
    assert result.hvps < 100, result.hvps  # 2000 parameters


def test_lanczos_k3_known_spectrum() -> None:
    model = Rotated(_known_spectrum())
    result = lanczos(model, [model.x], k=3, max_iter=200)
    torch.testing.assert_close(
        result.top_values, torch.tensor([100.0, 60, 30], dtype=torch.float64)
    )
    torch.testing.assert_close(
        result.bottom_values, torch.tensor([-20.0, -8, -4], dtype=torch.float64)
    )
    assert result.hvps < 150


def test_lanczos_invariant_subspace_and_repeated_eigenvalues() -> None:
    # A = I: the Krylov space of any vector is one-dimensional (beta_1 = 0).
    x = torch.randn(10, dtype=torch.float64, requires_grad=True)
    result = lanczos(lambda: 0.5 * (x**2).sum(), [x], k=2)
    torch.testing.assert_close(result.top_values, torch.ones(2, dtype=torch.float64))
    torch.testing.assert_close(result.bottom_values, torch.ones(2, dtype=torch.float64))
    # two distinct eigenvalues, each repeated: the restart finds both, and both copies
    d = torch.tensor([1.0, 1, 1, 5, 5], dtype=torch.float64)
    result = lanczos(lambda: 0.5 * (d * x[:5] ** 2).sum(), [x], k=2)
    torch.testing.assert_close(result.top_values, torch.tensor([5.0, 5.0], dtype=torch.float64))
    torch.testing.assert_close(result.bottom_values, torch.zeros(2, dtype=torch.float64))
    # a zero Hessian
    result = lanczos(lambda: x.sum(), [x], k=1)
    assert float(result.top_values[0]) == 0.0 and float(result.bottom_values[0]) == 0.0


@given(
    n=st.integers(1, 12),
    k=st.integers(1, 4),
    seed=st.integers(0, 2**16),
)
def test_lanczos_matches_eigvalsh_on_random_symmetric(n: int, k: int, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, n, generator=g, dtype=torch.float64)
    a = a + a.T
    x = torch.zeros(n, dtype=torch.float64, requires_grad=True)
    result = lanczos(lambda: 0.5 * x @ a @ x, [x], k=k, max_iter=n, seed=seed)
    exact = torch.linalg.eigvalsh(a)
    kk = min(k, n)
    atol = 1e-8 * float(exact.abs().max())
    torch.testing.assert_close(result.top_values, exact.flip(0)[:kk], rtol=0, atol=atol)
    torch.testing.assert_close(result.bottom_values, exact[:kk], rtol=0, atol=atol)


def test_lanczos_rejects_bad_arguments() -> None:
    x = torch.zeros(2, requires_grad=True)
    with pytest.raises(ValueError, match="k must be"):
        lanczos(lambda: (x**2).sum(), [x], k=0)
    with pytest.raises(ValueError, match="max_iter must be"):
        lanczos(lambda: (x**2).sum(), [x], max_iter=0)
    with pytest.raises(ValueError, match="tol must be"):
        lanczos(lambda: (x**2).sum(), [x], tol=-1.0)


# ---------------------------------------------------------------------------- trace, spectrum


@pytest.mark.parametrize("method", ["hutchinson", "hutch++"])
def test_trace_within_a_few_stderr(method: str) -> None:
    eigenvalues = _known_spectrum(500)
    model = Rotated(eigenvalues, seed=3)
    estimate = trace(model, [model.x], n=60, method=method, seed=0)
    true = float(eigenvalues.sum())
    assert estimate.hvps == 60
    assert estimate.stderr > 0
    assert abs(estimate.value - true) <= 4 * estimate.stderr, (estimate, true)


def test_hutchpp_beats_hutchinson_with_outliers() -> None:
    model = Rotated(_known_spectrum(500), seed=3)
    plain = trace(model, [model.x], n=60, method="hutchinson")
    plus = trace(model, [model.x], n=60, method="hutch++")
    assert plus.stderr < plain.stderr


def test_trace_rejects_bad_arguments() -> None:
    x = torch.zeros(2, requires_grad=True)
    with pytest.raises(ValueError, match="method"):
        trace(lambda: (x**2).sum(), [x], method="exact")
    with pytest.raises(ValueError, match="n must be"):
        trace(lambda: (x**2).sum(), [x], n=3, method="hutch++")


def test_spectrum_integrates_to_one_with_mass_at_the_eigenvalues() -> None:
    clusters = {-1.0: 10, 2.0: 30, 5.0: 20}  # eigenvalue -> multiplicity, 60 parameters
    d = torch.cat([torch.full((m,), v, dtype=torch.float64) for v, m in clusters.items()])
    model = Rotated(d, seed=5)
    result = spectrum(model, [model.x], n_probes=4, steps=30, sigma=0.05)
    integral = float(torch.trapezoid(result.density, result.grid))
    assert abs(integral - 1) < 1e-3
    assert abs(float(result.weights.sum()) - 1) < 1e-12
    assert result.lambda_min == pytest.approx(-1.0) and result.lambda_max == pytest.approx(5.0)
    for value, multiplicity in clusters.items():
        near = (result.grid - value).abs() < 0.25
        mass = float(torch.trapezoid(result.density[near], result.grid[near]))
        assert abs(mass - multiplicity / 60) < 0.15, (value, mass)
    between = (result.grid - 0.5).abs() < 0.25
    assert float(result.density[between].max()) < 1e-6
    assert result.hvps <= 4 * 30


# ---------------------------------------------------------------------------- critical points


def test_saddle_x2_minus_y2_at_origin() -> None:
    model = Point(0.0, 0.0)
    result = critical_point(model, _on(lambda x, y: x**2 - y**2), (None, None))
    assert result.verdict == "saddle point"
    assert result.lambda_min == pytest.approx(-2.0) and result.lambda_max == pytest.approx(2.0)
    assert (result.n_positive, result.n_negative, result.n_zero) == (1, 1, 0)
    (direction,) = result.escape_direction
    assert abs(abs(float(direction[1])) - 1) < 1e-10 and abs(float(direction[0])) < 1e-10
    assert result.escape_loss_change < 0
    assert result.escape_loss_change == pytest.approx(-(result.eps**2))
    assert result.predicted_loss_change == pytest.approx(-(result.eps**2))
    assert result.grad_norm == 0.0 and result.hvps <= 2


@pytest.mark.parametrize(
    ("f", "verdict"),
    [
        (lambda x, y: x**2 + 3 * y**2, "local minimum"),
        (lambda x, y: -(x**2) - 3 * y**2, "local maximum"),
        (lambda x, y: x**2 + y**4, "degenerate"),
    ],
)
def test_verdicts_at_the_origin(f, verdict: str) -> None:
    result = critical_point(Point(0.0, 0.0), _on(f), (None, None))
    assert result.verdict == verdict
    assert result.verdict in VERDICTS
    if verdict == "local minimum":
        assert result.escape_direction is None and result.escape_loss_change is None
        assert (result.n_positive, result.n_negative) == (2, 0)
    if verdict == "local maximum":
        assert result.escape_loss_change < 0 and result.n_negative == 2
    if verdict == "degenerate":
        assert result.n_zero == 1


def test_large_gradient_is_not_a_critical_point() -> None:
    result = critical_point(Point(1.0, 1.0), _on(lambda x, y: x**2 - y**2), (None, None))
    assert result.verdict == "not a critical point"
    assert result.escape_direction is None
    # the rule is scale-aware: the same small offset passes at tolerance, fails below it
    near = critical_point(Point(1e-6, 0.0), _on(lambda x, y: x**2 + y**2), (None, None))
    assert near.verdict == "local minimum"
    far = critical_point(
        Point(1e-6, 0.0), _on(lambda x, y: x**2 + y**2), (None, None), grad_tol=1e-7
    )
    assert far.verdict == "not a critical point"


def test_critical_point_leaves_the_model_as_found() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(3, 6), nn.BatchNorm1d(6), nn.Tanh(), nn.Dropout(0.5), nn.Linear(6, 2)
    ).double()
    model.train()
    model[1].eval()  # a sub-module in its own mode
    model[0].bias.requires_grad_(False)  # frozen: not part of theta
    x, y = _data()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    modes = [m.training for m in model.modules()]
    result = critical_point(model, nn.functional.mse_loss, (x, y), k=2)
    assert result.verdict in VERDICTS
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert [m.training for m in model.modules()] == modes
    assert all(p.grad is None for p in model.parameters())
    n_theta = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert result.hvps <= n_theta


def test_saddle_escape_restores_parameters_bit_for_bit() -> None:
    model = Point(0.3, -0.7)
    before = model.theta.detach().clone()
    f = _on(lambda x, y: (x - 0.3) ** 2 - (y + 0.7) ** 2 + 0.1 * (x - 0.3) ** 3)
    result = critical_point(model, f, (None, None), eps=0.123)
    assert result.verdict == "saddle point" and result.escape_loss_change < 0
    assert torch.equal(model.theta.detach(), before)


def test_critical_point_bad_input() -> None:
    frozen = nn.Linear(2, 1).requires_grad_(False)
    x, y = torch.randn(4, 2), torch.randn(4, 1)
    with pytest.raises(ValueError, match="trainable"):
        critical_point(frozen, nn.functional.mse_loss, (x, y))
    model = nn.Linear(2, 1)
    with pytest.raises(ValueError, match="non-finite"):
        critical_point(model, lambda out, t: out.sum() * math.nan, (x, y))
    with pytest.raises(ValueError, match="scalar"):
        critical_point(model, lambda out, t: out, (x, y))
    with pytest.raises(ValueError, match="pair"):
        critical_point(model, nn.functional.mse_loss, x)
    with pytest.raises(ValueError, match="zero_tol"):
        critical_point(model, nn.functional.mse_loss, (x, y), zero_tol=2.0)
    assert model.training


# ---------------------------------------------------------------------------- figure


def test_spectrum_figure() -> None:
    pytest.importorskip("matplotlib")
    from unstuck.plots import spectrum_figure

    model = Rotated(_known_spectrum(200), seed=1)
    result = spectrum(model, [model.x], n_probes=2, steps=40)
    figure = spectrum_figure(result, lambda_min=-20.0, lambda_max=100.0)
    (axes,) = figure.axes
    assert axes.get_yscale() == "log"
    assert axes.get_xlabel() and axes.get_ylabel()
    labels = [line.get_label() for line in axes.get_lines()]
    assert any("lambda_min" in s or "λ_min" in s for s in labels)
    assert any("lambda_max" in s or "λ_max" in s for s in labels)
    figure.savefig(__import__("io").BytesIO(), format="png")
