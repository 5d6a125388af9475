"""Conformance of the optimizer core with torch.optim: tensor hyper-parameters, state entries
torch keeps as they are, atomic steps, and LARS' trust-ratio fallback.

Every named optimizer runs on every path its constructor has (``fused=None/True/False``,
``foreach=False``), on buckets of one tensor and of several.
"""

from __future__ import annotations

import copy
import re
import warnings
from collections.abc import Callable
from typing import Any

import pytest
import torch

import unstuck
from unstuck.optim import multi_tensor as mt

NAMES = ("SGD", "Adagrad", "RMSprop", "Adam", "Adam(decoupled)", "AdamW", "RAdam", "Ranger",
         "LARS", "RangerLARS")
PATHS = {
    "fused=None": {"fused": None},
    "fused=True": {"fused": True},
    "fused=False": {"fused": False},
    "foreach=False": {"foreach": False},
}
STEPS = 12  # past RAdam's un-rectified first steps (rho_t > 5 from t = 6 with beta2 = 0.99)


def hyper(name: str, number: Callable[[float], Any]) -> dict[str, Any]:
    """Hyper-parameters of ``name`` with every tensor-able one made by ``number``."""
    lr, wd = number(0.05), number(0.1)
    if name == "SGD":
        return {"lr": lr, "weight_decay": wd, "momentum": 0.9}
    if name == "Adagrad":
        return {"lr": lr, "weight_decay": wd}
    if name == "RMSprop":
        return {"lr": lr, "weight_decay": wd, "momentum": 0.5}
    if name == "LARS":
        return {"lr": lr, "weight_decay": wd, "exclude_1d": False}
    out = {"lr": lr, "weight_decay": wd, "betas": (number(0.9), number(0.99))}
    if name == "Adam(decoupled)":
        out["decoupled_weight_decay"] = True
    return out


def make(name: str, params: Any, **kwargs: Any) -> torch.optim.Optimizer:
    if name == "Adam(decoupled)":
        return unstuck.Adam(params, **kwargs)
    return getattr(unstuck, name)(params, **kwargs)


def problem(count: int, dtype: torch.dtype = torch.float32) -> list[torch.nn.Parameter]:
    gen = torch.Generator().manual_seed(count)
    shapes = [(4, 3), (5,), (2, 3, 2, 2), ()][:count] if count > 1 else [(4, 3)]
    return [torch.nn.Parameter(torch.randn(s, generator=gen, dtype=dtype)) for s in shapes]


