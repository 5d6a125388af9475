"""The optimizer that runs a chain of transforms over buckets of parameters.

A step, for every parameter group:

1. every parameter with a gradient gets its step count ``t`` incremented (its state is created on
   its first step: parameters without a gradient are skipped and get no state);
2. the parameters are bucketed by ``(device, dtype, t)`` with ``foreach=True``, or one parameter a
   bucket with ``foreach=False``; inside a bucket every per-step scalar (learning rate, bias
   corrections, rectification) is one number, computed once;
3. the optimizer's ``chain`` of transforms runs on each bucket in order. The bucket's
   ``updates`` start as the gradients (never written: ``step()`` does not modify ``p.grad``) and
   end as the direction ``u`` the final transform applies, ``p <- p - lr * u``.

Complex parameters are optimized through their real view (``torch.view_as_real``), as torch.optim
does; their state is stored complex, like torch's.

An optimizer with a ``fused_rule`` can instead run a bucket's whole chain on torch's fused kernels
(``fused.py``; the ``fused`` option): the buckets it does not take run the chain as above.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from itertools import compress, repeat
from operator import attrgetter, is_not, ne
from typing import Any, ClassVar

import torch
from torch import Tensor
from torch.optim import Optimizer

from unstuck.optim import validation
from unstuck.optim.blocks import Workspace
from unstuck.optim.fused import FusedBucket, FusedRule, choose_rule, warn_once
from unstuck.optim.fused_plan import Keyed, Plan
from unstuck.optim.multi_tensor import clone

__all__ = ["Bucket", "ChainOptimizer", "Transform", "host_hyperparameters"]

_TORCH_ADDED_DEFAULTS = frozenset({"differentiable"})
_GRAD = attrgetter("grad")
_LAYOUT = attrgetter("layout")
_SIZE = Tensor.size  # the C method: ``.shape`` (a property) costs several times as much


def host_hyperparameters(group: dict[str, Any]) -> dict[str, Any]:
    """The group with every tensor hyper-parameter (``lr=torch.tensor(1e-3)``, a pair of
    tensor ``betas``) read as a Python number, as a step uses them: per-step scalars are
    numbers computed once per group, so a tensor hyper-parameter gives exactly the step of the
    float ``float(tensor)``. The group itself when it holds no tensor (the common case: no
    copy); otherwise a shallow copy, so the group (and a scheduler's tensor) is left as is.
    ``params`` and ``param_names`` are not hyper-parameters and are shared.

    Example:
        >>> host_hyperparameters({"params": [], "lr": torch.tensor(0.5)})["lr"]
        0.5
    """
    converted: dict[str, Any] | None = None
    for name, value in group.items():
        if name in ("params", "param_names"):
            continue
        if isinstance(value, Tensor):
            new: Any = value.item()
        elif isinstance(value, (tuple, list)) and any(isinstance(v, Tensor) for v in value):
            new = type(value)(v.item() if isinstance(v, Tensor) else v for v in value)
        else:
            continue
        if converted is None:
            converted = dict(group)
        converted[name] = new
    return group if converted is None else converted


class Bucket:
    """Parameters of one group that share device, dtype and step count, with their state.

    Attributes:
        group: the parameter group (hyper-parameters are read from it by name).
        params: the parameters (real views of complex ones), updated in place.
        grads: their gradients (real views); read only.
        states: the optimizer's per-parameter state dicts.
        ndims: each parameter's number of dimensions (of the complex tensor, for complex ones).
        step: the step count ``t`` shared by the bucket, 1 on a parameter's first step.
        updates: the current direction ``u``; starts as ``grads``.
    """

    __slots__ = ("group", "params", "grads", "states", "ndims", "step", "updates", "_originals",
                 "_owned")

    def __init__(
        self,
        group: dict[str, Any],
        originals: list[Tensor],
        states: list[dict[str, Any]],
        step: int,
    ) -> None:
        self.group = group
        self._originals = originals
        self.states = states
        self.step = step
        self.ndims = [p.dim() for p in originals]
        self.params = [_real(p) for p in originals]
        self.grads = [_real(p.grad) for p in originals]  # type: ignore[arg-type]
        self.updates = self.grads
        self._owned = False

    def __len__(self) -> int:
        return len(self.params)

    def set_updates(self, updates: list[Tensor], *, writable: bool = True) -> None:
        """Replace the direction. ``writable=False`` when some of the tensors must not be
        written by later transforms (gradients, or state such as a momentum buffer)."""
        self.updates = updates
        self._owned = writable

    @property
    def is_writable(self) -> bool:
        """Whether every tensor of ``updates`` may be written in place."""
        return self._owned

    def writable_updates(self) -> list[Tensor]:
        """The direction, copied first if it still aliases the gradients."""
        if not self._owned:
            self.set_updates(clone(self.updates))
        return self.updates

    def state(self, name: str, init: Callable[[Tensor], Tensor]) -> list[Tensor]:
        """The per-parameter state tensors ``name`` (real views), created by ``init(param)``
        where missing."""
        out = []
        for p, s in zip(self._originals, self.states, strict=True):
            t = s.get(name)
            if t is None:
                t = s[name] = init(p)
            out.append(_real(t))
        return out

    def set_state(self, name: str, tensors: list[Tensor]) -> None:
        """Store ``tensors`` (real views, as the bucket sees them) as state ``name``; complex
        parameters get complex state, as in torch.optim."""
        for p, s, t in zip(self._originals, self.states, tensors, strict=True):
            s[name] = torch.view_as_complex(t) if p.is_complex() else t

    def has_state(self, name: str) -> list[bool]:
        """Whether each parameter already holds state ``name``."""
        return [name in s for s in self.states]

    def subset(self, keep: list[bool]) -> Bucket:
        """A bucket over the parameters where ``keep`` is true, sharing updates and state."""
        sub = Bucket.__new__(Bucket)
        sub.group, sub.step, sub._owned = self.group, self.step, self._owned
        for name in ("_originals", "states", "ndims", "params", "grads", "updates"):
            setattr(sub, name, [x for x, k in zip(getattr(self, name), keep, strict=True) if k])
        return sub


def _real(t: Tensor) -> Tensor:
    return torch.view_as_real(t) if t.is_complex() else t


class Transform:
    """One equation of an update rule, applied to a :class:`Bucket`.

    Subclasses implement ``__call__`` (read ``bucket.updates``/state, write the new direction
    or, for the final transforms, the parameters) and may implement ``init`` to create state on a
    parameter's first step, before any transform runs.
    """

    def init(self, param: Tensor, group: dict[str, Any]) -> dict[str, Tensor]:
        """State created on the parameter's first step (default: none)."""
        return {}

    def __call__(self, bucket: Bucket) -> None:
        raise NotImplementedError

    def __repr__(self) -> str:
        return type(self).__name__


class ChainOptimizer(Optimizer):
    """A ``torch.optim.Optimizer`` whose step runs ``chain`` over buckets of parameters.

    Subclasses set ``chain`` (the transforms, in order) and ``rules`` (a check per
    hyper-parameter, applied to the defaults and to every added group), and may set
    ``fused_rule`` (the same step on torch's fused kernels, see ``fused.py``). All of torch.optim's
    machinery works unchanged: param groups with their own hyper-parameters, ``closure``,
    ``add_param_group``, ``zero_grad``, ``state_dict``/``load_state_dict``, step hooks, LR
    schedulers and ``torch.amp.GradScaler``.
    """

    chain: ClassVar[tuple[Transform, ...]] = ()
    fused_rule: ClassVar[FusedRule | None] = None
    rules: ClassVar[dict[str, validation.Check]] = {}
    common_rules: ClassVar[dict[str, validation.Check]] = {
        "lr": validation.non_negative,
        "maximize": validation.flag,
        "foreach": validation.flag,
        "fused": validation.optional_flag,
        "centralize": validation.flag,
    }

    def __init__(self, params: Iterable[Any], defaults: dict[str, Any]) -> None:
        self._check(defaults)
        super().__init__(params, defaults)

    def _check(self, values: dict[str, Any]) -> None:
        validation.check_all(values, {**self.common_rules, **self.rules})

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group, as torch.optim does, after checking its tensors and hyper-parameters.

        Raises ``ValueError`` for a non-leaf tensor or a tensor listed twice, naming it.
        """
        params = param_group["params"]
        params = [params] if isinstance(params, Tensor) else list(params)
        param_group["params"] = params
        seen: dict[int, int] = {}
        for i, item in enumerate(params):
            name, p = item if isinstance(item, tuple) else (f"params[{i}]", item)
            if not isinstance(p, Tensor):
                raise TypeError(f"{name} must be a torch.Tensor, got {type(p).__name__}")
            if not (p.is_leaf or p.retains_grad):
                raise ValueError(
                    f"{name} (shape {list(p.shape)}) is not a leaf tensor: an optimizer can only "
                    "update leaf tensors (pass the parameters themselves, not results of ops)"
                )
            if id(p) in seen:
                raise ValueError(
                    f"{name} (shape {list(p.shape)}) is listed twice in one parameter group "
                    f"(first at index {seen[id(p)]})"
                )
            seen[id(p)] = i
        self._check(param_group)
        super().add_param_group(param_group)

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        # Groups saved by older versions (or by torch.optim) lack some of our options. Only our
        # own: torch's __setstate__ adds keys of its own (``differentiable``) to ``defaults``.
        for group in self.param_groups:
            for name, default in self.defaults.items():
                if name not in _TORCH_ADDED_DEFAULTS:
                    group.setdefault(name, default)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> Any:  # type: ignore[override]
        """Perform one optimization step.

        Args:
            closure: re-evaluates the model and returns the loss (optional).
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        # Every gradient is checked before any state changes: a step that raises has advanced
        # no step count or moment, so a retried step uses the right bias corrections.
        for index, group in enumerate(self.param_groups):
            self._check_gradients(group, index)
        for index, group in enumerate(self.param_groups):
            hyper = host_hyperparameters(group)
            rule = choose_rule(self, hyper)
            if rule is None:
                buckets = self._buckets(hyper, index)
            else:
                buckets = self._fused_buckets(rule, group, index, hyper)
            for bucket in buckets:
                for transform in self.chain:
                    transform(bucket)
        return loss

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a ``state_dict`` (torch's format; a torch.optim checkpoint of the same
        algorithm loads too).

        State tensors are laid out as their (contiguous) parameter, as the fused kernels need:
        a checkpoint of a ``channels_last`` model loaded into a contiguous one is converted.
        Raises ``ValueError`` for a state tensor whose shape is not its parameter's (a
        checkpoint of another model), which no step could use. Entries torch keeps as they are
        (a non-dict value, a key that is no parameter's id) are left alone, as torch does.
        """
        super().load_state_dict(state_dict)
        for p, state in self.state.items():
            # torch keeps any entry as it is: a value that is not a dict of state (which a
            # state_dict hook may make), and state under a key that is no parameter's id.
            if not isinstance(p, Tensor) or not isinstance(state, dict):
                continue
            for name, value in state.items():
                if not isinstance(value, Tensor) or value.dim() == 0:
                    continue
                if value.shape != p.shape:
                    raise ValueError(
                        f"state_dict: state {name!r} has shape {list(value.shape)} but its "
                        f"parameter has shape {list(p.shape)} (a checkpoint of another model?)"
                    )
                if p.is_contiguous():
                    state[name] = value.contiguous()

    def _states_are_dicts(self, params: list[Tensor]) -> bool:
        """The state of every parameter in ``params`` that has one is a dict: read off the whole
        state's values when they are all dicts (no tensor hashing), else per parameter."""
        if all(map(isinstance, self.state.values(), repeat(dict))):
            return True
        found = [s for s in map(self.state.get, params) if s is not None]
        return all(map(isinstance, found, repeat(dict)))

    def _check_gradients(self, group: dict[str, Any], index: int) -> None:
        """Raise before a step touches any state when a gradient of the group cannot be used:
        ``RuntimeError`` for a sparse (not strided) gradient or a state that is not a dict,
        ``ValueError`` for a gradient whose shape is not its parameter's; each names the
        parameter and its group. The common
        case (every gradient fine) costs C-level ``map`` calls, no Python code per parameter."""
        params = group["params"]
        grads = list(map(_GRAD, params))
        present = list(map(is_not, grads, repeat(None)))
        with_grad = list(compress(grads, present))
        bad_layout = any(map(ne, map(_LAYOUT, with_grad), repeat(torch.strided)))
        stepping = list(compress(params, present))
        if (not bad_layout and list(map(_SIZE, with_grad)) == list(map(_SIZE, stepping))
                and self._states_are_dicts(stepping)):
            return
        names = group.get("param_names")
        for i, (p, g) in enumerate(zip(params, grads, strict=True)):
            if g is None:
                continue
            where = f"param_groups[{index}]['params'][{i}]"
            name = f"{names[i]} ({where})" if names else where
            state = self.state.get(p)
            if state is not None and not isinstance(state, dict):
                raise RuntimeError(
                    f"{name}: its state is a {type(state).__name__}, not a dict of state (a "
                    "load_state_dict hook replaced it?); no state was changed"
                )
            if g.layout != torch.strided:
                raise RuntimeError(
                    f"{name} (shape {list(p.shape)}) has a sparse "
                    f"gradient (layout {g.layout}); {type(self).__name__} supports dense "
                    "gradients only (use torch.optim.SparseAdam or a dense embedding); no "
                    "state was changed"
                )
            if g.shape != p.shape:
                raise ValueError(
                    f"{name} has shape {list(p.shape)} but its "
                    f"gradient has shape {list(g.shape)} (was the parameter replaced after "
                    "backward?); no state was changed"
                )

    def _take_step(self, p: Tensor, group: dict[str, Any], index: int, i: int) -> dict[str, Any]:
        """Parameter ``i`` of the group takes a step: its state, created on its first step,
        with the step count incremented (its gradient already checked by
        :meth:`_check_gradients`)."""
        state = self.state[p]
        if "step" not in state:  # first step (or state from an optimizer without a count)
            for transform in self.chain:
                for name, value in transform.init(p, group).items():
                    state.setdefault(name, value)
        state["step"] = int(state.get("step", 0)) + 1
        return state

    def _buckets(self, group: dict[str, Any], index: int) -> Iterator[Bucket]:
        keyed: dict[tuple[Any, ...], tuple[list[Tensor], list[dict[str, Any]]]] = defaultdict(
            lambda: ([], [])
        )
        for i, p in enumerate(group["params"]):
            if p.grad is None:
                continue
            state = self._take_step(p, group, index, i)
            key = (p.device, p.dtype, state["step"]) if group["foreach"] else (i,)
            params, states = keyed[key]
            params.append(p)
            states.append(state)
        for key, (params, states) in keyed.items():
            step = key[2] if group["foreach"] else states[0]["step"]
            yield Bucket(group, params, states, step)

    def _fused_buckets(
        self, rule: FusedRule, group: dict[str, Any], index: int,
        hyper: dict[str, Any] | None = None,
    ) -> Iterator[Bucket]:
        """Run ``rule`` on the group's buckets it takes; yield the others (the parameters that
        are not dense, or of an unsupported dtype or device, and the steps the rule leaves to
        the reference chain) as buckets for the chain.

        The buckets of the last step are reused (:class:`Plan`) while the parameters, which of
        them have gradients, their layouts and their state are unchanged: then a step only
        reads the gradients and increments the step counts. ``hyper`` is the group as the
        step reads it (:func:`host_hyperparameters`; the group itself by default): the plan is
        kept for ``group``, the buckets get ``hyper``."""
        if hyper is None:
            hyper = group
        plans: dict[int, Plan] = self.__dict__.setdefault("_fused_plans", {})
        plan = plans.get(index)
        keyed = plan.reuse(self, group) if plan is not None else None
        if keyed is None:
            plans.pop(index, None)
            keyed = self._fused_bucket_lists(hyper, index)
            plan = Plan.of(self, group, keyed)
            if plan is not None:
                plans[index] = plan
        workspace = self.__dict__.get("_fused_workspace")
        if workspace is None:
            workspace = self.__dict__["_fused_workspace"] = Workspace()
        for (device, dtype, step, dense), (params, grads, states) in keyed.items():
            reason = rule.unsupported_tensors(device, dtype) if dense else (
                "a parameter or its gradient is not contiguous"
            )
            if reason is None:
                if rule(FusedBucket(hyper, params, grads, states, step), workspace):
                    continue
            elif hyper.get("fused"):
                warn_once(self, reason)
            yield Bucket(hyper, params, states, step)

    def _fused_bucket_lists(self, group: dict[str, Any], index: int) -> Keyed:
        """Every parameter with a gradient takes a step; the parameters, gradients and states
        bucketed by ``(device, dtype, step, dense)``."""
        keyed: Keyed = {}
        state_of = self.state
        entry = None
        last: list[Any] = [None, None, None, None]  # device, dtype, step, dense of ``entry``
        for i, p in enumerate(group["params"]):
            grad = p.grad
            if grad is None:
                continue
            # The common case inline (this loop is the per-parameter cost of a fused step); a
            # sparse gradient was refused before the step (_check_gradients).
            state = state_of[p]
            step = state.get("step")
            dense = grad.is_contiguous()
            if dense and type(step) is int:
                step += 1
                state["step"] = step
            else:
                step = self._take_step(p, group, index, i)["step"]
            device, dtype, dense = p.device, p.dtype, dense and p.is_contiguous()
            if (entry is None or step != last[2] or dense is not last[3] or dtype is not last[1]
                    or device != last[0]):  # another bucket (no key tuple per parameter)
                last = [device, dtype, step, dense]
                entry = keyed.get(tuple(last))
                if entry is None:
                    entry = keyed[tuple(last)] = ([], [], [])
            entry[0].append(p)
            entry[1].append(grad)
            entry[2].append(state)
        return keyed
