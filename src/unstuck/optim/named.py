"""What the named optimizers share: the preamble transforms every chain starts with, torch.optim"s
``differentiable``/``capturable`` options (see :mod:`unstuck.optim.optimizers`), the
hyper-parameter rules, and :class:`TorchOptions`, the base class that checks them."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from unstuck.optim import transforms as tr
from unstuck.optim import validation as check
from unstuck.optim.base import ChainOptimizer, Transform

__all__ = [
    "ADAM_RULES",
    "APPLY",
    "CENTRALIZE",
    "COUPLED_WD",
    "DECOUPLED_WD",
    "DIFFERENTIABLE",
    "MAXIMIZE",
    "PREAMBLE",
    "Params",
    "RANGER_RULES",
    "TORCH_OPTIONS",
    "TorchOptions",
]

Params = Iterable[Any]

MAXIMIZE = tr.Maximize()
CENTRALIZE = tr.Centralize()
COUPLED_WD = tr.CoupledWeightDecay()
DECOUPLED_WD = tr.DecoupledWeightDecay()
APPLY = tr.ApplyUpdate()
PREAMBLE: tuple[Transform, ...] = (MAXIMIZE, CENTRALIZE, COUPLED_WD, DECOUPLED_WD)

# torch.optim's options (see the module docstring).
DIFFERENTIABLE: dict[str, check.Check] = {"differentiable": check.not_differentiable}
TORCH_OPTIONS: dict[str, check.Check] = {**DIFFERENTIABLE, "capturable": check.flag}

ADAM_RULES: dict[str, check.Check] = {
    "betas": check.betas,
    "eps": check.positive,
    "weight_decay": check.non_negative,
    "amsgrad": check.flag,
    "decoupled_weight_decay": check.flag,
    **TORCH_OPTIONS,
}
RANGER_RULES: dict[str, check.Check] = {
    **ADAM_RULES,
    "k": check.positive_int,
    "alpha": check.unit_interval,
    "n_sma_threshold": check.rectification_threshold,
}


class TorchOptions(ChainOptimizer):
    """A named optimizer with torch.optim's ``differentiable`` and ``capturable`` options (see
    the module docstring): checked with the other hyper-parameters, ``capturable`` at each
    step as torch checks it."""

    def step(self, closure: Callable[[], float] | None = None) -> Any:
        """Perform one optimization step.

        Args:
            closure: re-evaluates the model and returns the loss (optional).
        """
        check.capturable_step(self.param_groups)
        return super().step(closure)

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        # groups saved before these options existed (the base class leaves "differentiable",
        # which torch's own __setstate__ adds to every optimizer's defaults)
        for group in self.param_groups:
            for name in ("differentiable", "capturable"):
                if name in self.defaults:
                    group.setdefault(name, self.defaults[name])
