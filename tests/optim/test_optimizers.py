"""The generic table: every optimizer through the same behavioural checks."""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

import unstuck

Factory = Callable[..., torch.optim.Optimizer]

# name -> factory(params, **options); options are ``foreach``/``fused``/``maximize`` for chain
# optimizers (the wrappers around torch.optim take ``foreach`` and ``maximize`` only).
FACTORIES: dict[str, Factory] = {
    "SGD": lambda p, **o: unstuck.SGD(p, lr=0.05, **o),
    "SGD-momentum": lambda p, **o: unstuck.SGD(p, lr=0.05, momentum=0.9, weight_decay=1e-3, **o),
    "SGD-nesterov": lambda p, **o: unstuck.SGD(p, lr=0.05, momentum=0.9, nesterov=True, **o),
    "Adagrad": lambda p, **o: unstuck.Adagrad(p, lr=0.1, lr_decay=1e-3, **o),
    "RMSprop": lambda p, **o: unstuck.RMSprop(p, lr=1e-2, **o),
    "RMSprop-centered-momentum": lambda p, **o: unstuck.RMSprop(
        p, lr=1e-3, momentum=0.9, centered=True, **o
    ),
    "Adam": lambda p, **o: unstuck.Adam(p, lr=1e-2, **o),
    "Adam-amsgrad": lambda p, **o: unstuck.Adam(p, lr=1e-2, amsgrad=True, **o),
    "AdamW": lambda p, **o: unstuck.AdamW(p, lr=1e-2, **o),
    "RAdam": lambda p, **o: unstuck.RAdam(p, lr=1e-2, **o),
    "Ranger": lambda p, **o: unstuck.Ranger(p, lr=3e-2, weight_decay=1e-3, **o),
    "LARS": lambda p, **o: unstuck.LARS(p, lr=1.0, weight_decay=1e-4, trust_coefficient=0.02, **o),
    "RangerLARS": lambda p, **o: unstuck.RangerLARS(p, lr=1e-2, weight_decay=1e-3, **o),
    "Adam-centralize": lambda p, **o: unstuck.Adam(p, lr=1e-2, centralize=True, **o),
    "Lookahead(SGD-momentum)": lambda p, **o: unstuck.Lookahead(
        unstuck.SGD(p, lr=0.05, momentum=0.9, **o), k=3, alpha=0.5
    ),
    "Lookahead(torch.optim.Adam)": lambda p, **o: unstuck.Lookahead(
        torch.optim.Adam(p, lr=1e-2, foreach=o.get("foreach"), maximize=o.get("maximize", False))
    ),
    "centralize(torch.optim.SGD)": lambda p, **o: unstuck.centralize(
        torch.optim.SGD(p, lr=0.05, momentum=0.9, foreach=o.get("foreach"),
                        maximize=o.get("maximize", False))
    ),
}
NAMES = list(FACTORIES)


def make_model(seed: int = 0, dtype: torch.dtype = torch.float32) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 3, 3), nn.Flatten(), nn.Linear(3 * 4 * 4, 8), nn.Tanh(), nn.Linear(8, 2)
    ).to(dtype)


