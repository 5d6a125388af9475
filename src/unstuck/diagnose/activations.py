"""Dead ReLU units: features whose activation is exactly zero on every example seen.

A ReLU unit whose pre-activation is negative for every input outputs 0 and has gradient 0
(``relu'(z) = 0`` for ``z < 0``), so neither its incoming weights nor its bias ever change again:
the unit is *dead* (Maas, Hannun & Ng 2013, "Rectifier Nonlinearities Improve Neural Network
Acoustic Models"; Lu et al. 2019, "Dying ReLU and Initialization"). A large learning rate step or
a large negative bias kills units; a layer with every unit dead passes no gradient at all.

:func:`dead_units` hooks every ReLU-family module, runs the model on some batches and counts, per
module, the units whose output was exactly ``0`` for every example and position. The ReLU family
is the activations whose floor is exactly 0 with zero gradient below it (see
:func:`is_relu_family`): :class:`torch.nn.ReLU`, :class:`torch.nn.ReLU6`,
:class:`torch.nn.Hardtanh` with ``min_val == 0`` and :class:`torch.nn.Hardswish` (0 for
``x <= -3``). LeakyReLU, ELU, GELU, SiLU and the like are not hooked: their output is exactly 0
only at isolated points and their gradient never vanishes on a half-line. Calls of
``torch.nn.functional.relu`` (or ``torch.relu``) inside a ``forward`` have no module and are not
seen.

Example::

    >>> import torch
    >>> from torch import nn
    >>> model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
    >>> with torch.no_grad():
    ...     _ = model[0].bias.copy_(torch.tensor([-100.0, -100.0, 100.0, 100.0]))
    ...     _ = model[0].weight.fill_(0.1)
    >>> found = dead_units(model, torch.randn(16, 3))
    >>> found["1"].units, found["1"].dead, found["1"].share, found["1"].indices
    (4, 2, 0.5, (0, 1))
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["DeadUnits", "dead_units", "is_relu_family"]

# Leaf modules that fix the meaning of dim 1 / the last dim of the next 3-D activation.
_CHANNELS_FIRST: tuple[type[nn.Module], ...] = (
    nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d,
    nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm, nn.GroupNorm,
    nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d, nn.LocalResponseNorm,
    nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
    nn.AdaptiveMaxPool1d, nn.AdaptiveAvgPool1d, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d,
)  # fmt: skip
_CHANNELS_LAST: tuple[type[nn.Module], ...] = (
    nn.Linear, nn.Bilinear, nn.LayerNorm, nn.Embedding, nn.EmbeddingBag, nn.RNNBase,
    *((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()),
)  # fmt: skip


def is_relu_family(module: nn.Module) -> bool:
    """Whether ``module`` is hooked by :func:`dead_units`: an activation with an exact-zero floor.

    ``nn.ReLU``, ``nn.ReLU6``, ``nn.Hardtanh`` with ``min_val == 0`` (``ReLU6`` is one) and
    ``nn.Hardswish``. A Hardtanh with another floor is stuck at ``min_val``, not at 0, and is left
    out.

    Example::

        >>> is_relu_family(nn.ReLU()), is_relu_family(nn.Hardtanh(0.0, 1.0))
        (True, True)
        >>> is_relu_family(nn.Hardtanh()), is_relu_family(nn.LeakyReLU())
        (False, False)
    """
    if isinstance(module, nn.Hardtanh):
        return module.min_val == 0
    return isinstance(module, (nn.ReLU, nn.Hardswish))


@dataclass(frozen=True)
class DeadUnits:
    """Dead units of one ReLU-family module, from :func:`dead_units`.

    Attributes:
        name: the module's name in ``model.named_modules()`` (``""`` for the model itself).
        units: how many units (features) it has; summed over groups when it was called on
            activations of different widths (see :func:`dead_units`).
        dead: how many of them output exactly 0 on every example and position seen.
        share: ``dead / units`` (``nan`` when ``units == 0``).
        calls: how many times the module ran.
        nonfinite: how many units output a non-finite value at least once (these count as alive:
            ``nan`` and ``inf`` are not 0).
        indices: the dead units' indices along the unit dimension (groups concatenated in the
            order first seen).
    """

    name: str
    units: int
    dead: int
    share: float
    calls: int = 0
    nonfinite: int = 0
    indices: tuple[int, ...] = ()


class _Site:
    """What the hooks gathered for one module: an ``alive`` mask per width, in order first seen."""

    def __init__(self) -> None:
        self.alive: dict[int, Tensor] = {}
        self.nonfinite: dict[int, Tensor] = {}
        self.calls = 0

    def add(self, out: Tensor, dim: int) -> None:
        out = out.detach().reshape(1) if out.ndim == 0 else out.detach()
        width = out.shape[dim]
        if out.numel() == 0:  # an empty batch says nothing about any unit
            return
        self.calls += 1
        rows = out.movedim(dim, 0).reshape(width, -1)
        alive = (rows != 0).any(dim=1).cpu()
        bad = (~torch.isfinite(rows)).any(dim=1).cpu()
        if width in self.alive:
            self.alive[width] |= alive
            self.nonfinite[width] |= bad
        else:
            self.alive[width], self.nonfinite[width] = alive, bad

    def result(self, name: str) -> DeadUnits:
        if not self.alive:
            return DeadUnits(name, 0, 0, math.nan, self.calls)
        alive = torch.cat(list(self.alive.values()))
        bad = torch.cat(list(self.nonfinite.values()))
        units, dead_index = len(alive), torch.nonzero(~alive).flatten().tolist()
        share = len(dead_index) / units
        return DeadUnits(
            name, units, len(dead_index), share, self.calls, int(bad.sum()), tuple(dead_index)
        )


def _unit_dim(out: Tensor, layout: str | None) -> int:
    """The default unit dimension of an activation (see :func:`dead_units`)."""
    if out.ndim <= 1:
        return 0
    if out.ndim == 3:
        return 1 if layout == "channels_first" else 2
    return 1


def _batches(inputs: Any, max_batches: int | None) -> Iterable[Any]:
    if isinstance(inputs, Tensor):
        yield inputs
        return
    if isinstance(inputs, (str, bytes, Mapping)) or not isinstance(inputs, Iterable):
        raise TypeError(
            "inputs must be a tensor or an iterable of tensors or of (inputs, targets) pairs, "
            f"got {type(inputs).__name__}"
        )
    count = 0
    for batch in inputs:
        if max_batches is not None and count >= max_batches:
            return
        if isinstance(batch, (tuple, list)) and batch:
            batch = batch[0]
        if not isinstance(batch, Tensor):
            raise TypeError(
                f"inputs must yield tensors or (inputs, targets) pairs, got {type(batch).__name__}"
                f" in batch {count}"
            )
        count += 1
        yield batch
    if count == 0:
        raise ValueError("inputs must yield at least one batch, got none")


def dead_units(
    model: nn.Module,
    inputs: Tensor | Iterable[Tensor] | Iterable[tuple[Any, ...]],
    *,
    max_batches: int | None = None,
    unit_dim: int | Mapping[str, int] | None = None,
) -> dict[str, DeadUnits]:
    """Count, per ReLU-family module, the units whose output is exactly 0 on all inputs seen.

    Unit ``k`` of a module is dead when ``out[..., k, ...] == 0`` for every example and every
    position (time step, pixel) of every call in every batch. One batch is a sample: a unit
    that is dead on it may still fire on other data, so pass a few batches (``max_batches``
    bounds how many are read from a loader).

    Which dimension holds the units (features):

    - 1-D output ``(F,)`` (an unbatched call): dim 0;
    - 2-D ``(N, F)``: dim 1;
    - 3-D: dim 1 (``(N, C, L)``) when the last layout-setting leaf module that ran before it
      in the same forward pass was a convolution, BatchNorm, InstanceNorm, GroupNorm, pooling
      or channel dropout; otherwise the last dim (``(N, L, F)``, after Linear, LayerNorm,
      Embedding, an RNN, or nothing known). Elementwise modules (dropout, activations) do not
      change the layout;
    - 4-D and 5-D ``(N, C, ...)``: dim 1.

    ``unit_dim`` overrides this, for every module (an int) or per module name (a mapping; other
    modules keep the rule).

    A module called several times per forward pass (one ``nn.ReLU`` shared by all layers) is
    counted as one: calls with the same number of units are merged (a unit is dead only if it is
    0 in every call), calls with a different number of units are separate groups whose units
    and dead units add up. Give each layer its own module to see each layer on its own.

    The model runs in eval mode (dropout off, BatchNorm on its running statistics) under
    :func:`torch.no_grad`; every module's ``training`` flag is put back afterwards and the hooks
    are removed, on error too. Inputs are passed as they are (put them on the model's device).
    Non-finite activations do not stop the count: ``nan`` and ``inf`` are not 0, so they count as
    alive, and each result's ``nonfinite`` says how many units produced one.

    Args:
        model: the network.
        inputs: one batch (a tensor), or an iterable of batches: tensors, or tuples/lists whose
            first item is the input (the ``(inputs, targets)`` pairs a DataLoader yields). Wrap
            a single pair in a list: ``[(x, y)]``.
        max_batches: read at most this many batches (``None``: all of them).
        unit_dim: the unit dimension, for all modules or per module name.

    Returns:
        ``{module name: DeadUnits}`` for the ReLU-family modules that ran, in
        ``named_modules()`` order (``{}`` when there are none).

    Raises:
        TypeError: ``model`` is not a module, ``inputs`` or a batch is not a tensor or pair.
        ValueError: no batch; ``max_batches`` not a positive integer; ``unit_dim`` out of range
            for an activation or not an integer.

    Example::

        counts = dead_units(model, loader, max_batches=8)
        worst = max(counts.values(), key=lambda d: d.share)
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if max_batches is not None and (
        isinstance(max_batches, bool) or not isinstance(max_batches, int) or max_batches < 1
    ):
        raise ValueError(f"max_batches must be None or an integer >= 1, got {max_batches!r}")
    dims = dict(unit_dim) if isinstance(unit_dim, Mapping) else {}
    if isinstance(unit_dim, Mapping):
        checks = [(f"unit_dim[{k!r}]", v) for k, v in dims.items()]
    else:
        checks = [] if unit_dim is None else [("unit_dim", unit_dim)]
    for key, value in checks:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{key} must be an integer, got {value!r}")

    sites: dict[str, _Site] = {}
    layout: list[str | None] = [None]

    def activation_hook(name: str):
        def hook(module: nn.Module, args: Any, out: Any) -> None:
            if not isinstance(out, Tensor):
                return
            chosen = dims.get(name) if isinstance(unit_dim, Mapping) else unit_dim
            ndim = max(out.ndim, 1)
            if chosen is None:
                dim = _unit_dim(out, layout[0])
            elif not -ndim <= chosen < ndim:
                raise ValueError(
                    f"unit_dim for module {name!r} must lie in [{-ndim}, {ndim - 1}] for its "
                    f"{out.ndim}-D output, got {chosen}"
                )
            else:
                dim = chosen % ndim
            sites.setdefault(name, _Site()).add(out, dim)

        return hook

    def layout_hook(module: nn.Module, args: Any, out: Any) -> None:
        if isinstance(module, _CHANNELS_FIRST):
            layout[0] = "channels_first"
        elif isinstance(module, _CHANNELS_LAST):
            layout[0] = "channels_last"

    def reset_layout(module: nn.Module, args: Any) -> None:
        layout[0] = None

    modes = [(m, m.training) for m in model.modules()]
    handles = [model.register_forward_pre_hook(reset_layout)]
    try:
        for name, module in model.named_modules():
            if is_relu_family(module):
                handles.append(module.register_forward_hook(activation_hook(name)))
            elif isinstance(module, _CHANNELS_FIRST + _CHANNELS_LAST):
                handles.append(module.register_forward_hook(layout_hook))
        model.eval()
        with torch.no_grad():
            for batch in _batches(inputs, max_batches):
                model(batch)
    finally:
        for handle in handles:
            handle.remove()
        for module, training in modes:
            module.training = training
    order = [name for name, _ in model.named_modules() if name in sites]
    return {name: sites[name].result(name) for name in order}
