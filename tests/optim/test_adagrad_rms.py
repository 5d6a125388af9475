"""AdagradRMS (the lectures' Adagrad) against its slow reference."""

from __future__ import annotations

import pytest
import torch

import unstuck
from reference.adagrad_rms import adagrad_rms
from support import TOLERANCE, max_relative_difference

SHAPES = [(), (7,), (5, 3), (2, 3, 2, 2)]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("foreach", [True, False])
def test_matches_reference_over_many_steps(dtype, foreach):
    generator = torch.Generator().manual_seed(0)
    start = [torch.randn(s, generator=generator, dtype=dtype) for s in SHAPES]
    grads = [[torch.randn(s, generator=generator, dtype=dtype) for s in SHAPES] for _ in range(200)]
    params = [torch.nn.Parameter(p.clone()) for p in start]
    opt = unstuck.AdagradRMS(params, lr=0.03, eps=1e-8, foreach=foreach)
    for step_grads in grads:
        for p, g in zip(params, step_grads, strict=True):
            p.grad = g.clone()
        opt.step()
    expected = adagrad_rms(start, grads, lr=0.03, eps=1e-8)
    got = [p.detach() for p in params]
    assert max_relative_difference(got, expected) <= TOLERANCE[dtype]


def test_bad_arguments_are_named():
    p = [torch.nn.Parameter(torch.zeros(2))]
    with pytest.raises(ValueError, match="lr"):
        unstuck.AdagradRMS(p, lr=-1.0)
    with pytest.raises(ValueError, match="eps"):
        unstuck.AdagradRMS(p, eps=0.0)
