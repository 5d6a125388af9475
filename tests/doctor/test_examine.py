"""examine(): copies or in-place training, the user's loop options, checks, fixes tried, and
models and losses that must never make it raise."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from unstuck.doctor import examine
from unstuck.doctor.trials import FIXES


def data(seed: int = 0, n: int = 64):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g)
    return x, x @ torch.tensor([[1.0], [-2.0], [0.5]])


def classes(n: int = 32, features: int = 4, k: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, features, generator=g), torch.arange(n) % k


def clean(notes: list[str]) -> bool:
    """No check failed: no note carries an exception's words."""
    return not any("could not run" in n or "Error" in n or "raised" in n for n in notes)


# ----------------------------------------------------------------------------- copies
def test_trains_in_place_with_given_optimizer_and_batches():
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    before = model.weight.detach().clone()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    x, y = data()
    batches = [(x[:32], y[:32]), (x[32:], y[32:])]
    d = examine(model, F.mse_loss, batches, val_data=batches, optimizer=opt, steps=40,
                in_place=True)
    assert not torch.equal(model.weight, before)  # trained in place
    assert len(d.train_loss) == 40 and d.train_loss[-1] < d.train_loss[0]
    assert d.val_steps[-1] == 39 and len(d.val_loss) == len(d.val_steps)
    assert d.history is not None and len(d.history) == 40


def test_default_trains_a_copy_and_leaves_model_optimizer_and_scheduler_untouched():
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    before = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    sched = torch.optim.lr_scheduler.StepLR(opt, 10, gamma=0.5)
    d = examine(model, F.mse_loss, data(), optimizer=opt, scheduler=sched, steps=30)
    assert d.train_loss[-1] < d.train_loss[0]  # the copy trained
    assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before))
    assert all(p.grad is None for p in model.parameters())
    assert opt.state_dict()["state"] == {}  # no momentum buffer: never stepped
    assert opt.param_groups[0]["lr"] == 0.05 and sched.last_epoch == 0
    assert opt.param_groups[0]["params"] == list(model.parameters())
    # in place, the same call trains them
    examine(model, F.mse_loss, data(), optimizer=opt, scheduler=sched, steps=30, in_place=True,
            checks=False)
    assert not torch.equal(model.weight, before[0]) and sched.last_epoch == 30
    assert opt.state_dict()["state"]


# ----------------------------------------------------------------------------- the user's loop
def test_scheduler_instance_and_factory_are_stepped():
    for make in (lambda o: torch.optim.lr_scheduler.StepLR(o, 5, gamma=0.0), None):
        torch.manual_seed(0)
        model = nn.Linear(3, 1)
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
        scheduler = make or torch.optim.lr_scheduler.StepLR(opt, 5, gamma=0.0)
        d = examine(model, F.mse_loss, data(), optimizer=opt, scheduler=scheduler, steps=12,
                    checks=False, probe_hessian=False)
        assert d.train_loss[1] < d.train_loss[0]
        assert len(set(d.train_loss[5:])) == 1  # lr 0 from step 5: the loss stands still
    with pytest.raises(ValueError, match="scheduler must drive"):
        other = torch.optim.SGD(nn.Linear(3, 1).parameters(), lr=0.1)
        examine(nn.Linear(3, 1), F.mse_loss, data(),
                scheduler=torch.optim.lr_scheduler.StepLR(other, 5))
    with pytest.raises(TypeError, match="scheduler"):
        examine(nn.Linear(3, 1), F.mse_loss, data(), scheduler=lambda o: 42)


def test_clip_grad_norm_and_step_hook_act_on_the_copy():
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    seen = []
    d = examine(model, F.mse_loss, data(), optimizer=lambda p: torch.optim.SGD(p, lr=0.01),
                steps=10, clip_grad_norm=0.01, step_hook=lambda m, s: seen.append((m, s)),
                checks=False, probe_hessian=False)
    assert [s for _, s in seen] == list(range(10))
    assert all(m is not model and isinstance(m, nn.Linear) for m, _ in seen)
    assert max(r["grad_norm"] for r in d.history) <= 0.01 * (1 + 1e-4)
    with pytest.raises(ValueError, match="clip_grad_norm"):
        examine(model, F.mse_loss, data(), clip_grad_norm=-1.0)
    with pytest.raises(ValueError, match="probe_budget"):
        examine(model, F.mse_loss, data(), probe_budget=math.inf)


