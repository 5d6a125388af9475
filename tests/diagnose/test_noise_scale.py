"""The gradient noise scale against exact answers from per-example gradients of linear regression:
the algebra of one measurement, unbiasedness over many random batches, a noise scale that does not
depend on the batch size it is measured at; nothing in the model changes; bad input is named."""

from __future__ import annotations

import doctest
import math

import pytest
import torch
from torch import nn

import unstuck.diagnose.noise_scale as noise_scale
from unstuck.diagnose import NoiseScale, gradient_noise_scale
from unstuck.diagnose.noise_scale import simple_noise_scale

F64 = torch.float64

# ---------------------------------------------------------------------------- helpers


def _regression(n: int = 512, d: int = 5, seed: int = 0):
    """y = x w* + noise, and a Linear model near (not at) w*: B_simple is about 50."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=F64)
    w_star = torch.randn(d, generator=g, dtype=F64)
    y = (x @ w_star + torch.randn(n, generator=g, dtype=F64)).unsqueeze(1)
    model = nn.Linear(d, 1).double()
    with torch.no_grad():
        model.weight.copy_(w_star + 0.15 * torch.randn(d, generator=g, dtype=F64))
        model.bias.fill_(0.1)
    return model, x, y


def _per_example_grads(model: nn.Linear, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Rows: the gradient of (w.x_j + c - y_j)^2 w.r.t. (w, c), in parameters() order."""
    with torch.no_grad():
        r = (model(x) - y).squeeze(1)
    return 2 * r[:, None] * torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], 1)


def _population(grads: torch.Tensor) -> tuple[float, float]:
    """|G|^2 and tr(Sigma) of the examples themselves (covariance divided by their number)."""
    mean = grads.mean(0)
    return float(mean @ mean), float(((grads - mean) ** 2).sum(1).mean())


# ---------------------------------------------------------------------------- exact answers


def test_one_measurement_matches_the_formulas_on_per_example_gradients() -> None:
    model, x, y = _regression()
    x, y = x[:48], y[:48]
    result = gradient_noise_scale(model, nn.MSELoss(), x, y, micro_batches=6)
    grads = _per_example_grads(model, x, y)
    micro = grads.reshape(6, 8, -1).mean(1)  # g_i, i = 1..6
    small = float((micro**2).sum(1).mean())
    big = float(micro.mean(0) @ micro.mean(0))
    B, b = 48, 8
    grad_sq = (B * big - b * small) / (B - b)
    trace_sigma = (small - big) / (1 / b - 1 / B)
    assert (result.batch_size, result.micro_batch_size, result.micro_batches) == (48, 8, 6)
    assert result.measurements == 1
    assert result.grad_sq == pytest.approx(grad_sq, rel=1e-12)
    assert result.trace_sigma == pytest.approx(trace_sigma, rel=1e-12)
    assert result.b_simple == pytest.approx(trace_sigma / grad_sq, rel=1e-12)


def test_micro_batches_of_one_give_the_sample_mean_and_unbiased_sample_variance() -> None:
    model, x, y = _regression()
    x, y = x[:20], y[:20]
    result = gradient_noise_scale(model, nn.MSELoss(), x, y, micro_batches=20)
    grads = _per_example_grads(model, x, y)
    trace_sigma = float(grads.var(0, unbiased=True).sum())
    mean = grads.mean(0)
    assert result.trace_sigma == pytest.approx(trace_sigma, rel=1e-12)
    # |G|^2 unbiased: |mean|^2 - tr(Sigma) / B
    assert result.grad_sq == pytest.approx(float(mean @ mean) - trace_sigma / 20, rel=1e-10)


def test_remainder_is_dropped() -> None:
    model, x, y = _regression()
    result = gradient_noise_scale(model, nn.MSELoss(), x[:11], y[:11], micro_batches=4)
    first = gradient_noise_scale(model, nn.MSELoss(), x[:8], y[:8], micro_batches=4)
    assert result == first and result.batch_size == 8 and result.micro_batch_size == 2


