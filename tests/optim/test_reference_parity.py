"""Ranger, LARS, RangerLARS, Lookahead and centralized SGD follow the slow references.

The references in ``tests/reference/`` are written per tensor straight from the equations of the
issue (GC: Yong et al. 2020; Lookahead: Zhang et al. 2019; RAdam: Liu et al. 2020; LARS: You et
al. 2017). The bar is the one of the core issue: relative difference <= 1e-12 (float64) and
<= 1e-5 (float32) after 200 steps, on a scalar, a vector, a matrix and a 4-D kernel in one
parameter list, random valid hyper-parameters, both code paths (``foreach`` True and False).

The first half of this file checks that the references themselves are right (against
``torch.optim`` where torch has the same rule, and against hand-derived one-step answers).
"""

from __future__ import annotations

import functools
import math
import random
from collections.abc import Callable, Sequence
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import unstuck
from reference import (
    GradFn,
    adam,
    adam_step,
    centralize,
    lars,
    lookahead,
    ranger,
    ranger_lars,
    rectification,
    rho,
    sgd,
    sgd_step,
)
from support import SHAPES, TOLERANCE, make_problem, max_relative_difference

STEPS = 200
DTYPES = (torch.float64, torch.float32)
TRIALS = 4
NAMES = (
    "Ranger",
    "LARS",
    "RangerLARS",
    "Lookahead(SGD)",
    "Lookahead(torch.optim.Adam)",
    "SGD(centralize=True)",
)

Hyper = dict[str, Any]


def check_close(
    actual: Sequence[torch.Tensor],
    expected: Sequence[torch.Tensor],
    dtype: torch.dtype,
    context: str,
) -> float:
    """Assert ``max_relative_difference <= TOLERANCE[dtype]``; the message carries the measure.

    Returns the measured difference, so a caller can record it.
    """
    diff = max_relative_difference(actual, expected)
    tolerance = TOLERANCE[dtype]
    assert diff <= tolerance, (
        f"{context} [{dtype}]: max relative difference {diff:.3e} > tolerance {tolerance:.0e}"
    )
    return diff


# ---------------------------------------------------------------------------------------------
# Hyper-parameters. Trial i fixes the discrete structure (so every branch is covered by the four
# trials: weight decay on/off, Nesterov both ways, momentum 0, GC on/off, maximize, k in
# {1, 2, 5, 6}, alpha = 1 and alpha < 1, thresholds that leave many or few steps un-rectified);
# the continuous values are random.
# ---------------------------------------------------------------------------------------------

K_BY_TRIAL = (1, 2, 5, 6)
THRESHOLD_BY_TRIAL = (5.0, 4.0, 50.0, 8.0)


def rectification_margin(beta2: float, n_sma_threshold: float, steps: int) -> float:
    """``min_t |rho_t - n_sma_threshold|``: how far the branch test is from a rounding tie."""
    return min(abs(rho(t, beta2)[1] - n_sma_threshold) for t in range(1, steps + 1))


def draw_radam_family(rng: random.Random, trial: int) -> Hyper:
    """Hyper-parameters shared by Ranger and RangerLARS (without the trust ratio)."""
    while True:
        betas = (rng.uniform(0.8, 0.97), rng.uniform(0.99, 0.9999))
        threshold = THRESHOLD_BY_TRIAL[trial % 4]
        if rectification_margin(betas[1], threshold, STEPS) > 1e-9:
            break
    return dict(
        lr=10 ** rng.uniform(-3, math.log10(3e-2)),
        betas=betas,
        eps=10 ** rng.uniform(-8, -4),
        weight_decay=0.0 if trial % 4 == 0 else rng.uniform(1e-3, 0.1),
        k=K_BY_TRIAL[trial % 4],
        alpha=1.0 if trial % 4 == 1 else rng.uniform(0.05, 1.0),
        n_sma_threshold=threshold,
        centralize=trial % 4 != 2,
        maximize=trial % 4 == 3,
    )


