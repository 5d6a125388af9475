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

from typing import Any, ClassVar

from unstuck.optim import fused_rules
from unstuck.optim import transforms as tr
from unstuck.optim import validation as check
from unstuck.optim.base import ChainOptimizer
from unstuck.optim.named import (
    ADAM_RULES,
    APPLY,
    DIFFERENTIABLE,
    MAXIMIZE,
    PREAMBLE,
    TORCH_OPTIONS,
    Params,
    TorchOptions,
)

__all__ = ["SGD", "Adagrad", "AdagradRMS", "Adam", "AdamW", "RAdam", "RMSprop"]


class SGD(TorchOptions):
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

    chain = (*PREAMBLE, tr.SgdMomentum(), APPLY)
    fused_rule = fused_rules.SgdRule()
    rules: ClassVar[dict[str, check.Check]] = {
        "momentum": check.non_negative,
        "dampening": check.non_negative,
        "weight_decay": check.non_negative,
        "nesterov": check.flag,
        **DIFFERENTIABLE,
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


class Adagrad(TorchOptions):
    r"""Adagrad; as torch.optim.Adagrad.

    .. math::
        g \leftarrow g + \lambda p;\quad s \leftarrow s + g^2;\quad
        p \leftarrow p - \frac{\eta}{1 + (t-1)\,\text{lr\_decay}}\,\frac{g}{\sqrt{s} + \epsilon}

    Reference: Duchi, Hazan & Singer, "Adaptive Subgradient Methods for Online Learning and
    Stochastic Optimization", JMLR 2011.

    Example:
        >>> opt = unstuck.Adagrad(model.parameters(), lr=1e-2)
    """

    chain = (*PREAMBLE, tr.ScaleByAdagrad(), APPLY)
    fused_rule = fused_rules.AdagradRule()
    rules: ClassVar[dict[str, check.Check]] = {
        "lr_decay": check.non_negative,
        "weight_decay": check.non_negative,
        "initial_accumulator_value": check.non_negative,
        "eps": check.positive,
        **DIFFERENTIABLE,
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

    chain = (MAXIMIZE, tr.ScaleByRootMeanSquare(), APPLY)
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


class RMSprop(TorchOptions):
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

    chain = (*PREAMBLE, tr.ScaleByRms(), APPLY)
    fused_rule = fused_rules.RmspropRule()
    rules: ClassVar[dict[str, check.Check]] = {
        "alpha": check.unit_interval,
        "eps": check.positive,
        "weight_decay": check.non_negative,
        "momentum": check.non_negative,
        "centered": check.flag,
        **TORCH_OPTIONS,
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


class Adam(TorchOptions):
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

    chain = (*PREAMBLE, tr.ScaleByAdam(), APPLY)
    fused_rule = fused_rules.AdamRule()
    rules = ADAM_RULES

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


class RAdam(TorchOptions):
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

    chain = (*PREAMBLE, tr.ScaleByRAdam(), APPLY)
    fused_rule = fused_rules.RAdamRule()
    rules = ADAM_RULES

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
