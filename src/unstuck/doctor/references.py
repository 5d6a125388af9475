"""Reference models for any model: a simpler one (optimisation or model?) and a bigger one
(model bias or the noise floor?).

The guide tells model bias from an optimisation failure with a *simpler* model that is easy to
optimise: if it reaches a lower training loss and the model can represent its function, the
optimiser failed. The other question, "would more capacity help?", needs a *bigger* model.

- :func:`shallow_reference`: for an ``nn.Sequential`` MLP a shallower MLP (or a linear model),
  with a check that the model can represent it (every hidden layer at least as wide as the
  reference's narrowest map); for any other model (CNN, recurrent net, Transformer) a linear /
  logistic model on the flattened input (one-hot for token ids), whose representability is not
  known (``None``); for a linear model none (it is the simplest model).
- :func:`capacity_reference`: for an MLP a 4x wider copy; otherwise a wide two-hidden-layer MLP
  on the flattened input.

Both match the model's input and output shapes (read from one example batch), are on its device
and dtype, and are initialised from the global random state (seed it).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

__all__ = ["Reference", "capacity_reference", "reference_model", "shallow_reference"]

CAPACITY_WIDTH = 256
"""Hidden width of the generic bigger model (two hidden layers)."""
WIDER = 4
"""A bigger MLP is this many times wider than the model."""
MAX_FEATURES = 20000
"""Inputs flattened (one-hot for token ids) to more features than this get no generic
reference: a linear model on them would be larger than the problem."""


@dataclass
class Reference:
    """A reference model and what it is.

    Attributes:
        model: the module (input and output shaped like the model's).
        kind: a short description (``"linear model on the flattened input"``).
        representable: True when the model provably contains the reference's function, False
            when it provably does not, None when unknown.
        same_recipe: train it with the model's optimizer settings (False: the generic bigger
            model, trained with Adam at lr 1e-3, since the model's lr was tuned for another
            architecture).
    """

    model: nn.Module
    kind: str
    representable: bool | None
    same_recipe: bool = True


class _OneHot(nn.Module):
    """Token ids ``(N, ...)`` -> one-hot floats ``(N, ..., vocabulary)``."""

    def __init__(self, vocabulary: int, dtype: torch.dtype) -> None:
        super().__init__()
        self.vocabulary, self.dtype = vocabulary, dtype

    def forward(self, tokens: Tensor) -> Tensor:
        ids = tokens.long().clamp(0, self.vocabulary - 1)
        return nn.functional.one_hot(ids, self.vocabulary).to(self.dtype)


def _mlp_parts(model: nn.Module) -> tuple[list[nn.Module], list[nn.Linear]] | None:
    """The modules and Linear layers of an ``nn.Sequential`` MLP (Linear layers and
    parameter-free modules only), or None."""
    if not isinstance(model, nn.Sequential):
        return None
    modules = list(model)
    for m in modules:
        if not isinstance(m, nn.Linear) and any(True for _ in m.parameters()):
            return None
    linears = [m for m in modules if isinstance(m, nn.Linear)]
    return (modules, linears) if linears else None


def _activation(modules: list[nn.Module], first: nn.Linear) -> nn.Module:
    start = modules.index(first)
    act = next((m for m in modules[start + 1 :] if not isinstance(m, (nn.Linear, nn.Dropout))),
               None)
    try:
        return type(act)() if act is not None else nn.ReLU()
    except TypeError:
        return nn.ReLU()


def reference_model(model: nn.Module) -> nn.Module | None:
    """A shallower model of the same input and output sizes, for an ``nn.Sequential`` MLP.

    The modules of ``model`` must be ``nn.Linear`` layers, parameter-free modules (activations,
    ``Dropout``, ``Flatten``) in any order. With ``k`` Linear layers:

    - ``k >= 3`` (two or more hidden layers): one hidden layer as wide as the model's first,
      with the model's first activation (``Linear(in, h1), act, Linear(h1, out)``);
    - ``k == 2`` (one hidden layer): a linear model ``Linear(in, out)`` (linear/logistic
      regression, the lectures' "other models that are easier to optimise");
    - otherwise: ``None``.

    Leading parameter-free modules (``Flatten``) are kept. The new model is on the first
    Linear's device and dtype, freshly initialised from the global random state (seed it).
    :func:`shallow_reference` also covers other models and says whether the model can represent
    the reference.

    Example:
        >>> mlp = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh(),
        ...                     nn.Linear(8, 2))
        >>> reference_model(mlp)
        Sequential(
          (0): Linear(in_features=4, out_features=8, bias=True)
          (1): Tanh()
          (2): Linear(in_features=8, out_features=2, bias=True)
        )
    """
    parts = _mlp_parts(model)
    if parts is None or len(parts[1]) < 2:
        return None
    modules, linears = parts
    first, last = linears[0], linears[-1]
    lead = []
    for m in modules:
        if isinstance(m, nn.Linear):
            break
        lead.append(m)
    factory = {"device": first.weight.device, "dtype": first.weight.dtype}
    if len(linears) == 2:
        layers = [nn.Linear(first.in_features, last.out_features, bias=last.bias is not None,
                            **factory)]
    else:
        layers = [
            nn.Linear(first.in_features, first.out_features, bias=first.bias is not None,
                      **factory),
            _activation(modules, first),
            nn.Linear(first.out_features, last.out_features, bias=last.bias is not None,
                      **factory),
        ]
    return nn.Sequential(*lead, *layers)


def _mlp_representable(linears: list[nn.Linear]) -> bool:
    """Can the MLP represent its :func:`reference_model`? Every hidden width it must pass the
    reference's signal through must be at least the rank of the reference's map: for the linear
    reference ``min(in, out)`` at every hidden layer; for the one-hidden-layer reference
    ``min(h1, out)`` at every hidden layer after the first (a narrower layer is a bottleneck that
    caps the rank of everything after it)."""
    hidden = [m.out_features for m in linears[:-1]]
    n_in, n_out = linears[0].in_features, linears[-1].out_features
    if len(linears) == 2:
        return min(hidden) >= min(n_in, n_out)
    return min(hidden[1:]) >= min(hidden[0], n_out)


def _flat_input(example: Tensor, dtype: torch.dtype) -> tuple[list[nn.Module], int, str] | None:
    """Modules that flatten an input batch like ``example`` (one-hot for integer token ids),
    the number of features, and how it was read; None when too many features."""
    per_example = example[0].numel() if example.dim() > 0 and len(example) else 0
    if per_example == 0:
        return None
    if not (example.is_floating_point() or example.is_complex()):
        vocabulary = int(example.max()) + 1 if example.numel() else 1
        features = per_example * vocabulary
        if features > MAX_FEATURES:
            return None
        return [_OneHot(vocabulary, dtype), nn.Flatten()], features, "one-hot flattened input"
    if per_example > MAX_FEATURES:
        return None
    return [nn.Flatten()], per_example, "flattened input"


def _generic(
    example: Tensor, output: Tensor, hidden: tuple[int, ...], dtype: torch.dtype
) -> tuple[nn.Module, str] | None:
    flat = _flat_input(example, dtype)
    if flat is None or output.dim() == 0:
        return None
    lead, features, read = flat
    out_shape = tuple(output.shape[1:])
    out_features = math.prod(out_shape) if out_shape else 1
    sizes = (features, *hidden, out_features)
    layers: list[nn.Module] = list(lead)
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1], dtype=dtype, device=output.device))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    layers.append(nn.Unflatten(1, out_shape) if out_shape else nn.Flatten(0))
    return nn.Sequential(*layers), read


def _float_dtype(model: nn.Module) -> torch.dtype:
    return next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)


def shallow_reference(model: nn.Module, example: Tensor, output: Tensor) -> Reference | None:
    """A simpler reference for ``model`` (see the module docstring), or None for a linear model.

    Args:
        model: the model under diagnosis.
        example: a batch of its inputs.
        output: ``model(example)`` (its shape is what the reference produces).
    """
    parts = _mlp_parts(model)
    if parts is not None:
        built = reference_model(model)
        if built is None:
            return None
        linears = parts[1]
        kind = "linear model" if len(linears) == 2 else "MLP with one hidden layer"
        return Reference(built.to(example.device), kind, _mlp_representable(linears))
    if isinstance(model, nn.Linear) or not isinstance(example, Tensor):
        return None
    made = _generic(example, output, (), _float_dtype(model))
    if made is None:
        return None
    return Reference(made[0], f"linear model on the {made[1]}", None)


def capacity_reference(model: nn.Module, example: Tensor, output: Tensor) -> Reference | None:
    """A bigger model for ``model``: a 4x wider copy of an MLP, else a wide MLP on the
    flattened input (``representable`` is about the *model* representing it: False, it is the
    bigger one)."""
    parts = _mlp_parts(model)
    dtype = _float_dtype(model)
    if parts is not None and len(parts[1]) >= 2:
        modules, linears = parts
        layers: list[nn.Module] = []
        widths = {id(m): m.out_features * WIDER for m in linears[:-1]}
        previous = None
        for m in modules:
            if isinstance(m, nn.Linear):
                n_in = m.in_features if previous is None else widths[id(previous)]
                n_out = widths.get(id(m), m.out_features)
                layers.append(nn.Linear(n_in, n_out, bias=m.bias is not None, dtype=dtype,
                                        device=m.weight.device))
                previous = m
            else:
                layers.append(copy.deepcopy(m))
        return Reference(nn.Sequential(*layers), f"the MLP {WIDER}x wider", False)
    if not isinstance(example, Tensor):
        return None
    made = _generic(example, output, (CAPACITY_WIDTH, CAPACITY_WIDTH), dtype)
    if made is None:
        return None
    return Reference(made[0], f"MLP {CAPACITY_WIDTH}-{CAPACITY_WIDTH} on the {made[1]}", False,
                     same_recipe=False)