@pytest.mark.parametrize(("batch", "micro", "trials"), [(16, 4, 2000), (64, 8, 500), (256, 4, 200)])
def test_unbiased_over_random_batches_and_b_simple_does_not_depend_on_batch_size(
    batch: int, micro: int, trials: int
) -> None:
    """Batches drawn with replacement from the examples (independent draws, as the estimator
    assumes): the averages of both estimates land within 4 standard errors of the population
    values, and the combined B_simple within 20% of the true one at every batch size."""
    model, x, y = _regression()
    true_grad_sq, true_trace = _population(_per_example_grads(model, x, y))
    g = torch.Generator().manual_seed(batch)
    results = []
    for _ in range(trials):
        idx = torch.randint(len(x), (batch,), generator=g)
        results.append(
            gradient_noise_scale(model, nn.MSELoss(), x[idx], y[idx], micro_batches=micro)
        )
    for field, truth in (("grad_sq", true_grad_sq), ("trace_sigma", true_trace)):
        values = torch.tensor([getattr(r, field) for r in results], dtype=F64)
        stderr = float(values.std() / math.sqrt(trials))
        assert abs(float(values.mean()) - truth) < 4 * stderr, (field, float(values.mean()), truth)
    combined = NoiseScale.combine(results)
    assert combined.measurements == trials and combined.batch_size == batch
    assert combined.b_simple == pytest.approx(true_trace / true_grad_sq, rel=0.2)
    assert 30 < true_trace / true_grad_sq < 80  # a noise scale between the batch sizes tried


def test_loss_scale_cancels_in_b_simple() -> None:
    model, x, y = _regression()
    base = gradient_noise_scale(model, nn.MSELoss(), x[:64], y[:64])
    scaled = gradient_noise_scale(
        model, lambda o, t: 3 * nn.functional.mse_loss(o, t), x[:64], y[:64]
    )
    assert scaled.grad_sq == pytest.approx(9 * base.grad_sq, rel=1e-10)
    assert scaled.b_simple == pytest.approx(base.b_simple, rel=1e-10)


def test_zero_gradient_everywhere_is_nan_and_noise_only_is_inf() -> None:
    model = nn.Linear(3, 1).double()
    nn.init.zeros_(model.weight)
    nn.init.zeros_(model.bias)
    x = torch.randn(16, 3, dtype=F64)
    zero = gradient_noise_scale(model, nn.MSELoss(), x, torch.zeros(16, 1, dtype=F64))
    assert zero.grad_sq == 0 and zero.trace_sigma == 0 and math.isnan(zero.b_simple)
    assert simple_noise_scale(-1e-3, 2.0) == math.inf
    assert simple_noise_scale(0.0, 2.0) == math.inf
    assert math.isnan(simple_noise_scale(math.nan, 2.0))
    assert math.isnan(simple_noise_scale(1.0, math.nan))
    assert math.isnan(simple_noise_scale(math.inf, 2.0))
    assert simple_noise_scale(4.0, 2.0) == 0.5


# ---------------------------------------------------------------------------- combine


def test_combine_averages_the_estimates_not_the_ratios() -> None:
    a = NoiseScale(10.0, 1.0, 10.0, 64, 16, 4)
    b = NoiseScale(math.inf, -0.5, 20.0, 64, 16, 4)
    c = NoiseScale(5.0, 2.0, 10.0, 32, 8, 4)
    ab = NoiseScale.combine([a, b])
    assert (ab.grad_sq, ab.trace_sigma, ab.b_simple, ab.measurements) == (0.25, 15.0, 60.0, 2)
    assert (ab.batch_size, ab.micro_batch_size, ab.micro_batches) == (64, 16, 4)
    abc = NoiseScale.combine([ab, c])  # weighted by measurements: the same as all three at once
    assert abc == NoiseScale.combine([a, b, c])
    assert (abc.batch_size, abc.micro_batch_size, abc.micro_batches) == (0, 0, 4)
    assert abc.grad_sq == pytest.approx(2.5 / 3) and abc.trace_sigma == pytest.approx(40 / 3)
    assert math.isnan(NoiseScale.combine([a, NoiseScale(*[math.nan] * 3, 64, 16, 4)]).b_simple)
    with pytest.raises(ValueError, match="scales must be a non-empty sequence of NoiseScale"):
        NoiseScale.combine([])
    with pytest.raises(ValueError, match="scales must be a non-empty sequence of NoiseScale"):
        NoiseScale.combine([a, 3.0])


# ---------------------------------------------------------------------------- state


