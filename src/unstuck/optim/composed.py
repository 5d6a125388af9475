"""The optimizers composed of the others' parts: Ranger (Gradient Centralization + RAdam +
Lookahead), LARS (a layer-wise trust ratio on SGD with momentum) and RangerLARS (Ranger with a
trust ratio on the update). Their options are those of :mod:`unstuck.optim.optimizers`."""

from __future__ import annotations

from typing import Any, ClassVar

from unstuck.optim import fused_rules
from unstuck.optim import transforms as tr
from unstuck.optim import validation as check
from unstuck.optim.named import (
    APPLY,
    CENTRALIZE,
    MAXIMIZE,
    PREAMBLE,
    RANGER_RULES,
    TORCH_OPTIONS,
    Params,
    TorchOptions,
)

__all__ = ["LARS", "Ranger", "RangerLARS"]


class Ranger(TorchOptions):
    r"""Ranger: Gradient Centralization, RAdam and Lookahead in one optimizer.

    Per step: centralize ``g`` (tensors with more than one dimension); decoupled weight decay
    ``p <- p (1 - lr * weight_decay)``; RAdam (rectified when ``rho_t > n_sma_threshold``,
    see :class:`RAdam`); every ``k`` steps Lookahead ``slow <- slow + alpha (p - slow)``,
    ``p <- slow``.

    References: Wright, "Ranger" (2019); Liu et al., ICLR 2020 (RAdam); Zhang et al.,
    NeurIPS 2019 (Lookahead); Yong et al., ECCV 2020 (Gradient Centralization).

    Example:
        >>> opt = unstuck.Ranger(model.parameters())
    """

    chain = (*PREAMBLE, tr.ScaleByRAdam(), APPLY, tr.LookaheadSync())
    fused_rule = fused_rules.RAdamRule(lookahead=True)
    rules = RANGER_RULES

    def __init__(
        self,
        params: Params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.95, 0.999),
        eps: float = 1e-5,
        weight_decay: float = 0.0,
        k: int = 6,
        alpha: float = 0.5,
        n_sma_threshold: float = 5,
        centralize: bool = True,
        *,
        maximize: bool = False,
        foreach: bool = True,
        capturable: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
    ) -> None:
        super().__init__(params, dict(
            lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, k=k, alpha=alpha,
            n_sma_threshold=n_sma_threshold, centralize=centralize, decoupled_weight_decay=True,
            maximize=maximize, foreach=foreach, capturable=capturable,
            differentiable=differentiable, fused=fused,
        ))


class LARS(TorchOptions):
    r"""LARS: SGD with momentum on layer-wise trust-ratio-scaled gradients.

    .. math::
        g' = g + \lambda w;\quad
        r = \frac{c\,\lVert w\rVert}{\lVert g\rVert + \lambda\lVert w\rVert + \epsilon}
        \ (1 \text{ if } \lVert w\rVert = 0
        \text{ or } \lVert g\rVert + \lambda\lVert w\rVert = 0);\quad
        b \leftarrow \mu b + r g' \ (b_1 = r g');\quad w \leftarrow w - \eta b

    (Nesterov as in :class:`SGD`). With ``exclude_1d`` tensors of at most one dimension get
    neither the ratio nor weight decay.

    Reference: You, Gitman & Ginsburg, "Large Batch Training of Convolutional Networks",
    arXiv:1708.03888, 2017.

    Example:
        >>> opt = unstuck.LARS(model.parameters(), lr=0.1, weight_decay=1e-4)
    """

    chain = (MAXIMIZE, CENTRALIZE, tr.LarsTrustRatio(), tr.SgdMomentum(), APPLY)
    fused_rule = fused_rules.LarsRule()
    rules: ClassVar[dict[str, check.Check]] = {
        "momentum": check.non_negative,
        "weight_decay": check.non_negative,
        "trust_coefficient": check.positive,
        "eps": check.positive,
        "nesterov": check.flag,
        "exclude_1d": check.flag,
        **TORCH_OPTIONS,
    }

    def __init__(
        self,
        params: Params,
        lr: float = 1e-1,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        trust_coefficient: float = 1e-3,
        eps: float = 1e-8,
        nesterov: bool = False,
        exclude_1d: bool = True,
        *,
        maximize: bool = False,
        foreach: bool = True,
        capturable: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
        centralize: bool = False,
    ) -> None:
        super().__init__(params, dict(
            lr=lr, momentum=momentum, weight_decay=weight_decay,
            trust_coefficient=trust_coefficient, eps=eps, nesterov=nesterov,
            exclude_1d=exclude_1d, maximize=maximize, foreach=foreach, capturable=capturable,
            differentiable=differentiable, fused=fused, centralize=centralize,
        ))

    def _check(self, values: dict[str, Any]) -> None:
        super()._check(values)
        # a group is checked with what it takes from the defaults (absent while they are built)
        check.nesterov_momentum(values, self.__dict__.get("defaults", {}), dampening=False)


class RangerLARS(TorchOptions):
    r"""RangerLARS: Ranger with a layer-wise trust ratio on the update.

    Per tensor, with ``u`` the RAdam direction (see :class:`Ranger`) plus ``weight_decay * w``:

    .. math::
        r = \operatorname{clamp}(\lVert w\rVert / \lVert u\rVert, 0, r_{max})
        \ (1 \text{ if a norm is } 0);\quad w \leftarrow w - \eta\,r\,u

    then Lookahead every ``k`` steps.

    References: Ranger (above); You et al., "Large Batch Optimization for Deep Learning:
    Training BERT in 76 minutes", ICLR 2020 (the trust ratio on the adaptive update).

    Example:
        >>> opt = unstuck.RangerLARS(model.parameters(), lr=1e-3)
    """

    chain = (
        MAXIMIZE, CENTRALIZE, tr.ScaleByRAdam(), tr.AddDecayedWeights(), tr.TrustRatio(),
        APPLY, tr.LookaheadSync(),
    )
    fused_rule = fused_rules.RangerLarsRule()
    rules: ClassVar[dict[str, check.Check]] = {
        **RANGER_RULES,
        "max_trust_ratio": check.positive,
    }

    def __init__(
        self,
        params: Params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.95, 0.999),
        eps: float = 1e-5,
        weight_decay: float = 0.0,
        k: int = 6,
        alpha: float = 0.5,
        n_sma_threshold: float = 5,
        centralize: bool = True,
        max_trust_ratio: float = 10.0,
        *,
        maximize: bool = False,
        foreach: bool = True,
        capturable: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
    ) -> None:
        super().__init__(params, dict(
            lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, k=k, alpha=alpha,
            n_sma_threshold=n_sma_threshold, centralize=centralize,
            max_trust_ratio=max_trust_ratio, maximize=maximize, foreach=foreach,
            capturable=capturable, differentiable=differentiable, fused=fused,
        ))
