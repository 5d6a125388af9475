"""Dead ReLU units against known answers: biases that kill all, none or a chosen half of the units,
conv channels, sequences, shared modules; the model's mode and hooks are left as they were."""

from __future__ import annotations

import doctest
import math

import pytest
import torch
from torch import nn

import unstuck.diagnose.activations as activations
from unstuck.diagnose import DeadUnits, dead_units
from unstuck.diagnose.activations import is_relu_family

# ---------------------------------------------------------------------------- helpers


def _mlp(bias: torch.Tensor, act: nn.Module | None = None) -> nn.Sequential:
    """Linear(5, F) with weights in [-1, 1] and the given bias, then an activation."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, len(bias)), act or nn.ReLU(), nn.Linear(len(bias), 1))
    with torch.no_grad():
        model[0].weight.uniform_(-1, 1)
        model[0].bias.copy_(bias)
    return model


def _x(n: int = 64, d: int = 5, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


def _hook_count(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


# ---------------------------------------------------------------------------- linear


@pytest.mark.parametrize(
    ("value", "dead"), [(-100.0, 8), (100.0, 0)], ids=["all-dead", "none-dead"]
)
def test_bias_far_below_or_above_kills_all_or_none(value: float, dead: int) -> None:
    model = _mlp(torch.full((8,), value))
    found = dead_units(model, _x())
    assert list(found) == ["1"]
    result = found["1"]
    assert (result.name, result.units, result.dead, result.share) == ("1", 8, dead, dead / 8)
    assert result.calls == 1 and result.nonfinite == 0
    assert result.indices == tuple(range(8))[:dead]


def test_a_chosen_half_is_dead() -> None:
    bias = torch.zeros(10)
    killed = [0, 3, 4, 7, 9]
    bias[killed] = -1e3
    found = dead_units(_mlp(bias), _x())["1"]
    assert (found.units, found.dead, found.share) == (10, 5, 0.5)
    assert found.indices == tuple(killed)


def test_a_unit_alive_on_one_example_of_one_batch_is_alive() -> None:
    bias = torch.full((4,), -1e3)
    model = _mlp(bias)
    with torch.no_grad():
        model[0].weight.zero_()
        model[0].weight[2, 0] = 1.0  # unit 2 fires only where x[:, 0] > 1e3
    quiet = _x(8)
    loud = quiet.clone()
    loud[5, 0] = 2e3
    assert dead_units(model, [quiet, quiet])["1"].dead == 4
    found = dead_units(model, [quiet, loud, quiet])["1"]
    assert found.indices == (0, 1, 3) and found.calls == 3


def test_loader_pairs_and_max_batches() -> None:
    bias = torch.full((4,), -1e3)
    model = _mlp(bias)
    with torch.no_grad():
        model[0].weight.zero_()
        model[0].weight[1, 0] = 1.0
    quiet, loud = _x(8), _x(8)
    loud[0, 0] = 2e3
    pairs = [(quiet, torch.zeros(8)), (loud, torch.zeros(8))]
    assert dead_units(model, pairs)["1"].dead == 3
    assert dead_units(model, pairs, max_batches=1)["1"].dead == 4
    assert dead_units(model, iter(pairs), max_batches=1)["1"].calls == 1
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(torch.cat([quiet, loud]), torch.zeros(16)), batch_size=4
    )
    assert dead_units(model, loader)["1"].dead == 3
    assert dead_units(model, loader, max_batches=2)["1"].dead == 4


@pytest.mark.parametrize(
    ("act", "hooked"),
    [
        (nn.ReLU(), True),
        (nn.ReLU(inplace=True), True),
        (nn.ReLU6(), True),
        (nn.Hardtanh(0.0, 1.0), True),
        (nn.Hardswish(), True),
        (nn.Hardtanh(), False),
        (nn.LeakyReLU(), False),
        (nn.ELU(), False),
        (nn.GELU(), False),
        (nn.SiLU(), False),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, nn.Module) else str(v),
)
def test_relu_family(act: nn.Module, hooked: bool) -> None:
    assert is_relu_family(act) is hooked
    found = dead_units(_mlp(torch.full((6,), -100.0), act), _x())
    if hooked:
        assert found["1"].dead == 6
    else:
        assert found == {}


def test_model_without_relu_and_model_that_is_a_relu() -> None:
    assert dead_units(nn.Sequential(nn.Linear(3, 2), nn.Tanh()), torch.randn(4, 3)) == {}
    x = torch.tensor([[-1.0, 2.0, 0.0], [-3.0, 0.0, 0.0]])
    assert dead_units(nn.ReLU(), x)[""] == DeadUnits("", 3, 2, 2 / 3, 1, 0, (0, 2))


# ---------------------------------------------------------------------------- layouts


class ConvNet(nn.Module):
    """conv -> BN -> ReLU -> conv1d-style net on (N, C, H, W); dead channels set by the bias."""

    def __init__(self, dead: list[int], dim: int = 2) -> None:
        super().__init__()
        conv = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[dim]
        self.conv = conv(2, 6, 3, padding=1)
        self.act = nn.ReLU()
        self.head = nn.Linear(6, 1)
        with torch.no_grad():
            self.conv.weight.uniform_(-0.1, 0.1)
            self.conv.bias.zero_()
            self.conv.bias[dead] = -1e3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.conv(x))
        return self.head(h.flatten(2).mean(2))


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_dead_conv_channels(dim: int) -> None:
    model = ConvNet([1, 4], dim)
    x = torch.randn(3, 2, *([5] * dim))
    found = dead_units(model, x)["act"]
    assert (found.units, found.dead, found.indices) == (6, 2, (1, 4))


def test_conv1d_then_batchnorm_then_dropout_keeps_channels_first() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv1d(2, 4, 3), nn.BatchNorm1d(4), nn.Dropout(0.5), nn.ReLU())
    with torch.no_grad():
        model[1].bias.copy_(torch.tensor([0.0, -1e3, 0.0, 0.0]))
    found = dead_units(model, torch.randn(5, 2, 11))["3"]  # output (5, 4, 9)
    assert (found.units, found.indices) == (4, (1,))


def test_sequence_features_are_the_last_dim() -> None:
    bias = torch.zeros(7)
    bias[[2, 5]] = -1e3
    model = _mlp(bias)
    found = dead_units(model, torch.randn(4, 9, 5))["1"]  # (N, L, F) = (4, 9, 7)
    assert (found.units, found.indices) == (7, (2, 5))


def test_unit_dim_override_all_and_per_module() -> None:
    x = torch.tensor([[[1.0, 0.0], [0.0, 0.0], [2.0, 0.0]]])  # (1, 3, 2)
    assert dead_units(nn.ReLU(), x)[""].units == 2  # 3-D, no layout known: last dim
    assert dead_units(nn.ReLU(), x, unit_dim=1)[""].indices == (1,)
    assert dead_units(nn.ReLU(), x, unit_dim=-1)[""].indices == (1,)
    model = nn.Sequential(nn.ReLU(), nn.Identity(), nn.ReLU())
    found = dead_units(model, x, unit_dim={"2": 1})
    assert (found["0"].units, found["2"].units) == (2, 3)
    with pytest.raises(ValueError, match=r"unit_dim for module '' must lie in \[-3, 2\].*got 3"):
        dead_units(nn.ReLU(), x, unit_dim=3)
    with pytest.raises(ValueError, match=r"unit_dim\['2'\] must be an integer, got 1.0"):
        dead_units(model, x, unit_dim={"2": 1.0})
    with pytest.raises(ValueError, match="unit_dim must be an integer, got 'last'"):
        dead_units(model, x, unit_dim="last")


def test_one_relu_shared_by_layers_merges_equal_widths_and_adds_other_widths() -> None:
    class Shared(nn.Module):
        def __init__(self, widths: list[int], dead: list[list[int]]) -> None:
            super().__init__()
            dims = [3, *widths]
            self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims, dims[1:]))
            self.act = nn.ReLU()
            with torch.no_grad():
                for layer, killed in zip(self.layers, dead):
                    layer.weight.uniform_(-0.3, 0.3)
                    layer.bias.fill_(1.0)
                    layer.bias[killed] = -1e3

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            for layer in self.layers:
                x = self.act(layer(x))
            return x

    same = dead_units(Shared([4, 4], [[0, 1], [1, 2]]), torch.randn(8, 3))["act"]
    assert (same.units, same.dead, same.indices, same.calls) == (4, 1, (1,), 2)
    mixed = dead_units(Shared([4, 6], [[0], [1, 5]]), torch.randn(8, 3))["act"]
    assert (mixed.units, mixed.dead, mixed.indices) == (10, 3, (0, 5, 9))


# ---------------------------------------------------------------------------- state and input


def test_train_mode_restored_per_module_and_eval_used_during_the_pass() -> None:
    model = _mlp(torch.zeros(4))
    model.train()
    model[2].eval()
    seen: list[bool] = []
    model[0].register_forward_pre_hook(lambda m, a: seen.append(m.training))
    dead_units(model, _x())
    assert seen == [False]
    assert [m.training for m in model.modules()] == [True, True, True, False]


def test_no_grad_during_the_pass() -> None:
    model = _mlp(torch.zeros(4))
    grads: list[bool] = []
    model[1].register_forward_hook(lambda m, a, out: grads.append(out.requires_grad))
    dead_units(model, _x())
    assert grads == [False]
    assert all(p.grad is None for p in model.parameters())


def test_hooks_removed_and_mode_restored_after_an_error() -> None:
    model = _mlp(torch.zeros(4))
    model.train()
    before = _hook_count(model)
    with pytest.raises(RuntimeError):
        dead_units(model, torch.randn(3, 7))  # wrong width: the first Linear fails
    with pytest.raises(ValueError, match="unit_dim"):
        dead_units(model, _x(), unit_dim=5)  # fails inside the ReLU hook
    with pytest.raises(TypeError, match="inputs must yield tensors"):
        dead_units(model, [_x(), "text"])
    assert _hook_count(model) == before
    assert all(m.training for m in model.modules())
    dead_units(model, _x())
    assert _hook_count(model) == before


def test_non_finite_inputs_do_not_crash_and_count_as_alive() -> None:
    model = _mlp(torch.full((4,), -1e3))
    x = _x(8)
    x[3, 0] = math.nan
    found = dead_units(model, x)["1"]
    assert (found.dead, found.nonfinite) == (0, 4)  # nan spreads to every unit
    x = _x(8)
    x[0, 0] = math.inf
    found = dead_units(model, x)["1"]
    assert found.units == 4 and found.dead + found.nonfinite == 4  # -inf -> 0, +inf -> inf


def test_empty_batch_is_no_evidence() -> None:
    found = dead_units(_mlp(torch.full((3,), 100.0)), torch.zeros(0, 5))["1"]
    assert (found.units, found.dead, found.calls) == (0, 0, 0) and math.isnan(found.share)
    found = dead_units(_mlp(torch.full((3,), 100.0)), [torch.zeros(0, 5), _x()])["1"]
    assert (found.units, found.dead, found.calls) == (3, 0, 1)


def test_bad_arguments_are_named() -> None:
    model = _mlp(torch.zeros(4))
    with pytest.raises(TypeError, match="model must be a torch.nn.Module, got function"):
        dead_units(lambda x: x, _x())
    with pytest.raises(TypeError, match="inputs must be a tensor .* got int"):
        dead_units(model, 3)
    with pytest.raises(TypeError, match="inputs must be a tensor .* got dict"):
        dead_units(model, {"x": _x()})
    with pytest.raises(ValueError, match="inputs must yield at least one batch"):
        dead_units(model, [])
    for bad in (0, -1, 1.5, True):
        with pytest.raises(
            ValueError, match=f"max_batches must be None or an integer >= 1, got {bad!r}"
        ):
            dead_units(model, _x(), max_batches=bad)


def test_docstring_examples_run() -> None:
    result = doctest.testmod(activations, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
