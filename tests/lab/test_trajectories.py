"""Trajectories on error surfaces: the lectures' lessons, asserted on the recorded numbers."""

from __future__ import annotations

import math

import pytest

from unstuck.lab.optimizer_specs import parse_optimizer
from unstuck.lab.surfaces import SURFACES
from unstuck.lab.trajectories import (
    DEFAULT_LRS,
    LR_GRID,
    default_lr,
    lr_objective,
    run_trajectory,
    tune_lr,
)

VALLEY, SADDLE = SURFACES["valley"], SURFACES["saddle"]


def run(surface, text: str, steps: int = 300, **options):  # noqa: ANN001, ANN201
    return run_trajectory(surface, parse_optimizer(text), steps=steps, **options)


def largest_rise(loss: tuple[float, ...], after: int = 0) -> float:
    """The largest ratio of a loss to the smallest loss before it (from step ``after``)."""
    low, rise = math.inf, 1.0
    for value in loss[after:]:
        rise = max(rise, value / low) if low > 0 else rise
        low = min(low, value)
    return rise


def test_valley_sgd_bounces_with_a_large_gradient_while_the_loss_plateaus() -> None:
    sgd = run(VALLEY, "sgd")
    assert sgd.lr == DEFAULT_LRS["valley"]["sgd"] and sgd.status == "finished"
    half = len(sgd.loss) // 2
    # stuck: over the second half the loss falls by less than half and stays far above 0 ...
    assert sgd.loss[-1] > 0.5 * sgd.loss[half] and sgd.loss[-1] > 1.0
    # ... yet the gradient is not small: it stays above half its starting norm throughout
    assert min(sgd.grad_norm[half:]) > 0.5 * sgd.grad_norm[0]
    # and the point bounces: y changes sign at every step
    ys = [p[1] for p in sgd.path[half:]]
    assert all(a * b < 0 for a, b in zip(ys, ys[1:], strict=False))
    # with the same steps, Adam's gradient and loss vanish
    adam = run(VALLEY, "adam")
    assert adam.loss[-1] < 1e-6 and adam.grad_norm[-1] < 1e-3


@pytest.mark.parametrize("name", ["rmsprop", "adam", "adamw", "momentum"])
def test_valley_adaptive_and_momentum_methods_reach_the_minimum(name: str) -> None:
    t = run(VALLEY, name)
    assert VALLEY.nearest_minimum(t.final)[1] < 0.01 and t.loss[-1] < 1e-5


def test_valley_adagrad_goes_straight_down_the_wall_then_along_the_floor() -> None:
    t = run(VALLEY, "adagrad", steps=600)
    assert t.loss[-1] < 1e-4
    assert max(abs(p[1]) for p in t.path[30:]) < 1e-6  # no bouncing once on the floor
    assert largest_rise(t.loss) == 1.0  # the loss never rises


def test_lecture_adagrad_blows_up_after_the_long_flat_stretch_and_decay_fixes_it() -> None:
    blown = run(VALLEY, "adagrad_rms", steps=600)
    low_step = min(range(len(blown.loss)), key=blown.loss.__getitem__)
    assert blown.loss[low_step] < 1e-8  # it reached the minimum's neighbourhood ...
    assert max(blown.loss[low_step:]) > 1.0  # ... then the loss jumped up the wall
    assert max(abs(p[1]) for p in blown.path[low_step:]) > 0.5
    fixed = run(VALLEY, "adagrad_rms", steps=600, schedule="exponential(0.99)")
    assert fixed.schedule == "exponential(gamma=0.99)"
    assert largest_rise(fixed.loss, after=100) < 2.0 and fixed.loss[-1] < 1e-12
    # torch's Adagrad divides by the root *sum* square: the 1/sqrt(t) decay is built in
    assert largest_rise(run(VALLEY, "adagrad", steps=600).loss) == 1.0


def test_saddle_gradient_descent_stalls_while_momentum_escapes() -> None:
    gd = run(SADDLE, "sgd")
    momentum = run(SADDLE, "momentum")
    assert gd.lr == momentum.lr == 0.01
    assert gd.status == "finished" and abs(gd.final[1]) < 0.5 and abs(gd.final[0]) < 0.01
    assert min(gd.grad_norm) < 0.15  # parked near the critical point, the gradient vanishes
    assert momentum.status == "escaped" and len(momentum.loss) < 200
    assert momentum.loss[-1] < -100


