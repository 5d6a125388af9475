"""The fused path (``fused=True``, and the default) follows the reference path (``fused=False``).

The bar is the core issue's: relative difference <= 1e-12 (float64) and <= 1e-5 (float32) over
many steps, for every optimizer and every branch of its chain (weight decay coupled and
decoupled, AMSGrad, Nesterov, dampening, Gradient Centralization, maximize, RAdam's un-rectified
steps, Lookahead's sync), on scalars, vectors, matrices, 4-D kernels and several tensors of one
shape. The workspace is shrunk (``BLOCK_NUMEL``, ``LARGE_TENSOR``) so that small tensors take
every path the large ones take: several tensors per block, tensors cut into ranges of rows, the
two-pass trust ratio, norms read in place.
"""

from __future__ import annotations

import copy
import io
import random
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import unstuck
from support import TOLERANCE, make_problem, max_relative_difference
from unstuck.optim import blocks, kernels
from unstuck.optim.base import ChainOptimizer

STEPS = 120
DTYPES = (torch.float64, torch.float32)
# A scalar, vectors, matrices and 4-D kernels; repeated shapes share blocks, (40, 3) is cut
# into ranges of rows by the shrunk workspace.
SHAPES: tuple[tuple[int, ...], ...] = (
    (), (7,), (5, 3), (4, 3, 3, 3), (9, 4), (9, 4), (40, 3), (3,), (6, 2, 2), (7,),
)
NAMES = ("SGD", "Adagrad", "RMSprop", "Adam", "AdamW", "RAdam", "Ranger", "LARS", "RangerLARS")


