"""Monitor: recorded statistics against exact answers computed by hand."""

import math

import pytest
import torch
from torch import nn

import unstuck
from unstuck.diagnose.effective_lr import rho
from unstuck.diagnose.monitor import Monitor, read_jsonl


def mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))


def batch(seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(16, 4, generator=g), torch.randint(0, 3, (16,), generator=g)


def train(model, opt, monitor, steps, check=None, after=None):
    """``steps`` steps on one batch; ``check()`` before each observe, ``after()`` after each
    step."""
    x, y = batch()
    for _ in range(steps):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        if check is not None:
            check()
        monitor.observe(loss)
        opt.step()
        if after is not None:
            after()


def test_grad_weight_update_norms_exact():
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    expected = []

    def check():
        params = dict(model.named_parameters())
        expected.append({
            "total": torch.nn.utils.get_total_norm([p.grad for p in params.values()]).item(),
            "grad": {n: p.grad.norm().item() for n, p in params.items()},
            "weight": {n: p.norm().item() for n, p in params.items()},
            "before": {n: p.detach().clone() for n, p in params.items()},
        })

    with Monitor(model, opt, effective_lr_every=1) as monitor:
        train(model, opt, monitor, 5, check)
        history = monitor.history
    last = {n: p.detach() for n, p in model.named_parameters()}
    after = [e["before"] for e in expected[1:]] + [last]
    assert [r["step"] for r in history] == [0, 1, 2, 3, 4]
    for r, e, a in zip(history, expected, after, strict=True):
        # float32 norms of the same numbers, reduced in another order (the monitor reduces
        # buffered copies in batches; the total is summed in float64): equal to float32 rounding
        assert r["grad_norm"] == pytest.approx(e["total"], rel=1e-6)
        for name, layer in r["layers"].items():
            assert layer["grad_norm"] == pytest.approx(e["grad"][name], rel=1e-6)
            assert layer["weight_norm"] == pytest.approx(e["weight"][name], rel=1e-6)
            change = (a[name] - e["before"][name]).norm().item()
            assert layer["update_norm"] == pytest.approx(change, rel=1e-6)
            assert layer["update_ratio"] == pytest.approx(change / e["weight"][name], rel=1e-6)
    # cosine between consecutive updates, by hand
    u = [{n: a[n] - e["before"][n] for n in a} for e, a in zip(expected, after, strict=True)]
    for k in range(1, 5):
        for name in u[k]:
            want = torch.nn.functional.cosine_similarity(
                u[k][name].flatten(), u[k - 1][name].flatten(), dim=0).item()
            assert history[k]["layers"][name]["update_cosine"] == pytest.approx(want, abs=1e-5)
    assert history[0]["update_cosine"] is None


class Valley(nn.Module):
    def __init__(self):
        super().__init__()
        self.xy = nn.Parameter(torch.tensor([1.0, 1.0]))

    def forward(self):
        return 50 * self.xy[0] ** 2 + self.xy[1] ** 2


def test_negative_cosine_on_oscillating_valley():
    model = Valley()
    opt = torch.optim.SGD(model.parameters(), lr=0.019)  # x <- -0.9 x: it oscillates
    with Monitor(model, opt, effective_lr_every=1) as monitor:
        for _ in range(10):
            opt.zero_grad()
            loss = model()
            loss.backward()
            monitor.observe(loss)
            opt.step()
        history = monitor.history
        summary = monitor.summary()
    assert all(r["update_cosine"] < -0.5 for r in history[1:])
    assert summary["negative_cosine_fraction"] == 1.0


def _adam_by_hand(opt, p):
    state, group = opt.state[p], opt.param_groups[0]
    t = float(state["step"])
    v = state["max_exp_avg_sq"] if group.get("amsgrad") else state["exp_avg_sq"]
    return group["lr"] / ((v / (1 - group["betas"][1] ** t)).sqrt() + group["eps"])


def _check_effective(make, by_hand, steps=4):
    model = mlp()
    opt = make(model.parameters())
    with Monitor(model, opt, effective_lr_every=1) as monitor:
        x, y = batch()
        for k in range(steps):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            monitor.observe()
            opt.step()
            r = monitor.history[k]
            effs = {}
            for name, p in model.named_parameters():
                e = by_hand(opt, p)
                effs[name] = e
                got = r["effective_lr"]["layers"][list(r["layers"]).index(name)]
                assert got["min"] == pytest.approx(e.min().item(), rel=1e-5)
                assert got["max"] == pytest.approx(e.max().item(), rel=1e-5)
                assert got["median"] == pytest.approx(e.flatten().median().item(), rel=1e-5)
            allv = torch.cat([e.flatten() for e in effs.values()])
            assert r["effective_lr"]["median"] == pytest.approx(allv.median().item(), rel=1e-5)
            assert r["effective_lr"]["min"] == pytest.approx(allv.min().item(), rel=1e-5)


def test_effective_lr_batched_over_rows_with_groups_of_different_lr():
    # two groups, two scales: the statistics of several buffered rows are taken row by row
    model = mlp()
    first, second = list(model.parameters())[:2], list(model.parameters())[2:]
    opt = torch.optim.Adam([{"params": first}, {"params": second, "lr": 0.001}], lr=0.01)
    by_step = []

    def by_hand():
        effs = []
        for p in model.parameters():
            state, group = opt.state[p], next(
                g for g in opt.param_groups if any(q is p for q in g["params"]))
            v, t = state["exp_avg_sq"], float(state["step"])
            effs.append(group["lr"] / ((v / (1 - 0.999**t)).sqrt() + group["eps"]))
        by_step.append(effs)

    with Monitor(model, opt, effective_lr_every=1) as monitor:
        train(model, opt, monitor, 5, after=by_hand)
        history = monitor.history
    for record, effs in zip(history, by_step, strict=True):
        for got, e in zip(record["effective_lr"]["layers"], effs, strict=True):
            assert got["median"] == pytest.approx(e.flatten().median().item(), rel=1e-5)
            assert got["max"] == pytest.approx(e.max().item(), rel=1e-5)
        allv = torch.cat([e.flatten() for e in effs])
        assert record["effective_lr"]["median"] == pytest.approx(allv.median().item(), rel=1e-5)


@pytest.mark.parametrize("make", [
    lambda p: torch.optim.Adam(p, lr=0.01),
    lambda p: unstuck.Adam(p, lr=0.01),
    lambda p: torch.optim.AdamW(p, lr=0.01, amsgrad=True),
    lambda p: unstuck.Lookahead(unstuck.AdamW(p, lr=0.01)),
])
def test_effective_lr_adam(make):
    _check_effective(make, lambda opt, p: _adam_by_hand(getattr(opt, "optimizer", opt), p))


@pytest.mark.parametrize("cls", [torch.optim.Adagrad, unstuck.Adagrad])
def test_effective_lr_adagrad(cls):
    def by_hand(opt, p):
        state, group = opt.state[p], opt.param_groups[0]
        clr = group["lr"] / (1 + (float(state["step"]) - 1) * group["lr_decay"])
        return clr / (state["sum"].sqrt() + group["eps"])

    _check_effective(lambda p: cls(p, lr=0.1, lr_decay=0.01), by_hand)


@pytest.mark.parametrize("cls", [torch.optim.RMSprop, unstuck.RMSprop])
@pytest.mark.parametrize("centered", [False, True])
def test_effective_lr_rmsprop(cls, centered):
    def by_hand(opt, p):
        state, group = opt.state[p], opt.param_groups[0]
        sq = state["square_avg"]
        if centered:
            sq = sq - state["grad_avg"] ** 2
        return group["lr"] / (sq.sqrt() + group["eps"])

    _check_effective(lambda p: cls(p, lr=0.01, centered=centered), by_hand)


@pytest.mark.parametrize("make", [
    lambda p: torch.optim.RAdam(p, lr=0.01),
    lambda p: unstuck.RAdam(p, lr=0.01),
    lambda p: unstuck.Ranger(p, lr=0.01),
])
def test_radam_rectification(make):
    model = mlp()
    opt = make(model.parameters())
    beta2 = opt.param_groups[0]["betas"][1]
    with Monitor(model, opt, effective_lr_every=1) as monitor:
        train(model, opt, monitor, 8)
        history = monitor.history
    for r in history:
        t = r["step"] + 1
        rho_inf = 2 / (1 - beta2) - 1
        rho_t = rho_inf - 2 * t * beta2**t / (1 - beta2**t)
        assert r["rectification"]["rho_t"] == pytest.approx(rho_t, rel=1e-12)
        assert r["rectification"]["rectified"] == (rho_t > 5)
    flags = [r["rectification"]["rectified"] for r in history]
    assert flags[0] is False and flags[-1] is True
    assert rho(6, 0.999)["rectified"] is True and rho(5, 0.999)["rectified"] is False


def test_no_state_and_sgd_effective_lr_is_none():
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with Monitor(model, opt, effective_lr_every=1) as monitor:
        train(model, opt, monitor, 2)
        assert all(r["effective_lr"] is None for r in monitor.history)
    opt = torch.optim.Adam(model.parameters())
    with Monitor(model, opt, effective_lr_every=1) as monitor:
        x, y = batch()
        nn.functional.cross_entropy(model(x), y).backward()
        monitor.observe()
        assert monitor.history[0]["effective_lr"] is None  # no step yet: no state
        assert monitor.summary()["effective_lr"] is None


def test_nonfinite_grads_named():
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    with Monitor(model, opt, effective_lr_every=1) as monitor:
        train(model, opt, monitor, 2)
        model[2].bias.grad[0] = float("nan")
        monitor.observe(1.0)
        opt.step()
        assert monitor.history[-1]["nonfinite_grads"] == ["2.bias"]
        assert monitor.summary()["nonfinite_grads"] == {"2.bias": 2}


def test_forward_hook_names_first_nonfinite_module():
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    with Monitor(model, opt, watch_forward=True, effective_lr_every=1) as monitor:
        train(model, opt, monitor, 1)
        assert monitor.history[0]["nonfinite_forward"] is None
        with torch.no_grad():
            model[0].weight[0, 0] = float("inf")
        train(model, opt, monitor, 1)
        assert monitor.history[1]["nonfinite_forward"] == "0"
        assert monitor.summary()["nonfinite_forward"] == {"module": "0", "step": 1}


def test_jsonl_round_trip(tmp_path):
    model = mlp()
    opt = torch.optim.Adam(model.parameters())
    with Monitor(model, opt, effective_lr_every=1) as monitor:
        train(model, opt, monitor, 3)
        monitor.observe(float("nan"))
        path = monitor.to_jsonl(tmp_path / "m.jsonl")
        back = read_jsonl(path)
        assert back[:3] == monitor.history[:3]
        assert math.isnan(back[3]["loss"])
        with pytest.raises(FileExistsError, match="overwrite"):
            monitor.to_jsonl(path)
        monitor.to_jsonl(path, overwrite=True)
        assert [p.name for p in tmp_path.iterdir()] == ["m.jsonl"]


def test_summary_keys():
    model = mlp()
    opt = unstuck.RAdam(model.parameters())
    with Monitor(model, opt, effective_lr_every=1) as monitor:
        train(model, opt, monitor, 8)
        s = monitor.summary()
    assert set(s) == {
        "steps", "last_loss", "loss_trend", "grad_norm", "update_ratio_spread",
        "negative_cosine_fraction", "nonfinite_grads", "nonfinite_forward", "effective_lr",
        "rectified_fraction",
    }
    assert s["steps"] == 8 and s["loss_trend"] < 0
    assert s["rectified_fraction"] == pytest.approx(3 / 8)
    assert s["update_ratio_spread"]["max_over_min"] >= 1


def test_every_samples_every_third_step():
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with Monitor(model, opt, every=3, effective_lr_every=1) as monitor:
        train(model, opt, monitor, 10)
        history = monitor.history
    assert [r["step"] for r in history] == [0, 3, 6, 9]
    assert all(r["update_norm"] > 0 for r in history)
    assert all(r["update_cosine"] is not None for r in history[1:])


def test_history_is_bounded():
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with Monitor(model, opt, history=3, effective_lr_every=1) as monitor:
        train(model, opt, monitor, 6)
        assert [r["step"] for r in monitor.history] == [3, 4, 5]


def test_bad_inputs():
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    frozen = nn.Linear(2, 2).requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        Monitor(frozen, opt)
    with pytest.raises(ValueError, match="every must be"):
        Monitor(model, opt, every=0)
    with pytest.raises(ValueError, match="unknown"):
        Monitor(model, opt, names=["nope"])
    with pytest.raises(TypeError, match="optimizer"):
        Monitor(model, object())
    with Monitor(model, opt) as monitor, pytest.raises(ValueError, match="scalar"):
        monitor.observe(torch.ones(3))


def test_close_removes_hooks():
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    monitor = Monitor(model, opt, watch_forward=True)
    monitor.close()
    monitor.close()
    assert not model[0]._forward_hooks and not opt._optimizer_step_post_hooks


@pytest.mark.parametrize("options,steps,with_lr", [
    ({"effective_lr_every": 3}, 7, [0, 3, 6]),
    ({"every": 2}, 45, [0, 20, 40]),  # by default on every tenth sampled record
])
def test_effective_lr_every_skips_records(options, steps, with_lr):
    model = mlp()
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    with Monitor(model, opt, **options) as monitor:
        train(model, opt, monitor, steps)
        history = monitor.history
    assert [r["step"] for r in history if r["effective_lr"] is not None] == with_lr
    with pytest.raises(ValueError, match="effective_lr_every must be"):
        Monitor(model, opt, effective_lr_every=0)


def _records(make_opt, every, max_rows, monkeypatch, steps=11, read_at=5):
    """History of a short Adam/SGD run with the row buffers capped at ``max_rows``."""
    from unstuck.diagnose import flat_rows

    monkeypatch.setattr(flat_rows, "MAX_ROWS", max_rows)
    model = mlp()
    opt = make_opt(model.parameters())
    with Monitor(model, opt, every=every, effective_lr_every=1) as monitor:
        train(model, opt, monitor, read_at)
        assert monitor.history  # reading mid-run must not disturb what follows
        train(model, opt, monitor, steps - read_at)
        return monitor.history


@pytest.mark.parametrize("every", [1, 2, 3])
@pytest.mark.parametrize("make_opt", [
    lambda p: torch.optim.Adam(p, lr=0.01),
    lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9),
])
def test_buffer_size_does_not_change_the_records(make_opt, every, monkeypatch):
    reference = _records(make_opt, every, 1, monkeypatch)
    assert [r["step"] for r in reference] == list(range(0, 11, every))
    for max_rows in (2, 3, 64):
        got = _records(make_opt, every, max_rows, monkeypatch)
        assert got == reference, max_rows


