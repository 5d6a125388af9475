"""Lookahead around any optimizer: the equations, state, composition."""

from __future__ import annotations

import copy
import io
import pickle

import pytest
import torch

import unstuck


def quadratic_step(opt: torch.optim.Optimizer, params: list[torch.Tensor]) -> None:
    opt.zero_grad()
    sum(((p - 2.0) ** 2).sum() for p in params).backward()
    opt.step()


def test_slow_weights_start_before_the_first_inner_step() -> None:
    """k=1: p1 = p0 + alpha * (inner(p0) - p0)."""
    p0 = torch.tensor([1.0, -1.0], dtype=torch.float64)
    w = p0.clone().requires_grad_()
    opt = unstuck.Lookahead(unstuck.SGD([w], lr=0.1), k=1, alpha=0.25)
    quadratic_step(opt, [w])
    fast = p0 - 0.1 * 2 * (p0 - 2.0)
    torch.testing.assert_close(w.detach(), p0 + 0.25 * (fast - p0), rtol=1e-15, atol=0)


def test_alpha_one_is_the_inner_optimizer() -> None:
    a = torch.randn(3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    b = a.clone().requires_grad_()
    a.requires_grad_()
    plain = torch.optim.Adam([a], lr=0.05)
    wrapped = unstuck.Lookahead(torch.optim.Adam([b], lr=0.05), k=3, alpha=1.0)
    for _ in range(10):
        quadratic_step(plain, [a])
        quadratic_step(wrapped, [b])
    torch.testing.assert_close(a, b, rtol=1e-14, atol=0)


def test_alpha_zero_returns_to_the_start_every_k_steps() -> None:
    start = torch.randn(5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    w = start.clone().requires_grad_()
    opt = unstuck.Lookahead(unstuck.SGD([w], lr=0.1, momentum=0.9), k=4, alpha=0.0)
    for step in range(1, 9):
        quadratic_step(opt, [w])
        assert torch.equal(w.detach(), start) == (step % 4 == 0)


def test_slow_weights_are_in_state_and_state_dict() -> None:
    w = torch.ones(3, requires_grad=True)
    opt = unstuck.Lookahead(unstuck.Adam([w], lr=0.1), k=5)
    quadratic_step(opt, [w])
    assert torch.equal(opt.state[w]["lookahead_slow"], torch.ones(3))
    sd = opt.state_dict()
    assert torch.equal(sd["state"][0]["lookahead_slow"], torch.ones(3))
    assert sd["wrapper"] == {"k": 5, "alpha": 0.5, "lookahead_step": 1}
    assert "exp_avg" in sd["inner"]["state"][0]


def test_load_state_dict_of_a_plain_optimizer_is_refused() -> None:
    w = torch.ones(3, requires_grad=True)
    opt = unstuck.Lookahead(unstuck.Adam([w]))
    with pytest.raises(ValueError, match="no 'inner' entry"):
        opt.load_state_dict(unstuck.Adam([w]).state_dict())


def test_closure_computes_gradients_inside_the_step() -> None:
    w = torch.zeros(2, requires_grad=True)
    opt = unstuck.Lookahead(unstuck.SGD([w], lr=0.1), k=1, alpha=0.5)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = ((w - 2.0) ** 2).sum()
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert loss.item() == pytest.approx(8.0)
    # slow weights were taken before the inner step although no gradient existed yet
    torch.testing.assert_close(w.detach(), torch.full((2,), 0.5 * 0.4))


def test_wrappers_compose_and_resume() -> None:
    def make() -> tuple[torch.Tensor, torch.optim.Optimizer]:
        w = torch.randn(4, 3, generator=torch.Generator().manual_seed(0)).requires_grad_()
        opt = unstuck.Lookahead(unstuck.centralize(torch.optim.SGD([w], lr=0.1, momentum=0.9)))
        return w, opt

    w1, o1 = make()
    for _ in range(12):
        quadratic_step(o1, [w1])
    w2, o2 = make()
    for _ in range(7):
        quadratic_step(o2, [w2])
    buf = io.BytesIO()
    torch.save(o2.state_dict(), buf)
    buf.seek(0)
    w3, o3 = make()
    with torch.no_grad():
        w3.copy_(w2)
    o3.load_state_dict(torch.load(buf, weights_only=True))
    for _ in range(5):
        quadratic_step(o3, [w3])
    assert torch.equal(w1, w3)


def test_deepcopy_and_pickle() -> None:
    w = torch.ones(3, requires_grad=True)
    opt = unstuck.Lookahead(unstuck.Ranger([w]), k=2)
    quadratic_step(opt, [w])
    for clone in (copy.deepcopy(opt), pickle.loads(pickle.dumps(opt))):
        assert clone.k == 2 and clone.lookahead_step == 1
        assert clone.param_groups is clone.optimizer.param_groups


def test_param_groups_are_shared_with_the_inner_optimizer() -> None:
    w = torch.ones(3, requires_grad=True)
    inner = unstuck.SGD([w], lr=0.1)
    opt = unstuck.Lookahead(inner)
    opt.param_groups[0]["lr"] = 0.5
    assert inner.param_groups[0]["lr"] == 0.5
    assert opt.defaults["lr"] == 0.1
