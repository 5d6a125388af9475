r"""Reference Adagrad in the lectures' form: the learning rate over the root MEAN square.

Per tensor, at step ``t = 1, 2, ...``:

.. math::
    s_t = s_{t-1} + g_t^2,\quad \sigma_t = \sqrt{s_t / t} + \epsilon,\quad
    p \leftarrow p - \eta\, g_t / \sigma_t
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def adagrad_rms(
    params: Sequence[torch.Tensor], grads: Sequence[Sequence[torch.Tensor]], *, lr: float,
    eps: float = 1e-10,
) -> list[torch.Tensor]:
    """Apply one step per entry of ``grads`` (each a gradient per parameter) to copies of
    ``params``; returns the final parameters."""
    params = [p.clone() for p in params]
    sums = [torch.zeros_like(p) for p in params]
    for t, step_grads in enumerate(grads, start=1):
        for p, s, g in zip(params, sums, step_grads, strict=True):
            s += g * g
            p -= lr * g / ((s / t).sqrt() + eps)
    return params