def test_saddle_exactly_on_the_ridge_only_noise_escapes() -> None:
    plain = run(SADDLE, "sgd", start=(1.5, 0.0))
    assert plain.final[1] == 0.0 and abs(plain.final[0]) < 0.01 and plain.grad_norm[-1] < 0.01
    assert run(SADDLE, "momentum", start=(1.5, 0.0)).final[1] == 0.0
    noisy = run(SADDLE, "sgd", start=(1.5, 0.0), noise=0.05, seed=1)
    assert abs(noisy.final[1]) > 0.5 and noisy.loss[-1] < -0.25
    assert noisy.noise == 0.05
    # seeded: the same run twice is the same path, and the gradient norm recorded is noise-free
    assert run(SADDLE, "sgd", start=(1.5, 0.0), noise=0.05, seed=1).path == noisy.path
    x, y = noisy.path[10]
    assert noisy.grad_norm[10] == pytest.approx(math.hypot(2 * x, 2 * y))


def test_divergence_stops_the_record_and_is_flagged() -> None:
    t = run(VALLEY, "sgd(lr=0.25)")
    assert t.status == "diverged" and t.diverged and len(t.loss) < 301
    assert all(math.isfinite(v) for v in (*t.loss, *t.grad_norm))
    assert lr_objective(VALLEY, t) == math.inf


def test_learning_rate_precedence() -> None:
    assert run(VALLEY, "sgd(lr=0.05)", steps=2, lr=0.01).lr == 0.05
    assert run(VALLEY, "sgd", steps=2, lr=0.01).lr == 0.01
    assert run(VALLEY, "sgd", steps=2).lr == default_lr(VALLEY, parse_optimizer("sgd"))
    assert default_lr(VALLEY, parse_optimizer("torch.adam")) == DEFAULT_LRS["valley"]["adam"]
    assert run(VALLEY, "sgd", steps=2).label == "sgd, lr=0.1999"


def test_schedule_drives_the_learning_rate() -> None:
    t = run(VALLEY, "sgd(lr=0.1)", steps=10, schedule="linear(10)")
    assert t.lrs[0] == pytest.approx(0.1) and t.lrs[5] == pytest.approx(0.05)
    assert len(t.lrs) == 10 and len(t.path) == len(t.loss) == len(t.grad_norm) == 11


@pytest.mark.parametrize("text", ["torch.sgd(lr=0.1999)", "torch.lbfgs", "torch.adam(lr=0.1)",
                                  "ranger", "lars", "rangerlars", "nesterov"])
def test_torch_and_other_optimizers_run(text: str) -> None:
    t = run(VALLEY, text, steps=30)
    assert t.status == "finished" and t.loss[-1] < t.loss[0]


def test_torch_sgd_matches_unstuck_sgd() -> None:
    ours, theirs = run(VALLEY, "sgd", steps=50), run(VALLEY, "torch.sgd(lr=0.1999)", steps=50)
    flat = [c for p in ours.path for c in p]
    assert [c for p in theirs.path for c in p] == pytest.approx(flat, rel=1e-12, abs=1e-12)


def test_tune_picks_the_grid_lr_with_the_best_objective() -> None:
    best, scores = tune_lr(VALLEY, parse_optimizer("sgd(lr=123)"), steps=100)
    assert set(scores) == set(LR_GRID) and best in LR_GRID
    assert scores[best] == min(scores.values())
    assert scores[3.0] == math.inf  # diverged: excluded
    tuned = run(VALLEY, "sgd", steps=100, lr=best)
    assert lr_objective(VALLEY, tuned) == scores[best]
    assert lr_objective(VALLEY, tuned) < lr_objective(VALLEY, run(VALLEY, "sgd", steps=100))


def test_tune_on_an_unbounded_surface_prefers_going_downhill() -> None:
    best, scores = tune_lr(SADDLE, parse_optimizer("sgd"), steps=50, grid=(0.001, 0.1))
    assert best == 0.1 and scores[0.1] < scores[0.001]


@pytest.mark.parametrize(("options", "message"), [
    ({"steps": 0}, "steps must be an integer >= 1"),
    ({"steps": 5, "noise": -1.0}, "noise must be"),
    ({"steps": 5, "lr": 0.0}, "lr must be"),
])
def test_bad_arguments_are_named(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        run_trajectory(VALLEY, parse_optimizer("sgd"), **options)
