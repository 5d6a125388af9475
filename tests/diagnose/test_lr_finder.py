"""The LR range test: known answers, exact ramps, early stop, NaN, bad input, exact restore."""

from __future__ import annotations

import copy
import math
from typing import Any

import pytest
import torch
from torch import nn

import unstuck
from unstuck.diagnose.lr_finder import LRFinderResult, lr_find, ramp, steepest_index, valley_index


def half_mse(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return 0.5 * ((outputs - targets) ** 2).mean()


def regression(seed: int = 0, n: int = 256, d: int = 6):
    """Full-batch least squares: Hessian X^T X / n, so plain GD diverges for lr > 2 / L."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=gen, dtype=torch.float64)
    x = x * torch.linspace(0.5, 2.0, d, dtype=torch.float64)  # spread the spectrum
    y = x @ torch.randn(d, 1, generator=gen, dtype=torch.float64)
    model = nn.Linear(d, 1, bias=False).double()
    with torch.no_grad():
        model.weight.zero_()
    curvature = torch.linalg.eigvalsh(x.T @ x / n).max().item()
    return model, [(x, y)], curvature


def test_suggestion_lies_in_the_descending_part_below_the_stability_limit() -> None:
    model, data, curvature = regression()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    result = lr_find(model, optimizer, half_mse, data, start_lr=1e-4, end_lr=100.0, num_steps=120)
    assert result.diverged_at is not None  # lr > 2 / L blows up
    best = result.best_index
    assert result.smoothed[best] < 0.5 * result.smoothed[0]  # the curve falls first
    for lr, index in (
        (result.suggestion, result.suggestion_index),
        (result.valley, result.valley_index),
    ):
        assert lr is not None and lr < 2 / curvature
        assert index <= best and result.lrs[index] == lr
    # the suggestion sits where the loss falls: below the start, above the minimum
    assert result.smoothed[best] < result.smoothed[result.suggestion_index] < result.smoothed[0]


@pytest.mark.parametrize("mode", ["exp", "linear"])
def test_ramp_sets_exactly_the_planned_lrs_on_every_group(mode: str) -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 1))
    optimizer = torch.optim.SGD(
        [
            {"params": model[0].parameters(), "lr": 0.1},
            {"params": model[1].parameters(), "lr": 0.05},
        ]
    )
    seen: list[tuple[float, float]] = []

    def loss_fn(m: nn.Module, batch: Any) -> torch.Tensor:
        seen.append(tuple(g["lr"] for g in optimizer.param_groups))
        return 1e-3 * m(batch).pow(2).mean()

    data = [torch.randn(8, 3)]
    result = lr_find(
        model,
        optimizer,
        None,
        data,
        loss_fn=loss_fn,
        start_lr=1e-5,
        end_lr=1e-2,
        num_steps=7,
        mode=mode,
        diverge_factor=math.inf,
    )
    if mode == "exp":
        expected = [1e-5 * (1e-2 / 1e-5) ** (i / 6) for i in range(7)]
    else:
        expected = [1e-5 + (1e-2 - 1e-5) * i / 6 for i in range(7)]
    assert list(result.lrs) == expected == ramp(1e-5, 1e-2, 7, mode)
    assert [first for first, _ in seen] == expected
    assert [second for _, second in seen] == [lr * 0.5 for lr in expected]  # ratios kept
    assert result.lrs[0] == 1e-5 and math.isclose(result.lrs[-1], 1e-2, rel_tol=1e-12)
    assert result.diverged_at is None and len(result.losses) == 7 and result.mode == mode
    assert [g["lr"] for g in optimizer.param_groups] == [0.1, 0.05]  # restored


def test_smoothing_is_a_bias_corrected_ema() -> None:
    values = [3.0, 1.0, 4.0, 1.0, 5.0]
    batches = iter(values)

    def loss_fn(m: nn.Module, batch: Any) -> torch.Tensor:
        return m.weight.sum() * 0 + next(batches)

    model = nn.Linear(1, 1)
    result = lr_find(
        model,
        torch.optim.SGD(model.parameters()),
        None,
        [0],
        loss_fn=loss_fn,
        num_steps=5,
        smoothing=0.5,
        diverge_factor=math.inf,
    )
    average, expected = 0.0, []
    for i, v in enumerate(values):
        average = 0.5 * average + 0.5 * v
        expected.append(average / (1 - 0.5 ** (i + 1)))
    assert result.losses == tuple(values)
    assert result.smoothed == pytest.approx(expected, rel=1e-15)


def test_stops_early_when_the_smoothed_loss_diverges() -> None:
    model, data, _ = regression()
    optimizer = unstuck.SGD(model.parameters(), lr=0.1)
    result = lr_find(
        model,
        optimizer,
        half_mse,
        data,
        start_lr=1e-3,
        end_lr=1e3,
        num_steps=200,
        smoothing=0.0,
        diverge_factor=4.0,
    )
    stop = result.diverged_at
    assert stop is not None and stop < 199
    assert len(result.lrs) == len(result.losses) == len(result.smoothed) == stop + 1
    assert result.smoothed[stop] > 4.0 * min(result.smoothed[:stop])
    assert all(
        s <= 4.0 * min(result.smoothed[: i + 1]) for i, s in enumerate(result.smoothed[:stop])
    )


def test_nan_loss_at_the_first_step_is_a_result_not_a_crash() -> None:
    model = nn.Linear(2, 1)
    before = [p.detach().clone() for p in model.parameters()]

    def loss_fn(m: nn.Module, batch: Any) -> torch.Tensor:
        return m(batch).sum() * float("nan")

    result = lr_find(
        model, unstuck.Adam(model.parameters()), None, [torch.ones(1, 2)], loss_fn=loss_fn
    )
    assert result.diverged_at == 0
    assert result.suggestion is None and result.valley is None and result.best_index is None
    assert len(result.lrs) == 1 and math.isnan(result.losses[0])
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_nan_later_stops_there_and_suggests_from_the_finite_part() -> None:
    model, data, _ = regression()
    steps = iter(range(1000))

    def loss_fn(m: nn.Module, batch: Any) -> torch.Tensor:
        loss = half_mse(m(batch[0]), batch[1])
        return loss * float("inf") if next(steps) == 60 else loss

    result = lr_find(
        model,
        torch.optim.SGD(model.parameters(), lr=0.1),
        None,
        data,
        loss_fn=loss_fn,
        start_lr=1e-4,
        end_lr=1.0,
        num_steps=100,
    )
    assert result.diverged_at == 60 and len(result.lrs) == 61
    assert math.isinf(result.losses[-1])
    assert result.suggestion is not None and result.suggestion_index < 60


def test_data_shorter_than_num_steps_is_cycled_and_one_shot_iterators_are_refused() -> None:
    calls: list[int] = []
    model = nn.Linear(1, 1)

    def loss_fn(m: nn.Module, batch: int) -> torch.Tensor:
        calls.append(batch)
        return m.weight.sum() * 0 + 1.0

    lr_find(
        model, torch.optim.SGD(model.parameters()), None, [0, 1, 2], loss_fn=loss_fn, num_steps=7
    )
    assert calls == [0, 1, 2, 0, 1, 2, 0]
    with pytest.raises(ValueError, match="ran out after 2 batches"):
        lr_find(
            model,
            torch.optim.SGD(model.parameters()),
            None,
            iter([0, 1]),
            loss_fn=loss_fn,
            num_steps=5,
        )
    with pytest.raises(ValueError, match="at least one batch"):
        lr_find(model, torch.optim.SGD(model.parameters()), None, [], loss_fn=loss_fn)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"start_lr": 1.0, "end_lr": 1.0}, "end_lr"),
        ({"start_lr": 1.0, "end_lr": 0.1}, "end_lr"),
        ({"start_lr": 0.0}, "start_lr"),
        ({"start_lr": float("nan")}, "start_lr"),
        ({"end_lr": float("inf")}, "end_lr"),
        ({"num_steps": 1}, "num_steps"),
        ({"num_steps": 2.5}, "num_steps"),
        ({"mode": "cosine"}, "mode"),
        ({"smoothing": 1.0}, "smoothing"),
        ({"diverge_factor": 1.0}, "diverge_factor"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs: dict[str, Any], name: str) -> None:
    model = nn.Linear(1, 1)
    with pytest.raises(ValueError, match=name):
        lr_find(
            model,
            torch.optim.SGD(model.parameters()),
            nn.MSELoss(),
            [(torch.ones(1, 1), torch.ones(1, 1))],
            **kwargs,
        )


def test_non_scalar_loss_names_the_criterion_and_changes_nothing() -> None:
    model = nn.Linear(2, 1)
    optimizer = unstuck.Adam(model.parameters())
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(ValueError, match="criterion must return a scalar"):
        lr_find(
            model, optimizer, nn.MSELoss(reduction="none"), [(torch.ones(4, 2), torch.zeros(4, 1))]
        )
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with pytest.raises(ValueError, match="loss_fn must return a loss tensor"):
        lr_find(model, optimizer, None, [0], loss_fn=lambda m, b: 1.0)


def test_other_bad_input() -> None:
    model = nn.Linear(1, 1)
    data = [(torch.ones(1, 1), torch.ones(1, 1))]
    with pytest.raises(ValueError, match="exactly one of criterion and loss_fn"):
        lr_find(model, torch.optim.SGD(model.parameters()), None, data)
    with pytest.raises(ValueError, match="exactly one of criterion and loss_fn"):
        lr_find(
            model,
            torch.optim.SGD(model.parameters()),
            nn.MSELoss(),
            data,
            loss_fn=lambda m, b: m(b[0]).sum(),
        )
    frozen = nn.Linear(1, 1).requires_grad_(False)
    with pytest.raises(ValueError, match="requires grad"):
        lr_find(frozen, torch.optim.SGD(frozen.parameters()), nn.MSELoss(), data)
    with pytest.raises(ValueError, match="pair"):
        lr_find(model, torch.optim.SGD(model.parameters()), nn.MSELoss(), [torch.ones(1, 1)])


def test_suggestion_rules_on_hand_made_curves() -> None:
    lrs = [10.0 ** (i / 10 - 5) for i in range(40)]
    falling_then_rising = (
        [5.0] * 10 + [5.0 - 0.4 * i for i in range(11)] + [1.0 + i for i in range(19)]
    )
    steep = steepest_index(lrs, falling_then_rising)
    assert 10 <= steep <= 20
    assert steepest_index(lrs, sorted(falling_then_rising)) is None  # never descends
    # an early spike (inside the first 10%) does not win
    spiky = [9.0, 0.0, 9.0, 9.0] + falling_then_rising[4:]
    assert 10 <= steepest_index(lrs, spiky) <= 20
    # valley: the longest descent is steps 10..20 (11 points), fastai's point about half way
    assert valley_index(falling_then_rising) == 10 + int(11 / 3) + int(11 / 6) - 1
    assert valley_index([1.0, 2.0, 3.0]) is None


# --- exact restore ----------------------------------------------------------------------------


def bn_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.3), nn.Linear(8, 1)
    )


OPTIMIZERS = {
    "unstuck.Adam": lambda groups: unstuck.Adam(groups, lr=1e-2),
    "Lookahead(unstuck.SGD)": lambda groups: unstuck.Lookahead(
        unstuck.SGD(groups, lr=1e-2, momentum=0.9), k=3
    ),
    "torch SGD momentum": lambda groups: torch.optim.SGD(groups, lr=1e-2, momentum=0.9),
}


def assert_same(a: Any, b: Any, where: str = "") -> None:
    """Recursive bit-identical comparison of (nested) state: tensors by value, dtype, shape."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape, where
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for key in a:
            assert_same(a[key], b[key], f"{where}/{key}")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b and type(a) is type(b), f"{where}: {a!r} != {b!r}"


def train_steps(model: nn.Module, optimizer: Any, scheduler: Any, batches: list, n: int) -> None:
    for x, y in batches[:n]:
        optimizer.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        optimizer.step()
        scheduler.step()


def build(name: str, warm: bool):
    """A BatchNorm + dropout model, its optimizer (two groups) and scheduler, deterministically,
    after 3 training steps when ``warm``."""
    model = bn_model()
    groups = [
        {"params": model[0].parameters()},
        {"params": list(model[1].parameters()) + list(model[4].parameters()), "lr": 3e-3},
    ]
    optimizer = OPTIMIZERS[name](groups)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)
    gen = torch.Generator().manual_seed(1)
    batches = [
        (torch.randn(16, 4, generator=gen), torch.randn(16, 1, generator=gen)) for _ in range(8)
    ]
    if warm:
        train_steps(model, optimizer, scheduler, batches, 3)
    model[1].eval()  # a per-module mode that model.train() would overwrite
    return model, optimizer, scheduler, batches


