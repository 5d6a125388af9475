r"""The decays: schedules of their own, wrapping no other schedule (those are in
:mod:`~unstuck.schedules.combinators`; Hugging Face's are in
:mod:`~unstuck.schedules.huggingface`).

constant, step_decay, multistep, exponential, inverse_time, polynomial, linear, cosine,
cosine_restarts, noam, one_cycle and warmup_stable_decay. What a schedule is, its text form
and its argument checks: :mod:`~unstuck.schedules.base`.
"""

from __future__ import annotations

import bisect
import math

from unstuck.schedules.base import (
    Schedule,
    Step,
    _flag,
    _integer,
    _power,
    _real,
    _schedule_class,
    _sequence,
    _set,
)

__all__ = [
    "constant", "cosine", "cosine_restarts", "exponential", "inverse_time", "linear",
    "multistep", "noam", "one_cycle", "polynomial", "step_decay", "warmup_stable_decay",
]

_SHAPES = ("linear", "cosine", "sqrt")


@_schedule_class
class constant(Schedule):
    r"""The base learning rate, unchanged: :math:`\lambda(t) = 1`.

    Example:
        >>> constant()(1000)
        1.0
    """

    def _value(self, t: Step) -> float:
        return 1.0


@_schedule_class
class step_decay(Schedule):
    r"""Staircase decay by ``gamma`` every ``step_size`` steps (torch's ``StepLR``).

    .. math:: \lambda(t) = \gamma^{\lfloor t / \text{step\_size} \rfloor}

    A ``gamma`` above 1 grows the learning rate (to ``inf`` past the float range).

    Example:
        >>> step_decay(step_size=30, gamma=0.1)(65)  # two decays
        0.010000000000000002
    """

    step_size: int
    gamma: float = 0.1

    def __post_init__(self) -> None:
        _set(self, "step_size", _integer("step_size", self.step_size, 1))
        _set(self, "gamma", _real("gamma", self.gamma, low=0.0, low_open=True))

    def _value(self, t: Step) -> float:
        return _power(self.gamma, t // self.step_size)


@_schedule_class
class multistep(Schedule):
    r"""Decay by ``gamma`` at each milestone (torch's ``MultiStepLR``).

    .. math:: \lambda(t) = \gamma^{\#\{m \in \text{milestones} : m \le t\}}

    Milestones are non-decreasing step numbers; one listed twice decays twice, as in torch.

    Example:
        >>> multistep(milestones=[30, 80], gamma=0.1)(50)
        0.1
    """

    milestones: tuple[int, ...]
    gamma: float = 0.1

    def __post_init__(self) -> None:
        milestones = tuple(
            _integer(f"milestones[{i}]", m, 0)
            for i, m in enumerate(_sequence("milestones", self.milestones))
        )
        if list(milestones) != sorted(milestones):
            raise ValueError(f"milestones must be in increasing order, got {list(milestones)}")
        _set(self, "milestones", milestones)
        _set(self, "gamma", _real("gamma", self.gamma, low=0.0, low_open=True))

    def _value(self, t: Step) -> float:
        return _power(self.gamma, bisect.bisect_right(self.milestones, t))


@_schedule_class
class exponential(Schedule):
    r"""Exponential decay (torch's ``ExponentialLR`` for ``every=1``; Keras' ``ExponentialDecay``).

    .. math:: \lambda(t) = \gamma^{t / \text{every}}
        \quad(\lfloor t / \text{every} \rfloor \text{ when staircase})

    A ``gamma`` above 1 grows the learning rate (as in an LR range test; ``inf`` past the
    float range).

    Example:
        >>> exponential(gamma=0.5, every=10)(20)
        0.25
    """

    gamma: float
    every: int = 1
    staircase: bool = False

    def __post_init__(self) -> None:
        _set(self, "gamma", _real("gamma", self.gamma, low=0.0, low_open=True))
        _set(self, "every", _integer("every", self.every, 1))
        _set(self, "staircase", _flag("staircase", self.staircase))

    def _value(self, t: Step) -> float:
        e = t // self.every if self.staircase else t / self.every
        return _power(self.gamma, e)


@_schedule_class
class inverse_time(Schedule):
    r"""Inverse-time decay, the lectures' ``1 / (1 + decay_rate * epoch)``.

    .. math:: \lambda(t) = \frac{1}{1 + \text{decay\_rate} \cdot t / \text{every}}
        \quad(\lfloor t / \text{every} \rfloor \text{ when staircase})

    Reference: Keras' ``InverseTimeDecay``.

    Example:
        >>> inverse_time(decay_rate=1.0)(3)
        0.25
    """

    decay_rate: float
    every: int = 1
    staircase: bool = False

    def __post_init__(self) -> None:
        _set(self, "decay_rate", _real("decay_rate", self.decay_rate, low=0.0))
        _set(self, "every", _integer("every", self.every, 1))
        _set(self, "staircase", _flag("staircase", self.staircase))

    def _value(self, t: Step) -> float:
        e = t // self.every if self.staircase else t / self.every
        return 1.0 / (1.0 + self.decay_rate * e)


@_schedule_class
class polynomial(Schedule):
    r"""Polynomial decay from 1 to ``final`` over ``total`` steps (torch's ``PolynomialLR``
    when ``final = 0``); holds ``final`` afterwards.

    .. math:: \lambda(t) = f + (1 - f)\,\bigl(1 - \min(t, T)/T\bigr)^{p}

    Example:
        >>> polynomial(total=100, power=2.0)(50)
        0.25
    """

    total: int
    power: float = 1.0
    final: float = 0.0

    def __post_init__(self) -> None:
        _set(self, "total", _integer("total", self.total, 1))
        _set(self, "power", _real("power", self.power, low=0.0, low_open=True))
        _set(self, "final", _real("final", self.final, low=0.0))

    def _value(self, t: Step) -> float:
        return self.final + (1.0 - self.final) * (
            1.0 - min(self.total, t) / self.total
        ) ** self.power


@_schedule_class
class linear(Schedule):
    r"""Linear interpolation from ``start`` to ``end`` over ``total`` steps (torch's
    ``LinearLR(start_factor, end_factor, total_iters)``); holds ``end`` afterwards.

    .. math:: \lambda(t) = s + (e - s)\,\min(t, T) / T

    Example:
        >>> linear(total=10, start=1.0, end=0.5)(5)
        0.75
    """

    total: int
    start: float = 1.0
    end: float = 0.0

    def __post_init__(self) -> None:
        _set(self, "total", _integer("total", self.total, 1))
        _set(self, "start", _real("start", self.start, low=0.0))
        _set(self, "end", _real("end", self.end, low=0.0))

    def _value(self, t: Step) -> float:
        return self.start + (self.end - self.start) * min(self.total, t) / self.total


@_schedule_class
class cosine(Schedule):
    r"""Cosine annealing from 1 to ``final`` over ``total`` steps; holds ``final`` afterwards
    (torch's ``CosineAnnealingLR(T_max=total, eta_min=final * base_lr)``, closed form).

    .. math:: \lambda(t) = f + (1 - f)\,\frac{1 + \cos(\pi \min(t, T) / T)}{2}

    Reference: Loshchilov & Hutter, "SGDR: Stochastic Gradient Descent with Warm Restarts",
    ICLR 2017.

    Example:
        >>> cosine(total=100, final=0.1)(100)
        0.1
    """

    total: int
    final: float = 0.0

    def __post_init__(self) -> None:
        _set(self, "total", _integer("total", self.total, 1))
        _set(self, "final", _real("final", self.final, low=0.0))

    def _value(self, t: Step) -> float:
        t = min(t, self.total)
        return self.final + (1.0 - self.final) * (1 + math.cos(math.pi * t / self.total)) / 2


@_schedule_class
class cosine_restarts(Schedule):
    r"""Cosine annealing with warm restarts, SGDR (torch's ``CosineAnnealingWarmRestarts``).

    The first cycle lasts :math:`T_0` steps, each next one ``t_mult`` times longer; within a
    cycle of length :math:`T_i`, with :math:`t_c` steps since its restart,

    .. math:: \lambda(t) = f + (1 - f)\,\frac{1 + \cos(\pi t_c / T_i)}{2}

    It never ends.

    Reference: Loshchilov & Hutter, "SGDR: Stochastic Gradient Descent with Warm Restarts",
    ICLR 2017.

    Example:
        >>> cosine_restarts(t0=10)(15), cosine_restarts(t0=10)(20)
        (0.5, 1.0)
    """

    t0: int
    t_mult: int = 1
    final: float = 0.0

    def __post_init__(self) -> None:
        _set(self, "t0", _integer("t0", self.t0, 1))
        _set(self, "t_mult", _integer("t_mult", self.t_mult, 1))
        _set(self, "final", _real("final", self.final, low=0.0))

    def _value(self, t: Step) -> float:
        period = self.t0
        if self.t_mult == 1:
            t = t % period
        else:
            while t >= period:
                t -= period
                period *= self.t_mult
        return self.final + (1.0 - self.final) * (1 + math.cos(math.pi * t / period)) / 2


@_schedule_class
class noam(Schedule):
    r"""The Transformer's schedule: linear warm-up, then inverse square-root decay.

    .. math:: \lambda(t) = d^{-1/2} \min\bigl(n^{-1/2},\ n\,w^{-3/2}\bigr), \quad n = t + 1

    With base lr 1 these are the paper's learning rates, peaking at step ``warmup - 1``
    (:math:`6.9877 \times 10^{-4}` for ``d_model=512, warmup=4000``); a base lr other than 1
    acts as the paper's scale factor.

    Reference: Vaswani et al., "Attention Is All You Need", NeurIPS 2017, section 5.3.

    Example:
        >>> round(noam(d_model=512, warmup=4000)(3999), 8)
        0.00069877
    """

    d_model: int
    warmup: int

    def __post_init__(self) -> None:
        _set(self, "d_model", _integer("d_model", self.d_model, 1))
        _set(self, "warmup", _integer("warmup", self.warmup, 1))

    def _value(self, t: Step) -> float:
        n = t + 1
        return self.d_model**-0.5 * min(n**-0.5, n * self.warmup**-1.5)


@_schedule_class
class one_cycle(Schedule):
    r"""The 1cycle policy as a multiplier of the maximum learning rate (torch's ``OneCycleLR``
    with ``anneal_strategy="cos"``, ``three_phase=False``; base lr = ``max_lr``).

    With :math:`a = 1/\text{div\_factor}` (initial), :math:`b = a/\text{final\_div\_factor}`
    (minimum), phase ends :math:`e_1 = \text{pct\_start}\cdot T - 1` and :math:`e_2 = T - 1`, and
    :math:`c(x, y, p) = y + (x - y)(1 + \cos \pi p)/2`:

    .. math::
        \lambda(t) = \begin{cases}
            c(a, 1, t / e_1) & t \le e_1 \\
            c(1, b, (t - e_1)/(e_2 - e_1)) & e_1 < t \le e_2
        \end{cases}

    It lasts ``total`` steps (the last is ``total - 1``) and holds :math:`b` afterwards (torch
    raises instead). ``pct_start * total`` must exceed 1, so the warm-up phase is not empty.

    Reference: Smith & Topin, "Super-Convergence: Very Fast Training of Neural Networks Using
    Large Learning Rates", 2017.

    Example:
        >>> one_cycle(total=1000)(299)
        1.0
    """

    total: int
    pct_start: float = 0.3
    div_factor: float = 25.0
    final_div_factor: float = 1e4

    def __post_init__(self) -> None:
        _set(self, "total", _integer("total", self.total, 2))
        _set(self, "pct_start",
             _real("pct_start", self.pct_start, low=0.0, low_open=True, high=1.0, high_open=True))
        _set(self, "div_factor", _real("div_factor", self.div_factor, low=0.0, low_open=True))
        _set(self, "final_div_factor",
             _real("final_div_factor", self.final_div_factor, low=0.0, low_open=True))
        if not self.pct_start * self.total > 1:
            raise ValueError(
                f"pct_start must be > 1/total = {1 / self.total:g} (pct_start * total steps of "
                f"warm-up, at least one), got {self.pct_start!r}"
            )

    def _value(self, t: Step) -> float:
        initial = 1.0 / self.div_factor
        end1 = float(self.pct_start * self.total) - 1
        end2 = self.total - 1
        if t <= end1:
            start, end, pct = initial, 1.0, t / end1
        else:
            start, end = 1.0, initial / self.final_div_factor
            pct = (min(t, end2) - end1) / (end2 - end1)
        return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)


