"""Degenerate weights: zero and constant initialisation found, normal initialisation not, units
along the right dimension (Linear, Conv, ConvTranspose, Embedding), the tolerance, and that a
symmetric start really trains like one unit per layer."""

from __future__ import annotations

import doctest
import math

import pytest
import torch
from torch import nn

import unstuck.diagnose.degenerate as degenerate
from unstuck.diagnose import DegenerateTensor, degenerate_weights, is_symmetric_start


def _mlp(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 6), nn.ReLU(), nn.Linear(6, 4), nn.Tanh(), nn.Linear(4, 2))


def test_default_and_normal_initialisation_find_nothing() -> None:
    model = _mlp()
    assert degenerate_weights(model) == [] and not is_symmetric_start(model)
    for p in model.parameters():
        nn.init.normal_(p, std=1e-3)
    assert degenerate_weights(model) == [] and not is_symmetric_start(model)
    torch.manual_seed(0)
    conv = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 4, 1))
    assert degenerate_weights(conv) == [] and not is_symmetric_start(conv)


def test_zero_initialised_sequential() -> None:
    model = _mlp()
    for p in model.parameters():
        nn.init.zeros_(p)
    assert degenerate_weights(model) == [
        DegenerateTensor("0.weight", "zero", (6, 3), 6, True),
        DegenerateTensor("2.weight", "zero", (4, 6), 4, True),
        DegenerateTensor("4.weight", "zero", (2, 4), 2, True),
    ]
    assert is_symmetric_start(model)


def test_constant_fill_and_identical_rows() -> None:
    model = _mlp()
    nn.init.constant_(model[0].weight, 0.3)
    with torch.no_grad():
        model[2].weight.copy_(torch.randn(1, 6).expand(4, 6))  # rows equal, entries differ
        model[4].weight.copy_(torch.randn(2, 1).expand(2, 4))  # rows differ, columns equal
    assert degenerate_weights(model) == [
        DegenerateTensor("0.weight", "identical_units", (6, 3), 6, True),
        DegenerateTensor("2.weight", "identical_units", (4, 6), 4, False),
    ]
    assert not is_symmetric_start(model)  # random biases and a non-constant tensor


def test_single_unit_layer_is_only_reported_when_zero() -> None:
    layer = nn.Linear(5, 1)
    nn.init.constant_(layer.weight, 2.0)
    assert degenerate_weights(layer) == []
    nn.init.zeros_(layer.weight)
    assert degenerate_weights(layer) == [DegenerateTensor("weight", "zero", (1, 5), 1, True)]


def test_conv_filters_are_the_units() -> None:
    conv = nn.Conv2d(2, 5, 3)
    with torch.no_grad():
        conv.weight.copy_(torch.randn(1, 2, 3, 3).expand(5, 2, 3, 3))
    assert degenerate_weights(conv) == [
        DegenerateTensor("weight", "identical_units", (5, 2, 3, 3), 5, False)
    ]
    with torch.no_grad():
        conv.weight[3, 1, 2, 0] += 1e-3
    assert degenerate_weights(conv) == []


def test_transposed_conv_and_embedding_units_along_dim_1() -> None:
    up = nn.ConvTranspose2d(4, 3, 2)  # weight (in=4, out=3, 2, 2)
    with torch.no_grad():
        up.weight.copy_(torch.randn(4, 1, 2, 2).expand(4, 3, 2, 2))  # every output filter alike
    assert degenerate_weights(up) == [
        DegenerateTensor("weight", "identical_units", (4, 3, 2, 2), 3, False)
    ]
    with torch.no_grad():
        up.weight.copy_(torch.randn(1, 3, 2, 2).expand(4, 3, 2, 2))  # input channels alike only
    assert degenerate_weights(up) == []
    embed = nn.Embedding(10, 4)
    with torch.no_grad():
        embed.weight.copy_(torch.randn(10, 1).expand(10, 4))  # every feature alike
    assert degenerate_weights(embed) == [
        DegenerateTensor("weight", "identical_units", (10, 4), 4, False)
    ]


