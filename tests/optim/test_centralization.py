"""Gradient Centralization: the function, the wrapper and ``centralize=True`` agree."""

from __future__ import annotations

import torch

import unstuck
from support import TOLERANCE, max_relative_difference
from unstuck.optim import centralized


def test_centralized_rows_have_zero_mean_and_vectors_are_untouched() -> None:
    g = torch.randn(4, 3, 2, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    c = centralized(g)
    torch.testing.assert_close(c.mean(dim=(1, 2, 3)), torch.zeros(4, dtype=torch.float64))
    torch.testing.assert_close(g - c, g.mean(dim=(1, 2, 3), keepdim=True).expand_as(g))
    v = torch.randn(5)
    assert centralized(v) is v


def _run(opt: torch.optim.Optimizer, params: list[torch.Tensor], steps: int = 50) -> None:
    targets = [torch.full_like(p, 0.5) + torch.arange(p.numel()).reshape(p.shape) * 0.1
               for p in params]
    for _ in range(steps):
        opt.zero_grad()
        sum(((p - t).abs() ** 2 * (1 + p.abs())).sum() for p, t in zip(params, targets, strict=True)
            ).backward()
        opt.step()


def _params(dtype: torch.dtype) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return [torch.randn(s, generator=gen, dtype=dtype).requires_grad_()
            for s in ((3, 4), (2, 3, 3, 3), (5,), ())]


def test_wrapper_equals_built_in_option() -> None:
    for dtype in (torch.float64, torch.complex128):
        ours, theirs = _params(dtype), _params(dtype)
        _run(unstuck.Adam(ours, lr=0.01, centralize=True), ours)
        _run(unstuck.centralize(torch.optim.Adam(theirs, lr=0.01)), theirs)
        assert max_relative_difference(ours, theirs) <= TOLERANCE[torch.float64]


def test_wrapper_restores_the_gradient_objects() -> None:
    params = _params(torch.float32)
    opt = unstuck.centralize(torch.optim.SGD(params, lr=0.1))
    sum((p**3).sum() for p in params).backward()
    grads = [p.grad for p in params]
    copies = [g.clone() for g in grads]
    opt.step()
    for p, g, c in zip(params, grads, copies, strict=True):
        assert p.grad is g and torch.equal(g, c)


def test_centralize_changes_only_multi_dimensional_tensors() -> None:
    plain, central = _params(torch.float64), _params(torch.float64)
    _run(unstuck.SGD(plain, lr=0.01), plain, steps=5)
    _run(unstuck.SGD(central, lr=0.01, centralize=True), central, steps=5)
    assert not torch.equal(plain[0], central[0]) and not torch.equal(plain[1], central[1])
    assert torch.equal(plain[2], central[2]) and torch.equal(plain[3], central[3])