def test_parameters_grads_buffers_mode_and_rng_are_left_alone() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Dropout(0.3), nn.ReLU(), nn.Linear(8, 1)
    )
    x, y = torch.randn(32, 4), torch.randn(32, 1)
    nn.functional.mse_loss(model(x), y).backward()  # some .grad to keep
    model[4].bias.grad = None  # and one missing
    params = [p.detach().clone() for p in model.parameters()]
    grads = [p.grad for p in model.parameters()]
    grad_values = [None if g is None else g.clone() for g in grads]
    buffers = [b.clone() for b in model.buffers()]
    rng = torch.get_rng_state()
    result = gradient_noise_scale(model, nn.MSELoss(), x, y, micro_batches=4)
    assert math.isfinite(result.trace_sigma) and result.trace_sigma > 0
    assert model.training and all(m.training for m in model.modules())
    assert torch.equal(torch.get_rng_state(), rng)
    for p, before in zip(model.parameters(), params):
        assert torch.equal(p, before)
    for p, g, value in zip(model.parameters(), grads, grad_values):
        assert p.grad is g and (g is None or torch.equal(g, value))
    for buffer, before in zip(model.buffers(), buffers):
        assert torch.equal(buffer, before)


def test_unused_and_frozen_parameters() -> None:
    class Partly(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.used = nn.Linear(3, 1).double()
            self.unused = nn.Linear(3, 1).double()
            self.frozen = nn.Parameter(torch.ones(3, dtype=F64), requires_grad=False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.used(x * self.frozen)

    model = Partly()
    x, y = torch.randn(16, 3, dtype=F64), torch.randn(16, 1, dtype=F64)
    alone = nn.Linear(3, 1).double()
    alone.load_state_dict(model.used.state_dict())
    assert gradient_noise_scale(model, nn.MSELoss(), x, y) == gradient_noise_scale(
        alone, nn.MSELoss(), x, y
    )


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_non_finite_data_gives_nan_not_an_error(bad: float) -> None:
    model, x, y = _regression()
    x = x[:32].clone()
    x[5, 2] = bad
    result = gradient_noise_scale(model, nn.MSELoss(), x, y[:32])
    assert all(math.isnan(v) for v in (result.b_simple, result.grad_sq, result.trace_sigma))
    assert result.batch_size == 32


# ---------------------------------------------------------------------------- bad input


def test_bad_arguments_are_named() -> None:
    model, x, y = _regression()
    mse = nn.MSELoss()
    for bad in (1, 0, True, 2.0):
        with pytest.raises(ValueError, match=f"micro_batches must be an integer >= 2, got {bad!r}"):
            gradient_noise_scale(model, mse, x, y, micro_batches=bad)
    with pytest.raises(
        ValueError, match="inputs must hold at least micro_batches=4 examples, got 3"
    ):
        gradient_noise_scale(model, mse, x[:3], y[:3])
    with pytest.raises(
        ValueError, match="inputs and targets must hold as many examples, got 8 and 7"
    ):
        gradient_noise_scale(model, mse, x[:8], y[:7])
    for reduction in ("sum", "none"):
        with pytest.raises(ValueError, match=f"criterion must average .* got '{reduction}'"):
            gradient_noise_scale(model, nn.MSELoss(reduction=reduction), x, y)
    with pytest.raises(ValueError, match=r"must return a scalar .* got \(128, 1\)"):
        gradient_noise_scale(model, lambda o, t: (o - t) ** 2, x, y)
    with pytest.raises(ValueError, match="must depend on the model's trainable parameters"):
        gradient_noise_scale(model, lambda o, t: mse(o.detach(), t), x, y)
    frozen = nn.Linear(5, 1).double().requires_grad_(False)
    with pytest.raises(ValueError, match="model must have at least one parameter"):
        gradient_noise_scale(frozen, mse, x, y)
    with pytest.raises(TypeError, match="model must be a torch.nn.Module, got function"):
        gradient_noise_scale(lambda t: t, mse, x, y)
    with pytest.raises(TypeError, match="inputs must be a tensor .* got list"):
        gradient_noise_scale(model, mse, [x], y)
    with pytest.raises(TypeError, match="targets must be a tensor .* got 0-D tensor"):
        gradient_noise_scale(model, mse, x, torch.tensor(1.0))


def test_docstring_examples_run() -> None:
    result = doctest.testmod(noise_scale, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