def test_tolerance_is_relative_to_the_largest_entry() -> None:
    layer = nn.Linear(4, 3).double()
    nn.init.constant_(layer.weight, 1.0)
    with torch.no_grad():
        layer.weight[1, 2] += 1e-14  # below 1e-12 of max |W| = 1: rounding-level
    assert [d.kind for d in degenerate_weights(layer)] == ["identical_units"]
    assert degenerate_weights(layer, rtol=0) == []
    with torch.no_grad():
        layer.weight[1, 2] += 1e-9
    assert degenerate_weights(layer) == []
    assert [d.constant for d in degenerate_weights(layer, rtol=1e-6)] == [True]
    layer32 = nn.Linear(4, 3)
    nn.init.constant_(layer32.weight, 1.0)
    with torch.no_grad():
        layer32.weight[0, 0] = torch.nextafter(torch.tensor(1.0), torch.tensor(2.0))
    assert degenerate_weights(layer32) == []  # float32: one ulp apart is different


def test_frozen_one_dimensional_lazy_and_non_finite_tensors_are_skipped() -> None:
    model = _mlp()
    for p in model.parameters():
        nn.init.zeros_(p)
    model[0].weight.requires_grad_(False)
    with torch.no_grad():
        model[2].weight[0, 0] = math.nan
        model[4].weight[1, 1] = math.inf
    assert degenerate_weights(model) == []
    assert not is_symmetric_start(model)  # non-finite entries are not a symmetric start
    lazy = nn.Sequential(nn.LazyLinear(3), nn.Linear(3, 2))
    nn.init.zeros_(lazy[1].weight)
    assert [d.name for d in degenerate_weights(lazy)] == ["1.weight"]
    empty = nn.Module()
    empty.weight = nn.Parameter(torch.empty(3, 0))
    assert degenerate_weights(empty) == []


def test_shared_parameter_reported_once() -> None:
    layer = nn.Linear(3, 3)
    nn.init.zeros_(layer.weight)
    model = nn.Sequential(layer, nn.ReLU(), layer)
    assert [d.name for d in degenerate_weights(model)] == ["0.weight"]


def test_is_symmetric_start_needs_a_weight_matrix_and_constant_biases() -> None:
    assert not is_symmetric_start(nn.LayerNorm(4))  # constant, but no weight matrix
    model = _mlp()
    for p in model.parameters():
        nn.init.constant_(p, 0.1)
    assert is_symmetric_start(model)
    nn.init.normal_(model[2].bias)
    assert not is_symmetric_start(model)
    assert degenerate_weights(model) != []  # the weights are still all constant


def test_symmetric_start_keeps_units_identical_under_training() -> None:
    """The claim behind the check: with every tensor constant, hidden units stay equal under SGD
    (each layer's weight rows stay identical), so the layer trains as one unit."""
    model = _mlp()
    for p in model.parameters():
        nn.init.constant_(p, 0.1)
    x, y = torch.randn(64, 3), torch.randn(64, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(20):
        opt.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        opt.step()
    assert [d.name for d in degenerate_weights(model)] == ["0.weight", "2.weight"]
    assert abs(model[0].weight[0, 0].item() - 0.1) > 1e-3  # it did train


def test_bad_arguments_are_named() -> None:
    with pytest.raises(TypeError, match="model must be a torch.nn.Module, got dict"):
        degenerate_weights({})
    for bad in (-1e-3, 1.0, "0", True):
        with pytest.raises(ValueError, match=r"rtol must be a number in \[0, 1\), got"):
            degenerate_weights(nn.Linear(2, 2), rtol=bad)
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        is_symmetric_start(None)


def test_docstring_examples_run() -> None:
    result = doctest.testmod(degenerate, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
