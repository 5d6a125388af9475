"""One call for an optimizer with weight-decay groups, one for its scheduler.

:func:`create_optimizer` splits a model's trainable parameters into a group with weight decay
and a group without it, by the rules of timm (``param_groups_weight_decay``: no decay on 1-D
tensors and biases) and Hugging Face (``get_parameter_names``: none on normalisation layers and
biases), and builds any optimizer of :data:`unstuck.lab.optimizer_specs.OPTIMIZERS` from its
text form (``"ranger(lr=1e-3)"``, ``"torch.adamw"``) or an Optimizer class.
:func:`create_scheduler` drives it with a schedule in the schedules' text form
(``"warmup(cosine(10000), 500)"``), stepped once per optimizer step.

The text forms live in the lab and in :mod:`unstuck.schedules`; both are imported inside the
functions, so ``import unstuck`` imports neither.

Example:
    >>> import torch, unstuck
    >>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.LayerNorm(8),
    ...                             torch.nn.Linear(8, 1))
    >>> opt = unstuck.create_optimizer(model, "adamw(lr=1e-3)", weight_decay=0.05)
    >>> [(len(g["params"]), g["weight_decay"]) for g in opt.param_groups]
    [(2, 0.05), (4, 0.0)]
    >>> sched = unstuck.create_scheduler(opt, "warmup(cosine(100), 10)")
    >>> opt.step(); sched.step(); sched.get_last_lr()
    [0.0001, 0.0001]
"""

from __future__ import annotations

import enum
import fnmatch
import inspect
import math
import re
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from unstuck.lab.optimizer_specs import OptimizerSpec
    from unstuck.schedules.scheduler import Scheduler

__all__ = ["DEFAULT", "create_optimizer", "create_scheduler"]


class _Default(enum.Enum):
    DEFAULT = "DEFAULT"

    def __repr__(self) -> str:
        return "DEFAULT"


#: ``no_decay=DEFAULT``: the built-in rules (1-D tensors, biases, normalisation layers).
DEFAULT = _Default.DEFAULT

# A normalisation layer: a class in the module's MRO named ...Norm or ...Norm1d/2d/3d
# (BatchNorm2d, SyncBatchNorm, InstanceNorm1d, LayerNorm, GroupNorm, RMSNorm, LlamaRMSNorm, ...).
_NORM_CLASS = re.compile(r"Norm(?:[123]d)?$")
_GLOB = re.compile(r"[*?\[]")


def _is_norm_layer(module: nn.Module) -> bool:
    return any(_NORM_CLASS.search(cls.__name__) for cls in type(module).__mro__)


def _named_trainable(source: Any) -> tuple[list[tuple[str, Tensor]], set[int], int]:
    """``(name, parameter)`` of every trainable parameter once, the ids of those owned by a
    normalisation layer, and how many parameters were seen in all (frozen ones included)."""
    norm_owned: set[int] = set()
    if isinstance(source, nn.Module):
        pairs = list(source.named_parameters())
        for module in source.modules():
            if _is_norm_layer(module):
                norm_owned.update(id(p) for p in module.parameters(recurse=False))
    elif isinstance(source, (Tensor, str, bytes)):
        raise TypeError(
            f"model_or_named_params must be an nn.Module or (name, parameter) pairs such as "
            f"model.named_parameters(), got {type(source).__name__}"
        )
    else:
        items = source.items() if isinstance(source, Mapping) else source
        try:
            pairs = list(items)
        except TypeError:
            raise TypeError(
                f"model_or_named_params must be an nn.Module or (name, parameter) pairs such as "
                f"model.named_parameters(), got {type(source).__name__}"
            ) from None
        for i, pair in enumerate(pairs):
            if not (isinstance(pair, tuple) and len(pair) == 2 and isinstance(pair[0], str)
                    and isinstance(pair[1], Tensor)):
                hint = (" (pass model.named_parameters(), not model.parameters())"
                        if isinstance(pair, Tensor) else "")
                raise TypeError(
                    f"model_or_named_params[{i}] must be a (name, tensor) pair, got "
                    f"{type(pair).__name__}{hint}"
                )
    seen: set[int] = set()
    trainable = []
    for name, p in pairs:
        if id(p) in seen:  # a tied weight: once, under its first name (as named_parameters)
            continue
        seen.add(id(p))
        if p.requires_grad:
            trainable.append((name, p))
    return trainable, norm_owned, len(seen)


def _patterns(no_decay: Any) -> tuple[str, ...] | None:
    """The ``no_decay`` patterns, lower-cased (None: the default rules)."""
    if no_decay is DEFAULT:
        return None
    if no_decay is None:
        return ()
    if isinstance(no_decay, str):
        no_decay = (no_decay,)
    patterns = tuple(no_decay)
    for i, pattern in enumerate(patterns):
        if not isinstance(pattern, str) or not pattern:
            raise ValueError(f"no_decay[{i}] must be a non-empty string, got {pattern!r}")
    return tuple(p.lower() for p in patterns)