def grads(params: list[torch.Tensor], step: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(1000 + step)
    return [torch.randn(p.shape, generator=gen, dtype=p.dtype) for p in params]


def run(make_opt: Callable[[list[torch.nn.Parameter]], torch.optim.Optimizer], count: int,
        steps: int = STEPS, dtype: torch.dtype = torch.float32) -> tuple[list[torch.Tensor], Any]:
    params = problem(count, dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # fused=True falling back (documented)
        opt = make_opt(params)
        for t in range(steps):
            for p, g in zip(params, grads(params, t), strict=True):
                p.grad = g
            opt.step()
    return [p.detach().clone() for p in params], opt


def assert_same_state(a: torch.optim.Optimizer, b: torch.optim.Optimizer) -> None:
    sa, sb = a.state_dict()["state"], b.state_dict()["state"]
    assert sa.keys() == sb.keys()
    for k in sa:
        assert sa[k].keys() == sb[k].keys()
        for name, value in sa[k].items():
            other = sb[k][name]
            if isinstance(value, torch.Tensor):
                assert torch.equal(value, other), (k, name)
            else:
                assert value == other, (k, name)


# ---------------------------------------------------------------------------------------------
# 1. Tensor hyper-parameters
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("count", [1, 3], ids=["one-tensor", "three-tensors"])
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("name", NAMES)
def test_tensor_hyperparameters_equal_the_float_run(name: str, path: str, count: int) -> None:
    """A tensor ``lr``/``weight_decay``/``betas`` gives exactly the step of the same numbers as
    floats, on every path and bucket size (a one-tensor bucket used to raise IndexError)."""
    tensor = hyper(name, lambda x: torch.tensor(x, dtype=torch.float64))
    floats = hyper(name, lambda x: float(torch.tensor(x, dtype=torch.float64)))
    got, opt_t = run(lambda ps: make(name, ps, **tensor, **PATHS[path]), count)
    want, opt_f = run(lambda ps: make(name, ps, **floats, **PATHS[path]), count)
    for g, w in zip(got, want, strict=True):
        assert torch.equal(g, w)
    assert_same_state(opt_t, opt_f)
    # the group keeps the user's tensors (a scheduler may fill_ them)
    assert isinstance(opt_t.param_groups[0]["lr"], torch.Tensor)


TORCH_WITH_TENSORS = {
    "SGD": lambda ps, h: torch.optim.SGD(ps, **h, foreach=False),
    "Adagrad": lambda ps, h: torch.optim.Adagrad(ps, **h, foreach=False),
    "RMSprop": lambda ps, h: torch.optim.RMSprop(ps, **h, foreach=False),
    "Adam": lambda ps, h: torch.optim.Adam(ps, **h, foreach=False),
    "Adam(decoupled)": lambda ps, h: torch.optim.Adam(ps, **h, foreach=False),
    "AdamW": lambda ps, h: torch.optim.AdamW(ps, **h, foreach=False),
    "RAdam": lambda ps, h: torch.optim.RAdam(ps, **h, foreach=False),
}


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("name", TORCH_WITH_TENSORS)
def test_tensor_hyperparameters_match_torch(name: str, path: str) -> None:
    """torch.optim with the same tensor hyper-parameters (a single parameter: one bucket)."""
    h = hyper(name, lambda x: torch.tensor(x, dtype=torch.float64))
    got, _ = run(lambda ps: make(name, ps, **h, **PATHS[path]), 1, dtype=torch.float64)
    want, _ = run(lambda ps: TORCH_WITH_TENSORS[name](ps, copy.deepcopy(h)), 1,
                  dtype=torch.float64)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


def test_tensor_learning_rate_follows_a_scheduler() -> None:
    """torch's schedulers ``fill_`` a tensor lr in place: every step reads its current value."""
    p = torch.nn.Parameter(torch.ones(3))
    opt = unstuck.RAdam([p], lr=torch.tensor(0.1), betas=(torch.tensor(0.9), 0.99))
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.0)
    p.grad = torch.ones(3)
    opt.step()
    sched.step()  # lr is now 0: the next step must not move p
    before = p.detach().clone()
    opt.step()
    assert torch.equal(p.detach(), before)


@pytest.mark.parametrize("count", [1, 3])
def test_multi_tensor_takes_a_zero_dim_tensor_as_a_number(count: int) -> None:
    xs = [torch.arange(1.0, 4.0) + i for i in range(count)]
    s = torch.tensor(0.5)
    for op in (mt.mul_, mt.div_):
        a, b = mt.clone(xs), mt.clone(xs)
        op(a, s)
        op(b, 0.5)
        assert all(map(torch.equal, a, b))
    a, b = mt.clone(xs), mt.clone(xs)
    mt.add_(a, s, alpha=2.0)
    mt.add_(b, 1.0)
    assert all(map(torch.equal, a, b))
    assert all(map(torch.equal, mt.mul(xs, s), mt.mul(xs, 0.5)))


# ---------------------------------------------------------------------------------------------
# 2. load_state_dict keeps what torch keeps
# ---------------------------------------------------------------------------------------------

ODD_ENTRIES: dict[str, Callable[[dict[str, Any]], None]] = {
    "non-dict state of a parameter": lambda sd: sd["state"].__setitem__(1, [torch.ones(2), 3]),
    "tensor state of a parameter": lambda sd: sd["state"].__setitem__(1, torch.ones(2)),
    "extra key, dict": lambda sd: sd["state"].__setitem__("extra", {"note": torch.zeros(5)}),
    "extra key, tensor": lambda sd: sd["state"].__setitem__(7, torch.zeros(5)),
}


def two_params() -> list[torch.nn.Parameter]:
    return [torch.nn.Parameter(torch.randn(3, 2)), torch.nn.Parameter(torch.randn(2))]


@pytest.mark.parametrize("entry", ODD_ENTRIES)
@pytest.mark.parametrize("name", NAMES)
def test_load_state_dict_keeps_entries_torch_keeps(name: str, entry: str) -> None:
    def loaded(opt: torch.optim.Optimizer, params: list[torch.nn.Parameter]) -> dict[Any, Any]:
        for p in params:
            p.grad = torch.ones_like(p)
        opt.step()
        sd = opt.state_dict()
        ODD_ENTRIES[entry](sd)
        opt.load_state_dict(sd)
        return {k if not isinstance(k, torch.Tensor) else ("param", i): v
                for i, (k, v) in enumerate(opt.state.items())}

    ref_params, params = two_params(), two_params()
    want = loaded(torch.optim.SGD(ref_params, lr=0.1, momentum=0.9), ref_params)
    got = loaded(make(name, params, **hyper(name, float)), params)
    assert got.keys() == want.keys()
    for key in want:
        if not isinstance(want[key], dict) or key == "extra":
            assert type(got[key]) is type(want[key])
            assert repr(got[key]) == repr(want[key])


@pytest.mark.parametrize("name", NAMES)
def test_load_state_dict_pre_hook_may_make_a_non_dict_state(name: str) -> None:
    params = two_params()
    opt = make(name, params, **hyper(name, float))
    for p in params:
        p.grad = torch.ones_like(p)
    opt.step()

    def hook(optimizer: torch.optim.Optimizer, sd: dict[str, Any]) -> dict[str, Any]:
        sd = {**sd, "state": {**sd["state"], 0: [1, 2]}}
        return sd

    opt.register_load_state_dict_pre_hook(hook)
    opt.load_state_dict(opt.state_dict())
    assert opt.state[params[0]] == [1, 2]
    # a step cannot use it: it says so and changes nothing
    before = copy.deepcopy(opt.state[params[1]])
    with pytest.raises(RuntimeError, match=r"param_groups\[0\]\['params'\]\[0\].*not a dict"):
        opt.step()
    assert opt.state[params[1]]["step"] == before["step"]


# ---------------------------------------------------------------------------------------------
# 3. Atomic steps
# ---------------------------------------------------------------------------------------------


def snapshot(opt: torch.optim.Optimizer, params: list[torch.Tensor]) -> Any:
    return [p.detach().clone() for p in params], copy.deepcopy(opt.state_dict()["state"])


def assert_unchanged(opt: torch.optim.Optimizer, params: list[torch.Tensor], snap: Any) -> None:
    values, state = snap
    for p, v in zip(params, values, strict=True):
        assert torch.equal(p.detach(), v)
    now = opt.state_dict()["state"]
    assert now.keys() == state.keys()
    for k in state:
        for name, value in state[k].items():
            if isinstance(value, torch.Tensor):
                assert torch.equal(now[k][name], value), (k, name)
            else:
                assert now[k][name] == value, (k, name)


def groups(params: list[torch.nn.Parameter]) -> list[dict[str, Any]]:
    """Two groups: the failing parameter is the last of the second, so that every other
    parameter (the first group's and the one before it) would step first."""
    return [{"params": params[:2]}, {"params": params[2:]}]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("name", NAMES)
def test_a_step_that_raises_on_a_sparse_gradient_changes_nothing(name: str, path: str) -> None:
    def build() -> tuple[list[torch.nn.Parameter], torch.optim.Optimizer]:
        gen = torch.Generator().manual_seed(3)
        params = [torch.nn.Parameter(torch.randn(s, generator=gen)) for s in
                  [(4, 3), (5,), (3, 2), (6, 2)]]
        return params, make(name, groups(params), **hyper(name, float), **PATHS[path])

    params, opt = build()
    ref_params, ref = build()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        for t in range(3):
            for ps, o in ((params, opt), (ref_params, ref)):
                for p, g in zip(ps, grads(ps, t), strict=True):
                    p.grad = g
                o.step()
        snap = snapshot(opt, params)
        dense = grads(params, 3)
        for p, g in zip(params, dense, strict=True):
            p.grad = g
        params[3].grad = dense[3].to_sparse()
        with pytest.raises(RuntimeError, match=r"param_groups\[1\]\['params'\]\[1\].*sparse"):
            opt.step()
        assert_unchanged(opt, params, snap)
        # the retried step is the step that never failed (same bias corrections)
        for ps, o in ((params, opt), (ref_params, ref)):
            for p, g in zip(ps, dense, strict=True):
                p.grad = g.clone()
            o.step()
    for p, q in zip(params, ref_params, strict=True):
        assert torch.equal(p.detach(), q.detach())
    assert_same_state(opt, ref)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("name", NAMES)
def test_a_gradient_of_another_shape_raises_before_any_state_changes(
    name: str, path: str
) -> None:
    gen = torch.Generator().manual_seed(4)
    params = [torch.nn.Parameter(torch.randn(s, generator=gen)) for s in
              [(4, 3), (5,), (3, 2), (6, 2)]]
    opt = make(name, groups(params), **hyper(name, float), **PATHS[path])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        for p, g in zip(params, grads(params, 0), strict=True):
            p.grad = g
        opt.step()
        snap = snapshot(opt, params)
        for p, g in zip(params, grads(params, 1), strict=True):
            p.grad = g
        params[3].data = torch.zeros(12)  # replaced after backward: its gradient is (6, 2)
        snap[0][3] = params[3].detach().clone()
        with pytest.raises(ValueError, match=r"param_groups\[1\]\['params'\]\[1\].*shape"):
            opt.step()
    assert_unchanged(opt, params, snap)


def test_sparse_error_names_the_parameter_and_its_group() -> None:
    emb = torch.nn.Embedding(10, 3, sparse=True)
    lin = torch.nn.Linear(3, 1)
    opt = unstuck.Adam([{"params": list(lin.named_parameters())},
                        {"params": list(emb.named_parameters())}])
    lin(emb(torch.tensor([1, 2]))).sum().backward()
    with pytest.raises(RuntimeError, match=re.escape("weight (param_groups[1]['params'][0])")):
        opt.step()
    assert all("step" not in s for s in opt.state.values())


# ---------------------------------------------------------------------------------------------
# 4. LARS' fallback tests the whole denominator
# ---------------------------------------------------------------------------------------------

LARS_PATHS = {**PATHS, "fused=True,nesterov": {"fused": True, "nesterov": True}}


def lars_expected(w: torch.Tensor, wd: float, c: float, eps: float, lr: float,
                  nesterov_momentum: float = 0.0) -> torch.Tensor:
    """One LARS step (momentum's first step: b = r g'; Nesterov: r g' + mu b) of a zero
    gradient, in float64."""
    w = w.double()
    norm = torch.linalg.vector_norm(w)
    ratio = c * norm / (wd * norm + eps) if norm > 0 else torch.tensor(1.0, dtype=w.dtype)
    return w - lr * (1.0 + nesterov_momentum) * ratio * (wd * w)


@pytest.mark.parametrize("shape", [(4, 3), (128, 128), (1025, 1024)],
                         ids=["stacked", "in-kernel", "two-pass"])
@pytest.mark.parametrize("path", LARS_PATHS)
def test_lars_zero_gradient_gets_the_trust_ratio_not_the_full_decay(
    path: str, shape: tuple[int, ...]
) -> None:
    """A frozen tensor (gradient 0) with weight decay: ratio c ||w|| / (wd ||w|| + eps), not 1
    (which would apply the full lr * wd). Every path, a second step too (momentum buffers
    present: the in-kernel path), and beside a tensor with a gradient in the same block."""
    lr, wd, c, eps = 0.5, 0.1, 1e-3, 1e-8
    gen = torch.Generator().manual_seed(5)
    frozen = torch.nn.Parameter(torch.randn(shape, generator=gen))
    live = torch.nn.Parameter(torch.randn(shape, generator=gen))
    opt = unstuck.LARS([frozen, live], lr=lr, weight_decay=wd, trust_coefficient=c, eps=eps,
                       momentum=0.9, **LARS_PATHS[path])
    ref_frozen = torch.nn.Parameter(frozen.detach().clone())
    ref_live = torch.nn.Parameter(live.detach().clone())
    ref = unstuck.LARS([ref_frozen, ref_live], lr=lr, weight_decay=wd, trust_coefficient=c,
                       eps=eps, momentum=0.9, foreach=False,
                       nesterov=LARS_PATHS[path].get("nesterov", False))
    assert torch.equal(frozen.detach(), ref_frozen.detach())
    nesterov = LARS_PATHS[path].get("nesterov", False)
    expected = lars_expected(frozen.detach(), wd, c, eps, lr, 0.9 if nesterov else 0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        for t in range(2):
            for f, lv, o in ((frozen, live, opt), (ref_frozen, ref_live, ref)):
                f.grad = torch.zeros_like(f)
                lv.grad = grads([lv], t)[0]
                o.step()
            if t == 0:
                torch.testing.assert_close(frozen.detach().double(), expected,
                                           rtol=1e-6, atol=1e-7)
    # every path agrees with the per-tensor reference chain
    torch.testing.assert_close(frozen.detach(), ref_frozen.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(live.detach(), ref_live.detach(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("path", PATHS)
def test_lars_centralized_to_zero_keeps_the_ratio(path: str) -> None:
    """A (N, 1) weight's centralized gradient is exactly 0: the ratio still applies."""
    lr, wd, c, eps = 0.5, 0.2, 1e-2, 1e-8
    w = torch.nn.Parameter(torch.randn(6, 1, generator=torch.Generator().manual_seed(6)))
    expected = lars_expected(w.detach(), wd, c, eps, lr)
    opt = unstuck.LARS([w], lr=lr, weight_decay=wd, trust_coefficient=c, eps=eps,
                       centralize=True, **PATHS[path])
    w.grad = torch.randn(6, 1)
    opt.step()
    torch.testing.assert_close(w.detach().double(), expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("path", PATHS)
def test_lars_ratio_is_one_where_the_denominator_or_the_weight_is_zero(path: str) -> None:
    """No weight decay and no gradient: no update; a zero weight: ratio 1 (plain SGD)."""
    still = torch.nn.Parameter(torch.randn(3, 4))
    zero = torch.nn.Parameter(torch.zeros(3, 4))
    before = still.detach().clone()
    opt = unstuck.LARS([still, zero], lr=0.5, weight_decay=0.0, momentum=0.0, **PATHS[path])
    still.grad = torch.zeros(3, 4)
    zero.grad = torch.full((3, 4), 2.0)
    opt.step()
    assert torch.equal(still.detach(), before)
    torch.testing.assert_close(zero.detach(), torch.full((3, 4), -1.0))
