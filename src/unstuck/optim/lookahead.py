"""Lookahead: slow weights that follow any optimizer's fast weights every k steps."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from unstuck.optim import validation
from unstuck.optim.transforms import lookahead_sync_, slow_copy
from unstuck.optim.wrapper import OptimizerWrapper

__all__ = ["Lookahead"]


class Lookahead(OptimizerWrapper):
    r"""Lookahead around any ``torch.optim.Optimizer`` (unstuck's or torch's).

    The inner optimizer moves the (fast) parameters; after every ``k`` inner steps

    .. math::
        \phi \leftarrow \phi + \alpha\,(\theta - \phi);\qquad \theta \leftarrow \phi

    where the slow weights :math:`\phi` start as a copy of the parameters, taken at the first
    step (before the inner update; after loading a checkpoint into the model, not before).
    Slow weights live in ``state`` (key ``"lookahead_slow"``) and in ``state_dict()``; the step
    counter too, so a resumed run continues exactly.

    Reference: Zhang, Lucas, Hinton & Ba, "Lookahead Optimizer: k steps forward, 1 step back",
    NeurIPS 2019.

    Args:
        optimizer: the inner optimizer.
        k: inner steps between synchronisations (>= 1).
        alpha: slow-weight step size in [0, 1].

    Example:
        >>> opt = unstuck.Lookahead(torch.optim.AdamW(model.parameters()), k=5, alpha=0.5)
    """

    def __init__(self, optimizer: Optimizer, k: int = 5, alpha: float = 0.5) -> None:
        validation.positive_int("k", k)
        validation.unit_interval("alpha", alpha)
        super().__init__(optimizer)
        self.k = k
        self.alpha = float(alpha)
        self.lookahead_step = 0

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        """One inner step, then a synchronisation when the step count is a multiple of ``k``.

        Slow weights are created, before the inner step, for parameters that have a gradient
        (or, when a closure computes the gradients, for every parameter that requires one).
        """
        slow_missing = [
            p
            for group in self.param_groups
            for p in group["params"]
            if "lookahead_slow" not in self.state[p]
            and (p.grad is not None or (closure is not None and p.requires_grad))
        ]
        for p in slow_missing:
            self.state[p]["lookahead_slow"] = slow_copy(p)
        loss = self.optimizer.step(closure) if closure is not None else self.optimizer.step()
        self.lookahead_step += 1
        if self.lookahead_step % self.k == 0:
            self._synchronise()
        return loss

    def _synchronise(self) -> None:
        buckets: dict[tuple[Any, ...], tuple[list[Tensor], list[Tensor]]] = {}
        for group in self.param_groups:
            for p in group["params"]:
                slow = self.state[p].get("lookahead_slow") if p in self.state else None
                if slow is None:
                    continue
                fast, slows = buckets.setdefault((p.device, p.dtype), ([], []))
                fast.append(torch.view_as_real(p) if p.is_complex() else p)
                slows.append(torch.view_as_real(slow) if slow.is_complex() else slow)
        for fast, slows in buckets.values():
            lookahead_sync_(slows, fast, self.alpha)

    def extra_state(self) -> dict[str, Any]:
        return {"k": self.k, "alpha": self.alpha, "lookahead_step": self.lookahead_step}

    def load_extra_state(self, extra: dict[str, Any]) -> None:
        self.lookahead_step = int(extra.get("lookahead_step", 0))

    def __repr__(self) -> str:
        return f"Lookahead({self.optimizer!r}, k={self.k}, alpha={self.alpha})"
