"""Named optimizers: each is its chain of transforms, its defaults and its update rule.

All share torch.optim's keyword-only options ``maximize``, ``foreach`` (``True``: buckets of
tensors run as multi-tensor ops; ``False``: one tensor at a time, same result) and ``fused``
(``None``, the default: one pass over memory on torch's fused kernels wherever that applies and
``foreach`` is true; ``True``: wherever it applies, warning once where it does not; ``False``:
never; see ``fused.py``), plus ``centralize`` (Gradient Centralization of every gradient with
more than one dimension).

They also take torch.optim's ``differentiable`` and, where torch's optimizer of the same
algorithm has it (Adam, AdamW, RAdam, RMSprop; and Ranger, LARS, RangerLARS for uniformity),
``capturable``. Both are kept in the defaults and in every parameter group, as torch keeps them,
so state dicts round trip between unstuck's optimizer and torch's:

- ``differentiable=False`` (the default) changes nothing. ``differentiable=True`` raises
  ``ValueError``: the step runs under ``torch.no_grad()`` and writes parameters and state in
  place (multi-tensor ops, fused kernels), so autograd cannot differentiate through it.
- ``capturable=False`` (the default) changes nothing. With ``capturable=True`` a step with a
  parameter on a device without graph capture (a CPU tensor) raises ``AssertionError``, as
  torch.optim's does; on an accelerator the step runs eagerly, exactly as with
  ``capturable=False``, and capturing it in a CUDA graph raises ``RuntimeError`` (step counts
  and per-step scalars are Python numbers, which a graph would freeze).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, ClassVar

from unstuck.optim import fused_rules
from unstuck.optim import transforms as tr
from unstuck.optim import validation as check
from unstuck.optim.base import ChainOptimizer, Transform

__all__ = [
    "LARS",
    "SGD",
    "Adagrad",
    "AdagradRMS",
    "Adam",
    "AdamW",
    "RAdam",
    "RMSprop",
    "Ranger",
    "RangerLARS",
]

Params = Iterable[Any]

_MAXIMIZE = tr.Maximize()
_CENTRALIZE = tr.Centralize()
_COUPLED_WD = tr.CoupledWeightDecay()
_DECOUPLED_WD = tr.DecoupledWeightDecay()
_APPLY = tr.ApplyUpdate()
_PREAMBLE: tuple[Transform, ...] = (_MAXIMIZE, _CENTRALIZE, _COUPLED_WD, _DECOUPLED_WD)

# torch.optim's options (see the module docstring).
_DIFFERENTIABLE: dict[str, check.Check] = {"differentiable": check.not_differentiable}
_TORCH_OPTIONS: dict[str, check.Check] = {**_DIFFERENTIABLE, "capturable": check.flag}

_ADAM_RULES: dict[str, check.Check] = {
    "betas": check.betas,
    "eps": check.positive,
    "weight_decay": check.non_negative,
    "amsgrad": check.flag,
    "decoupled_weight_decay": check.flag,
    **_TORCH_OPTIONS,
}
_RANGER_RULES: dict[str, check.Check] = {
    **_ADAM_RULES,
    "k": check.positive_int,
    "alpha": check.unit_interval,
    "n_sma_threshold": check.rectification_threshold,
}


class _TorchOptions(ChainOptimizer):
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


class SGD(_TorchOptions):
    r"""Stochastic gradient descent with momentum and Nesterov momentum; as torch.optim.SGD.

    .. math::
        g \leftarrow g + \lambda p;\quad
        b \leftarrow \mu b + (1 - \tau) g \ (b_1 = g);\quad
        p \leftarrow p - \eta\,(g + \mu b \text{ if nesterov else } b)

    Reference: Sutskever et al., "On the importance of initialization and momentum in deep
    learning", ICML 2013.

    Example:
        >>> opt = unstuck.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    """

    chain = (*_PREAMBLE, tr.SgdMomentum(), _APPLY)
    fused_rule = fused_rules.SgdRule()
    rules: ClassVar[dict[str, check.Check]] = {
        "momentum": check.non_negative,
        "dampening": check.non_negative,
        "weight_decay": check.non_negative,
        "nesterov": check.flag,
        **_DIFFERENTIABLE,
    }

    def __init__(
        self,
        params: Params,
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
        *,
        maximize: bool = False,
        foreach: bool = True,
        differentiable: bool = False,
        fused: bool | None = None,
        centralize: bool = False,
    ) -> None:
        super().__init__(params, dict(
            lr=lr, momentum=momentum, dampening=dampening, nesterov=nesterov,
            weight_decay=weight_decay, maximize=maximize, foreach=foreach,
            differentiable=differentiable, fused=fused, centralize=centralize,
        ))

    def _check(self, values: dict[str, Any]) -> None:
        super()._check(values)
        # a group is checked with what it takes from the defaults (absent while they are built)
        check.nesterov_momentum(values, self.__dict__.get("defaults", {}), dampening=True)


class Adagrad(_TorchOptions):
    r"""Adagrad; as torch.optim.Adagrad.

    .. math::
        g \leftarrow g + \lambda p;\quad s \leftarrow s + g^2;\quad
        p \leftarrow p - \frac{\eta}{1 + (t-1)\,\text{lr\_decay}}\,\frac{g}{\sqrt{s} + \epsilon}

    Reference: Duchi, Hazan & Singer, "Adaptive Subgradient Methods for Online Learning and
    Stochastic Optimization", JMLR 2011.

    Example:
        >>> opt = unstuck.Adagrad(model.parameters(), lr=1e-2)
    """

    chain = (*_PREAMBLE, tr.ScaleByAdagrad(), _APPLY)
    fused_rule = fused_rules.AdagradRule()
    rules: ClassVar[dict[str, check.Check]] = {
        "lr_decay": check.non_negative,
        "weight_decay": check.non_negative,
        "initial_accumulator_value": check.non_negative,
        "eps": check.positive,
        **_DIFFERENTIABLE,
    }

    def __init__(
        self,
        params: Params,
        lr: float = 1e-2,
        lr_decay: float = 0.0,
        weight_decay: float = 0.0,
        initial_accumulator_value: float = 0.0,
        eps: float = 1e-10,
        *,
        maximize: bool = False,
        foreach: bool = True,
        differentiable: bool = False,
        fused: bool | None = None,
        centralize: bool = False,
    ) -> None:
        super().__init__(params, dict(
            lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
            initial_accumulator_value=initial_accumulator_value, eps=eps,
            maximize=maximize, foreach=foreach, differentiable=differentiable, fused=fused,
            centralize=centralize,
        ))


class AdagradRMS(ChainOptimizer):
    r"""Adagrad as the lectures write it: the learning rate over the root MEAN square.

    .. math::
        \sigma_t = \sqrt{\tfrac{1}{t} \textstyle\sum_{i=1}^{t} g_i^2};\quad
        p \leftarrow p - \frac{\eta}{\sigma_t + \epsilon}\, g_t

    Duchi et al.'s Adagrad (:class:`Adagrad`, torch.optim.Adagrad) divides by the root *sum*
    square :math:`\sqrt{t}\,\sigma_t`: it is this rule with the decay :math:`\eta/\sqrt{t}`
    built in, so its step never exceeds :math:`\eta` per element. Without that decay,
    :math:`\sigma_t` of a direction whose gradient has become tiny shrinks over a long flat
    stretch until :math:`\eta / \sigma_t` is past the stability limit and the step blows up; a
    decaying schedule prevents it. A teaching optimizer for that lesson (``unstuck surface
    --optimizers adagrad_rms``, ``unstuck doctor --scenario adagrad_blowup``), not a
    recommendation.

    Reference: Hung-yi Lee, ML 2022 lecture "Adaptive learning rate" (root mean square).

    Example:
        >>> opt = unstuck.AdagradRMS(model.parameters(), lr=1e-2)
    """

    chain = (_MAXIMIZE, tr.ScaleByRootMeanSquare(), _APPLY)
    rules: ClassVar[dict[str, check.Check]] = {"eps": check.positive}

    def __init__(
        self,
        params: Params,
        lr: float = 1e-2,
        eps: float = 1e-10,
        *,
        maximize: bool = False,
        foreach: bool = True,
    ) -> None:
        super().__init__(params, dict(
            lr=lr, eps=eps, maximize=maximize, foreach=foreach, centralize=False,
        ))


class RMSprop(_TorchOptions):
    r"""RMSprop, optionally centered and with momentum; as torch.optim.RMSprop.

    .. math::
        s \leftarrow \alpha s + (1-\alpha) g^2;\quad
        d = \sqrt{s - \bar g^2} + \epsilon \ (\text{centered}, \bar g \leftarrow \alpha \bar g +
        (1-\alpha) g) \text{ else } \sqrt{s} + \epsilon;\quad
        b \leftarrow \mu b + g/d;\quad p \leftarrow p - \eta b

    Reference: Hinton, Neural Networks for Machine Learning, lecture 6e (2012); centered:
    Graves, "Generating Sequences With Recurrent Neural Networks", 2013.

    Example:
        >>> opt = unstuck.RMSprop(model.parameters(), lr=1e-3, centered=True)
    """

    chain = (*_PREAMBLE, tr.ScaleByRms(), _APPLY)
    fused_rule = fused_rules.RmspropRule()
    rules: ClassVar[dict[str, check.Check]] = {
        "alpha": check.unit_interval,
        "eps": check.positive,
        "weight_decay": check.non_negative,
        "momentum": check.non_negative,
        "centered": check.flag,
        **_TORCH_OPTIONS,
    }

    def __init__(
        self,
        params: Params,
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        centered: bool = False,
        *,
        maximize: bool = False,
        foreach: bool = True,
        capturable: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
        centralize: bool = False,
    ) -> None:
        super().__init__(params, dict(
            lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum,
            centered=centered, maximize=maximize, foreach=foreach, capturable=capturable,
            differentiable=differentiable, fused=fused, centralize=centralize,
        ))


class Adam(_TorchOptions):
    r"""Adam and AMSGrad; as torch.optim.Adam.

    .. math::
        m \leftarrow \beta_1 m + (1-\beta_1) g;\quad v \leftarrow \beta_2 v + (1-\beta_2) g^2;\quad
        p \leftarrow p - \eta\,\frac{m / (1-\beta_1^t)}{\sqrt{v / (1-\beta_2^t)} + \epsilon}

    with ``g <- g + weight_decay * p`` (L2), or, with ``decoupled_weight_decay=True``,
    ``p <- p (1 - lr * weight_decay)`` (that is AdamW). AMSGrad uses ``max(v_1..v_t)``.

    Reference: Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015;
    Reddi, Kale & Kumar, "On the Convergence of Adam and Beyond", ICLR 2018.

    Example:
        >>> opt = unstuck.Adam(model.parameters(), lr=3e-4)
    """

    chain = (*_PREAMBLE, tr.ScaleByAdam(), _APPLY)
    fused_rule = fused_rules.AdamRule()
    rules = _ADAM_RULES

    def __init__(
        self,
        params: Params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
        *,
        decoupled_weight_decay: bool = False,
        maximize: bool = False,
        foreach: bool = True,
        capturable: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
        centralize: bool = False,
    ) -> None:
        super().__init__(params, dict(
            lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
            decoupled_weight_decay=decoupled_weight_decay, maximize=maximize, foreach=foreach,
            capturable=capturable, differentiable=differentiable, fused=fused,
            centralize=centralize,
        ))


class AdamW(Adam):
    r"""Adam with decoupled weight decay; as torch.optim.AdamW.

    .. math::
        p \leftarrow p\,(1 - \eta\lambda);\quad
        p \leftarrow p - \eta\,\frac{m / (1-\beta_1^t)}{\sqrt{v / (1-\beta_2^t)} + \epsilon}

    Reference: Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019.

    Example:
        >>> opt = unstuck.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    """

    def __init__(
        self,
        params: Params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        foreach: bool = True,
        capturable: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
        centralize: bool = False,
    ) -> None:
        super().__init__(
            params, lr, betas, eps, weight_decay, amsgrad, decoupled_weight_decay=True,
            maximize=maximize, foreach=foreach, capturable=capturable,
            differentiable=differentiable, fused=fused, centralize=centralize,
        )


class RAdam(_TorchOptions):
    r"""Rectified Adam; as torch.optim.RAdam.

    .. math::
        \rho_\infty = \tfrac{2}{1-\beta_2} - 1,\quad
        \rho_t = \rho_\infty - \tfrac{2 t \beta_2^t}{1-\beta_2^t};\quad
        p \leftarrow p - \eta\,\frac{m}{1-\beta_1^t}\cdot
        \begin{cases} r_t \frac{\sqrt{1-\beta_2^t}}{\sqrt{v} + \epsilon} & \rho_t > 5 \\
        1 & \text{otherwise} \end{cases}

    with ``r_t = sqrt((rho_t-4)(rho_t-2) rho_inf / ((rho_inf-4)(rho_inf-2) rho_t))``. Weight
    decay is L2 in the gradient, or decoupled (``decoupled_weight_decay=True``).

    Reference: Liu et al., "On the Variance of the Adaptive Learning Rate and Beyond", ICLR 2020.

    Example:
        >>> opt = unstuck.RAdam(model.parameters(), lr=1e-3)
    """

    chain = (*_PREAMBLE, tr.ScaleByRAdam(), _APPLY)
    fused_rule = fused_rules.RAdamRule()
    rules = _ADAM_RULES

    def __init__(
        self,
        params: Params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        decoupled_weight_decay: bool = False,
        *,
        maximize: bool = False,
        foreach: bool = True,
        capturable: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
        centralize: bool = False,
    ) -> None:
        super().__init__(params, dict(
            lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
            decoupled_weight_decay=decoupled_weight_decay, maximize=maximize, foreach=foreach,
            capturable=capturable, differentiable=differentiable, fused=fused,
            centralize=centralize,
        ))


class Ranger(_TorchOptions):
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

    chain = (*_PREAMBLE, tr.ScaleByRAdam(), _APPLY, tr.LookaheadSync())
    fused_rule = fused_rules.RAdamRule(lookahead=True)
    rules = _RANGER_RULES

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


class LARS(_TorchOptions):
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

    chain = (_MAXIMIZE, _CENTRALIZE, tr.LarsTrustRatio(), tr.SgdMomentum(), _APPLY)
    fused_rule = fused_rules.LarsRule()
    rules: ClassVar[dict[str, check.Check]] = {
        "momentum": check.non_negative,
        "weight_decay": check.non_negative,
        "trust_coefficient": check.positive,
        "eps": check.positive,
        "nesterov": check.flag,
        "exclude_1d": check.flag,
        **_TORCH_OPTIONS,
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


class RangerLARS(_TorchOptions):
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
        _MAXIMIZE, _CENTRALIZE, tr.ScaleByRAdam(), tr.AddDecayedWeights(), tr.TrustRatio(),
        _APPLY, tr.LookaheadSync(),
    )
    fused_rule = fused_rules.RangerLarsRule()
    rules: ClassVar[dict[str, check.Check]] = {
        **_RANGER_RULES,
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