def test_sparse_complex_missing_and_mixed_dtype_parameters():
    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = nn.Embedding(10, 3, sparse=True)
            self.z = nn.Parameter(torch.tensor([1.0 + 2.0j, -1.0j]))
            self.w64 = nn.Parameter(torch.ones(3, dtype=torch.float64))
            self.unused = nn.Parameter(torch.ones(2))

        def forward(self, index):
            e = self.embedding(index).sum()
            return e * e + (self.z.abs() ** 2).sum() + (self.w64 ** 2).sum().float()

    model = Odd()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with Monitor(model, opt, effective_lr_every=1) as monitor:
        for _ in range(3):
            opt.zero_grad()
            loss = model(torch.tensor([1, 2, 2]))
            loss.backward()
            expected = {n: p.grad.to_dense().norm().item() for n, p in model.named_parameters()
                        if p.grad is not None}
            z_norm = model.z.detach().norm().item()  # before the step: what the record holds
            monitor.observe(loss)
            opt.step()
        record = monitor.history[-1]
    layers = record["layers"]
    assert layers["unused"]["grad_norm"] is None
    for name, norm in expected.items():
        assert layers[name]["grad_norm"] == pytest.approx(norm, rel=1e-6)
    total = math.sqrt(sum(v * v for v in expected.values()))
    assert record["grad_norm"] == pytest.approx(total, rel=1e-6)
    assert layers["z"]["weight_norm"] == pytest.approx(z_norm, rel=1e-6)
    assert record["nonfinite_grads"] == []