def draw_sgd(rng: random.Random, trial: int, *, centralize: bool) -> Hyper:
    """SGD hyper-parameters: trial 0 heavy ball, 1 Nesterov, 2 no momentum, 3 maximize."""
    maximize = trial % 4 == 3
    momentum = 0.0 if trial % 4 == 2 else rng.uniform(0.5, 0.95)
    nesterov = trial % 4 == 1
    return dict(
        lr=rng.uniform(1e-3, 3e-3) if maximize else rng.uniform(1e-2, 0.1),
        momentum=momentum,
        dampening=0.0 if nesterov or momentum == 0.0 else rng.uniform(0.0, 0.5),
        nesterov=nesterov,
        weight_decay=0.0 if trial % 4 == 0 else rng.uniform(1e-3, 0.1),
        maximize=maximize,
        centralize=centralize,
    )


def draw_hyper_parameters(name: str, rng: random.Random, trial: int) -> Hyper:
    """Random valid hyper-parameters of optimizer ``name``; ``trial`` picks the structure."""
    if name == "Ranger":
        return draw_radam_family(rng, trial)
    if name == "RangerLARS":
        return dict(draw_radam_family(rng, trial), max_trust_ratio=rng.choice([0.5, 2.0, 10.0]))
    if name == "LARS":
        maximize = trial % 4 == 3
        momentum = 0.0 if trial % 4 == 2 else rng.uniform(0.5, 0.95)
        return dict(
            lr=rng.uniform(1e-3, 3e-3) if maximize else rng.uniform(1e-2, 0.2),
            momentum=momentum,
            weight_decay=0.0 if trial % 4 == 0 else rng.uniform(1e-3, 0.1),
            trust_coefficient=10 ** rng.uniform(-3, -1),
            eps=10 ** rng.uniform(-9, -6),
            nesterov=trial % 4 in (1, 3) and momentum > 0.0,
            exclude_1d=trial % 4 != 2,
            maximize=maximize,
            centralize=trial % 4 in (1, 2),
        )
    if name == "Lookahead(SGD)":
        inner = draw_sgd(rng, trial, centralize=trial % 4 == 1)
        return dict(inner=inner, k=K_BY_TRIAL[trial % 4], alpha=rng.uniform(0.05, 1.0))
    if name == "Lookahead(torch.optim.Adam)":
        inner = dict(
            lr=10 ** rng.uniform(-3, math.log10(3e-2)),
            betas=(rng.uniform(0.5, 0.95), rng.uniform(0.9, 0.9999)),
            eps=10 ** rng.uniform(-8, -4),
            weight_decay=0.0 if trial % 4 == 0 else rng.uniform(1e-3, 0.1),
            maximize=trial % 4 == 3,
        )
        alpha = 1.0 if trial % 4 == 2 else rng.uniform(0.05, 1.0)
        return dict(inner=inner, k=K_BY_TRIAL[(trial + 1) % 4], alpha=alpha)
    assert name == "SGD(centralize=True)"
    return draw_sgd(rng, trial, centralize=True)


HYPER: dict[str, list[Hyper]] = {
    name: [draw_hyper_parameters(name, random.Random(f"{name}-{trial}"), trial)
           for trial in range(TRIALS)]
    for name in NAMES
}


# ---------------------------------------------------------------------------------------------
# The two sides of every comparison.
# ---------------------------------------------------------------------------------------------


def make_optimizer(
    name: str, params: list[torch.Tensor], hyper: Hyper, foreach: bool
) -> torch.optim.Optimizer:
    """``unstuck``'s optimizer ``name`` on ``params`` (``foreach`` goes to the inner one)."""
    if name == "Ranger":
        return unstuck.Ranger(params, **hyper, foreach=foreach)
    if name == "LARS":
        return unstuck.LARS(params, **hyper, foreach=foreach)
    if name == "RangerLARS":
        return unstuck.RangerLARS(params, **hyper, foreach=foreach)
    if name == "Lookahead(SGD)":
        inner = unstuck.SGD(params, **hyper["inner"], foreach=foreach)
        return unstuck.Lookahead(inner, k=hyper["k"], alpha=hyper["alpha"])
    if name == "Lookahead(torch.optim.Adam)":
        inner = torch.optim.Adam(params, **hyper["inner"], foreach=foreach)
        return unstuck.Lookahead(inner, k=hyper["k"], alpha=hyper["alpha"])
    assert name == "SGD(centralize=True)"
    return unstuck.SGD(params, **hyper, foreach=foreach)