@pytest.mark.parametrize("name", list(OPTIMIZERS))
@pytest.mark.parametrize("warm", [True, False], ids=["with-state", "fresh"])
def test_restores_model_optimizer_scheduler_and_rng_bit_for_bit(name: str, warm: bool) -> None:
    model, optimizer, scheduler, batches = build(name, warm)
    params = {k: v.detach().clone() for k, v in model.named_parameters()}
    grads = {k: None if v.grad is None else v.grad.clone() for k, v in model.named_parameters()}
    buffers = {k: v.clone() for k, v in model.named_buffers()}
    modes = [m.training for m in model.modules()]
    group_objects = list(optimizer.param_groups)
    groups = [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
    defaults = copy.deepcopy(optimizer.defaults)
    optimizer_state = copy.deepcopy(optimizer.state_dict())
    scheduler_state = copy.deepcopy(scheduler.state_dict())
    rng = torch.get_rng_state()

    result = lr_find(
        model,
        optimizer,
        nn.functional.mse_loss,
        batches[3:6],
        start_lr=1e-5,
        end_lr=10.0,
        num_steps=30,
        scheduler=scheduler,
    )
    assert len(result.lrs) >= 2

    assert_same(params, {k: v.detach() for k, v in model.named_parameters()})
    assert_same(grads, {k: v.grad for k, v in model.named_parameters()})
    assert_same(buffers, dict(model.named_buffers()))
    assert model[1].num_batches_tracked.item() == (3 if warm else 0)
    assert [m.training for m in model.modules()] == modes
    assert all(a is b for a, b in zip(group_objects, optimizer.param_groups, strict=True))
    assert_same(groups, [{k: v for k, v in g.items() if k != "params"} for g in group_objects])
    assert_same(defaults, optimizer.defaults)
    assert_same(optimizer_state, optimizer.state_dict())
    assert_same(scheduler_state, scheduler.state_dict())
    assert torch.equal(rng, torch.get_rng_state())

    # training goes on exactly as if the test had never run (dropout draws included)
    twin = build(name, warm)
    for m in (model, twin[0]):
        m.train()
    torch.manual_seed(5)
    train_steps(model, optimizer, scheduler, batches, 5)
    torch.manual_seed(5)
    train_steps(*twin[:3], batches, 5)
    assert_same(dict(twin[0].state_dict()), dict(model.state_dict()))
    assert_same(twin[1].state_dict(), optimizer.state_dict())
    assert_same(twin[2].state_dict(), scheduler.state_dict())


def test_restore_false_keeps_the_trained_state() -> None:
    model, data, _ = regression()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    lr_find(
        model, optimizer, half_mse, data, start_lr=1e-3, end_lr=0.1, num_steps=10, restore=False
    )
    assert model.weight.abs().sum() > 0
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1)


