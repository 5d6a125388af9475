"""Shared helpers for the test-suite: tolerances, trajectory comparison, synthetic problems."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

# Parity tolerances of the core issue: relative difference after 200 steps.
TOLERANCE = {torch.float64: 1e-12, torch.float32: 1e-5}


def relative_difference(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """``max|actual - expected| / max|expected|`` (0 when both are all zeros).

    Compared in float64 so the measure itself adds no rounding.
    """
    a = torch.view_as_real(actual) if actual.is_complex() else actual
    e = torch.view_as_real(expected) if expected.is_complex() else expected
    a, e = a.detach().double(), e.detach().double()
    scale = e.abs().max().item() if e.numel() else 0.0
    diff = (a - e).abs().max().item() if e.numel() else 0.0
    if scale == 0.0:
        return diff
    return diff / scale


def max_relative_difference(
    actual: Sequence[torch.Tensor], expected: Sequence[torch.Tensor]
) -> float:
    """The worst :func:`relative_difference` over paired tensors."""
    assert len(actual) == len(expected)
    return max(relative_difference(a, e) for a, e in zip(actual, expected, strict=True))


# Shapes the parity tests draw from: scalar, vector, matrix, 4-D conv kernel.
SHAPES: tuple[tuple[int, ...], ...] = ((), (7,), (5, 3), (4, 3, 3, 3))


def make_problem(
    shapes: Sequence[tuple[int, ...]],
    dtype: torch.dtype,
    seed: int,
) -> tuple[list[torch.Tensor], Callable[[Sequence[torch.Tensor], int], list[torch.Tensor]]]:
    """Initial parameters and a deterministic gradient function ``grad(params, step)``.

    The gradient is that of a separable, well-conditioned objective
    ``sum_i c_i/2 (p_i - t_i)^2 + 0.1 cos(p_i)`` plus step-dependent noise, so
    trajectories are non-trivial but not chaotic: rounding differences between
    two correct implementations stay at rounding level over hundreds of steps.
    """
    gen = torch.Generator().manual_seed(seed)
    params = [torch.randn(s, generator=gen, dtype=torch.float64).to(dtype) for s in shapes]
    curvature = [torch.rand(s, generator=gen, dtype=torch.float64).add(0.5) for s in shapes]
    target = [torch.randn(s, generator=gen, dtype=torch.float64) for s in shapes]
    noise_seed = int(torch.randint(0, 2**31 - 1, (1,), generator=gen))

    def grad(ps: Sequence[torch.Tensor], step: int) -> list[torch.Tensor]:
        g_noise = torch.Generator().manual_seed(noise_seed + step)
        out = []
        for p, c, t in zip(ps, curvature, target, strict=True):
            x = p.detach().double()
            noise = torch.randn(x.shape, generator=g_noise, dtype=torch.float64)
            out.append((c * (x - t) - 0.1 * torch.sin(x) + 0.3 * noise).to(p.dtype))
        return out

    return params, grad