def run_reference(
    name: str, params: Sequence[torch.Tensor], grad_fn: GradFn, steps: int, hyper: Hyper
) -> list[torch.Tensor]:
    """The reference trajectory's final parameters for optimizer ``name``."""
    if name == "Ranger":
        return ranger(params, grad_fn, steps, **hyper)
    if name == "LARS":
        return lars(params, grad_fn, steps, **hyper)
    if name == "RangerLARS":
        return ranger_lars(params, grad_fn, steps, **hyper)
    if name == "Lookahead(SGD)":
        inner = sgd_step(**hyper["inner"])
        return lookahead(params, grad_fn, steps, inner, k=hyper["k"], alpha=hyper["alpha"])
    if name == "Lookahead(torch.optim.Adam)":
        inner = adam_step(**hyper["inner"])
        return lookahead(params, grad_fn, steps, inner, k=hyper["k"], alpha=hyper["alpha"])
    assert name == "SGD(centralize=True)"
    return sgd(params, grad_fn, steps, **hyper)


def run_optimizer(
    make: Callable[[list[torch.Tensor]], torch.optim.Optimizer],
    params: Sequence[torch.Tensor],
    grad_fn: GradFn,
    steps: int,
) -> list[torch.Tensor]:
    """Final parameters after ``steps`` of ``p.grad = grad_fn(params, step); opt.step()``."""
    ours = [p.detach().clone().requires_grad_() for p in params]
    optimizer = make(ours)
    for step in range(steps):
        for p, g in zip(ours, grad_fn(ours, step), strict=True):
            p.grad = g
        optimizer.step()
    return [p.detach().clone() for p in ours]


def problem_seed(name: str, trial: int) -> int:
    return 1000 * NAMES.index(name) + trial