@pytest.fixture(autouse=True)
def small_workspace(monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks of at most 40 elements and tensors of 8+ elements read in place."""
    monkeypatch.setattr(blocks, "BLOCK_NUMEL", 40)
    monkeypatch.setattr(blocks, "LARGE_TENSOR", 8)


def draw(name: str, rng: random.Random, trial: int) -> dict[str, Any]:
    """Random valid hyper-parameters of ``name``; ``trial`` (0-3) picks the branches."""
    wd = 0.0 if trial == 0 else rng.uniform(1e-3, 0.1)
    gc = trial in (1, 2)
    maximize = trial == 3
    if name == "SGD":
        momentum = 0.0 if trial == 2 else rng.uniform(0.5, 0.95)
        nesterov = trial == 1
        return dict(lr=rng.uniform(1e-2, 0.05), momentum=momentum, nesterov=nesterov,
                    dampening=0.0 if nesterov or momentum == 0 else rng.uniform(0, 0.5),
                    weight_decay=wd, centralize=gc, maximize=maximize)
    if name == "Adagrad":
        return dict(lr=rng.uniform(1e-2, 0.1), lr_decay=rng.choice([0.0, 1e-2]),
                    weight_decay=wd, initial_accumulator_value=rng.choice([0.0, 0.3]),
                    eps=10 ** rng.uniform(-10, -6), centralize=gc, maximize=maximize)
    if name == "RMSprop":
        return dict(lr=rng.uniform(1e-3, 1e-2), alpha=rng.uniform(0.8, 0.999),
                    eps=10 ** rng.uniform(-8, -4), weight_decay=wd,
                    momentum=0.0 if trial % 2 else rng.uniform(0.1, 0.9), centralize=gc,
                    maximize=maximize)
    adam = dict(lr=rng.uniform(1e-3, 2e-2), betas=(rng.uniform(0.5, 0.95), rng.uniform(0.9, 0.999)),
                eps=10 ** rng.uniform(-8, -4), weight_decay=wd, maximize=maximize)
    if name in ("Adam", "AdamW"):
        return dict(adam, amsgrad=trial % 2 == 1, centralize=gc)
    if name == "RAdam":
        return dict(adam, decoupled_weight_decay=trial % 2 == 0, centralize=gc)
    if name in ("Ranger", "RangerLARS"):
        extra = {"max_trust_ratio": rng.choice([0.5, 10.0])} if name == "RangerLARS" else {}
        return dict(adam, k=(1, 2, 5, 6)[trial], alpha=rng.uniform(0.1, 1.0),
                    n_sma_threshold=(5.0, 4.0, 8.0, 5.0)[trial], centralize=trial != 2, **extra)
    assert name == "LARS"
    momentum = 0.0 if trial == 2 else rng.uniform(0.5, 0.95)
    return dict(lr=rng.uniform(1e-3, 3e-3) if maximize else rng.uniform(0.05, 0.3),
                momentum=momentum, weight_decay=wd, trust_coefficient=10 ** rng.uniform(-3, -1),
                eps=10 ** rng.uniform(-9, -6), nesterov=trial == 1, exclude_1d=trial != 2,
                centralize=gc, maximize=maximize)


def run(
    make: Callable[[list[torch.Tensor]], torch.optim.Optimizer],
    shapes: tuple[tuple[int, ...], ...],
    dtype: torch.dtype,
    seed: int,
    steps: int,
) -> list[torch.Tensor]:
    """Final parameters after ``steps`` of ``p.grad = grad(params, step); opt.step()``."""
    init, grad = make_problem(shapes, dtype, seed)
    params = [p.clone().requires_grad_() for p in init]
    opt = make(params)
    for step in range(steps):
        for p, g in zip(params, grad(params, step), strict=True):
            p.grad = g
        opt.step()
    return [p.detach() for p in params]


def check(name: str, hyper: dict[str, Any], shapes: tuple[tuple[int, ...], ...],
          dtype: torch.dtype, seed: int, steps: int) -> None:
    cls = getattr(unstuck, name)
    fused = run(lambda ps: cls(ps, **hyper, fused=True), shapes, dtype, seed, steps)
    reference = run(lambda ps: cls(ps, **hyper, fused=False), shapes, dtype, seed, steps)
    diff = max_relative_difference(fused, reference)
    assert diff <= TOLERANCE[dtype], f"{name} {hyper} [{dtype}]: {diff:.3e}"


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name", NAMES)
def test_fused_matches_reference(name: str, dtype: torch.dtype) -> None:
    for trial in range(4):
        hyper = draw(name, random.Random(f"{name}-{trial}"), trial)
        check(name, hyper, SHAPES, dtype, trial, STEPS)


@settings(max_examples=25, deadline=None)
@given(
    name=st.sampled_from(NAMES),
    shapes=st.lists(st.lists(st.integers(1, 5), max_size=4).map(tuple), min_size=1, max_size=5),
    seed=st.integers(0, 2**16),
    trial=st.integers(0, 3),
    dtype=st.sampled_from(DTYPES),
)
def test_fused_matches_reference_on_random_shapes(
    name: str, shapes: list[tuple[int, ...]], seed: int, trial: int, dtype: torch.dtype
) -> None:
    check(name, draw(name, random.Random(seed), trial), tuple(shapes), dtype, seed, 30)


# Tensors of 8+ elements (read in place) that share blocks: (3, 4) x 3 and (2, 2, 3) x 2 fit
# three to a block of 40, (13, 3) is cut into ranges of rows; 1-D ones stay stacked.
SHARED_BLOCKS: tuple[tuple[int, ...], ...] = (
    (3, 4), (5,), (3, 4), (2, 2, 3), (3, 4), (2, 2, 3), (13, 3), (5,),
)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name", ("Ranger", "RangerLARS", "LARS", "Adam", "RMSprop"))
def test_large_tensors_sharing_a_block(name: str, dtype: torch.dtype) -> None:
    """Gradient Centralization tensor by tensor into a shared block, LARS' ratio in the
    kernel and RangerLARS' ratio in the step size for several tensors of one block, and
    Lookahead's sync block by block."""
    for trial in range(4):
        hyper = draw(name, random.Random(f"shared-{name}-{trial}"), trial)
        check(name, hyper, SHARED_BLOCKS, dtype, trial, 40)


@pytest.mark.parametrize("name", ("LARS", "RangerLARS"))
def test_trust_ratios_kept_on_the_device(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The accelerator path (ratios never read on the host) still matches the reference."""
    from unstuck.optim import fused_trust_ratio

    monkeypatch.setattr(fused_trust_ratio, "reads_on_host", lambda device: False)
    for dtype in DTYPES:
        for trial in range(4):
            check(name, draw(name, random.Random(f"device-{trial}"), trial), SHAPES, dtype,
                  trial, 40)


def test_ranger_missing_slow_weights_are_created_after_the_update() -> None:
    """A slow weight missing at a sync step (a checkpoint without it) is copied from the
    updated parameter, as the reference chain does, not block by block before it."""
    def final(fused: bool) -> list[torch.Tensor]:
        init, grad = make_problem(SHARED_BLOCKS, torch.float64, 3)
        params = [p.clone().requires_grad_() for p in init]
        opt = unstuck.Ranger(params, lr=2e-2, k=2, fused=fused)
        for step in range(12):
            for p, g in zip(params, grad(params, step), strict=True):
                p.grad = g
            if step == 9:
                del opt.state[params[2]]["lookahead_slow"]
            opt.step()
        return [p.detach() for p in params]

    assert max_relative_difference(final(True), final(False)) <= TOLERANCE[torch.float64]


def test_lookahead_fused_sync_matches_reference() -> None:
    for dtype in DTYPES:
        runs = [
            run(lambda ps, f=fused: unstuck.Lookahead(unstuck.Adam(ps, lr=1e-2, fused=f),
                                                     k=3, alpha=0.7, fused=f),
                SHAPES, dtype, 5, STEPS)
            for fused in (True, False)
        ]
        assert max_relative_difference(*runs) <= TOLERANCE[dtype]


def test_default_is_fused_with_foreach_and_reference_per_tensor() -> None:
    """``fused=None`` takes the fused path; with ``foreach=False`` the per-tensor reference."""
    calls: list[str] = []
    adam = kernels.adam_

    def counting(*args: Any, **kwargs: Any) -> None:
        calls.append("adam")
        adam(*args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(kernels, "adam_", counting)
        default = run(lambda ps: unstuck.Adam(ps, lr=1e-2), SHAPES, torch.float64, 0, 10)
        assert len(calls) == 10
        per_tensor = run(lambda ps: unstuck.Adam(ps, lr=1e-2, foreach=False), SHAPES,
                         torch.float64, 0, 10)
        assert len(calls) == 10
    reference = run(lambda ps: unstuck.Adam(ps, lr=1e-2, fused=False, foreach=False), SHAPES,
                    torch.float64, 0, 10)
    assert all(torch.equal(a, b) for a, b in zip(per_tensor, reference, strict=True))
    assert max_relative_difference(default, reference) <= TOLERANCE[torch.float64]


def late_start_run(fused: bool) -> list[torch.Tensor]:
    """Parameter i gets gradients from step 3 * i on: step counts differ between tensors."""
    init, grad = make_problem(SHAPES, torch.float64, 7)
    params = [p.clone().requires_grad_() for p in init]
    opt = unstuck.Ranger(params, lr=2e-2, k=4, weight_decay=0.01, fused=fused)
    for step in range(60):
        for i, (p, g) in enumerate(zip(params, grad(params, step), strict=True)):
            p.grad = g if step >= 3 * i else None
        opt.step()
    steps = [opt.state[p].get("step", 0) for p in params]
    assert len(set(steps)) > 1
    return [p.detach() for p in params]


def test_parameters_with_their_own_step_counts() -> None:
    diff = max_relative_difference(late_start_run(True), late_start_run(False))
    assert diff <= TOLERANCE[torch.float64]


def group_run(fused_first: bool | None, fused_second: bool | None) -> list[torch.Tensor]:
    init, grad = make_problem(SHAPES, torch.float64, 11)
    params = [p.clone().requires_grad_() for p in init]
    opt = unstuck.AdamW([
        {"params": params[:4], "lr": 2e-2, "weight_decay": 0.1, "fused": fused_first},
        {"params": params[4:], "betas": (0.8, 0.99), "amsgrad": True, "fused": fused_second},
    ], lr=1e-2)
    for step in range(50):
        for p, g in zip(params, grad(params, step), strict=True):
            p.grad = g
        opt.step()
    return [p.detach() for p in params]


def test_param_groups_choose_their_path() -> None:
    reference = group_run(False, False)
    for first, second in ((True, True), (None, False), (False, True)):
        diff = max_relative_difference(group_run(first, second), reference)
        assert diff <= TOLERANCE[torch.float64]


def make_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 3, 3), nn.Flatten(), nn.Linear(3 * 4 * 4, 8), nn.Tanh(),
                         nn.Linear(8, 2))


def batches(steps: range) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    for step in steps:
        gen = torch.Generator().manual_seed(step)
        yield torch.randn(16, 1, 6, 6, generator=gen), torch.randn(16, 2, generator=gen)


FACTORIES: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "SGD": lambda p, **o: unstuck.SGD(p, lr=0.05, momentum=0.9, nesterov=True, **o),
    "Adagrad": lambda p, **o: unstuck.Adagrad(p, lr=0.05, **o),
    "RMSprop": lambda p, **o: unstuck.RMSprop(p, lr=1e-3, momentum=0.5, **o),
    "Adam": lambda p, **o: unstuck.Adam(p, lr=1e-2, **o),
    "AdamW": lambda p, **o: unstuck.AdamW(p, lr=1e-2, amsgrad=True, **o),
    "RAdam": lambda p, **o: unstuck.RAdam(p, lr=1e-2, **o),
    "Ranger": lambda p, **o: unstuck.Ranger(p, lr=1e-2, weight_decay=1e-3, k=3, **o),
    "LARS": lambda p, **o: unstuck.LARS(p, lr=1.0, weight_decay=1e-4, trust_coefficient=0.02,
                                        **o),
    "RangerLARS": lambda p, **o: unstuck.RangerLARS(p, lr=1e-2, weight_decay=1e-3, k=3, **o),
    "Lookahead(Adam)": lambda p, **o: unstuck.Lookahead(unstuck.Adam(p, lr=1e-2, **o), k=3,
                                                        **o),
}


def train(model: nn.Module, opt: torch.optim.Optimizer, steps: range,
          scaler: torch.amp.GradScaler | None = None, closure: bool = False) -> None:
    for x, y in batches(steps):
        def loss_fn(x: torch.Tensor = x, y: torch.Tensor = y) -> torch.Tensor:
            opt.zero_grad()
            loss = nn.functional.mse_loss(model(x), y)
            (scaler.scale(loss) if scaler else loss).backward()
            return loss

        if closure:
            assert isinstance(opt.step(loss_fn), torch.Tensor)
        elif scaler is not None:
            loss_fn()
            scaler.step(opt)
            scaler.update()
        else:
            loss_fn()
            opt.step()


def params_of(model: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("name", list(FACTORIES))
def test_resume_mid_run(name: str) -> None:
    """A fused run saved and loaded mid-way continues exactly; its checkpoint has the reference
    path's per-parameter keys and continues on the reference path to rounding."""
    straight = make_model()
    train(straight, FACTORIES[name](straight.parameters()), range(30))

    first = make_model()
    opt = FACTORIES[name](first.parameters())
    train(first, opt, range(15))
    buffer = io.BytesIO()
    torch.save({"model": first.state_dict(), "opt": opt.state_dict()}, buffer)
    reference_keys = None
    for fused in (True, False):
        buffer.seek(0)
        checkpoint = torch.load(buffer, weights_only=True)
        resumed = make_model(seed=1)
        resumed.load_state_dict(checkpoint["model"])
        opt2 = FACTORIES[name](resumed.parameters(), fused=fused)
        opt2.load_state_dict(checkpoint["opt"])
        train(resumed, opt2, range(15, 30))
        inner = getattr(opt2, "optimizer", opt2)
        keys = sorted(sorted(s) for s in inner.state_dict()["state"].values())
        reference_keys = reference_keys or keys
        assert keys == reference_keys
        if fused:
            assert all(torch.equal(a, b) for a, b in zip(params_of(straight),
                                                          params_of(resumed), strict=True))
        else:
            diff = max_relative_difference(params_of(resumed), params_of(straight))
            assert diff <= TOLERANCE[torch.float32]


@pytest.mark.parametrize("name", list(FACTORIES))
def test_closure_and_grad_scaler(name: str) -> None:
    """With a closure, and under torch.amp.GradScaler (an overflow step skipped), the fused
    path follows the reference path."""
    finals = []
    for fused in (True, False):
        model = make_model()
        opt = FACTORIES[name](model.parameters(), fused=fused)
        train(model, opt, range(5), closure=True)
        scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
        train(model, opt, range(5, 8), scaler=scaler)
        before = params_of(model)
        x, y = next(batches(range(8, 9)))
        opt.zero_grad()
        scaler.scale(nn.functional.mse_loss(model(x), y)).backward()
        next(model.parameters()).grad[0].fill_(float("inf"))
        scaler.step(opt)  # skipped
        scaler.update()
        assert all(torch.equal(a, b) for a, b in zip(before, params_of(model), strict=True))
        train(model, opt, range(9, 12), scaler=scaler)
        finals.append(params_of(model))
    assert max_relative_difference(*finals) <= TOLERANCE[torch.float32]


@pytest.mark.parametrize("name", list(FACTORIES))
def test_step_does_not_modify_grads(name: str) -> None:
    model = make_model()
    options: dict[str, Any] = {"fused": True}
    if name != "Lookahead(Adam)":
        options["maximize"] = True
    opt = FACTORIES[name](model.parameters(), **options)
    for x, y in batches(range(8)):
        opt.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        grads = [p.grad.clone() for p in model.parameters()]
        opt.step()
        assert all(torch.equal(p.grad, g) for p, g in zip(model.parameters(), grads, strict=True))


def fallback_params(kind: str) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    if kind == "complex":
        return [torch.randn(3, 4, dtype=torch.complex128, generator=gen).requires_grad_()]
    if kind == "bfloat16":
        return [torch.randn(3, 4, generator=gen).to(torch.bfloat16).requires_grad_()]
    if kind == "non-contiguous":
        return [torch.randn(4, 3, dtype=torch.float64, generator=gen).t().requires_grad_()]
    assert kind == "channels_last"
    return [torch.randn(2, 3, 4, 4, dtype=torch.float64, generator=gen)
            .to(memory_format=torch.channels_last).requires_grad_()]


def fallback_run(make: Callable[..., torch.optim.Optimizer], kind: str, fused: bool | None
                 ) -> tuple[list[torch.Tensor], list[warnings.WarningMessage]]:
    params = fallback_params(kind)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        opt = make(params, fused=fused)
        for _ in range(12):
            opt.zero_grad()
            sum((p - 1).abs().pow(2).sum() for p in params).backward()
            opt.step()
    return [p.detach().clone() for p in params], [
        w for w in caught if issubclass(w.category, UserWarning) and "fused" in str(w.message)
    ]


@pytest.mark.parametrize("kind", ["complex", "bfloat16", "non-contiguous", "channels_last"])
@pytest.mark.parametrize("name", ["Adam", "SGD", "Ranger", "LARS"])
def test_unsupported_tensors_warn_once_and_match(name: str, kind: str) -> None:
    make = FACTORIES[name]
    fused, warned = fallback_run(make, kind, True)
    assert len(warned) == 1, [str(w.message) for w in warned]
    assert "reference path" in str(warned[0].message)
    automatic, silent = fallback_run(make, kind, None)
    assert not silent
    reference, _ = fallback_run(make, kind, False)
    for result in (fused, automatic):
        assert all(torch.equal(a, b) for a, b in zip(result, reference, strict=True))


def test_unsupported_configuration_warns_once() -> None:
    make = lambda p, **o: unstuck.RMSprop(p, lr=1e-3, centered=True, **o)  # noqa: E731
    fused, warned = fallback_run(make, "non-contiguous", True)
    assert len(warned) == 1 and "centered" in str(warned[0].message)
    reference, _ = fallback_run(make, "non-contiguous", False)
    assert all(torch.equal(a, b) for a, b in zip(fused, reference, strict=True))


def test_subclass_with_its_own_chain_has_no_fused_path() -> None:
    class Plain(ChainOptimizer):
        chain = unstuck.SGD.chain[-1:]  # just the update

        def __init__(self, params: Any, **options: Any) -> None:
            super().__init__(params, dict(lr=0.1, maximize=False, foreach=True,
                                          centralize=False, **options))

    class Renamed(unstuck.Adam):
        pass

    assert Plain.fused_rule is None and Renamed.fused_rule is unstuck.Adam.fused_rule
    w = torch.ones(3, requires_grad=True)
    opt = Plain([w], fused=True)
    w.grad = torch.ones(3)
    with pytest.warns(UserWarning, match="Plain has no fused path"):
        opt.step()
    assert torch.allclose(w.detach(), torch.full((3,), 0.9))


@pytest.mark.parametrize("value", ["yes", 1, 0.0])
def test_bad_fused_value_is_named(value: Any) -> None:
    w = torch.ones(2, requires_grad=True)
    message = r"^fused must be None \(automatic choice\), True or False"
    with pytest.raises(ValueError, match=message):
        unstuck.Adam([w], fused=value)
    opt = unstuck.SGD([w])
    with pytest.raises(ValueError, match="^fused must be"):
        opt.add_param_group({"params": [torch.ones(2, requires_grad=True)], "fused": value})
    with pytest.raises(ValueError, match="^fused must be"):
        unstuck.Lookahead(opt, fused=value)


def test_fused_option_round_trips_and_pickles() -> None:
    model = make_model()
    opt = unstuck.Lookahead(unstuck.Ranger(model.parameters(), fused=True), fused=False)
    train(model, opt, range(3))
    assert opt.state_dict()["inner"]["param_groups"][0]["fused"] is True
    clone = copy.deepcopy(opt)
    train(model, clone, range(3, 5))
    loaded = unstuck.Ranger(make_model().parameters())
    loaded.load_state_dict(opt.optimizer.state_dict())
    assert loaded.param_groups[0]["fused"] is True


def test_channels_last_checkpoint_loads_into_a_contiguous_model() -> None:
    """State laid out unlike its parameter is converted on load (the kernels index linearly)."""
    conv = nn.Conv2d(2, 4, 3).to(memory_format=torch.channels_last)
    opt = unstuck.Adam(conv.parameters(), fused=False)
    conv(torch.randn(1, 2, 5, 5)).sum().backward()
    opt.step()
    assert not opt.state[conv.weight]["exp_avg"].is_contiguous()
    plain = nn.Conv2d(2, 4, 3)
    plain.load_state_dict(conv.state_dict())
    opt2 = unstuck.Adam(plain.parameters())
    opt2.load_state_dict(opt.state_dict())
    assert all(v.is_contiguous() for s in opt2.state.values() for v in s.values()
               if isinstance(v, torch.Tensor))


def test_checkpoint_of_another_model_is_an_error() -> None:
    small, large = nn.Linear(3, 2), nn.Linear(4, 2)
    opt = unstuck.Adam(small.parameters())
    small(torch.randn(1, 3)).sum().backward()
    opt.step()
    other = unstuck.Adam(large.parameters())
    with pytest.raises(ValueError, match=r"state 'exp_avg' has shape \[2, 3\] but its parameter "
                                         r"has shape \[2, 4\]"):
        other.load_state_dict(opt.state_dict())


def test_rangerlars_direction_in_a_zeroed_buffer(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the Adam kernel cannot write RangerLARS' direction over ``u`` (off the CPU), it
    writes into a zeroed buffer; that path matches the reference too."""
    from unstuck.optim import fused_trust_ratio

    monkeypatch.setattr(fused_trust_ratio, "zeroing_decay", lambda scale, device: None)
    for dtype in DTYPES:
        for trial in range(4):
            hyper = draw("RangerLARS", random.Random(f"zeroed-{trial}"), trial)
            check("RangerLARS", hyper, SHAPES, dtype, trial, 40)
            check("RangerLARS", hyper, SHARED_BLOCKS, dtype, trial, 40)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_zeroing_decay_writes_the_direction_over_u(dtype: torch.dtype) -> None:
    """The AdamW kernel given ``u`` as parameters and gradients, with ``zeroing_decay``,
    updates the moments bit for bit as the Adam kernel writing into zeros does, and writes
    the same direction up to ``|u| * 2**-52`` (plus ``d``'s last bit), for lengths on and off
    the vector width; a non-finite ``u`` gives NaN exactly where the zeroed path does."""
    from unstuck.optim.fused_trust_ratio import zeroing_decay

    cpu = torch.device("cpu")
    assert zeroing_decay(0.0, cpu) is None
    assert zeroing_decay(float("inf"), cpu) is None
    assert zeroing_decay(1e-3, torch.device("meta")) is None
    rng = random.Random(0)
    gen = torch.Generator().manual_seed(0)
    step = kernels.step_tensor(float("inf"), torch.empty(()))
    for n in (1, 7, 8, 9, 16, 33, 1000):
        for _ in range(10):
            u = torch.randn(n, generator=gen, dtype=dtype)
            if n > 8:
                u[3], u[5] = float("inf"), float("nan")
            m = torch.randn(n, generator=gen, dtype=dtype)
            v = torch.rand(n, generator=gen, dtype=dtype)
            scale = 0.37 * rng.random() + 1e-9
            w = zeroing_decay(scale, cpu)
            assert w is not None
            d, m1, v1 = torch.zeros(n, dtype=dtype), m.clone(), v.clone()
            kernels.adam_([d], [u], [m1], [v1], [], step, lr=scale, beta1=0.9, beta2=0.99,
                          weight_decay=0.0, eps=1e-5, amsgrad=False, maximize=False,
                          decoupled=False)
            over, m2, v2 = u.clone(), m.clone(), v.clone()
            kernels.adam_([over], [over], [m2], [v2], [], step, lr=scale, beta1=0.9,
                          beta2=0.99, weight_decay=w, eps=1e-5, amsgrad=False,
                          maximize=False, decoupled=True)
            torch.testing.assert_close(m1, m2, rtol=0, atol=0, equal_nan=True)
            torch.testing.assert_close(v1, v2, rtol=0, atol=0, equal_nan=True)
            assert torch.equal(d.isnan(), over.isnan())
            finite = d.isfinite()
            bound = u.abs() * 2.0**-52 + d.abs() * torch.finfo(dtype).eps
            assert ((over - d).abs() <= bound)[finite].all()


def test_kernel_helpers() -> None:
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(10, generator=gen), torch.randn(10, generator=gen)
    out = [x.clone()]
    kernels.axpy_(out, [y], 0.3)
    torch.testing.assert_close(out[0], x + 0.3 * y)
    kernels.lerp_(out, [y], 0.25)
    torch.testing.assert_close(out[0], torch.lerp(x + 0.3 * y, y, 0.25))
    assert kernels.available("adam", torch.device("cpu"))
    assert not kernels.available("adagrad", torch.device("meta"))


def test_shape_change_after_first_step_is_an_error() -> None:
    w = torch.randn(4, 3, requires_grad=True)
    v = torch.randn(4, 3, requires_grad=True)
    opt = unstuck.Ranger([w, v], fused=True)
    for _ in range(7):  # past RAdam's un-rectified steps: the fused path runs
        w.grad, v.grad = torch.ones(4, 3), torch.ones(4, 3)
        opt.step()
    w.data, v.data = torch.randn(3, 4), torch.randn(3, 4)
    w.grad, v.grad = torch.ones(3, 4), torch.ones(3, 4)
    with pytest.raises(RuntimeError, match="changed shape"):
        opt.step()


# The buckets of the last step are reused while nothing changed (fused_plan.Plan): every event that
# changes them must rebuild them, and a run with such events must follow the reference path.


def eventful_run(name: str, fused: bool) -> tuple[list[torch.Tensor], list[Any]]:
    """Parameters and step counts after steps interleaved with every event a plan must see:
    a parameter without a gradient, a replaced state entry, a state step edited in place,
    ``load_state_dict``, a new parameter group, a replaced parameter list, a non-contiguous
    parameter (``p.data = ...``)."""
    hyper = {"lr": 1e-2} if name != "LARS" else {"lr": 0.5, "weight_decay": 1e-3}
    init, grad = make_problem(SHAPES, torch.float64, 5)
    params = [p.clone().requires_grad_() for p in init]
    opt = getattr(unstuck, name)(params[:8], **hyper, fused=fused)
    for step in range(60):
        grads = grad(params, step)
        for p, g in zip(params, grads, strict=True):
            p.grad = g
        if step in (12, 13, 30):
            params[2].grad = None
        if step == 20:
            opt.state[params[3]] = {}
        if step == 22:
            opt.state[params[4]]["step"] += 3
        if step == 25:
            opt.load_state_dict(copy.deepcopy(opt.state_dict()))
        if step == 35:
            opt.add_param_group({"params": params[8:]})
        if step == 40:
            opt.param_groups[0]["params"] = params[:6] + params[7:8]
        if step == 45:
            params[1].data = params[1].data.t().contiguous().t()  # (5, 3), not contiguous
            params[1].grad = grads[1]
        opt.step()
    steps = [opt.state[p].get("step") for p in params]
    return [p.detach() for p in params], steps


@pytest.mark.parametrize("name", ["Adam", "Ranger", "RangerLARS", "LARS", "SGD"])
def test_reused_buckets_follow_every_change(name: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the non-contiguous parameter's fallback warning
        fused, fused_steps = eventful_run(name, True)
    reference, reference_steps = eventful_run(name, False)
    assert fused_steps == reference_steps
    assert max_relative_difference(fused, reference) <= TOLERANCE[torch.float64]


def test_buckets_are_reused_and_rebuilt() -> None:
    params = [torch.randn(3, 4, requires_grad=True) for _ in range(3)]
    opt = unstuck.Adam(params)

    def step() -> Any:
        for p in params:
            p.grad = torch.ones_like(p)
        opt.step()
        return opt.__dict__["_fused_plans"][0]

    plan = step()
    assert step() is plan and step() is plan
    assert [opt.state[p]["step"] for p in params] == [3, 3, 3]
    params[0].grad = None
    opt.step()
    assert opt.__dict__["_fused_plans"][0] is not plan
    assert [opt.state[p]["step"] for p in params] == [3, 4, 4]
    plan = step()
    opt.load_state_dict(opt.state_dict())
    assert step() is not plan
    assert [opt.state[p]["step"] for p in params] == [5, 6, 6]
