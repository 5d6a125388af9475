"""The digits demo: short runs give finite, reproducible results and a readable table."""

from __future__ import annotations

import math

import pytest
import torch

import unstuck
from unstuck.lab import demo
from unstuck.lab.tasks import digits_mlp

TWO = {
    "SGD": lambda p: unstuck.SGD(p, lr=0.1, momentum=0.9),
    "Adam": lambda p: unstuck.Adam(p, lr=1e-3),
}


def torch_param() -> torch.nn.Parameter:
    return torch.nn.Parameter(torch.zeros(2, 2))


@pytest.fixture(scope="module")
def task():
    return digits_mlp()


@pytest.fixture(scope="module")
def results(task) -> list[demo.DemoResult]:
    return demo.run_demo(TWO, epochs=1, seed=0, task=task)


def test_one_epoch_two_optimizers_gives_finite_results(results: list[demo.DemoResult]) -> None:
    assert [r.optimizer for r in results] == ["SGD", "Adam"]
    for r in results:
        assert r.finite
        assert math.isfinite(r.train_loss) and r.train_loss > 0
        assert 0.0 <= r.val_accuracy <= 1.0 and 0.0 <= r.test_accuracy <= 1.0
        assert r.seconds >= 0.0
        assert len(r.history) == 1


def test_sgd_momentum_learns_in_one_epoch(results: list[demo.DemoResult]) -> None:
    sgd = results[0]
    assert sgd.train_loss < 2.0  # ln(10) = 2.30 at initialisation; 1.59 after one epoch
    assert sgd.val_accuracy > 0.5


def test_runs_are_reproducible(task, results: list[demo.DemoResult]) -> None:
    again = demo.run_demo(TWO, epochs=1, seed=0, task=task)
    for a, b in zip(results, again, strict=True):
        assert (a.train_loss, a.val_accuracy, a.test_accuracy, a.history) == (
            b.train_loss,
            b.val_accuracy,
            b.test_accuracy,
            b.history,
        )


def test_seed_changes_the_run(task, results: list[demo.DemoResult]) -> None:
    other = demo.run_demo({"SGD": TWO["SGD"]}, epochs=1, seed=1, task=task)
    assert other[0].train_loss != results[0].train_loss


def test_table_has_header_and_one_row_per_optimizer(results: list[demo.DemoResult]) -> None:
    table = demo.format_table(results)
    lines = table.splitlines()
    assert len(lines) == 3
    assert lines[0].split()[:3] == ["optimizer", "train", "loss"]
    assert lines[1].startswith("SGD") and lines[2].startswith("Adam")
    assert f"{results[0].train_loss:.4f}" in lines[1]
    assert f"{100 * results[1].test_accuracy:.2f}%" in lines[2]
    assert len({len(line) for line in lines}) == 1  # columns aligned


def test_table_shows_diverged_runs_as_nan() -> None:
    bad = demo.DemoResult("Boom", float("nan"), 0.1, 0.1, 0.5, (float("nan"),))
    assert not bad.finite
    assert "nan" in demo.format_table([bad])


def test_progress_reports_every_epoch(task) -> None:
    reports: list[demo.EpochReport] = []
    demo.run_demo({"SGD": TWO["SGD"]}, epochs=2, task=task, progress=reports.append)
    assert [(r.optimizer, r.epoch, r.epochs) for r in reports] == [("SGD", 1, 2), ("SGD", 2, 2)]
    assert all(math.isfinite(r.train_loss) for r in reports)


def test_threads_are_restored(task) -> None:
    before = torch.get_num_threads()
    demo.run_demo({"SGD": TWO["SGD"]}, epochs=1, task=task, threads=1)
    assert torch.get_num_threads() == before


def test_default_optimizers_are_the_unstuck_ones() -> None:
    optimizers = demo.default_optimizers()
    assert list(optimizers) == ["SGD", "Adam", "AdamW", "RAdam", "Ranger", "LARS"]
    param = torch_param()
    for name, factory in optimizers.items():
        built = factory([param])
        assert isinstance(built, getattr(unstuck, name))


def test_default_optimizers_lr_override() -> None:
    for factory in demo.default_optimizers(lr=0.02).values():
        assert factory([torch_param()]).param_groups[0]["lr"] == 0.02


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"epochs": 0}, "epochs"), ({"batch_size": 0}, "batch_size"), ({"threads": 0}, "threads")],
)
def test_run_demo_rejects_bad_arguments(task, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        demo.run_demo(TWO, task=task, **kwargs)


def test_run_demo_rejects_empty_optimizer_set(task) -> None:
    with pytest.raises(ValueError, match="optimizers"):
        demo.run_demo({}, task=task)
