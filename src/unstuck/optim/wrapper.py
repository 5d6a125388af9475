"""A base for optimizers that wrap another ``torch.optim.Optimizer``.

The wrapper *is* an Optimizer (schedulers, ``torch.amp.GradScaler``, closures, Lightning and
Hugging Face see one): its ``param_groups`` are the inner optimizer's (the same dicts, so a
scheduler that sets ``lr`` on the wrapper sets it for the inner one), its ``state`` holds the
wrapper's own per-parameter state, and its ``state_dict()`` nests the inner one under
``"inner"``, so wrappers compose (``Lookahead(centralize(torch.optim.Adam(...)))``).

Hooks behave as on one optimizer: a step of the wrapper runs the global step hooks
(``torch.optim.optimizer.register_optimizer_step_pre_hook`` / ``_post_hook``) once, with the
wrapper as the optimizer, and the inner optimizer's own step hooks once; a
``load_state_dict`` pre-hook of the wrapper sees the whole state dict, and what it changes
(``param_groups`` included, and ``"inner"``) is what is loaded.
"""

from __future__ import annotations

from collections.abc import Callable
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

    def step_inner(self, closure: Callable[[], Any] | None = None) -> Any:
        """Step the inner optimizer as part of this wrapper's step.

        Runs the inner optimizer's own step hooks (``register_step_pre_hook`` /
        ``register_step_post_hook`` on it) but not the global ones: those already run once for
        the wrapper's step, the step the user made.
        """
        inner = self.optimizer
        step = type(inner).step
        raw = getattr(step, "__wrapped__", None) if getattr(step, "hooked", False) else None
        if raw is None:  # a step torch did not wrap with its hooks
            return inner.step() if closure is None else inner.step(closure)
        args: tuple[Any, ...] = (inner,) if closure is None else (inner, closure)
        kwargs: dict[str, Any] = {}
        for pre_hook in list(inner._optimizer_step_pre_hooks.values()):
            result = pre_hook(inner, args, kwargs)
            if result is not None:
                if not (isinstance(result, tuple) and len(result) == 2):
                    raise RuntimeError(
                        f"{step} must return None or a tuple of (new_args, new_kwargs), but got "
                        f"{result}."
                    )
                args, kwargs = result
        out = raw(*args, **kwargs)
        inner._optimizer_step_code()
        for post_hook in list(inner._optimizer_step_post_hooks.values()):
            post_hook(inner, args, kwargs)
        return out

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
        """Restore a :meth:`state_dict` (the inner optimizer's too).

        As torch.optim: the wrapper's ``load_state_dict`` pre-hooks run first, on the whole
        dict; then the inner optimizer loads ``"inner"``, the wrapper its counters, its own
        state and ``param_groups`` (which win over the inner ones, so a hook's edits are
        kept), and its post-hooks run last.
        """
        def load_inner(_: Optimizer, loaded: dict[str, Any]) -> dict[str, Any]:
            # the last pre-hook: the dict as every other pre-hook left it
            if "inner" not in loaded:
                raise ValueError(
                    f"state_dict was not saved by {type(self).__name__}: it has no 'inner' "
                    "entry (to load a plain optimizer's state, use "
                    "wrapper.optimizer.load_state_dict)"
                )
            loaded = dict(loaded)
            self.optimizer.load_state_dict(loaded.pop("inner"))
            self.load_extra_state(loaded.pop("wrapper", {}))
            return loaded

        handle = self.register_load_state_dict_pre_hook(load_inner)
        try:
            super().load_state_dict(state_dict)
        finally:
            handle.remove()

    def __getstate__(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def __setstate__(self, state: dict[str, Any]) -> None:
        groups = state.get("param_groups") if self.__dict__.get("_linked") else None
        if groups is not None:
            # Optimizer.load_state_dict: the loaded groups (params already the inner ones)
            # update the inner optimizer's groups in place, before the post-hooks run
            state = {k: v for k, v in state.items() if k != "param_groups"}
            for current, loaded in zip(self.optimizer.param_groups, groups, strict=True):
                current.update(loaded)
        self.__dict__.update(state)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset the gradients of every parameter (delegated to the inner optimizer)."""
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.optimizer!r})"
