"""probe_hessian: verdicts, attention and recurrent layers, the budget, notes, the model as found.

Budgets are tested on a fake clock on which every Hessian-vector product takes one second and
nothing else takes time, so the HVP counts are exact and no test depends on the machine's speed.
"""

from __future__ import annotations

import doctest
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from unstuck.diagnose import critical_point, hvp
from unstuck.diagnose.krylov import HessianOperator
from unstuck.doctor import probe
from unstuck.doctor.probe import HessianProbe, affordable, describe, probe_hessian


def zero_linear_net():
    """``W2 W1 x`` with both weights zero: a saddle point (the gradient is zero, and the Hessian's
    off-diagonal blocks give eigenvalues of both signs)."""
    model = nn.Sequential(nn.Linear(6, 8, bias=False), nn.Linear(8, 3, bias=False))
    for p in model.parameters():
        nn.init.zeros_(p)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 6, generator=g)
    return model, (x, x @ torch.randn(6, 3, generator=g))


def least_squares(d=60):
    """A linear model at its least-squares solution: a strict local minimum (H = 2 X^T X / N)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, d, generator=g, dtype=torch.float64)
    x = x * torch.linspace(0.5, 2.0, d, dtype=torch.float64)
    y = x @ torch.randn(d, 1, generator=g, dtype=torch.float64)
    y = y + 0.1 * torch.randn(200, 1, generator=g, dtype=torch.float64)
    model = nn.Linear(d, 1, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(torch.linalg.lstsq(x, y).solution.T)
    return model, (x, y)


@pytest.fixture
def hvp_clock(monkeypatch):
    """Every Hessian-vector product takes one (fake) second; nothing else takes time."""
    count = [0]
    matvec = HessianOperator.matvec

    def counted(self, vector):
        count[0] += 1
        return matvec(self, vector)

    monkeypatch.setattr(HessianOperator, "matvec", counted)
    monkeypatch.setattr(probe, "_now", lambda: float(count[0]))
    return count


def assert_one_sentence(note):
    assert isinstance(note, str) and "\n" not in note and "Traceback" not in note
    assert len(note) < 250


def test_saddle_of_a_zero_two_layer_linear_net():
    model, batch = zero_linear_net()
    found = probe_hessian(model, F.mse_loss, batch)
    assert isinstance(found, HessianProbe)
    assert found.critical.verdict == "saddle point" and found.note is None
    assert found.spectrum.lambda_min < 0 < found.spectrum.lambda_max
    assert found.hvps == found.critical.hvps + found.spectrum.hvps  # no timing without a budget
    assert found.seconds >= 0


def test_least_squares_solution_is_a_minimum():
    model, batch = least_squares(20)
    found = probe_hessian(model, F.mse_loss, batch)
    assert found.critical.verdict == "local minimum" and found.note is None
    x = batch[0]
    eigenvalues = torch.linalg.eigvalsh(2 * x.T @ x / len(x))
    assert found.critical.lambda_max == pytest.approx(float(eigenvalues[-1]), rel=1e-6)
    assert found.critical.lambda_min == pytest.approx(float(eigenvalues[0]), rel=1e-6)
    assert found.spectrum.hvps == 20  # min(40 steps, 20 parameters)


def test_same_numbers_as_critical_point_itself():
    model, batch = zero_linear_net()
    found = probe_hessian(model, F.mse_loss, batch, seed=3)
    direct = critical_point(model, F.mse_loss, batch, k=3, max_iter=80, seed=3)
    assert found.critical.lambda_min == direct.lambda_min
    assert found.critical.lambda_max == direct.lambda_max


class Encoder(nn.Module):
    def __init__(self, norm_first):
        super().__init__()
        layer = nn.TransformerEncoderLayer(
            8, 2, 16, dropout=0.1, batch_first=True, norm_first=norm_first
        )
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(8, 1)

    def forward(self, x):
        return self.head(self.encoder(x).mean(1))


@pytest.mark.parametrize("norm_first", [False, True], ids=["post-LN", "pre-LN"])
def test_transformer_encoder_has_second_derivatives(norm_first):
    torch.manual_seed(0)
    model = Encoder(norm_first)
    g = torch.Generator().manual_seed(1)
    batch = (torch.randn(4, 5, 8, generator=g), torch.randn(4, 1, generator=g))
    found = probe_hessian(model, F.mse_loss, batch)
    assert found.note is None and found.critical is not None
    assert math.isfinite(found.critical.lambda_max) and found.critical.hvps > 0
    assert model.training  # put back in train mode


class Recurrent(nn.Module):
    def __init__(self, cls):
        super().__init__()
        self.rnn = cls(3, 4, num_layers=2, batch_first=True)
        self.head = nn.Linear(4, 1)

    def forward(self, x):
        return self.head(self.rnn(x)[0][:, -1])


@pytest.mark.parametrize("cls", [nn.RNN, nn.GRU, nn.LSTM])
def test_recurrent_layers_work(cls):
    torch.manual_seed(0)
    model = Recurrent(cls)
    g = torch.Generator().manual_seed(1)
    batch = (torch.randn(4, 6, 3, generator=g), torch.randn(4, 1, generator=g))
    found = probe_hessian(model, F.mse_loss, batch)
    if found.critical is None:  # a build whose kernels lack a double backward: a clean note
        assert_one_sentence(found.note)
        assert found.note.startswith("the Hessian probe could not run")
        return
    assert found.note is None and found.critical.hvps > 0 and model.training


@pytest.mark.parametrize("cls", [nn.RNN, nn.GRU, nn.LSTM])
def test_recurrent_hessian_vector_products_are_exact(cls):
    """The float32 kernels the probe runs (oneDNN's for the LSTM) against a float64 central
    difference of the gradient: ``H v ~ (g(theta + e v) - g(theta - e v)) / 2e``."""
    torch.manual_seed(0)
    model = Recurrent(cls).eval()
    wide = Recurrent(cls).double().eval()
    wide.load_state_dict(model.state_dict())
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(4, 6, 3, generator=g), torch.randn(4, 1, generator=g)
    params, wides = list(model.parameters()), list(wide.parameters())
    v = [torch.randn(p.shape, generator=g) for p in params]
    product = torch.cat([t.reshape(-1) for t in hvp(
        lambda: F.mse_loss(model(x), y), params, v)]).double()

    def grad_at(eps):
        with torch.no_grad():
            for w, p, d in zip(wides, params, v, strict=True):
                w.copy_(p.double() + eps * d.double())
        grads = torch.autograd.grad(F.mse_loss(wide(x.double()), y.double()), wides)
        return torch.cat([t.reshape(-1) for t in grads])

    central = (grad_at(1e-5) - grad_at(-1e-5)) / 2e-5
    assert float((product - central).norm() / central.norm()) < 1e-5


def test_budget_zero_skips_without_a_product():
    model, batch = zero_linear_net()
    found = probe_hessian(model, F.mse_loss, batch, budget_s=0)
    assert found.critical is None and found.spectrum is None and found.hvps == 0
    assert found.note == "the Hessian probe was skipped: its time budget is 0 s"


def test_tiny_budget_spends_one_product_and_says_how_long_it_took():
    model, batch = least_squares()
    unlimited = probe_hessian(model, F.mse_loss, batch)
    found = probe_hessian(model, F.mse_loss, batch, budget_s=1e-9)
    assert found.critical is None and found.hvps == 1 < unlimited.hvps
    assert_one_sentence(found.note)
    assert "one Hessian-vector product takes" in found.note and "1e-09 s budget" in found.note


def test_a_large_budget_changes_nothing_but_the_timing_product(hvp_clock):
    model, batch = least_squares()
    unlimited = probe_hessian(model, F.mse_loss, batch)
    found = probe_hessian(model, F.mse_loss, batch, budget_s=1e6)
    assert found.critical.hvps == unlimited.critical.hvps == 56
    assert found.spectrum.hvps == unlimited.spectrum.hvps == 40
    assert found.hvps == unlimited.hvps + 1 and found.note is None


def test_the_spectrum_goes_before_the_critical_point_probe_is_cut(hvp_clock):
    model, batch = least_squares(20)
    unlimited = probe_hessian(model, F.mse_loss, batch)
    assert unlimited.critical.hvps == 20 and unlimited.spectrum.hvps == 20
    # 1 s timing + 20 steps at 1.25 s: the critical-point probe fits, 5 s remain for the
    # spectrum, which needs 10 steps at least
    found = probe_hessian(model, F.mse_loss, batch, budget_s=1 + 1.25 * 20)
    assert found.critical.hvps == 20 and found.spectrum is None
    assert found.hvps == 21 < unlimited.hvps
    assert found.note == (
        "the spectrum was skipped to fit the 26 s budget (one Hessian-vector product takes 1 s)"
    )


def test_a_small_budget_cuts_the_critical_point_probe(hvp_clock):
    model, batch = least_squares()
    found = probe_hessian(model, F.mse_loss, batch, budget_s=1 + 1.25 * 20)
    assert found.critical.hvps == 20 and not found.critical.converged
    assert found.spectrum is None and found.hvps == 21
    assert found.note.startswith(
        "the critical-point probe was cut short and the spectrum was skipped to fit the 26 s"
    )


def test_a_budget_below_the_minimal_probe_skips_it(hvp_clock):
    model, batch = least_squares()
    found = probe_hessian(model, F.mse_loss, batch, budget_s=1 + 1.25 * 9)
    assert found.critical is None and found.hvps == 1
    assert found.note == (
        "the Hessian probe was skipped: one Hessian-vector product takes 1 s, so even 10 of "
        "them do not fit the 12 s budget"
    )


def test_affordable_steps():
    assert affordable(10.0, 1.0, 80) == 10
    assert affordable(1000.0, 1.0, 80) == 80
    assert affordable(-1.0, 1.0, 80) == 0
    assert affordable(5.0, 0.0, 40) == 40


def test_a_loss_that_raises_becomes_a_note():
    model, batch = zero_linear_net()

    def criterion(out, target):
        raise ValueError("boom\nsecond line")

    found = probe_hessian(model, criterion, batch, budget_s=10)
    assert found.critical is None and found.hvps == 0
    assert found.note == (
        "the Hessian probe could not run: the model or the criterion raised ValueError (boom)"
    )


def test_an_operation_without_a_second_derivative_is_named():
    class Bag(nn.Module):
        def __init__(self):
            super().__init__()
            self.bag = nn.EmbeddingBag(10, 4, mode="max")

        def forward(self, x):
            return self.bag(x)

    torch.manual_seed(0)
    batch = (torch.randint(0, 10, (3, 4)), None)
    found = probe_hessian(Bag(), lambda out, _: out.pow(2).sum(), batch)
    assert found.critical is None
    assert found.note == (
        "the Hessian probe could not run: the model uses an operation with no second derivative "
        "(_embedding_bag_backward)"
    )


@pytest.mark.parametrize(("error", "kind"), [
    (RuntimeError("derivative for aten::_scaled_dot_product_flash_attention_for_cpu_backward is "
                  "not implemented\nException raised from ..."),
     "no second derivative (_scaled_dot_product_flash_attention_for_cpu_backward)"),
    (RuntimeError("trying to differentiate twice a function that was marked with "
                  "@once_differentiable"), "can be differentiated only once"),
    (ValueError("criterion(model(inputs), targets) returned a non-finite loss (nan); ..."),
     "the loss is not finite"),
    (RuntimeError("element 0 of tensors does not require grad and does not have a grad_fn"),
     "does not depend on the trainable parameters"),
    (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"), "ran out of memory"),
    (KeyError("x" * 300), "raised KeyError ('" + "x" * 96 + "...)"),
])
def test_describe_names_the_kind_of_problem(error, kind):
    note = describe(error)
    assert_one_sentence(note)
    assert note.startswith("the Hessian probe could not run: ") and kind in note


def test_nan_loss_becomes_a_note():
    model, (x, y) = zero_linear_net()
    found = probe_hessian(model, F.mse_loss, (x, y * math.nan))
    assert found.note == (
        "the Hessian probe could not run: the loss is not finite (NaN or Inf) on the probe batch"
    )


class Mixed(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Tanh(), nn.Dropout(0.5))
        self.head = nn.Linear(4, 1)
        self.frozen = nn.Linear(1, 1)
        self.frozen.requires_grad_(False)

    def forward(self, x):
        return self.frozen(self.head(self.body(x)))


def snapshot(model):
    return {
        "modes": [m.training for m in model.modules()],
        "state": {k: v.clone() for k, v in model.state_dict().items()},
        "grads": [(p.grad, None if p.grad is None else p.grad.clone())
                  for p in model.parameters()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
    }


def assert_as_found(model, before):
    after = snapshot(model)
    assert after["modes"] == before["modes"]
    assert after["requires_grad"] == before["requires_grad"]
    for key, value in before["state"].items():
        assert torch.equal(after["state"][key], value), key
    for (grad, value), (now, _) in zip(before["grads"], after["grads"], strict=True):
        assert now is grad
        if grad is not None:
            assert torch.equal(now, value)


@pytest.mark.parametrize("fail_at", [None, 1, 2])
def test_model_left_as_found(fail_at):
    torch.manual_seed(0)
    model = Mixed()
    x, y = torch.randn(16, 3), torch.randn(16, 1)
    F.mse_loss(model(x), y).backward()  # .grad set, BatchNorm statistics moved
    model.head.weight.grad = None
    model.body[3].eval()  # one module in another mode than the rest
    before = snapshot(model)
    calls = [0]

    def criterion(out, target):
        calls[0] += 1
        if calls[0] == fail_at:
            raise RuntimeError("stop")
        return F.mse_loss(out, target)

    found = probe_hessian(model, criterion, (x, y), budget_s=1e6)  # 1: timing, 2: the probe
    assert (found.note is None) == (fail_at is None)
    assert_as_found(model, before)


def test_restored_after_a_failure_inside_the_escape_step():
    model, batch = zero_linear_net()
    before = [p.detach().clone() for p in model.parameters()]
    calls = [0]

    def criterion(out, target):  # the second call is the escape step's, parameters moved
        calls[0] += 1
        if calls[0] == 2:
            raise RuntimeError("stop")
        return F.mse_loss(out, target)

    found = probe_hessian(model, criterion, batch)
    assert found.critical is None and "RuntimeError (stop)" in found.note
    assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before, strict=True))


def test_a_failing_spectrum_keeps_the_critical_point():
    model, batch = least_squares(20)
    calls = [0]

    def criterion(out, target):  # a minimum has no escape step: the second call is the spectrum's
        calls[0] += 1
        if calls[0] == 2:
            raise RuntimeError("stop")
        return F.mse_loss(out, target)

    found = probe_hessian(model, criterion, batch)
    assert found.critical.verdict == "local minimum" and found.spectrum is None
    assert found.hvps == found.critical.hvps
    assert found.note == (
        "the Hessian spectrum could not run: the model or the criterion raised RuntimeError (stop)"
    )


def test_no_trainable_parameters_is_a_note():
    model = nn.Linear(2, 1).requires_grad_(False)
    found = probe_hessian(model, F.mse_loss, (torch.ones(3, 2), torch.ones(3, 1)))
    assert found.note == "the Hessian probe could not run: the model has no trainable parameters"


def test_bad_arguments():
    model, batch = zero_linear_net()
    for bad in (-1.0, math.nan, "1", True):
        with pytest.raises(ValueError, match="budget_s must be None or a number"):
            probe_hessian(model, F.mse_loss, batch, budget_s=bad)
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="k must be an integer >= 1"):
            probe_hessian(model, F.mse_loss, batch, k=bad)
    with pytest.raises(ValueError, match="seed must be an integer"):
        probe_hessian(model, F.mse_loss, batch, seed=0.5)
    with pytest.raises(ValueError, match="batch must be a pair"):
        probe_hessian(model, F.mse_loss, batch[0])
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        probe_hessian(lambda x: x, F.mse_loss, batch)


def test_docstring_example():
    result = doctest.testmod(probe, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
