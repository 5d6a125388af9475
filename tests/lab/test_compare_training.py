"""The lab's training loop: records, divergence, steps to target, monitor, closures."""

from __future__ import annotations

import math

import pytest
import torch

import unstuck
from unstuck.lab import tasks, training
from unstuck.schedules import parse


@pytest.fixture(scope="module")
def task() -> tasks.Task:
    return tasks.deep_linear(n=300)


def test_records_every_step_and_epoch(task: tasks.Task) -> None:
    run = training.train(task, lambda p: unstuck.Adam(p, lr=1e-2), epochs=3, batch_size=60,
                         schedule=parse("linear(15)"), label="adam")
    assert run.steps_per_epoch == 3 and len(run.step_loss) == len(run.lr_curve) == 9
    assert run.lr == 1e-2 and run.lr_curve[0] == 1e-2
    assert run.lr_curve == pytest.approx([1e-2 * (1 - t / 15) for t in range(9)])
    assert run.eval_epochs == [0, 1, 2, 3] and len(run.epoch_loss) == 3
    assert run.epoch_loss[0] == pytest.approx(sum(run.step_loss[:3]) / 3)
    assert run.final("val_loss") == run.curves["val_loss"][-1]
    assert not run.diverged and run.step_time > 0 and run.seconds > 0
    again = training.run_from_dict(training.run_to_dict(run))
    assert again == run


def test_divergence_stops_the_run(task: tasks.Task) -> None:
    reports: list[training.EpochReport] = []
    run = training.train(task, lambda p: unstuck.SGD(p, lr=1e8), epochs=3, batch_size=60,
                         progress=reports.append)
    assert run.diverged and run.diverged_step == len(run.step_loss) - 1
    assert not math.isfinite(run.step_loss[-1])
    assert math.isnan(run.final("val_loss"))
    assert reports[-1].diverged and math.isnan(reports[-1].train_loss)
    assert len(reports) < 3 or len(run.step_loss) < 9


def test_monitor_and_closure_optimizers(task: tasks.Task) -> None:
    run = training.train(task, lambda p: torch.optim.LBFGS(p, lr=0.5, max_iter=3), epochs=1,
                         batch_size=60, monitor_every=1)
    assert len(run.step_loss) == 3 and not run.diverged
    assert run.monitor is not None and len(run.monitor["history"]) == 3
    assert run.monitor["summary"]["steps"] == 3


def test_smoothed_and_steps_to_target() -> None:
    assert training.smoothed([2.0, 0.0], beta=0.5) == [2.0, pytest.approx(2 / 3)]
    losses = [1.0] * 5 + [0.0] * 30
    # bias-corrected EMA: s_t = (1 - 0.9**5) 0.9**(t - 4) / (1 - 0.9**(t + 1)): 0.52 at t = 7,
    # 0.44 at t = 8
    assert training.steps_to_target(losses, 0.5) == 8
    assert training.steps_to_target(losses, 0.5, beta=0.0) == 5
    assert training.steps_to_target([1.0, 1.0], 0.5) is None
    with pytest.raises(ValueError, match="beta"):
        training.smoothed([1.0], beta=1.0)


@pytest.mark.parametrize(("kwargs", "match"), [({"epochs": 0}, "epochs"),
                                               ({"batch_size": 0}, "batch_size"),
                                               ({"monitor_every": 0}, "monitor_every")])
def test_bad_arguments(task: tasks.Task, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        training.train(task, lambda p: unstuck.SGD(p, lr=0.1), **kwargs)