def _decays(name: str, p: Tensor, norm_owned: set[int], patterns: tuple[str, ...] | None) -> bool:
    """Whether parameter ``name`` gets weight decay (case-insensitive name rules)."""
    lowered = name.lower()
    if patterns is not None:
        return not any(
            fnmatch.fnmatchcase(lowered, pattern) if _GLOB.search(pattern) else pattern in lowered
            for pattern in patterns
        )
    leaf = lowered.rsplit(".", 1)[-1]
    return not (p.ndim <= 1 or "bias" in leaf or "norm" in lowered or id(p) in norm_owned)


def _resolve(spec: Any) -> tuple[type[torch.optim.Optimizer], OptimizerSpec | None]:
    """The optimizer class of ``spec`` and its parsed text form (None for a class)."""
    from unstuck.lab.optimizer_specs import OptimizerSpec, parse_optimizer
    from unstuck.textform import TextFormError

    if isinstance(spec, OptimizerSpec):
        return spec.entry.cls, spec
    if isinstance(spec, str):
        try:
            parsed = parse_optimizer(spec)
        except TextFormError as error:
            raise type(error)(f"spec: {error.reason}", error.text, error.position,
                              error.length) from error
        return parsed.entry.cls, parsed
    if isinstance(spec, type) and issubclass(spec, torch.optim.Optimizer):
        return spec, None
    raise TypeError(
        f"spec must be an optimizer's text form such as 'adamw(lr=1e-3)', an OptimizerSpec or "
        f"a torch.optim.Optimizer class, got {type(spec).__name__} {spec!r}"
    )


def _check_options(
    cls: type[torch.optim.Optimizer], label: str, options: Mapping[str, Any]
) -> None:
    """``ValueError`` naming an option the class does not take, with a did-you-mean."""
    from unstuck.lab.optimizer_specs import OptimizerEntry, _unknown_option

    known = OptimizerEntry(label, cls, {}, "").options
    for key, value in options.items():
        if key not in known:
            raise ValueError(f"{key}={value!r}: {_unknown_option(label, key, known)}")