@functools.cache
def reference_result(name: str, trial: int, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    """The reference run of one case, shared by both code paths (computed once)."""
    init, grad_fn = make_problem(SHAPES, dtype, problem_seed(name, trial))
    return tuple(run_reference(name, init, grad_fn, STEPS, HYPER[name][trial]))


def parity_difference(name: str, trial: int, dtype: torch.dtype, foreach: bool) -> float:
    """Run ``unstuck`` against the reference for one case and check the difference."""
    hyper = HYPER[name][trial]
    init, grad_fn = make_problem(SHAPES, dtype, problem_seed(name, trial))
    ours = run_optimizer(lambda ps: make_optimizer(name, ps, hyper, foreach), init, grad_fn, STEPS)
    expected = reference_result(name, trial, dtype)
    assert all(p.dtype == dtype for p in ours)
    path = "foreach" if foreach else "per-tensor"
    return check_close(ours, expected, dtype, f"{name} {hyper} {path} trial {trial}")


# ---------------------------------------------------------------------------------------------
# The references are right.
# ---------------------------------------------------------------------------------------------


def test_centralize_reference() -> None:
    """Zero mean over all dims but the first, blind to per-row constants, <= 1-D untouched."""
    gen = torch.Generator().manual_seed(0)
    for shape in ((5, 3), (4, 3, 3, 3), (2, 1), (3, 2, 4)):
        g = torch.randn(shape, generator=gen, dtype=torch.float64)
        c = centralize(g)
        assert c.shape == g.shape and c.dtype == g.dtype
        dims = tuple(range(1, g.dim()))
        assert c.mean(dim=dims).abs().max().item() < 1e-15
        shift = torch.randn((shape[0],) + (1,) * (g.dim() - 1), generator=gen, dtype=g.dtype)
        assert torch.allclose(centralize(g + shift), c, rtol=0, atol=1e-14)
        assert torch.allclose(centralize(c), c, rtol=0, atol=1e-15)
    for shape in ((), (7,)):
        g = torch.randn(shape, generator=gen, dtype=torch.float64)
        assert torch.equal(centralize(g), g)
    # By hand: rows [1, 3] and [0, 4] have means 2 and 2.
    expected = torch.tensor([[-1.0, 1.0], [-2.0, 2.0]])
    assert torch.equal(centralize(torch.tensor([[1.0, 3.0], [0.0, 4.0]])), expected)


@pytest.mark.parametrize("trial", range(TRIALS))
def test_sgd_and_adam_references_match_torch(trial: int) -> None:
    """Without GC the SGD and Adam references are ``torch.optim.SGD`` / ``torch.optim.Adam``."""
    init, grad_fn = make_problem(SHAPES, torch.float64, 50 + trial)
    hyper = draw_sgd(random.Random(trial), trial, centralize=False)
    torch_hyper = {key: value for key, value in hyper.items() if key != "centralize"}
    expected = run_optimizer(lambda ps: torch.optim.SGD(ps, **torch_hyper), init, grad_fn, 100)
    check_close(sgd(init, grad_fn, 100, **hyper), expected, torch.float64, f"SGD {hyper}")

    adam_hyper = draw_hyper_parameters("Lookahead(torch.optim.Adam)", random.Random(trial), trial)
    inner = adam_hyper["inner"]
    expected = run_optimizer(lambda ps: torch.optim.Adam(ps, **inner), init, grad_fn, 100)
    check_close(adam(init, grad_fn, 100, **inner), expected, torch.float64, f"Adam {inner}")


@pytest.mark.parametrize("k", [1, 6])
@pytest.mark.parametrize("maximize", [False, True])
def test_ranger_reference_is_radam_without_gc_and_lookahead(k: int, maximize: bool) -> None:
    """alpha = 1 makes Lookahead the identity, so Ranger without GC is ``torch.optim.RAdam``.

    torch's RAdam uses the same rectification with the threshold fixed at 5 and, with
    ``decoupled_weight_decay=True``, the same ``p *= 1 - lr * weight_decay``.
    """
    init, grad_fn = make_problem(SHAPES, torch.float64, 7)
    hyper = dict(lr=0.02, betas=(0.9, 0.99), eps=1e-6, weight_decay=0.05, maximize=maximize)
    expected = run_optimizer(
        lambda ps: torch.optim.RAdam(ps, **hyper, decoupled_weight_decay=True), init, grad_fn, 100
    )
    ours = ranger(init, grad_fn, 100, **hyper, k=k, alpha=1.0, n_sma_threshold=5,
                  centralize=False)
    check_close(ours, expected, torch.float64, f"reference Ranger vs torch RAdam k={k}")


def test_ranger_reference_takes_both_radam_branches() -> None:
    """rho_1 = 1, rho_t grows to rho_inf; steps 1-5 are un-rectified at the default threshold."""
    beta2 = 0.999
    rho_inf, rho_1 = rho(1, beta2)
    assert rho_inf == pytest.approx(1999.0) and rho_1 == pytest.approx(1.0, abs=1e-9)
    branches = [rho(t, beta2)[1] > 5 for t in range(1, STEPS + 1)]
    assert branches[:5] == [False] * 5 and all(branches[5:])
    assert rectification(10**7, beta2) == pytest.approx(1.0, abs=1e-6)
    assert 0 < rectification(6, beta2) < rectification(50, beta2) < 1

    # Un-rectified first step: m_1 / (1 - b1) = g, so p_1 = p_0 - lr * g exactly (up to rounding).
    init, grad_fn = make_problem(SHAPES, torch.float64, 3)
    g = grad_fn(init, 0)
    first = ranger(init, grad_fn, 1, lr=0.1, k=1, alpha=1.0, centralize=False)
    check_close(first, [p - 0.1 * gi for p, gi in zip(init, g)], torch.float64, "Ranger t=1")

    # A rectified step, written out by hand for a one-element parameter with k = 1, alpha = 1.
    b1, b2, lr, eps = 0.9, 0.99, 0.01, 1e-8
    grads = [0.5, -1.0, 2.0, 0.25, -0.75, 1.5, 1.0]
    p, m, v = 3.0, 0.0, 0.0
    for t, g_t in enumerate(grads, start=1):
        m, v = b1 * m + (1 - b1) * g_t, b2 * v + (1 - b2) * g_t * g_t
        r_inf = 2 / (1 - b2) - 1
        r_t = r_inf - 2 * t * b2**t / (1 - b2**t)
        if r_t > 5:
            rect = math.sqrt((r_t - 4) * (r_t - 2) * r_inf / ((r_inf - 4) * (r_inf - 2) * r_t))
            p -= lr * rect * math.sqrt(1 - b2**t) / (1 - b1**t) * m / (math.sqrt(v) + eps)
        else:
            p -= lr * m / (1 - b1**t)
    assert rho(len(grads), b2)[1] > 5  # the last two steps above were rectified
    out = ranger([torch.tensor([3.0], dtype=torch.float64)],
                 lambda ps, s: [torch.tensor([grads[s]], dtype=torch.float64)], len(grads),
                 lr=lr, betas=(b1, b2), eps=eps, k=1, alpha=1.0, centralize=False)
    assert out[0].item() == pytest.approx(p, rel=1e-14)


def test_lookahead_reference() -> None:
    """alpha = 1 is the inner optimizer; k = 1 with momentum-free SGD is SGD with lr * alpha."""
    init, grad_fn = make_problem(SHAPES, torch.float64, 11)
    inner = sgd_step(lr=0.05, momentum=0.9)
    plain = sgd(init, grad_fn, 30, lr=0.05, momentum=0.9)
    check_close(lookahead(init, grad_fn, 30, inner, k=4, alpha=1.0), plain, torch.float64,
                "Lookahead alpha=1")
    check_close(lookahead(init, grad_fn, 30, sgd_step(lr=0.05), k=1, alpha=0.3),
                sgd(init, grad_fn, 30, lr=0.05 * 0.3), torch.float64, "Lookahead k=1")
    # By hand, k = 2: two fast SGD steps from p0, then p = p0 + alpha (fast_2 - p0); a third
    # step starts from there.
    lr, alpha = 0.1, 0.25
    p0 = [p.clone() for p in init]
    fast1 = [p - lr * g for p, g in zip(p0, grad_fn(p0, 0))]
    fast2 = [p - lr * g for p, g in zip(fast1, grad_fn(fast1, 1))]
    slow = [a + alpha * (b - a) for a, b in zip(p0, fast2)]
    fast3 = [p - lr * g for p, g in zip(slow, grad_fn(slow, 2))]
    check_close(lookahead(init, grad_fn, 2, sgd_step(lr=lr), k=2, alpha=alpha), slow,
                torch.float64, "Lookahead by hand, 2 steps")
    check_close(lookahead(init, grad_fn, 3, sgd_step(lr=lr), k=2, alpha=alpha), fast3,
                torch.float64, "Lookahead by hand, 3 steps")


@pytest.mark.parametrize("nesterov", [False, True])
def test_lars_reference(nesterov: bool) -> None:
    """Excluded tensors follow torch's SGD; a 2-D tensor's step is lr * tc * ||w|| long."""
    # Only <= 1-D tensors and exclude_1d: no trust ratio, no weight decay, plain SGD momentum.
    init, grad_fn = make_problem(((), (7,), (3,)), torch.float64, 5)
    expected = run_optimizer(
        lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.8, nesterov=nesterov), init, grad_fn,
        50,
    )
    ours = lars(init, grad_fn, 50, lr=0.05, momentum=0.8, nesterov=nesterov, weight_decay=0.3)
    check_close(ours, expected, torch.float64, "LARS on excluded tensors vs torch SGD")

    # One momentum-free step on a matrix: ||dw|| = lr * tc * ||w|| ||g|| / (||g|| + eps).
    w = torch.randn(5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    g = torch.randn(5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    lr, tc = 0.5, 0.01
    (w1,) = lars([w], lambda ps, s: [g], 1, lr=lr, trust_coefficient=tc, momentum=0.0, eps=0.0)
    assert (w1 - w).norm().item() == pytest.approx(lr * tc * w.norm().item(), rel=1e-14)
    assert torch.allclose(w1, w - lr * tc * w.norm() / g.norm() * g, rtol=1e-15, atol=0)
    # With weight decay: g' = g + wd w and the ratio's denominator gains wd ||w||.
    wd = 0.2
    (w1,) = lars([w], lambda ps, s: [g], 1, lr=lr, trust_coefficient=tc, momentum=0.0, eps=0.0,
                 weight_decay=wd)
    ratio = tc * w.norm() / (g.norm() + wd * w.norm())
    assert torch.allclose(w1, w - lr * ratio * (g + wd * w), rtol=1e-15, atol=0)
    # exclude_1d=False puts a vector under the trust ratio too.
    v, gv = w[0].clone(), g[0].clone()
    (v1,) = lars([v], lambda ps, s: [gv], 1, lr=lr, trust_coefficient=tc, momentum=0.0,
                 exclude_1d=False, eps=0.0)
    assert torch.allclose(v1, v - lr * tc * v.norm() / gv.norm() * gv, rtol=1e-15, atol=0)
    # Zero weights or zero gradient: ratio 1, no NaN.
    zero = torch.zeros(5, 3, dtype=torch.float64)
    (z1,) = lars([zero], lambda ps, s: [g], 1, lr=lr, momentum=0.0)
    assert torch.equal(z1, -lr * g)
    (w1,) = lars([w], lambda ps, s: [zero], 1, lr=lr, momentum=0.0)
    assert torch.equal(w1, w)


def test_ranger_lars_reference() -> None:
    """First step: u = g, so ||dw|| = lr * min(||w||, max_trust_ratio * ||g||)."""
    w = torch.randn(4, 3, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    g = torch.randn(4, 3, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    lr = 0.1
    for scale, max_trust_ratio in ((1.0, 10.0), (100.0, 10.0), (1.0, 0.5)):
        (w1,) = ranger_lars([w], lambda ps, s, c=scale: [c * g], 1, lr=lr, k=1, alpha=1.0,
                            centralize=False, max_trust_ratio=max_trust_ratio)
        expected_length = lr * min(w.norm().item(), max_trust_ratio * scale * g.norm().item())
        assert (w1 - w).norm().item() == pytest.approx(expected_length, rel=1e-13)
        assert torch.allclose((w - w1) / (w - w1).norm(), g / g.norm(), rtol=0, atol=1e-14)
    # Decoupled weight decay enters u before the trust ratio; the ratio is ||w|| / ||u||.
    wd = 0.3
    (w1,) = ranger_lars([w], lambda ps, s: [g], 1, lr=lr, weight_decay=wd, k=1, alpha=1.0,
                        centralize=False, max_trust_ratio=100.0)
    u = g + wd * w
    assert torch.allclose(w1, w - lr * w.norm() / u.norm() * u, rtol=1e-14, atol=0)
    # A zero gradient (GC of a (n, 1) tensor is exactly zero) leaves the weights alone.
    col = torch.randn(4, 1, dtype=torch.float64)
    (c1,) = ranger_lars([col], lambda ps, s: [torch.ones(4, 1, dtype=torch.float64)], 3, lr=lr)
    assert torch.equal(c1, col)


def test_references_keep_dtype_and_inputs() -> None:
    """float32 in, float32 out; the initial parameters are never modified."""
    init, grad_fn = make_problem(SHAPES, torch.float32, 0)
    before = [p.clone() for p in init]
    outs = [
        ranger(init, grad_fn, 10, lr=0.01),
        lars(init, grad_fn, 10),
        ranger_lars(init, grad_fn, 10, lr=0.01),
        lookahead(init, grad_fn, 10, adam_step(lr=0.01), k=3, alpha=0.5),
        sgd(init, grad_fn, 10, lr=0.01, centralize=True),
    ]
    for out in outs:
        assert [p.dtype for p in out] == [torch.float32] * len(SHAPES)
        assert [p.shape for p in out] == [p.shape for p in init]
        assert max_relative_difference(out, init) > 0
    assert all(torch.equal(a, b) for a, b in zip(init, before))


def test_hyper_parameter_draws_cover_every_branch() -> None:
    """The parity cases below really hit what they claim to."""
    ks = {h["k"] for name in ("Ranger", "RangerLARS", "Lookahead(SGD)") for h in HYPER[name]}
    assert ks == {1, 2, 5, 6}
    for name in ("Ranger", "RangerLARS"):
        for h in HYPER[name]:
            branches = {rho(t, h["betas"][1])[1] > h["n_sma_threshold"] for t in range(1, STEPS)}
            assert branches == {False, True}
        assert {h["centralize"] for h in HYPER[name]} == {False, True}
    lars_hyper = HYPER["LARS"]
    assert {h["nesterov"] for h in lars_hyper} == {False, True}
    assert 0.0 in {h["momentum"] for h in lars_hyper}
    assert {h["exclude_1d"] for h in lars_hyper} == {False, True}
    for name in NAMES:
        flat = [dict(h, **h.get("inner", {})) for h in HYPER[name]]
        assert any(h["weight_decay"] > 0 for h in flat) and any(h["maximize"] for h in flat)
        assert all(0 < h.get("alpha", 1.0) <= 1 for h in flat)


# ---------------------------------------------------------------------------------------------
# unstuck follows the references.
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("trial", range(TRIALS))
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("foreach", [True, False], ids=["foreach", "per-tensor"])
@pytest.mark.parametrize("name", NAMES)
def test_trajectory_matches_reference(
    name: str, foreach: bool, dtype: torch.dtype, trial: int
) -> None:
    parity_difference(name, trial, dtype, foreach)


shapes_strategy = st.lists(
    st.lists(st.integers(1, 4), min_size=1, max_size=4).map(tuple), min_size=1, max_size=3
)


def random_shapes_difference(
    name: str, shapes: list[tuple[int, ...]], seed: int, trial: int, foreach: bool,
    dtype: torch.dtype,
) -> None:
    """One hypothesis example: 30 steps on random shapes with random hyper-parameters."""
    hyper = draw_hyper_parameters(name, random.Random(seed), trial)
    init, grad_fn = make_problem(tuple(shapes), dtype, seed)
    ours = run_optimizer(lambda ps: make_optimizer(name, ps, hyper, foreach), init, grad_fn, 30)
    expected = run_reference(name, init, grad_fn, 30, hyper)
    path = "foreach" if foreach else "per-tensor"
    check_close(ours, expected, dtype, f"{name} {hyper} {path} shapes={shapes}")


def random_case(name: str) -> Callable[..., Any]:
    """A hypothesis test of optimizer ``name`` on random shapes and hyper-parameters."""

    @settings(max_examples=25, deadline=None, derandomize=True, database=None)
    @given(
        shapes=shapes_strategy,
        seed=st.integers(0, 2**16),
        trial=st.integers(0, TRIALS - 1),
        foreach=st.booleans(),
        dtype=st.sampled_from(DTYPES),
    )
    def test(
        shapes: list[tuple[int, ...]], seed: int, trial: int, foreach: bool, dtype: torch.dtype
    ) -> None:
        random_shapes_difference(name, shapes, seed, trial, foreach, dtype)

    return test


test_ranger_on_random_shapes = random_case("Ranger")
test_lars_on_random_shapes = random_case("LARS")
test_ranger_lars_on_random_shapes = random_case("RangerLARS")
test_lookahead_sgd_on_random_shapes = random_case("Lookahead(SGD)")
test_lookahead_torch_adam_on_random_shapes = random_case("Lookahead(torch.optim.Adam)")
test_centralized_sgd_on_random_shapes = random_case("SGD(centralize=True)")