def test_non_contiguous_parameter_takes_the_slow_copy_and_stays_exact():
    class Transposed(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.randn(3, 4).t())  # (4, 3), not contiguous
            self.b = nn.Parameter(torch.zeros(3))

        def forward(self, x):
            return x @ self.w + self.b

    torch.manual_seed(0)
    model = Transposed()
    assert not model.w.is_contiguous()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(5, 4)
    expected = []
    with Monitor(model, opt) as monitor:
        for _ in range(3):
            opt.zero_grad()
            model(x).pow(2).mean().backward()
            expected.append((model.w.grad.norm().item(), model.w.norm().item()))
            monitor.observe()
            opt.step()
        history = monitor.history
    for record, (grad, weight) in zip(history, expected, strict=True):
        assert record["layers"]["w"]["grad_norm"] == pytest.approx(grad, rel=1e-6)
        assert record["layers"]["w"]["weight_norm"] == pytest.approx(weight, rel=1e-6)
    assert history[0]["layers"]["w"]["update_norm"] == pytest.approx(
        0.1 * expected[0][0], rel=1e-5)


def test_records_each_groups_learning_rate_as_the_scheduler_sets_it():
    model = mlp()
    first, rest = list(model.parameters())[:2], list(model.parameters())[2:]
    opt = torch.optim.Adam([{"params": first}, {"params": rest, "lr": torch.tensor(0.002)}],
                           lr=0.01)
    scheduler = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: (step + 1) / 4)
    with Monitor(model, opt) as monitor:
        train(model, opt, monitor, 3, after=scheduler.step)
        history = monitor.history
    assert [r["lr"] for r in history] == [
        pytest.approx([0.01 * k / 4, 0.002 * k / 4]) for k in (1, 2, 3)]
    assert all(type(v) is float for r in history for v in r["lr"])


def test_one_element_complex_parameter_keeps_its_imaginary_part():
    z = nn.Parameter(torch.tensor([3.0 + 4.0j]))
    model = nn.Module()
    model.z = z
    opt = torch.optim.SGD([z], lr=0.1)
    with Monitor(model, opt) as monitor:
        opt.zero_grad()
        (z.abs() ** 2).sum().backward()  # gradient 2z: |2z| = 10
        monitor.observe()
        opt.step()
        record = monitor.history[0]
    assert record["layers"]["z"]["grad_norm"] == pytest.approx(10.0)
    assert record["layers"]["z"]["weight_norm"] == pytest.approx(5.0)
