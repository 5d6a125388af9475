"""SGD, Adagrad, RMSprop, Adam, AdamW and RAdam follow torch.optim's trajectories.

Issue 2's bar: relative difference <= 1e-12 (float64) and <= 1e-5 (float32) after 200 steps, on
scalars, vectors, matrices and 4-D kernels, random valid hyper-parameters, both code paths.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import unstuck
from support import SHAPES, TOLERANCE, make_problem, max_relative_difference

STEPS = 200


def draw_hyper_parameters(name: str, rng: random.Random) -> dict[str, Any]:
    """Random valid hyper-parameters for ``name`` (shared by unstuck and torch.optim)."""
    wd = rng.choice([0.0, rng.uniform(1e-4, 0.1)])
    if name == "SGD":
        momentum = rng.choice([0.0, rng.uniform(0.1, 0.99)])
        nesterov = momentum > 0 and rng.random() < 0.5
        dampening = 0.0 if nesterov or rng.random() < 0.5 else rng.uniform(0.0, 0.5)
        return dict(lr=rng.uniform(1e-3, 0.1), momentum=momentum, dampening=dampening,
                    nesterov=nesterov, weight_decay=wd)
    if name == "Adagrad":
        return dict(lr=rng.uniform(1e-3, 0.1), lr_decay=rng.choice([0.0, rng.uniform(0, 0.05)]),
                    weight_decay=wd, initial_accumulator_value=rng.choice([0.0, rng.random()]),
                    eps=10 ** rng.uniform(-10, -6))
    if name == "RMSprop":
        return dict(lr=rng.uniform(1e-4, 1e-2), alpha=rng.uniform(0.8, 0.999),
                    eps=10 ** rng.uniform(-8, -4), weight_decay=wd,
                    momentum=rng.choice([0.0, rng.uniform(0.1, 0.9)]),
                    centered=rng.random() < 0.5)
    betas = (rng.uniform(0.5, 0.99), rng.uniform(0.9, 0.9999))
    common = dict(lr=rng.uniform(1e-4, 3e-2), betas=betas, eps=10 ** rng.uniform(-8, -4),
                  weight_decay=wd)
    if name in ("Adam", "AdamW"):
        return dict(common, amsgrad=rng.random() < 0.5)
    assert name == "RAdam"
    return dict(common, decoupled_weight_decay=rng.random() < 0.5)


NAMES = ("SGD", "Adagrad", "RMSprop", "Adam", "AdamW", "RAdam")


def run_pair(
    name: str,
    hyper: dict[str, Any],
    shapes: tuple[tuple[int, ...], ...],
    dtype: torch.dtype,
    seed: int,
    foreach: bool,
    maximize: bool,
    steps: int,
) -> float:
    init, grad = make_problem(shapes, dtype, seed)
    ours = [p.clone().requires_grad_() for p in init]
    theirs = [p.clone().requires_grad_() for p in init]
    opt = getattr(unstuck, name)(ours, **hyper, foreach=foreach, maximize=maximize)
    ref = getattr(torch.optim, name)(theirs, **hyper, foreach=foreach, maximize=maximize)
    for step in range(steps):
        for params, optimizer in ((ours, opt), (theirs, ref)):
            for p, g in zip(params, grad(params, step), strict=True):
                p.grad = g
            optimizer.step()
    return max_relative_difference(ours, theirs)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("foreach", [True, False], ids=["foreach", "per-tensor"])
@pytest.mark.parametrize("name", NAMES)
def test_trajectory_matches_torch(name: str, foreach: bool, dtype: torch.dtype) -> None:
    rng = random.Random(f"{name}-{foreach}-{dtype}")
    for trial in range(4):
        hyper = draw_hyper_parameters(name, rng)
        maximize = trial == 3
        diff = run_pair(name, hyper, SHAPES, dtype, trial, foreach, maximize, STEPS)
        assert diff <= TOLERANCE[dtype], (
            f"{name} {hyper} maximize={maximize}: relative difference {diff:.3e} "
            f"> {TOLERANCE[dtype]:.0e}"
        )


shapes_strategy = st.lists(
    st.lists(st.integers(1, 4), min_size=0, max_size=4).map(tuple), min_size=1, max_size=4
)


@settings(max_examples=30, deadline=None)
@given(
    name=st.sampled_from(NAMES),
    shapes=shapes_strategy,
    seed=st.integers(0, 2**16),
    foreach=st.booleans(),
    dtype=st.sampled_from([torch.float64, torch.float32]),
)
def test_trajectory_matches_torch_on_random_shapes(
    name: str, shapes: list[tuple[int, ...]], seed: int, foreach: bool, dtype: torch.dtype
) -> None:
    hyper = draw_hyper_parameters(name, random.Random(seed))
    diff = run_pair(name, hyper, tuple(shapes), dtype, seed, foreach, False, 40)
    assert diff <= TOLERANCE[dtype], f"{name} {hyper} {shapes}: {diff:.3e}"


@pytest.mark.parametrize("name", NAMES)
def test_complex_parameters_match_torch(name: str) -> None:
    """Complex parameters are optimized through their real view, as torch.optim does."""
    gen = torch.Generator().manual_seed(0)
    init = torch.randn(3, 4, dtype=torch.complex128, generator=gen)
    ours, theirs = init.clone().requires_grad_(), init.clone().requires_grad_()
    hyper = draw_hyper_parameters(name, random.Random(name))
    opt = getattr(unstuck, name)([ours], **hyper)
    ref = getattr(torch.optim, name)([theirs], **hyper)
    for _ in range(50):
        for p, o in ((ours, opt), (theirs, ref)):
            p.grad = (p.detach() - 1j) * 0.5
            o.step()
    assert max_relative_difference([ours], [theirs]) <= TOLERANCE[torch.float64]


@pytest.mark.parametrize("foreach", [True, False], ids=["foreach", "per-tensor"])
@pytest.mark.parametrize("name", NAMES)
def test_parameters_that_start_late_keep_their_own_step_count(name: str, foreach: bool) -> None:
    """A parameter without gradient for the first steps starts its own bias correction later,
    as in torch.optim (buckets split by step count)."""
    init, grad = make_problem(SHAPES, torch.float64, 7)
    ours = [p.clone().requires_grad_() for p in init]
    theirs = [p.clone().requires_grad_() for p in init]
    hyper = draw_hyper_parameters(name, random.Random(name))
    opt = getattr(unstuck, name)(ours, **hyper, foreach=foreach)
    ref = getattr(torch.optim, name)(theirs, **hyper, foreach=foreach)
    for step in range(60):
        for params, optimizer in ((ours, opt), (theirs, ref)):
            for i, (p, g) in enumerate(zip(params, grad(params, step), strict=True)):
                p.grad = g if step >= 5 * i else None
            optimizer.step()
    assert max_relative_difference(ours, theirs) <= TOLERANCE[torch.float64]


@pytest.mark.parametrize("direction", ["torch->unstuck", "unstuck->torch"])
@pytest.mark.parametrize("name", NAMES)
def test_checkpoints_move_between_torch_and_unstuck(name: str, direction: str) -> None:
    """State names follow torch.optim, so a run can switch library mid-way and continue."""
    init, grad = make_problem(SHAPES, torch.float64, 3)
    hyper = draw_hyper_parameters(name, random.Random(f"ckpt-{name}"))
    first_lib, second_lib = (
        (torch.optim, unstuck) if direction == "torch->unstuck" else (unstuck, torch.optim)
    )
    straight = [p.clone().requires_grad_() for p in init]
    switched = [p.clone().requires_grad_() for p in init]
    reference = getattr(first_lib, name)(straight, **hyper)
    first = getattr(first_lib, name)(switched, **hyper)

    def run(params: list[torch.Tensor], opt: torch.optim.Optimizer, steps: range) -> None:
        for step in steps:
            for p, g in zip(params, grad(params, step), strict=True):
                p.grad = g
            opt.step()

    run(straight, reference, range(30))
    run(switched, first, range(15))
    second = getattr(second_lib, name)(switched, **hyper)
    second.load_state_dict(first.state_dict())
    run(switched, second, range(15, 30))
    assert max_relative_difference(switched, straight) <= TOLERANCE[torch.float64]
