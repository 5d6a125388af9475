"""Reusing a parameter group's fused buckets from one step to the next.

Bucketing a group for the fused path (:meth:`~unstuck.optim.base.ChainOptimizer._fused_buckets`:
which parameters have gradients, their device, dtype, step count and layout, and their state)
is a Python loop over the parameters; on 2,000 small tensors it costs about as much as the
kernels. A :class:`Plan` keeps the last step's buckets and, at the next step, checks with
C-level ``map`` calls (no Python code per parameter) that nothing they depend on changed; then
the step only reads the gradients and increments the step counts.
"""

from __future__ import annotations

from itertools import compress, repeat
from operator import attrgetter, is_, is_not, itemgetter
from typing import Any

from torch import Tensor
from torch.optim import Optimizer

__all__ = ["Keyed", "Plan"]

Keyed = dict[tuple[Any, ...], tuple[list[Tensor], list[Tensor], list[dict[str, Any]]]]
_GRAD = attrgetter("grad")
_STEP = itemgetter("step")


class Plan:
    """One parameter group's buckets of the last fused step, to reuse at the next.

    Reuse needs, checked at every step at C speed (no Python code per parameter): the same
    group, parameter list and parameters; gradients on the same parameters, all contiguous;
    the parameters' storages (``p.data = ...`` changes them) and contiguity; the same state
    dicts (``load_state_dict`` or a replaced entry changes them) with the step counts this
    plan left. Only plans whose buckets are all dense are kept.
    """

    __slots__ = ("group", "param_list", "params", "present", "with_grad", "state", "state_values",
                 "pointers", "states", "steps", "buckets")

    group: dict[str, Any]
    param_list: list[Tensor]
    params: list[Tensor]
    present: list[bool]
    with_grad: list[Tensor]
    state: Any
    state_values: list[dict[str, Any]]
    pointers: list[int]
    states: list[dict[str, Any]]
    steps: list[Any]
    # per bucket: (device, dtype), step, positions in ``with_grad``, params, states
    buckets: list[tuple[tuple[Any, Any], int, list[int], list[Tensor], list[dict[str, Any]]]]

    @classmethod
    def of(cls, optimizer: Optimizer, group: dict[str, Any], keyed: Keyed) -> Plan | None:
        """The plan of a step just bucketed (``None`` when a bucket is not dense)."""
        if not all(key[3] for key in keyed):
            return None
        plan = cls()
        plan.group, plan.param_list = group, group["params"]
        plan.params = list(plan.param_list)
        plan.present = [p.grad is not None for p in plan.params]
        plan.with_grad = list(compress(plan.params, plan.present))
        position = {id(p): i for i, p in enumerate(plan.with_grad)}
        plan.buckets = [
            ((device, dtype), step, [position[id(p)] for p in params], params, states)
            for (device, dtype, step, _), (params, _, states) in keyed.items()
        ]
        plan.states = [optimizer.state[p] for p in plan.with_grad]
        plan.state = optimizer.state
        plan.state_values = list(optimizer.state.values())
        plan.pointers = list(map(Tensor.data_ptr, plan.with_grad))
        plan.steps = list(map(_STEP, plan.states))
        return plan

    def reuse(self, optimizer: Optimizer, group: dict[str, Any]) -> Keyed | None:
        """This step's buckets (step counts incremented), or ``None`` when something changed."""
        params = group["params"]
        if (group is not self.group or params is not self.param_list
                or len(params) != len(self.params) or not all(map(is_, params, self.params))
                or optimizer.state is not self.state):
            return None
        grads = list(map(_GRAD, params))
        if list(map(is_not, grads, repeat(None))) != self.present:
            return None
        if len(grads) != len(self.with_grad):
            grads = list(compress(grads, self.present))
        if (not all(map(Tensor.is_contiguous, grads))
                or not all(map(Tensor.is_contiguous, self.with_grad))
                or list(map(Tensor.data_ptr, self.with_grad)) != self.pointers
                or len(optimizer.state) != len(self.state_values)
                or not all(map(is_, optimizer.state.values(), self.state_values))):
            return None
        try:
            if list(map(_STEP, self.states)) != self.steps:
                return None
        except KeyError:
            return None
        keyed: Keyed = {}
        buckets = []
        for (device, dtype), step, positions, bucket_params, states in self.buckets:
            step += 1
            for state in states:
                state["step"] = step
            bucket_grads = grads if len(positions) == len(grads) else list(
                map(grads.__getitem__, positions)
            )
            keyed[(device, dtype, step, True)] = (bucket_params, bucket_grads, states)
            buckets.append(((device, dtype), step, positions, bucket_params, states))
        self.buckets = buckets
        self.steps = list(map(_STEP, self.states))
        return keyed
