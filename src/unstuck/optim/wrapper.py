"""A base for optimizers that wrap another ``torch.optim.Optimizer``.

The wrapper *is* an Optimizer (schedulers, ``torch.amp.GradScaler``, closures, Lightning and
Hugging Face see one): its ``param_groups`` are the inner optimizer's (the same dicts, so a
scheduler that sets ``lr`` on the wrapper sets it for the inner one), its ``state`` holds the
wrapper's own per-parameter state, and its ``state_dict()`` nests the inner one under
``"inner"``, so wrappers compose (``Lookahead(centralize(torch.optim.Adam(...)))``).
"""

from __future__ import annotations

from typing import Any

from torch.optim import Optimizer

__all__ = ["OptimizerWrapper"]


class OptimizerWrapper(Optimizer):
    """Wraps ``optimizer``; subclasses implement ``step`` around ``self.optimizer.step``."""

    def __init__(self, optimizer: Optimizer) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(
                f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}"
            )
        self.optimizer = optimizer
        self._linked = False
        # Optimizer.__init__ sets up hooks, the patched step and ``state``; it is given an empty
        # group of its own so that nothing is added to the inner optimizer's groups.
        super().__init__([{"params": []}], dict(optimizer.defaults))
        self._linked = True

    @property  # type: ignore[override]
    def param_groups(self) -> list[dict[str, Any]]:
        """The inner optimizer's parameter groups (always the current list)."""
        if self._linked:
            return self.optimizer.param_groups
        return self.__dict__["_own_param_groups"]

    @param_groups.setter
    def param_groups(self, groups: list[dict[str, Any]]) -> None:
        if self._linked:
            self.optimizer.param_groups = groups
        else:
            self.__dict__["_own_param_groups"] = groups

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group to the inner optimizer (with its defaults and checks)."""
        if self._linked:
            self.optimizer.add_param_group(param_group)
        else:
            super().add_param_group(param_group)

    def extra_state(self) -> dict[str, Any]:
        """Non-tensor state of the wrapper saved in ``state_dict`` (e.g. a step counter)."""
        return {}

    def load_extra_state(self, extra: dict[str, Any]) -> None:
        """Restore what :meth:`extra_state` returned."""

    def state_dict(self) -> dict[str, Any]:
        """torch's format for the wrapper's own state, plus ``"inner"`` (the inner optimizer's
        ``state_dict()``) and ``"wrapper"`` (:meth:`extra_state`)."""
        out = super().state_dict()
        out["inner"] = self.optimizer.state_dict()
        out["wrapper"] = self.extra_state()
        return out

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` (the inner optimizer's too)."""
        state_dict = dict(state_dict)
        if "inner" not in state_dict:
            raise ValueError(
                f"state_dict was not saved by {type(self).__name__}: it has no 'inner' entry "
                "(to load a plain optimizer's state, use wrapper.optimizer.load_state_dict)"
            )
        self.optimizer.load_state_dict(state_dict.pop("inner"))
        extra = state_dict.pop("wrapper", {})
        super().load_state_dict(state_dict)
        self.__dict__.pop("param_groups", None)  # Optimizer.__setstate__ stores a stale copy
        self.load_extra_state(extra)

    def __getstate__(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset the gradients of every parameter (delegated to the inner optimizer)."""
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.optimizer!r})"
