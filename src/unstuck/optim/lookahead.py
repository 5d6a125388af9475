"""Lookahead: slow weights that follow any optimizer's fast weights every k steps."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from unstuck.optim import fused_parts, kernels, validation
from unstuck.optim.fused import DTYPES
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
        fused: the synchronisation on torch's fused SGD kernel (one pass per tensor list, same
            result to rounding) for dense float32/float64 tensors: ``None`` (default) or
            ``True`` wherever that applies, ``False`` never. The inner optimizer has its own.

    Example:
        >>> opt = unstuck.Lookahead(torch.optim.AdamW(model.parameters()), k=5, alpha=0.5)
    """

    def __init__(
        self, optimizer: Optimizer, k: int = 5, alpha: float = 0.5, *, fused: bool | None = None
    ) -> None:
        validation.positive_int("k", k)
        validation.unit_interval("alpha", alpha)
        validation.optional_flag("fused", fused)
        super().__init__(optimizer)
        self.k = k
        self.alpha = float(alpha)
        self.fused = fused
        self.lookahead_step = 0
        self._all_slow: tuple[Any, int] | None = None  # (state, parameter count) when complete

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        """One inner step, then a synchronisation when the step count is a multiple of ``k``.

        Slow weights are created, before the inner step, for parameters that have a gradient
        (or, when a closure computes the gradients, for every parameter that requires one).
        """
        self._create_slow_weights(closure is not None)
        loss = self.step_inner(closure)
        self.lookahead_step += 1
        if self.lookahead_step % self.k == 0:
            self._synchronise()
        return loss

    def _create_slow_weights(self, with_closure: bool) -> None:
        """Slow weights for the parameters about to take their first step. Once every
        parameter has them the check is skipped (until parameters are added or the state is
        replaced by ``load_state_dict``)."""
        count = sum(len(group["params"]) for group in self.param_groups)
        if self._all_slow is not None and self._all_slow[0] is self.state and (
            self._all_slow[1] == count
        ):
            return
        complete = True
        for group in self.param_groups:
            for p in group["params"]:
                state = self.state[p]
                if "lookahead_slow" in state:
                    continue
                if p.grad is not None or (with_closure and p.requires_grad):
                    state["lookahead_slow"] = slow_copy(p)
                else:
                    complete = False
        self._all_slow = (self.state, count) if complete else None

    def _synchronise(self) -> None:
        buckets: dict[tuple[Any, ...], tuple[list[Tensor], list[Tensor]]] = {}
        for group in self.param_groups:
            for p in group["params"]:
                state = self.state.get(p)
                slow = state.get("lookahead_slow") if state else None
                if slow is None:
                    continue
                fast, slows = buckets.setdefault((p.device, p.dtype), ([], []))
                fast.append(torch.view_as_real(p) if p.is_complex() else p)
                slows.append(torch.view_as_real(slow) if slow.is_complex() else slow)
        for (device, dtype), (fast, slows) in buckets.items():
            if self._fusable(device, dtype, fast, slows):
                fused_parts.lookahead_sync_(slows, fast, self.alpha)
            else:
                lookahead_sync_(slows, fast, self.alpha)

    def _fusable(
        self, device: torch.device, dtype: torch.dtype, fast: list[Tensor], slows: list[Tensor]
    ) -> bool:
        return (
            self.fused is not False
            and dtype in DTYPES
            and kernels.available("sgd", device)
            and all(f.is_contiguous() and s.is_contiguous() for f, s in zip(fast, slows))
        )

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self.__dict__.setdefault("fused", None)  # pickled before the option existed
        self.__dict__.setdefault("_all_slow", None)

    def extra_state(self) -> dict[str, Any]:
        return {"k": self.k, "alpha": self.alpha, "lookahead_step": self.lookahead_step}

    def load_extra_state(self, extra: dict[str, Any]) -> None:
        self.lookahead_step = int(extra.get("lookahead_step", 0))

    def __repr__(self) -> str:
        return f"Lookahead({self.optimizer!r}, k={self.k}, alpha={self.alpha})"