def test_try_fixes_puts_measured_trials_on_the_failing_verdict():
    torch.manual_seed(0)
    d = examine(nn.Linear(3, 1), F.mse_loss, data(),
                optimizer=lambda p: torch.optim.SGD(p, lr=1e-3), steps=40, try_fixes=True)
    slow = next(v for v in d.verdicts if v.code == "lr_too_small")
    assert slow.confidence == 0.9  # the lr probes confirmed it
    assert [t["fix"] for t in slow.trials] == ["lr x10", "lr x3"]
    for t in slow.trials:
        assert {"fix", "score_before", "score_after", "helped"} <= set(t)
        assert t["helped"] and t["score_after"] < t["score_before"]
    scores = [t["score_after"] for t in slow.trials]
    assert scores == sorted(scores)
    assert next(v for v in d.to_dict()["verdicts"] if v["code"] == "lr_too_small")["trials"]
    plain = examine(nn.Linear(3, 1), F.mse_loss, data(),
                    optimizer=lambda p: torch.optim.SGD(p, lr=1e-3), steps=40)
    assert all(not v.trials for v in plain.verdicts)


# ----------------------------------------------------------------------------- argument checks
def test_errors_name_the_argument():
    x, y = data()
    model = nn.Linear(3, 1)
    with pytest.raises(ValueError, match="steps"):
        examine(model, F.mse_loss, (x, y), steps=0)
    with pytest.raises(ValueError, match="batch_size"):
        examine(model, F.mse_loss, (x, y), batch_size=0)
    with pytest.raises(ValueError, match="reference"):
        examine(model, F.mse_loss, (x, y), reference="shallow")
    with pytest.raises(ValueError, match="optimizer must be bound"):
        examine(model, F.mse_loss, (x, y), optimizer=torch.optim.SGD(nn.Linear(3, 1).parameters()))
    with pytest.raises(TypeError, match="train_data"):
        examine(model, F.mse_loss, 42, steps=2)
    with pytest.raises(TypeError, match="model"):
        examine("model", F.mse_loss, (x, y))


# ----------------------------------------------------------------------------- never raises
def test_stops_on_nonfinite_loss_and_says_so():
    x, y = data()
    x[0, 0] = float("nan")
    d = examine(nn.Linear(3, 1), F.mse_loss, (x, y), steps=50, reference=None)
    assert d.top.code == "nonfinite"
    assert len(d.train_loss) == 3
    assert any("stopped at step 3" in n for n in d.notes)


def test_huge_learning_rate_is_a_finding_not_an_exception():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))
    d = examine(model, F.cross_entropy, classes(),
                optimizer=lambda p: torch.optim.SGD(p, lr=1e3), steps=30, try_fixes=True)
    assert d.top.code in ("nonfinite", "divergence")
    fixable = [v for v in d.verdicts if v.code in FIXES]
    assert fixable and all(v.trials for v in fixable)
    for t in (t for v in fixable for t in v.trials):
        assert {"fix", "score_before", "score_after", "helped", "diverged"} <= set(t)
        assert not (t["diverged"] and t["helped"])  # a fix that diverged never helped


class ForcedLogit(nn.Module):
    """A classifier whose logit for class 0 is -1e4: softmax underflows to exactly 0 there."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        out = self.fc(x)
        return torch.cat([torch.full_like(out[:, :1], -1e4), out[:, 1:]], dim=1)


def naive_cross_entropy(out, y):
    return -(torch.log(torch.softmax(out, dim=1))[torch.arange(len(y)), y]).mean()


def test_log_of_softmax_underflow_is_a_nonfinite_finding():
    torch.manual_seed(0)
    d = examine(ForcedLogit(), naive_cross_entropy, classes(), steps=20)
    assert d.top.code == "nonfinite"
    assert math.isinf(d.train_loss[0]) and len(d.train_loss) == 3
    assert d.top.evidence["first_nonfinite_loss_step"] == 0
    # log(0) broke the gradient of both parameters at step 0: no single parameter is to blame
    assert "every parameter" in d.top.message


def test_log_of_softmax_underflow_is_blamed_on_the_loss_function():
    torch.manual_seed(0)
    d = examine(ForcedLogit(), naive_cross_entropy, classes(), steps=20)
    assert d.top.code == "nonfinite"
    assert d.top.evidence["source"] == "loss function"
    assert "log_softmax" in d.top.fixes[0]


class TinyTransformer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        layer = nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, dropout=0.0,
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, 1, enable_nested_tensor=False)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        return self.head(self.encoder(x).mean(1))


class TinyGRU(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn, self.head = nn.GRU(8, 8, batch_first=True), nn.Linear(8, 3)

    def forward(self, x):
        return self.head(self.rnn(x)[0][:, -1])


@pytest.mark.parametrize("make", [TinyTransformer, TinyGRU])
def test_sequence_models_are_probed_without_raw_errors(make):
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(16, 5, 8, generator=g), torch.arange(16) % 3
    # lr 0: a plateau at a large loss, so every check and the Hessian probe run
    d = examine(make(), F.cross_entropy, (x, y), val_data=(x, y),
                optimizer=lambda p: torch.optim.SGD(p, lr=0.0), steps=8, probe_budget=20.0)
    assert d.critical_point is not None and d.critical_point["verdict"]
    assert clean(d.notes), d.notes
