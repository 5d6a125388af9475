"""Weight tensors that make a layer's units interchangeable: zero or identical-unit initialisation.

If two hidden units have the same incoming weights, the same bias and the same outgoing weights,
they compute the same value and receive the same gradient, so gradient descent keeps them equal
forever: the layer behaves as if it had one unit (the symmetry-breaking argument for random
initialisation; Goodfellow, Bengio & Courville 2016, *Deep Learning*, sec. 8.4). All-zero weights
are the extreme case: with every weight matrix zero, the hidden activations are constants and the
gradients of all but the last layer vanish.

:func:`degenerate_weights` reports each trainable weight tensor (``dim >= 2``) that is

- ``"zero"``: every entry is 0;
- ``"identical_units"``: it has at least two output units and all of them are equal (every
  output unit gets the same input weights: rows ``W[i]`` of a Linear, filters ``W[i]`` of a
  Conv). ``constant`` additionally says whether *every* entry is the same, e.g.
  ``nn.init.constant_(w, 0.5)``, which also makes the tensor's *input* units symmetric.

One such tensor is a warning, not a proof: a zero-initialised last layer (or residual branch) is
common and harmless when the layers feeding it are random, and identical rows are broken apart by
the next layer's weights unless those are symmetric too. :func:`is_symmetric_start` is the strict
test: every trainable tensor constant.

Output units lie along dim 0 (Linear, Conv, Bilinear, RNN and attention projections), except for
the weights of transposed convolutions (``(in, out / groups, ...)``) and of embeddings
(``(tokens, features)``), whose output units lie along dim 1.

Tolerance: rows ``W[i]`` and ``W[0]`` count as equal when ``max |W[i] - W[0]| <= rtol * max |W|``
with ``rtol = 1e-12`` by default. That is exact equality in float32 (whose resolution is ~1e-7)
and forgives only rounding-level differences in float64; any larger difference breaks the
symmetry, if slowly. Tensors with a non-finite entry are skipped (that is a different failure).

Example::

    >>> import torch
    >>> from torch import nn
    >>> model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    >>> _ = nn.init.zeros_(model[0].weight)
    >>> _ = nn.init.constant_(model[2].weight, 0.5)
    >>> for found in degenerate_weights(model):
    ...     print(found.name, found.kind, found.shape, found.units, found.constant)
    0.weight zero (4, 3) 4 True
    2.weight identical_units (2, 4) 2 True
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["DegenerateTensor", "degenerate_weights", "is_symmetric_start", "unit_dim_of"]

_UNITS_ALONG_DIM_1: tuple[type[nn.Module], ...] = (
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
    nn.Embedding,
    nn.EmbeddingBag,
)


@dataclass(frozen=True)
class DegenerateTensor:
    """A weight tensor whose output units are all alike, from :func:`degenerate_weights`.

    Attributes:
        name: the parameter's name in ``model.named_parameters()``.
        kind: ``"zero"`` or ``"identical_units"``.
        shape: the tensor's shape.
        units: the number of output units (the size of the unit dimension).
        constant: every entry is equal (always true for ``"zero"``).
    """

    name: str
    kind: str
    shape: tuple[int, ...]
    units: int
    constant: bool = False


def unit_dim_of(module: nn.Module, param_name: str) -> int:
    """The dimension of ``module``'s parameter ``param_name`` that indexes the output units.

    1 for the ``weight`` of transposed convolutions and embeddings, 0 otherwise.

    Example::

        >>> unit_dim_of(nn.Linear(3, 2), "weight"), unit_dim_of(nn.Embedding(5, 2), "weight")
        (0, 1)
    """
    return 1 if param_name == "weight" and isinstance(module, _UNITS_ALONG_DIM_1) else 0


def _owners(model: nn.Module) -> dict[int, tuple[nn.Module, str]]:
    """``id(parameter)`` -> (the module that holds it, its local name), first holder wins."""
    owners: dict[int, tuple[nn.Module, str]] = {}
    for module in model.modules():
        for local, param in module.named_parameters(recurse=False):
            owners.setdefault(id(param), (module, local))
    return owners


def _trainable(model: nn.Module) -> list[tuple[str, torch.Tensor]]:
    return [
        (name, p)
        for name, p in model.named_parameters()
        if p.requires_grad and not isinstance(p, nn.parameter.UninitializedParameter)
    ]


def _check(model: object, rtol: float) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if isinstance(rtol, bool) or not isinstance(rtol, (int, float)) or not 0 <= rtol < 1:
        raise ValueError(f"rtol must be a number in [0, 1), got {rtol!r}")


def _alike(rows: torch.Tensor, scale: torch.Tensor, rtol: float) -> bool:
    """Whether every row of ``rows`` (2-D) equals the first within ``rtol * scale``."""
    if rows.shape[0] < 2:
        return True
    spread = (rows - rows[:1]).abs().max()
    return bool(spread <= rtol * scale)


def degenerate_weights(model: nn.Module, *, rtol: float = 1e-12) -> list[DegenerateTensor]:
    """The trainable weight tensors (``dim >= 2``) that are all zero or have identical units.

    For a tensor ``W`` with output units along dim ``d`` (see :func:`unit_dim_of`), unit ``i`` is
    ``W.select(d, i)``; the tensor is reported as

    - ``"zero"`` when ``W == 0`` everywhere;
    - ``"identical_units"`` when it has ``>= 2`` units and ``max_i max |W_i - W_0| <= rtol *
      max |W|`` (see the module docstring for the tolerance).

    ``constant`` is true when all entries agree within the same tolerance. Frozen tensors
    (``requires_grad=False``), biases and other 1-D tensors, uninitialised lazy parameters and
    tensors with non-finite entries are not reported.

    Args:
        model: the network.
        rtol: the tolerance relative to ``max |W|``; ``0`` asks for exact equality.

    Returns:
        The findings in ``named_parameters()`` order (``[]`` when nothing is degenerate).

    Example::

        >>> conv = nn.Conv2d(2, 3, 3)
        >>> _ = nn.init.constant_(conv.weight, 0.1)
        >>> [(d.kind, d.units) for d in degenerate_weights(conv)]
        [('identical_units', 3)]
    """
    _check(model, rtol)
    owners = _owners(model)
    found: list[DegenerateTensor] = []
    for name, param in _trainable(model):
        if param.dim() < 2 or param.numel() == 0:
            continue
        w = param.detach()
        if not bool(torch.isfinite(w).all()):
            continue
        module, local = owners[id(param)]
        dim = unit_dim_of(module, local)
        shape, units = tuple(w.shape), w.shape[dim]
        scale = w.abs().max()
        if not bool(scale > 0):
            found.append(DegenerateTensor(name, "zero", shape, units, True))
            continue
        if units < 2:
            continue
        if _alike(w.movedim(dim, 0).reshape(units, -1), scale, rtol):
            constant = _alike(w.reshape(-1, 1), scale, rtol)
            found.append(DegenerateTensor(name, "identical_units", shape, units, constant))
    return found


def is_symmetric_start(model: nn.Module, *, rtol: float = 1e-12) -> bool:
    """Whether every trainable tensor is constant, so no unit of any layer differs from another.

    True when the model has at least one trainable tensor with ``dim >= 2`` and every trainable
    tensor (weights, biases, norm scales) has all entries equal within ``rtol * max |W|``: all
    zeros, all ones, ``constant_`` fills. In a stack of Linear/Conv/Norm layers every hidden unit
    then computes the same function and gets the same gradient at every step, so the network
    trains like one with a single unit per layer. This is sufficient, not necessary: a model
    with random biases but zero weights starts almost symmetric (the symmetry breaks only
    through the biases) and is not flagged here; :func:`degenerate_weights` reports it.

    Example::

        >>> model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))
        >>> is_symmetric_start(model)
        False
        >>> for p in model.parameters():
        ...     _ = nn.init.zeros_(p)
        >>> is_symmetric_start(model)
        True
    """
    _check(model, rtol)
    params = _trainable(model)
    if not any(p.dim() >= 2 for _, p in params):
        return False
    for _, param in params:
        w = param.detach()
        if w.numel() == 0:
            continue
        if not bool(torch.isfinite(w).all()):
            return False
        if not _alike(w.reshape(-1, 1), w.abs().max(), rtol):
            return False
    return True
