"""Monitor on non-finite input: NaN and Inf come out as statistics, never as an exception."""

import math

import pytest
import torch
from torch import nn

import unstuck
from unstuck.diagnose.effective_lr import rho
from unstuck.diagnose.monitor import Monitor, read_jsonl
from unstuck.diagnose.records import fsum

INF, NAN = math.inf, math.nan

OPTIMIZERS = {
    "sgd": lambda params: torch.optim.SGD(params, lr=1.0),
    "adam": lambda params: torch.optim.Adam(params, lr=1.0),
}


def read_all(monitor, tmp_path):
    """History, summary and the JSON Lines read back (which must equal the history, NaN
    included: ``repr`` compares NaN as equal to itself)."""
    history = monitor.history
    summary = monitor.summary()
    back = read_jsonl(monitor.to_jsonl(tmp_path / "run.jsonl", overwrite=True))
    assert repr(back) == repr(history)
    return history, summary


def diverging_mlp():
    """Three ReLU layers that SGD at lr=100 sends to Inf, then NaN, within a few steps; the step
    where the updates turn infinite has per-tensor dot products of +Inf and -Inf."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 3)
    )


@pytest.mark.parametrize("effective_lr_every", [10, 1])
@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_training_that_diverges_reads_back(name, effective_lr_every, tmp_path):
    model = diverging_mlp()
    opt = {"sgd": torch.optim.SGD(model.parameters(), lr=100.0),
           "adam": torch.optim.Adam(model.parameters(), lr=1e30)}[name]
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(16, 4, generator=g), torch.randn(16, 3, generator=g)
    with Monitor(model, opt, effective_lr_every=effective_lr_every) as monitor:
        for _ in range(12):
            opt.zero_grad()
            loss = nn.functional.mse_loss(model(x), y)
            loss.backward()
            monitor.observe(loss)
            opt.step()
        history, summary = read_all(monitor, tmp_path)
    assert len(history) == 12 and summary["steps"] == 12
    assert not math.isfinite(history[-1]["loss"])
    assert not math.isfinite(history[-1]["weight_norm"])
    assert any(not math.isfinite(r["update_norm"]) for r in history[:-1])
    assert summary["nonfinite_grads"]  # named, with the first step of each
    assert math.isfinite(summary["grad_norm"]["min"])  # the summary keeps the finite ones


class Scripted(nn.Module):
    """Three tensors whose gradients a test writes by hand; ``zero`` starts at zero."""

    def __init__(self):
        super().__init__()
        self.a = nn.Parameter(torch.ones(4))
        self.b = nn.Parameter(torch.ones(3))
        self.zero = nn.Parameter(torch.zeros(2))


# per step: gradients of a, b, zero, a value to write into the weights of a (or None), the loss
SCRIPT = [
    ([1.0] * 4, [1.0] * 3, [0.0, 0.0], None, 1.0),
    # updates +Inf in a and -Inf in b: their dot products with the last ones are -Inf and +Inf
    ([-INF] * 4, [INF] * 3, [0.0, 0.0], None, INF),
    # both infinities and NaN in one tensor
    ([-INF, INF, NAN, 1.0], [1.0] * 3, [1.0, 1.0], None, -INF),
    ([1.0] * 4, [1.0] * 3, [0.0, 0.0], INF, torch.tensor(NAN)),
    ([1.0] * 4, [1.0] * 3, [0.0, 0.0], -INF, NAN),
    ([1.0] * 4, [1.0] * 3, [0.0, 0.0], 0.0, None),
]


def run_script(monitor, model, opt, script):
    for grads, weight, loss in ((s[:3], s[3], s[4]) for s in script):
        opt.zero_grad()
        for p, g in zip((model.a, model.b, model.zero), grads, strict=True):
            p.grad = torch.tensor(g)
        if weight is not None:
            with torch.no_grad():
                model.a.fill_(weight)
        monitor.observe(loss)
        opt.step()


@pytest.mark.parametrize("every", [1, 2])
@pytest.mark.parametrize("effective_lr_every", [10, 1])
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_scripted_infinities_nans_and_zeros(name, effective_lr_every, every, tmp_path):
    model = Scripted()
    opt = OPTIMIZERS[name](model.parameters())
    with Monitor(model, opt, every=every, effective_lr_every=effective_lr_every) as monitor:
        run_script(monitor, model, opt, SCRIPT)
        history, summary = read_all(monitor, tmp_path)
    by_step = {r["step"]: r for r in history}
    assert sorted(by_step) == list(range(0, len(SCRIPT), every))
    first = by_step[0]
    assert first["layers"]["zero"]["weight_norm"] == 0.0
    assert first["layers"]["zero"]["update_ratio"] is None  # no ratio to a zero weight
    if every == 1:
        second = by_step[1]
        assert second["grad_norm"] == INF and second["loss"] == INF
        assert second["nonfinite_grads"] == ["a", "b"]
        assert not math.isfinite(second["update_norm"])
        assert second["update_cosine"] is None
        assert second["layers"]["a"]["update_cosine"] is None
        assert math.isnan(by_step[2]["grad_norm"]) and by_step[2]["loss"] == -INF
        assert by_step[3]["layers"]["a"]["weight_norm"] == INF
        assert math.isnan(by_step[3]["loss"])
    fourth = by_step[4]
    assert fourth["layers"]["a"]["weight_norm"] == INF and math.isnan(fourth["loss"])
    assert math.isnan(fourth["layers"]["a"]["update_ratio"])  # NaN update over Inf weight
    assert by_step[len(SCRIPT) - 2]["update_norm"] is not None
    assert summary["steps"] == len(history)
    assert "a" in summary["nonfinite_grads"]


def test_adam_without_eps_on_a_zero_gradient_has_infinite_effective_lr(tmp_path):
    model = Scripted()
    opt = torch.optim.Adam(model.parameters(), lr=0.1, eps=0.0)
    script = [([1.0] * 4, [2.0] * 3, [0.0, 0.0], None, 1.0)] * 3
    with Monitor(model, opt, effective_lr_every=1) as monitor:
        run_script(monitor, model, opt, script)
        history, summary = read_all(monitor, tmp_path)
    eff = history[0]["effective_lr"]
    assert eff["layers"][2] == {"min": INF, "median": INF, "max": INF}  # lr / sqrt(0)
    assert eff["layers"][0]["max"] == pytest.approx(0.1)  # lr / sqrt(v / (1 - beta2)) = lr
    assert eff["max"] == INF and summary["effective_lr"]["max"] == INF


@pytest.mark.parametrize("make", [
    lambda p: torch.optim.RMSprop(p, lr=1.0, centered=True, eps=0.0),
    lambda p: torch.optim.Adagrad(p, lr=1.0, eps=0.0),
    lambda p: unstuck.RAdam(p, lr=1.0),
])
def test_other_adaptive_optimizers_on_the_script(make, tmp_path):
    model = Scripted()
    opt = make(model.parameters())
    with Monitor(model, opt, effective_lr_every=1) as monitor:
        run_script(monitor, model, opt, SCRIPT)
        history, summary = read_all(monitor, tmp_path)
    assert len(history) == len(SCRIPT)
    assert summary["effective_lr"] is not None


def test_nan_effective_lr_of_one_tensor_makes_the_records_nan_not_the_summary(tmp_path):
    model = Scripted()
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    script = [([1.0] * 4, [1.0] * 3, [1.0, 1.0], None, 1.0)] * 2
    script += [([NAN] * 4, [1.0] * 3, [1.0, 1.0], None, 1.0)] * 2
    with Monitor(model, opt, effective_lr_every=1) as monitor:
        run_script(monitor, model, opt, script)
        history, summary = read_all(monitor, tmp_path)
    assert math.isfinite(history[1]["effective_lr"]["min"])
    assert math.isnan(history[2]["effective_lr"]["min"])
    assert math.isnan(history[2]["effective_lr"]["max"])
    assert math.isfinite(summary["effective_lr"]["min"])  # over the records that have one
    assert math.isnan(summary["effective_lr"]["last"]["min"])


def test_a_parameter_named_nan_keeps_its_name_in_json_lines(tmp_path):
    model = nn.Module()
    model.register_parameter("NaN", nn.Parameter(torch.ones(2)))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with Monitor(model, opt) as monitor:
        model.NaN.grad = torch.tensor([NAN, 1.0])
        monitor.observe(NAN)
        opt.step()
        (record,), _ = read_all(monitor, tmp_path)
    assert record["nonfinite_grads"] == ["NaN"]
    back = read_jsonl(tmp_path / "run.jsonl")[0]
    assert back["nonfinite_grads"] == ["NaN"] and math.isnan(back["loss"])


@pytest.mark.parametrize(("values", "expected"), [
    ([1.0, 2.0, 3.0], 6.0),
    ([INF, -INF], NAN),
    ([NAN, INF, -INF], NAN),
    ([INF, 1.0], INF),
    ([-INF, 1e308, 1e308], -INF),
    ([1e308, 1e308], INF),
    ([-1e308, -1e308], -INF),
    ([1e308, 1e308, -1e308], 1e308),
    ((x for x in [0.5, 0.25]), 0.75),
])
def test_fsum_never_raises(values, expected):
    got = fsum(values)
    assert (math.isnan(got) and math.isnan(expected)) or got == expected


def test_rectification_below_threshold_four_is_nan_not_an_error():
    # beta2 = 0.9: rho_inf = 19; at t = 3, rho_t = 19 - 6 * 0.729 / 0.271 = 2.86, between 2 and
    # 4, so with a threshold of 1 the rectification's square root has a negative argument
    r = rho(3.0, 0.9, threshold=1.0)
    assert r["rho_t"] == pytest.approx(19 - 6 * 0.729 / 0.271)
    assert r["rectified"] and math.isnan(r["r_t"])
