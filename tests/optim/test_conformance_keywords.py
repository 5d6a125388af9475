"""Conformance with torch.optim, side by side: its ``differentiable`` / ``capturable`` keywords,
``nesterov`` in a group that takes ``momentum`` from the defaults, and the hooks of wrappers
(``load_state_dict`` pre-hooks, global step hooks)."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
from torch.optim.optimizer import (
    register_optimizer_step_post_hook,
    register_optimizer_step_pre_hook,
)

import unstuck

Factory = Callable[..., torch.optim.Optimizer]

# unstuck's optimizer and torch's of the same algorithm, with the same hyper-parameters.
PAIRS: dict[str, tuple[Factory, Factory, dict[str, Any]]] = {
    "SGD": (unstuck.SGD, torch.optim.SGD, dict(lr=0.05, momentum=0.9, nesterov=True)),
    "Adam": (unstuck.Adam, torch.optim.Adam, dict(lr=0.01, weight_decay=0.1, amsgrad=True)),
    "AdamW": (unstuck.AdamW, torch.optim.AdamW, dict(lr=0.01, weight_decay=0.1)),
    "RAdam": (unstuck.RAdam, torch.optim.RAdam, dict(lr=0.01, weight_decay=0.1)),
    "Adagrad": (unstuck.Adagrad, torch.optim.Adagrad, dict(lr=0.05, lr_decay=0.01)),
    "RMSprop": (unstuck.RMSprop, torch.optim.RMSprop,
                dict(lr=0.01, momentum=0.5, centered=True)),
}
# Which of torch's optimizers take ``capturable`` (SGD and Adagrad do not).
CAPTURABLE = ("Adam", "AdamW", "RAdam", "RMSprop")
OURS_ONLY: dict[str, Factory] = {
    "Ranger": unstuck.Ranger,
    "LARS": unstuck.LARS,
    "RangerLARS": unstuck.RangerLARS,
}


def make_params(seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [
        torch.randn(4, 3, dtype=torch.float64, generator=g).requires_grad_(),
        torch.randn(3, dtype=torch.float64, generator=g).requires_grad_(),
    ]


def loss_step(opt: torch.optim.Optimizer, params: list[torch.Tensor]) -> None:
    opt.zero_grad()
    sum(((p - 1.5) ** 2).sum() for p in params).backward()
    opt.step()


def torch_keywords(name: str) -> dict[str, Any]:
    out: dict[str, Any] = {"differentiable": False}
    if name in CAPTURABLE:
        out["capturable"] = False
    return out


# --- 1. differentiable / capturable ---------------------------------------------------------


@pytest.mark.parametrize("name", PAIRS)
def test_torch_keywords_default_to_the_same_step_as_torch(name: str) -> None:
    ours_cls, torch_cls, hyper = PAIRS[name]
    keywords = torch_keywords(name)
    a, b = make_params(), make_params()
    ours = ours_cls(a, **hyper, **keywords, foreach=False, fused=False)
    theirs = torch_cls(b, **hyper, **keywords, foreach=False)
    for _ in range(8):
        loss_step(ours, a)
        loss_step(theirs, b)
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y, rtol=1e-12, atol=1e-14)
    for key, value in keywords.items():
        assert ours.defaults[key] is value is theirs.defaults[key]
        assert ours.param_groups[0][key] is value is theirs.param_groups[0][key]


@pytest.mark.parametrize("name", PAIRS)
def test_torch_keywords_round_trip_through_state_dicts(name: str) -> None:
    ours_cls, torch_cls, hyper = PAIRS[name]
    keywords = torch_keywords(name)
    a, b = make_params(), make_params()
    ours = ours_cls(a, **hyper, **keywords)
    theirs = torch_cls(b, **hyper, **keywords)
    loss_step(ours, a)
    loss_step(theirs, b)
    saved_ours, saved_theirs = ours.state_dict(), theirs.state_dict()
    for key in keywords:
        assert saved_ours["param_groups"][0][key] == saved_theirs["param_groups"][0][key]
    # unstuck's checkpoint into torch's optimizer and back
    other = torch_cls(make_params(), **hyper, **keywords)
    other.load_state_dict(saved_ours)
    again = ours_cls(make_params(), **hyper, **keywords)
    again.load_state_dict(other.state_dict())
    for key in keywords:
        assert again.param_groups[0][key] is keywords[key]
    # torch's checkpoint into unstuck's
    fresh = ours_cls(make_params(), **hyper, **keywords)
    fresh.load_state_dict(saved_theirs)
    for key in keywords:
        assert fresh.param_groups[0][key] is keywords[key]


@pytest.mark.parametrize("name", [*PAIRS, *OURS_ONLY])
def test_differentiable_true_is_refused_naming_it(name: str) -> None:
    cls = PAIRS[name][0] if name in PAIRS else OURS_ONLY[name]
    with pytest.raises(ValueError, match="differentiable=True is not supported"):
        cls(make_params(), lr=0.01, differentiable=True)
    opt = cls(make_params(), lr=0.01, differentiable=False)
    with pytest.raises(ValueError, match="differentiable=True"):
        opt.add_param_group({"params": make_params(1), "differentiable": True})
    with pytest.raises(TypeError, match="differentiable must be a bool"):
        cls(make_params(), lr=0.01, differentiable=1)


@pytest.mark.parametrize("name", PAIRS)
def test_differentiable_true_does_not_work_on_torch_with_leaf_parameters_either(
    name: str,
) -> None:
    """What torch does with the keyword on plain leaf parameters: it raises too (its
    differentiable mode needs non-leaf parameters); ours says why at construction."""
    _, torch_cls, hyper = PAIRS[name]
    params = make_params()
    opt = torch_cls(params, **hyper, differentiable=True)
    opt.zero_grad()
    sum((p**2).sum() for p in params).backward()
    with pytest.raises(RuntimeError):
        opt.step()


@pytest.mark.parametrize("name", [*CAPTURABLE, *OURS_ONLY])
def test_capturable_on_cpu_is_accepted_then_the_step_raises_like_torch(name: str) -> None:
    cls = PAIRS[name][0] if name in PAIRS else OURS_ONLY[name]
    params = make_params()
    before = [p.detach().clone() for p in params]
    ours = cls(params, lr=0.01, capturable=True)
    assert ours.defaults["capturable"] is True and ours.param_groups[0]["capturable"] is True
    ours.step()  # no gradients: nothing to check, as torch
    sum((p**2).sum() for p in params).backward()
    with pytest.raises(AssertionError, match="capturable=True.*supported devices") as caught:
        ours.step()
    for p, b in zip(params, before, strict=True):
        assert torch.equal(p.detach(), b)  # refused before anything moved
    if name in PAIRS:
        reference = make_params()
        theirs = PAIRS[name][1](reference, lr=0.01, capturable=True)
        sum((p**2).sum() for p in reference).backward()
        with pytest.raises(type(caught.value), match="capturable=True.*supported devices"):
            theirs.step()


@pytest.mark.parametrize("name", [*CAPTURABLE, *OURS_ONLY])
def test_capturable_in_one_group_only_checks_that_group(name: str) -> None:
    cls = PAIRS[name][0] if name in PAIRS else OURS_ONLY[name]
    a, b = make_params(0), make_params(1)
    opt = cls([{"params": a}, {"params": b, "capturable": True}], lr=0.01)
    for p in a:
        p.grad = torch.ones_like(p)
    opt.step()  # the capturable group has no gradients
    for p in b:
        p.grad = torch.ones_like(p)
    with pytest.raises(AssertionError, match=r"param_groups\[1\]"):
        opt.step()
    with pytest.raises(TypeError, match="capturable must be a bool"):
        cls(make_params(), lr=0.01, capturable="yes")


def test_capturable_is_not_offered_where_torch_has_none() -> None:
    for cls in (unstuck.SGD, unstuck.Adagrad):
        with pytest.raises(TypeError):
            cls(make_params(), lr=0.01, capturable=False)


def test_old_groups_get_the_torch_keywords_on_load() -> None:
    """A checkpoint saved before the keywords existed loads with their defaults."""
    opt = unstuck.Adam(make_params(), lr=0.01)
    saved = opt.state_dict()
    for group in saved["param_groups"]:
        del group["differentiable"], group["capturable"]
    other = unstuck.Adam(make_params(), lr=0.01)
    other.load_state_dict(saved)
    assert other.param_groups[0]["differentiable"] is False
    assert other.param_groups[0]["capturable"] is False


# --- 2. nesterov with momentum from the defaults ---------------------------------------------


def test_sgd_nesterov_group_with_momentum_from_defaults_matches_torch() -> None:
    a, b = make_params(), make_params()
    groups = lambda ps: [{"params": ps[:1], "nesterov": True}, {"params": ps[1:]}]  # noqa: E731
    ours = unstuck.SGD(groups(a), lr=0.05, momentum=0.9, foreach=False, fused=False)
    theirs = torch.optim.SGD(groups(b), lr=0.05, momentum=0.9, foreach=False)
    for _ in range(6):
        loss_step(ours, a)
        loss_step(theirs, b)
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y, rtol=1e-12, atol=1e-14)
    assert [g["nesterov"] for g in ours.param_groups] == [True, False]
    # and added later
    ours.add_param_group({"params": make_params(2), "nesterov": True})
    theirs.add_param_group({"params": make_params(2), "nesterov": True})


def test_lars_nesterov_group_with_momentum_from_defaults_is_accepted() -> None:
    params = make_params()
    opt = unstuck.LARS([{"params": params, "nesterov": True}], lr=0.05, momentum=0.9)
    assert opt.param_groups[0]["nesterov"] is True
    loss_step(opt, params)


@pytest.mark.parametrize("cls", [unstuck.SGD, unstuck.LARS])
def test_nesterov_is_still_checked_on_the_merged_group(cls: Factory) -> None:
    opt = cls(make_params(), lr=0.05, momentum=0.0)
    with pytest.raises(ValueError, match="nesterov=True requires momentum > 0"):
        opt.add_param_group({"params": make_params(1), "nesterov": True})
    opt.add_param_group({"params": make_params(1), "nesterov": True, "momentum": 0.5})
    with pytest.raises(ValueError, match="nesterov=True requires momentum > 0"):
        cls(make_params(), lr=0.05, momentum=0.0, nesterov=True)


def test_sgd_nesterov_group_with_dampening_from_defaults_is_refused() -> None:
    opt = unstuck.SGD(make_params(), lr=0.05, momentum=0.9, dampening=0.1)
    with pytest.raises(ValueError, match="dampening == 0, got momentum=0.9, dampening=0.1"):
        opt.add_param_group({"params": make_params(1), "nesterov": True})


# --- 3. wrappers: load_state_dict pre-hooks, global step hooks -------------------------------

WRAPPERS: dict[str, Callable[[list[torch.Tensor]], torch.optim.Optimizer]] = {
    "torch.optim.SGD": lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9),
    "Lookahead(torch.optim.SGD)": lambda ps: unstuck.Lookahead(
        torch.optim.SGD(ps, lr=0.1, momentum=0.9), k=2),
    "Lookahead(unstuck.Adam)": lambda ps: unstuck.Lookahead(unstuck.Adam(ps, lr=0.1), k=2),
    "centralize(torch.optim.SGD)": lambda ps: unstuck.centralize(
        torch.optim.SGD(ps, lr=0.1, momentum=0.9)),
    "Lookahead(centralize(unstuck.Adam))": lambda ps: unstuck.Lookahead(
        unstuck.centralize(unstuck.Adam(ps, lr=0.1)), k=2),
}


def set_lr_hook(optimizer: torch.optim.Optimizer, state_dict: dict[str, Any]) -> dict[str, Any]:
    state_dict = copy.deepcopy(state_dict)
    for group in state_dict["param_groups"]:
        group["lr"] = 0.0123
        group["custom"] = "from the hook"
    return state_dict


@pytest.mark.parametrize("name", WRAPPERS)
def test_load_state_dict_pre_hook_edits_are_kept(name: str) -> None:
    params = make_params()
    opt = WRAPPERS[name](params)
    loss_step(opt, params)
    saved = opt.state_dict()
    other_params = make_params()
    other = WRAPPERS[name](other_params)
    seen_by_post: list[float] = []
    other.register_load_state_dict_pre_hook(set_lr_hook)
    other.register_load_state_dict_post_hook(
        lambda o: seen_by_post.append(o.param_groups[0]["lr"])
    )
    other.load_state_dict(saved)
    assert [g["lr"] for g in other.param_groups] == [0.0123]
    assert other.param_groups[0]["custom"] == "from the hook"
    assert seen_by_post == [0.0123]  # the post-hooks see what was loaded
    assert other.param_groups[0]["params"] == other_params
    inner = getattr(other, "optimizer", other)
    while True:  # every optimizer of the chain shares the edited groups
        assert inner.param_groups[0]["lr"] == 0.0123
        if not hasattr(inner, "optimizer"):
            break
        inner = inner.optimizer
    # the step uses the loaded lr, and the rest of the state came through
    assert other.state_dict()["param_groups"][0]["lr"] == 0.0123
    loss_step(other, other_params)


@pytest.mark.parametrize("name", WRAPPERS)
def test_load_state_dict_pre_hook_sees_the_whole_dict(name: str) -> None:
    opt = WRAPPERS[name](make_params())
    saved = opt.state_dict()
    keys: list[set[str]] = []
    opt.register_load_state_dict_pre_hook(lambda o, sd: keys.append(set(sd)))
    opt.load_state_dict(saved)
    assert keys == [set(saved)]


def test_wrapper_still_refuses_a_plain_state_dict() -> None:
    params = make_params()
    opt = unstuck.Lookahead(torch.optim.SGD(params, lr=0.1))
    with pytest.raises(ValueError, match="no 'inner' entry"):
        opt.load_state_dict(torch.optim.SGD(make_params(), lr=0.1).state_dict())


@pytest.fixture
def global_hook_calls() -> Iterator[list[tuple[str, torch.optim.Optimizer]]]:
    calls: list[tuple[str, torch.optim.Optimizer]] = []
    pre = register_optimizer_step_pre_hook(lambda o, args, kwargs: calls.append(("pre", o)))
    post = register_optimizer_step_post_hook(lambda o, args, kwargs: calls.append(("post", o)))
    yield calls
    pre.remove()
    post.remove()


@pytest.mark.parametrize("name", WRAPPERS)
@pytest.mark.parametrize("with_closure", [False, True])
def test_global_step_hooks_fire_once_per_step(
    name: str, with_closure: bool, global_hook_calls: list[tuple[str, Any]]
) -> None:
    params = make_params()
    opt = WRAPPERS[name](params)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = sum(((p - 1.5) ** 2).sum() for p in params)
        loss.backward()
        return loss

    for _ in range(3):
        if with_closure:
            assert opt.step(closure) is not None
        else:
            closure()
            opt.step()
    # as torch's own optimizer (the first entry): one pre and one post hook per step, given the
    # optimizer the user stepped
    assert [kind for kind, _ in global_hook_calls] == ["pre", "post"] * 3
    assert all(o is opt for _, o in global_hook_calls)


@pytest.mark.parametrize("name", [n for n in WRAPPERS if n != "torch.optim.SGD"])
def test_inner_and_wrapper_instance_step_hooks_fire_once(name: str) -> None:
    params = make_params()
    opt = WRAPPERS[name](params)
    calls: list[str] = []
    opt.register_step_pre_hook(lambda o, a, k: calls.append("wrapper pre"))
    opt.register_step_post_hook(lambda o, a, k: calls.append("wrapper post"))
    inner = opt.optimizer  # type: ignore[attr-defined]
    inner.register_step_pre_hook(lambda o, a, k: calls.append("inner pre"))
    inner.register_step_post_hook(lambda o, a, k: calls.append("inner post"))
    loss_step(opt, params)
    assert calls == ["wrapper pre", "inner pre", "inner post", "wrapper post"]


def test_inner_pre_hook_can_replace_the_closure() -> None:
    """An inner optimizer's pre-hook may return new (args, kwargs), as torch allows."""
    params = make_params()
    inner = torch.optim.SGD(params, lr=0.1)
    opt = unstuck.Lookahead(inner, k=2)
    replaced: list[bool] = []

    def other_closure() -> torch.Tensor:
        replaced.append(True)
        inner.zero_grad()
        loss = sum((p**2).sum() for p in params)
        loss.backward()
        return loss

    inner.register_step_pre_hook(lambda o, args, kwargs: ((args[0], other_closure), kwargs))
    opt.step(lambda: torch.tensor(0.0))
    assert replaced == [True]