def create_optimizer(
    model_or_named_params: nn.Module | Iterable[tuple[str, Tensor]] | Mapping[str, Tensor],
    spec: str | OptimizerSpec | type[torch.optim.Optimizer],
    *,
    lr: float | None = None,
    weight_decay: float | None = None,
    no_decay: Iterable[str] | str | None | _Default = DEFAULT,
    **overrides: Any,
) -> torch.optim.Optimizer:
    """An optimizer over a model's trainable parameters, with weight decay where it belongs.

    The parameters are split into two groups (decay first), as timm's
    ``param_groups_weight_decay`` and Hugging Face's ``Trainer`` do:

    * **no weight decay** (by default) on every 1-D tensor (biases, norm scales, scalars), on
      every parameter whose last name part contains ``bias``, on the parameters of
      normalisation layers (BatchNorm, SyncBatchNorm, InstanceNorm, LayerNorm, GroupNorm,
      RMSNorm and any module class named ``...Norm``), and on every parameter whose name
      contains ``norm``;
    * **weight decay** on the rest (Linear and convolution weights, embeddings).

    ``no_decay`` patterns *replace* these rules: a parameter has no decay when its name
    contains one of the patterns, or matches one that is an ``fnmatch`` glob (``*``, ``?``,
    ``[``); names and patterns are compared case-insensitively. ``no_decay=None`` or ``()``:
    decay everywhere. Frozen parameters (``requires_grad=False``) are left out, a tied
    parameter appears once, and an empty group is dropped; when the effective weight decay is 0
    (or the optimizer has none) there is one group.

    The optimizer is named by ``spec``: any name of
    :data:`unstuck.lab.optimizer_specs.OPTIMIZERS` in the text form, with keyword options
    (``"ranger(lr=1e-3, k=6)"``, torch's as ``"torch.adamw(betas=(0.9, 0.95))"``), or an
    Optimizer class. ``lr``, ``weight_decay`` and ``overrides`` replace the options of the text.
    The weight decay of the decay group is ``weight_decay``, else the text's, else the
    optimizer's default (AdamW: 0.01).

    Args:
        model_or_named_params: an ``nn.Module`` (norm layers recognised by type and name), or
            ``(name, parameter)`` pairs such as ``model.named_parameters()`` or a dict (norm
            layers recognised by name only).
        spec: the optimizer's text form, an ``OptimizerSpec``, or an Optimizer class.
        lr: the learning rate (None: the text's, else the optimizer's default).
        weight_decay: the decay group's weight decay, >= 0 (None: as above).
        no_decay: patterns of parameter names without weight decay; ``DEFAULT``: the rules above.
        **overrides: further keyword arguments of the optimizer (``momentum=0.9``).

    Returns:
        The optimizer; ``optimizer.param_groups[i]["weight_decay"]`` shows each group's decay.

    Raises:
        ValueError: naming the argument and its value: an unknown optimizer (with a
            did-you-mean), an option the optimizer does not take, a model without trainable
            parameters, ``weight_decay < 0``, a value the optimizer rejects.
        TypeError: ``spec`` or ``model_or_named_params`` of the wrong kind.

    Example:
        >>> import torch, unstuck
        >>> model = torch.nn.Sequential(torch.nn.Embedding(10, 4), torch.nn.LayerNorm(4),
        ...                             torch.nn.Linear(4, 2))
        >>> opt = unstuck.create_optimizer(model, "ranger(lr=1e-3)", weight_decay=0.1)
        >>> type(opt).__name__, [(len(g["params"]), g["weight_decay"]) for g in opt.param_groups]
        ('Ranger', [(2, 0.1), (3, 0.0)])
        >>> opt = unstuck.create_optimizer(model, "torch.sgd", lr=0.1, weight_decay=1e-4,
        ...                                no_decay=("bias",), momentum=0.9)
        >>> [(len(g["params"]), g["weight_decay"], g["momentum"]) for g in opt.param_groups]
        [(3, 0.0001, 0.9), (2, 0.0, 0.9)]
    """
    cls, parsed = _resolve(spec)
    label = parsed.name if parsed is not None else cls.__name__
    patterns = _patterns(no_decay)
    if lr is not None:
        overrides["lr"] = lr
    signature = inspect.signature(cls).parameters
    if weight_decay is not None:
        if isinstance(weight_decay, bool) or not isinstance(weight_decay, (int, float)):
            raise ValueError(f"weight_decay must be a number >= 0, got {weight_decay!r}")
        if not 0.0 <= weight_decay < math.inf:
            raise ValueError(f"weight_decay must be >= 0 and finite, got {weight_decay!r}")
        if "weight_decay" in signature:
            overrides["weight_decay"] = weight_decay
        elif weight_decay != 0:
            raise ValueError(
                f"weight_decay={weight_decay!r}: {label} takes no weight_decay argument"
            )
    _check_options(cls, label, overrides)

    if parsed is not None:
        options = {**parsed.entry.fixed, **parsed.options, **overrides}
    else:
        options = dict(overrides)
    decay = options.get("weight_decay")
    if decay is None and "weight_decay" in signature:
        decay = signature["weight_decay"].default
    split = isinstance(decay, (int, float)) and decay != 0

    trainable, norm_owned, total = _named_trainable(model_or_named_params)
    if not trainable:
        raise ValueError(
            f"model_or_named_params has no trainable parameters ({total} parameter"
            f"{'s' if total != 1 else ''}, none with requires_grad=True)"
        )
    if split:
        with_decay = [p for n, p in trainable if _decays(n, p, norm_owned, patterns)]
        without = [p for n, p in trainable if not _decays(n, p, norm_owned, patterns)]
        groups: list[dict[str, Any]] = [{"params": with_decay}, {"params": without,
                                                                   "weight_decay": 0.0}]
        groups = [g for g in groups if g["params"]]
    else:
        groups = [{"params": [p for _, p in trainable]}]

    if parsed is not None:
        return parsed.with_options(**overrides).build(groups)
    try:
        return cls(groups, **options)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{label}: {error}") from error