def make_batch(seed: int, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(16, 1, 6, 6, generator=gen, dtype=dtype)
    y = torch.randn(16, 2, generator=gen, dtype=dtype)
    return x, y


def train(model: nn.Module, opt: torch.optim.Optimizer, steps: range) -> list[float]:
    losses = []
    for step in steps:
        x, y = make_batch(step, next(model.parameters()).dtype)
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def params_of(model: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("name", NAMES)
def test_goes_downhill_on_a_quadratic(name: str) -> None:
    gen = torch.Generator().manual_seed(1)
    target = 2 * torch.randn(6, 5, generator=gen)
    scales = torch.rand(6, 5, generator=gen) + 0.5
    w = torch.randn(6, 5, generator=gen).requires_grad_()
    b = torch.randn(5, generator=gen).requires_grad_()
    opt = FACTORIES[name]([w, b])

    def loss_fn() -> torch.Tensor:
        return (scales * (w - target) ** 2).sum() + ((b - 1.0) ** 2).sum()

    start = loss_fn().item()
    for _ in range(300):
        opt.zero_grad()
        loss_fn().backward()
        opt.step()
    assert loss_fn().item() < 0.5 * start


@pytest.mark.parametrize("name", NAMES)
def test_maximize_goes_uphill(name: str) -> None:
    w = torch.randn(4, 3, generator=torch.Generator().manual_seed(0)).requires_grad_()
    opt = FACTORIES[name]([w], maximize=True)
    start = -(w.detach() ** 2).sum().item()
    for _ in range(20):
        opt.zero_grad()
        (-(w**2).sum()).backward()
        opt.step()
    assert -(w.detach() ** 2).sum().item() > start


@pytest.mark.parametrize("name", NAMES)
def test_foreach_equals_per_tensor(name: str) -> None:
    models = [make_model(), make_model()]
    for model, foreach in zip(models, (True, False), strict=True):
        train(model, FACTORIES[name](model.parameters(), foreach=foreach, fused=False), range(25))
    # Both reference paths run the same ops in the same order: bit-identical on CPU (the fused
    # path agrees to rounding: tests/optim/test_fused.py).
    for a, b in zip(params_of(models[0]), params_of(models[1]), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("name", NAMES)
def test_resume_is_bit_identical(name: str) -> None:
    straight = make_model()
    train(straight, FACTORIES[name](straight.parameters()), range(40))

    first = make_model()
    opt = FACTORIES[name](first.parameters())
    train(first, opt, range(20))
    buffer = io.BytesIO()
    torch.save({"model": first.state_dict(), "opt": opt.state_dict()}, buffer)
    buffer.seek(0)
    checkpoint = torch.load(buffer, weights_only=True)

    resumed = make_model(seed=123)  # different initial weights: everything comes from the file
    resumed.load_state_dict(checkpoint["model"])
    opt2 = FACTORIES[name](resumed.parameters())
    opt2.load_state_dict(checkpoint["opt"])
    train(resumed, opt2, range(20, 40))
    for a, b in zip(params_of(straight), params_of(resumed), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("name", NAMES)
def test_step_does_not_modify_grad(name: str) -> None:
    model = make_model()
    opt = FACTORIES[name](model.parameters())
    for step in range(7):
        x, y = make_batch(step)
        opt.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        grads = [p.grad.clone() for p in model.parameters()]
        opt.step()
        for p, g in zip(model.parameters(), grads, strict=True):
            assert torch.equal(p.grad, g)


@pytest.mark.parametrize("name", NAMES)
def test_closure_returns_loss(name: str) -> None:
    model = make_model()
    opt = FACTORIES[name](model.parameters())
    x, y = make_batch(0)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        return loss

    before = params_of(model)
    loss = opt.step(closure)
    assert isinstance(loss, torch.Tensor) and loss.item() > 0
    assert any(not torch.equal(a, b) for a, b in zip(before, params_of(model), strict=True))


@pytest.mark.parametrize("name", NAMES)
def test_parameters_without_grad_are_skipped(name: str) -> None:
    used = torch.ones(3, 2, requires_grad=True)
    unused = torch.ones(4, requires_grad=True)
    opt = FACTORIES[name]([used, unused])
    for _ in range(6):
        opt.zero_grad()
        (used**2).sum().backward()
        opt.step()
    assert torch.equal(unused.detach(), torch.ones(4))
    assert not opt.state.get(unused)
    inner = getattr(opt, "optimizer", None)
    if inner is not None:
        assert not inner.state.get(unused)


@pytest.mark.parametrize("name", NAMES)
def test_param_groups_use_their_own_hyper_parameters(name: str) -> None:
    """A group with lr=0 does not move; the other does; both share one optimizer."""
    start = torch.randn(3, 2, generator=torch.Generator().manual_seed(0))
    frozen = start.clone().requires_grad_()
    moving = start.clone().requires_grad_()
    opt = FACTORIES[name]([{"params": [frozen], "lr": 0.0}, {"params": [moving]}])
    for _ in range(6):
        opt.zero_grad()
        ((frozen - 3) ** 2).sum().add(((moving - 3) ** 2).sum()).backward()
        opt.step()
    assert torch.equal(frozen.detach(), start)
    assert not torch.equal(moving.detach(), start)


@pytest.mark.parametrize("name", NAMES)
def test_add_param_group_trains_the_new_group(name: str) -> None:
    a = torch.ones(3, 2, requires_grad=True)
    start = torch.randn(2, 2, generator=torch.Generator().manual_seed(0))
    b = start.clone().requires_grad_()
    opt = FACTORIES[name]([a])
    opt.add_param_group({"params": [b]})
    assert len(opt.param_groups) == 2
    assert getattr(opt, "optimizer", opt).param_groups[1]["params"] == [b]
    for _ in range(6):
        opt.zero_grad()
        ((a - 3) ** 2).sum().add(((b - 3) ** 2).sum()).backward()
        opt.step()
    assert not torch.equal(b.detach(), start)


@pytest.mark.parametrize("name", NAMES)
def test_zero_grad_sets_none(name: str) -> None:
    w = torch.ones(3, requires_grad=True)
    opt = FACTORIES[name]([w])
    (w.sum()).backward()
    opt.zero_grad()
    assert w.grad is None


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16], ids=str)
def test_dtype_is_preserved(name: str, dtype: torch.dtype) -> None:
    model = make_model(dtype=dtype)
    opt = FACTORIES[name](model.parameters())
    train(model, opt, range(8))
    for p in model.parameters():
        assert p.dtype == dtype
        assert torch.isfinite(p).all()
    for optimizer in (opt, getattr(opt, "optimizer", opt)):
        for state in optimizer.state.values():
            for value in state.values():
                if isinstance(value, torch.Tensor) and value.dim() > 0:
                    assert value.dtype == dtype


@pytest.mark.parametrize("name", NAMES)
def test_grad_scaler_skips_inf_steps_and_unscales_exactly(name: str) -> None:
    scaled_model, plain_model = make_model(), make_model()
    scaled_opt = FACTORIES[name](scaled_model.parameters())
    plain_opt = FACTORIES[name](plain_model.parameters())
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    for step in range(6):
        x, y = make_batch(step)
        scaled_opt.zero_grad()
        scaler.scale(nn.functional.mse_loss(scaled_model(x), y)).backward()
        if step == 3:  # an overflow: the step must be skipped, parameters unchanged
            next(scaled_model.parameters()).grad[0].fill_(float("inf"))
            before = params_of(scaled_model)
            scaler.step(scaled_opt)
            scaler.update()
            for a, b in zip(before, params_of(scaled_model), strict=True):
                assert torch.equal(a, b)
            continue
        scaler.step(scaled_opt)
        scaler.update()
        train(plain_model, plain_opt, range(step, step + 1))
    # Scales are powers of two, so unscaling is exact: same trajectory as the unscaled run.
    for a, b in zip(params_of(scaled_model), params_of(plain_model), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", NAMES)
def test_lr_scheduler_drives_the_optimizer(name: str) -> None:
    w = torch.ones(3, requires_grad=True)
    opt = FACTORIES[name]([w])
    base = opt.param_groups[0]["lr"]
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    for _ in range(4):
        opt.zero_grad()
        w.sum().backward()
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(base * 0.25)
    inner = getattr(opt, "optimizer", opt)
    assert inner.param_groups[0]["lr"] == pytest.approx(base * 0.25)


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_round_trip_keeps_hyper_parameters(name: str) -> None:
    model = make_model()
    opt = FACTORIES[name](model.parameters())
    train(model, opt, range(3))
    opt.param_groups[0]["lr"] = 0.123
    other = FACTORIES[name](make_model().parameters())
    other.load_state_dict(opt.state_dict())
    assert other.param_groups[0]["lr"] == 0.123
    assert getattr(other, "optimizer", other).param_groups[0]["lr"] == 0.123


def test_sparse_gradient_error_names_the_parameter() -> None:
    emb = nn.Embedding(10, 3, sparse=True)
    opt = unstuck.Adam(list(emb.named_parameters()))
    emb(torch.tensor([1, 2])).sum().backward()
    with pytest.raises(RuntimeError, match="weight.*sparse"):
        opt.step()


def test_named_parameters_are_accepted() -> None:
    model = make_model()
    opt = unstuck.AdamW(model.named_parameters())
    assert opt.param_groups[0]["param_names"][0] == "0.weight"
    train(model, opt, range(2))


# Bad input: (factory, keyword, bad value); the error must name the keyword.
BAD_INPUT: list[tuple[str, Callable[..., Any], dict[str, Any]]] = []
for _cls in (unstuck.SGD, unstuck.Adagrad, unstuck.RMSprop, unstuck.Adam, unstuck.AdamW,
             unstuck.RAdam, unstuck.Ranger, unstuck.LARS, unstuck.RangerLARS):
    BAD_INPUT.append(("lr", _cls, {"lr": -0.1}))
    BAD_INPUT.append(("lr", _cls, {"lr": float("nan")}))
for _cls in (unstuck.Adam, unstuck.AdamW, unstuck.RAdam, unstuck.Ranger, unstuck.RangerLARS):
    BAD_INPUT.append(("betas[0]", _cls, {"betas": (1.0, 0.999)}))
    BAD_INPUT.append(("betas[1]", _cls, {"betas": (0.9, -0.1)}))
    BAD_INPUT.append(("betas", _cls, {"betas": (0.9,)}))
    BAD_INPUT.append(("eps", _cls, {"eps": 0.0}))
    BAD_INPUT.append(("weight_decay", _cls, {"weight_decay": -1e-3}))
for _cls in (unstuck.Ranger, unstuck.RangerLARS):
    BAD_INPUT.append(("k", _cls, {"k": 0}))
    BAD_INPUT.append(("k", _cls, {"k": 2.5}))
    BAD_INPUT.append(("alpha", _cls, {"alpha": 1.5}))
    BAD_INPUT.append(("alpha", _cls, {"alpha": -0.1}))
    BAD_INPUT.append(("n_sma_threshold", _cls, {"n_sma_threshold": 3}))
BAD_INPUT += [
    ("momentum", unstuck.SGD, {"momentum": -0.5}),
    ("nesterov", unstuck.SGD, {"nesterov": True}),
    ("eps", unstuck.Adagrad, {"eps": -1.0}),
    ("lr_decay", unstuck.Adagrad, {"lr_decay": -1.0}),
    ("alpha", unstuck.RMSprop, {"alpha": 1.5}),
    ("eps", unstuck.RMSprop, {"eps": 0.0}),
    ("trust_coefficient", unstuck.LARS, {"trust_coefficient": 0.0}),
    ("max_trust_ratio", unstuck.RangerLARS, {"max_trust_ratio": -1.0}),
]


@pytest.mark.parametrize(
    ("argument", "cls", "kwargs"), BAD_INPUT,
    ids=[f"{c.__name__}-{k}" for k, c, _ in BAD_INPUT],
)
def test_bad_hyper_parameter_is_named(argument: str, cls: Any, kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="^" + re.escape(argument) + r"(?![\w\[])"):
        cls([torch.ones(2, requires_grad=True)], **kwargs)


def test_bad_hyper_parameter_in_a_group_is_named() -> None:
    opt = unstuck.Adam([torch.ones(2, requires_grad=True)])
    with pytest.raises(ValueError, match="lr must be >= 0"):
        opt.add_param_group({"params": [torch.ones(2, requires_grad=True)], "lr": -1.0})


@pytest.mark.parametrize(("argument", "kwargs"), [("k", {"k": 0}), ("alpha", {"alpha": 2.0})])
def test_lookahead_bad_input_is_named(argument: str, kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=f"^{argument} "):
        unstuck.Lookahead(unstuck.SGD([torch.ones(2, requires_grad=True)]), **kwargs)


def test_wrappers_reject_non_optimizers() -> None:
    with pytest.raises(TypeError, match="torch.optim.Optimizer"):
        unstuck.Lookahead([torch.ones(2)])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="torch.optim.Optimizer"):
        unstuck.centralize("adam")  # type: ignore[arg-type]


def test_parameter_listed_twice_is_an_error() -> None:
    w = torch.ones(2, requires_grad=True)
    with pytest.raises(ValueError, match=r"params\[1\].*listed twice.*index 0"):
        unstuck.Adam([w, w])
    with pytest.raises(ValueError, match="more than one parameter group"):
        unstuck.Adam([{"params": [w]}, {"params": [w]}])


def test_non_leaf_tensor_is_an_error() -> None:
    w = torch.ones(2, requires_grad=True)
    with pytest.raises(ValueError, match=r"params\[0\] \(shape \[2\]\) is not a leaf"):
        unstuck.SGD([w * 2])


@pytest.mark.parametrize("name", [n for n in NAMES if "torch" not in n])
def test_complex_parameters_get_complex_state(name: str) -> None:
    """Complex parameters are optimized through their real view; state stays complex."""
    w = torch.randn(3, 4, dtype=torch.complex64, generator=torch.Generator().manual_seed(0))
    w.requires_grad_()
    opt = FACTORIES[name]([w])
    start = (w.detach() - 1j).abs().pow(2).sum().item()
    for _ in range(60):
        opt.zero_grad()
        (w - 1j).abs().pow(2).sum().backward()
        opt.step()
    assert w.dtype == torch.complex64
    assert (w.detach() - 1j).abs().pow(2).sum().item() < start
    optimizer = getattr(opt, "optimizer", opt)
    for key, value in optimizer.state[w].items():
        if isinstance(value, torch.Tensor):
            assert value.dtype == torch.complex64, key


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_round_trip_is_exact(name: str) -> None:
    """Saving and loading changes nothing: same groups (keys and values), same state."""
    model = make_model()
    opt = FACTORIES[name](model.parameters())
    train(model, opt, range(3))
    before = opt.state_dict()
    opt.load_state_dict(before)
    after = opt.state_dict()
    assert after["param_groups"] == before["param_groups"]
    assert after.get("inner", {}).get("param_groups") == before.get("inner", {}).get("param_groups")
