r"""Reference Lookahead (Zhang et al. 2019, https://arxiv.org/abs/1907.08610).

The slow weights :math:`\phi` start as a copy of the parameters before the first step. The inner
optimizer updates the fast weights :math:`\theta` every step; after every ``k``-th inner step:

.. math::
    \phi \leftarrow \phi + \alpha (\theta - \phi), \qquad \theta \leftarrow \phi
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .driver import GradFn, State, StepFn, clone_all


def lookahead(
    params: Sequence[torch.Tensor],
    grad_fn: GradFn,
    steps: int,
    inner_step: StepFn,
    *,
    k: int = 5,
    alpha: float = 0.5,
) -> list[torch.Tensor]:
    """Final fast weights after ``steps`` inner steps of ``inner_step`` wrapped in Lookahead.

    ``inner_step`` is a per-tensor reference update (:func:`sgd.sgd_step`, :func:`adam.adam_step`,
    ...); it keeps its own state and sees ``t = 1, 2, ...``, and the Lookahead sync happens after
    inner step ``t`` whenever ``t % k == 0``.

    Example:
        >>> from reference.sgd import sgd_step
        >>> p = lookahead([torch.zeros(1)], lambda ps, s: [-torch.ones(1)], 2,
        ...               sgd_step(lr=1.0), k=2, alpha=0.5)
        >>> p[0].tolist()  # fast goes 0 -> 1 -> 2, slow 0 -> 0 + 0.5 * (2 - 0)
        [1.0]
    """
    fast = clone_all(params)
    slow = clone_all(params)
    states: list[State] = [{} for _ in fast]
    for step in range(steps):
        t = step + 1
        grads = grad_fn(fast, step)
        fast = [inner_step(p, g, s, t) for p, g, s in zip(fast, grads, states, strict=True)]
        if t % k == 0:
            for i in range(len(fast)):
                slow[i] = slow[i] + alpha * (fast[i] - slow[i])
                fast[i] = slow[i].clone()
    return fast