@_schedule_class
class warmup_stable_decay(Schedule):
    r"""Warm-up, stable, decay (WSD): linear warm-up from 0 over ``warmup`` steps, 1 for
    ``stable`` steps, then a decay to ``final`` over ``decay`` steps; holds ``final`` afterwards.

    With :math:`w, s, d` = ``warmup``, ``stable``, ``decay`` and :math:`f` = ``final``,

    .. math:: \lambda(t) = \begin{cases}
            t / w & t < w \\
            1 & w \le t < w + s \\
            f + (1 - f)\,g\bigl((t - w - s) / d\bigr) & w + s \le t < w + s + d \\
            f & t \ge w + s + d
        \end{cases}

    .. math:: g(p) = 1 - p \ (\text{linear}),\ \tfrac{1}{2}(1 + \cos \pi p)\ (\text{cosine}),\
        1 - \sqrt{p}\ (\text{sqrt})

    so ``decay=0`` drops from 1 to ``final`` at step :math:`w + s`. This is Hugging Face's
    ``get_wsd_schedule`` (its ``_get_wsd_scheduler_lambda``, linear warm-up, ``num_cycles=0.5``,
    ``"sqrt"`` for its ``"1-sqrt"``) step for step, except that its warm-up starts from
    ``min_lr_ratio`` rather than 0: the two are equal everywhere when ``final=0`` and from
    step :math:`w` on otherwise.

    References: Hu et al., "MiniCPM", 2024; Hägele et al., "Scaling Laws and Compute-Optimal
    Training beyond Fixed Training Durations", 2024.

    Example:
        >>> s = warmup_stable_decay(warmup=10, stable=80, decay=10, shape="cosine")
        >>> s(5), s(50), s(95), s(100)
        (0.5, 1.0, 0.5, 0.0)
    """

    warmup: int
    stable: int
    decay: int
    final: float = 0.0
    shape: str = "linear"

    def __post_init__(self) -> None:
        _set(self, "warmup", _integer("warmup", self.warmup, 0))
        _set(self, "stable", _integer("stable", self.stable, 0))
        _set(self, "decay", _integer("decay", self.decay, 0))
        _set(self, "final", _real("final", self.final, low=0.0))
        if self.shape not in _SHAPES:
            raise ValueError(
                f"shape must be one of {', '.join(map(repr, _SHAPES))}, got {self.shape!r}"
            )

    def _value(self, t: Step) -> float:
        if t < self.warmup:
            return t / max(1, self.warmup)
        if t < self.warmup + self.stable:
            return 1.0
        if t >= self.warmup + self.stable + self.decay:  # also the boundary when decay == 0
            return self.final
        p = (t - self.warmup - self.stable) / self.decay
        if self.shape == "linear":
            g = 1.0 - p
        elif self.shape == "cosine":
            g = 0.5 * (1.0 + math.cos(math.pi * p))
        else:
            g = 1.0 - math.sqrt(p)
        return self.final + (1.0 - self.final) * g
