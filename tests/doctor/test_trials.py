"""Runs of a recipe with one change (trials.py): lr scaling, other models, broken variants,
mechanical fixes."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from unstuck.doctor.evidence import RunOutcome
from unstuck.doctor.trials import FIXES, Change, Recipe, batches, scale_lr, try_fixes


def data(n: int = 32):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, generator=g)
    return x, x @ torch.tensor([[1.0], [-2.0], [0.5]])


def recipe(model=None, lr=0.05, steps=20, scheduler=None, **kwargs) -> Recipe:
    torch.manual_seed(0)
    model = model or nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    sched = scheduler(opt) if scheduler else None
    return Recipe(model, opt, sched, F.mse_loss, data(), None, 0, steps, **kwargs)


def test_scale_lr_scales_every_lr_of_the_groups_and_the_schedulers_base_lrs():
    model = nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=5)
    scale_lr(opt, sched, 3.0)
    group = opt.param_groups[0]
    assert group["lr"] == pytest.approx(0.3) and group["initial_lr"] == pytest.approx(0.3)
    assert sched.base_lrs == pytest.approx([0.3])
    cycle_opt = torch.optim.SGD(model.parameters(), lr=0.1)
    cycle = torch.optim.lr_scheduler.OneCycleLR(cycle_opt, max_lr=1.0, total_steps=10)
    before = dict(cycle_opt.param_groups[0])
    scale_lr(cycle_opt, cycle, 0.1)
    after = cycle_opt.param_groups[0]
    for key in ("lr", "initial_lr", "max_lr", "min_lr"):
        assert after[key] == pytest.approx(before[key] * 0.1)
    assert after["momentum"] == before["momentum"]
    plain = torch.optim.SGD(model.parameters(), lr=0.1)
    scale_lr(plain, None, 10.0)
    assert plain.param_groups[0]["lr"] == pytest.approx(1.0)
    assert "initial_lr" not in plain.param_groups[0]


def test_recipe_keeps_the_start_and_runs_copies():
    r = recipe()
    model, opt, _ = r.fresh()
    start = model.weight.detach().clone()
    base = r.run(Change("as is"))
    assert base.steps == 20 and not base.diverged and len(base.train_loss) == 20
    assert base.train_loss[-1] < base.train_loss[0]
    again, _, _ = r.fresh()
    assert torch.equal(again.weight, start)  # the runs trained copies
    assert r.run(Change("as is")).train_loss == base.train_loss  # same batches, same result
    faster = r.run(Change("lr x3", 3.0))
    assert faster.train_loss_end < base.train_loss_end
    assert r.fresh()[1].param_groups[0]["lr"] == 0.05


def test_recipe_run_with_another_model_uses_the_same_optimizer_settings():
    r = recipe(lr=0.05)
    other = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1))
    seen = []
    out = r.run(Change("reference: mlp", model=other,
                       edit=lambda m, o: seen.append((m, type(o), o.param_groups[0]["lr"]))))
    assert seen == [(other, torch.optim.SGD, 0.05)]
    assert out.label == "reference: mlp" and out.steps == 20 and not out.diverged
    assert math.isfinite(out.train_loss_end)


def test_recipe_run_with_another_model_keeps_the_schedule():
    # the lr drops to 0 after 5 steps: the other model stops moving there too
    r = recipe(scheduler=lambda o: torch.optim.lr_scheduler.StepLR(o, 5, gamma=0.0))
    for change in (Change("reference", model=nn.Linear(3, 1)),
                   Change("reference", model=nn.Linear(3, 1),
                          optimizer=lambda p: torch.optim.SGD(p, lr=0.05))):
        out = r.run(change)
        assert not out.diverged and out.steps == 20
        assert out.train_loss[1] < out.train_loss[0]
        assert len(set(out.train_loss[5:])) == 1


def test_a_failing_variant_is_a_diverged_outcome_not_an_exception():
    wrong = nn.Linear(5, 1)  # the data have 3 features
    out = recipe().run(Change("reference: wrong", model=wrong))
    assert out.diverged and "failed" in out.label and out.score == math.inf
    assert math.isnan(out.train_loss_end)


def test_nonfinite_losses_stop_the_run_and_count_as_diverged():
    out = recipe(lr=10.0, steps=200).run(Change("lr x100", 100.0))
    assert out.diverged and out.steps < 200 and out.score == math.inf


def test_recipe_applies_clipping_and_the_step_hook():
    calls = []
    r = recipe(step_hook=lambda model, step: calls.append(step), clip_grad_norm=1e-3, steps=5)
    clipped = r.run(Change("clip"))
    assert calls == list(range(5))
    free = recipe(steps=5).run(Change("free"))
    assert free.train_loss_end < clipped.train_loss_end  # tiny clipped steps barely move


def test_try_fixes_measures_each_fix_and_sorts_best_first():
    r = recipe(lr=1e-4)  # far too small
    own = r.run(Change("this run"))
    trials = try_fixes(r, "lr_too_small", {}, own)
    assert [t["fix"] for t in trials] == ["lr x10", "lr x3"]  # best first
    assert [t["score_after"] for t in trials] == sorted(t["score_after"] for t in trials)
    for t in trials:
        assert t["score_before"] == own.score and t["helped"] == (t["score_after"] < own.score)
        assert t["helped"]
    worse = try_fixes(r, "lr_too_large", {}, own)
    assert worse and not any(t["helped"] for t in worse)
    assert try_fixes(r, "overfitting", {}, own) == []
    assert set(FIXES) < {"nonfinite", "divergence", "lr_too_large", "adagrad_blowup",
                         "exploding_gradients", "needs_warmup", "oscillation", "symmetric_init",
                         "saddle_point", "dead_units", "lr_too_small", "local_minimum"}


def test_every_mechanical_fix_runs():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
    r = recipe(model=model, steps=3)
    own = RunOutcome("this run", 1.0, None, False, 3)
    for code in FIXES:
        trials = try_fixes(r, code, {"clip_grad_norm": 2.0}, own)
        assert trials and all("failed" not in t["fix"] for t in trials), code
        assert all(not t["diverged"] for t in trials), code


def test_try_fixes_reads_runs_already_measured():
    r = recipe(model=nn.Linear(3, 1), steps=3)
    own = RunOutcome("this run", 1.0, None, False, 3)
    probe = RunOutcome("lr x0.1", 0.25, None, False, 3)
    ran = []
    run = r.run
    r.run = lambda change: ran.append(change.label) or run(change)
    trials = try_fixes(r, "lr_too_large", {}, own, {"lr x0.1": probe})
    assert ran == ["lr x0.3"]  # lr x0.1 was read, not run again
    assert next(t for t in trials if t["fix"] == "lr x0.1")["score_after"] == 0.25


def test_batches_are_seeded_and_cycled():
    x, y = data(10)
    a = [b[1] for b, _ in zip(batches("d", (x, y), 4, seed=1), range(5))]
    b = [b[1] for b, _ in zip(batches("d", (x, y), 4, seed=1), range(5))]
    assert all(torch.equal(p, q) for p, q in zip(a, b))
    listed = [(x[:5], y[:5]), (x[5:], y[5:])]
    got = [b[0] for b, _ in zip(batches("d", listed, None, 0), range(3))]
    assert torch.equal(got[2], x[:5])  # cycled
    with pytest.raises(ValueError, match="no batch"):
        next(batches("d", [], None, 0))
    with pytest.raises(ValueError, match="at least one"):
        next(batches("d", (x[:0], y[:0]), 4, 0))


def test_reduce_on_plateau_steps_on_the_training_loss():
    from unstuck.doctor import examine

    torch.manual_seed(0)
    x = torch.randn(64, 3)
    y = x @ torch.ones(3, 1)
    model = torch.nn.Linear(3, 1)
    d = examine(model, torch.nn.functional.mse_loss, (x, y), steps=30, checks=False,
                probe_hessian=False,
                scheduler=lambda opt: torch.optim.lr_scheduler.ReduceLROnPlateau(opt, patience=2))
    assert len(d.train_loss) == 30