def create_scheduler(
    optimizer: torch.optim.Optimizer,
    spec: str | Callable[[int], float],
    *,
    total_steps: int | None = None,
    warmup_steps: int | None = None,
    last_epoch: int = -1,
) -> Scheduler:
    """A scheduler that sets ``optimizer``'s learning rates from a schedule, once per step.

    ``spec`` is a schedule in the text form of :func:`unstuck.schedules.parse`
    (``"warmup(cosine(10000), 500)"``), a :class:`~unstuck.schedules.Schedule`, or any callable
    ``step -> multiplier``. Each group's lr at step ``t`` is its lr when the scheduler is made
    times ``schedule(t)`` (as torch's ``LambdaLR``); ``t`` counts optimizer steps, so call
    ``scheduler.step()`` after every ``optimizer.step()`` (Lightning: ``"interval": "step"``).

    A bare schedule name takes its length from the keywords, as Hugging Face's
    ``get_scheduler(name, optimizer, num_warmup_steps, num_training_steps)``: ``total_steps``
    (the whole run, warm-up included) fills a ``total`` argument and ``warmup_steps`` a
    ``warmup`` argument; a schedule without one gets :func:`~unstuck.schedules.warmup` in front
    and ``total = total_steps - warmup_steps``. So ``"cosine"`` with ``total_steps=1000,
    warmup_steps=100`` is ``warmup(cosine(total=900), steps=100)``. A full text or a callable
    carries its own lengths, and then the keywords must be left out.

    Args:
        optimizer: any ``torch.optim.Optimizer``.
        spec: the schedule's text form or name, a Schedule, or a callable.
        total_steps: with a bare name: the number of optimizer steps of the run (>= 1).
        warmup_steps: with a bare name: the number of warm-up steps (>= 0).
        last_epoch: the index of the last step taken; ``-1`` (default) to start afresh.

    Returns:
        an :class:`unstuck.schedules.Scheduler` (a ``torch.optim.lr_scheduler.LRScheduler``).

    Raises:
        ValueError: naming the argument: a text that does not parse (unknown schedule with a
            did-you-mean, caret under the bad token), a missing length, lengths given with a
            full text.

    Example:
        >>> import torch, unstuck
        >>> opt = unstuck.SGD([torch.zeros(2, requires_grad=True)], lr=0.1)
        >>> sched = unstuck.create_scheduler(opt, "cosine", total_steps=4, warmup_steps=2)
        >>> sched.schedules[0]
        warmup(cosine(total=2), steps=2)
        >>> lrs = []
        >>> for _ in range(4):
        ...     lrs.append(round(sched.get_last_lr()[0], 6)); opt.step(); sched.step()
        >>> lrs
        [0.0, 0.05, 0.1, 0.05]
    """
    from unstuck.schedules import SCHEDULES, Scheduler, parse
    from unstuck.textform import TextFormError

    if isinstance(spec, str):
        name = spec.strip()
        if name in SCHEDULES:
            schedule: Callable[[int], float] = _from_name(
                SCHEDULES[name], name, total_steps, warmup_steps
            )
        else:
            try:
                schedule = parse(spec)
            except TextFormError as error:
                raise type(error)(f"spec: {error.reason}", error.text, error.position,
                                  error.length) from error
            _no_lengths(spec, total_steps, warmup_steps)
    elif callable(spec):
        _no_lengths(spec, total_steps, warmup_steps)
        schedule = spec
    else:
        raise TypeError(
            f"spec must be a schedule's text form such as 'cosine(1000)' or a callable "
            f"step -> multiplier, got {type(spec).__name__} {spec!r}"
        )
    return Scheduler(optimizer, schedule, last_epoch=last_epoch)


def _no_lengths(spec: Any, total_steps: int | None, warmup_steps: int | None) -> None:
    for key, value in (("total_steps", total_steps), ("warmup_steps", warmup_steps)):
        if value is not None:
            raise ValueError(
                f"{key}={value!r}: spec {spec!r} gives its own lengths; {key} only fills in a "
                "bare schedule name such as 'cosine'"
            )


def _steps(key: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{key} must be an int >= {minimum}, got {value!r}")
    return value


def _from_name(cls: type, name: str, total_steps: int | None,
               warmup_steps: int | None) -> Callable[[int], float]:
    """The schedule ``name`` with its ``total`` and ``warmup`` from the keywords."""
    import dataclasses

    from unstuck.schedules import warmup

    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    total = None if total_steps is None else _steps("total_steps", total_steps, 1)
    warm = None if warmup_steps is None else _steps("warmup_steps", warmup_steps, 0)
    wrap = warm is not None and "warmup" not in fields
    arguments: dict[str, Any] = {}
    if "warmup" in fields and warm is not None:
        arguments["warmup"] = warm
    if "total" in fields and total is not None:
        if wrap and total <= warm:  # type: ignore[operator]
            raise ValueError(
                f"total_steps must be > warmup_steps, got {total_steps!r} <= {warmup_steps!r}"
            )
        arguments["total"] = total - warm if wrap else total  # type: ignore[operator]
    elif total is not None:
        raise ValueError(f"total_steps={total_steps!r}: schedule {name!r} has no total length "
                         f"(its arguments: {', '.join(fields) or 'none'})")
    required = [
        key for key, f in fields.items()
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    missing = [key for key in required if key not in arguments]
    if missing:
        via = {"total": "total_steps=...", "warmup": "warmup_steps=..."}
        needs = ", ".join(via.get(key, key) for key in missing)
        raise ValueError(
            f"spec {name!r} needs {needs}; pass total_steps/warmup_steps or write the text "
            f"form with every argument, e.g. '{name}({', '.join(required)})'"
        )
    schedule = cls(**arguments)
    return warmup(schedule, steps=warm) if wrap else schedule