def test_restores_even_when_the_loss_raises() -> None:
    model = bn_model()
    optimizer = unstuck.Adam(model.parameters())
    before = copy.deepcopy(model.state_dict())
    calls = iter(range(10))

    def loss_fn(m: nn.Module, batch: Any) -> torch.Tensor:
        if next(calls) == 3:
            raise RuntimeError("boom")
        return m(batch).pow(2).mean()

    with pytest.raises(RuntimeError, match="boom"):
        lr_find(model, optimizer, None, [torch.randn(8, 4)], loss_fn=loss_fn)
    assert_same(before, model.state_dict())
    assert optimizer.state_dict()["state"] == {}


def test_result_is_a_frozen_record() -> None:
    model, data, _ = regression()
    result = lr_find(model, torch.optim.SGD(model.parameters()), half_mse, data, num_steps=5)
    assert isinstance(result, LRFinderResult)
    assert "steepest" in result.rule
    with pytest.raises(AttributeError):
        result.suggestion = 1.0  # type: ignore[misc]


def test_figure_marks_the_suggestions() -> None:
    pytest.importorskip("matplotlib")
    from unstuck.plots import lr_find_figure

    model, data, _ = regression()
    result = lr_find(
        model,
        torch.optim.SGD(model.parameters()),
        half_mse,
        data,
        start_lr=1e-4,
        end_lr=100.0,
        num_steps=80,
    )
    figure = lr_find_figure(result)
    (axes,) = figure.axes
    assert axes.get_xscale() == "log"
    assert axes.get_xlabel() and axes.get_ylabel()
    labels = [text.get_text() for text in axes.get_legend().get_texts()]
    assert any(label.startswith("steepest") for label in labels)
    assert any(label.startswith("valley") for label in labels)
    figure.canvas.draw()
    # a NaN-at-first-step result still draws
    nan = lr_find(
        model,
        torch.optim.SGD(model.parameters()),
        None,
        data,
        loss_fn=lambda m, b: m(b[0]).sum() * float("nan"),
    )
    lr_find_figure(nan).canvas.draw()
