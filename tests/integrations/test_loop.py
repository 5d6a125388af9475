"""The doctor in one's own training loop: ``with watch(model, optimizer) as doctor``."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from unstuck.integrations.loop import Watch, watch


def problem() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 1))
    x = torch.randn(64, 4)
    return model, x, x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]])


def run(lr: float, steps: int = 30, every: int = 1, nan_at: int | None = None,
        val_every: int = 10) -> tuple[Watch, list[float]]:
    model, x, y = problem()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    losses = []
    with watch(model, optimizer, every=every) as doctor:
        for step in range(steps):
            optimizer.zero_grad()
            loss = nn.functional.mse_loss(model(x), y)
            if nan_at is not None and step >= nan_at:
                loss = loss * float("nan")
            loss.backward()
            doctor.observe(loss)
            losses.append(float(loss.detach()))
            optimizer.step()
            if step % val_every == val_every - 1:
                with torch.no_grad():
                    doctor.record(val_loss=nn.functional.mse_loss(model(x[:16]), y[:16]))
    return doctor, losses


def test_every_loss_is_kept_and_validation_sits_at_its_step() -> None:
    doctor, losses = run(lr=0.05, every=3)
    assert len(doctor.monitor.history) == 10  # sampled: one step in three
    diagnosis = doctor.diagnose()
    assert diagnosis.train_loss == pytest.approx(losses)  # all 30
    assert diagnosis.val_steps == [9, 19, 29] and len(diagnosis.val_loss) == 3
    assert diagnosis.history is not None and len(diagnosis.history) == 10
    assert diagnosis.healthy, diagnosis


def test_given_losses_replace_recorded_ones_and_hooks_are_removed() -> None:
    doctor, _ = run(lr=0.05)
    diagnosis = doctor.diagnose(val_loss=[5.0, 4.0], test_loss=1.0, title="mine")
    assert diagnosis.val_loss == [5.0, 4.0] and diagnosis.val_steps is None
    assert diagnosis.test_loss == [1.0] and diagnosis.title == "mine"
    assert not doctor.monitor.optimizer._optimizer_step_post_hooks  # closed by the with block


def test_huge_learning_rate_and_nan_are_diagnoses(tmp_path: Path) -> None:
    doctor, losses = run(lr=0.4)
    assert losses[-1] > 1e6 * losses[0] and math.isfinite(losses[-1])
    path = tmp_path / "sub" / "doctor.html"
    diagnosis = doctor.diagnose(report=path)
    assert not diagnosis.healthy and diagnosis.top.code in ("divergence", "lr_too_large")
    assert diagnosis.top.code in path.read_text()
    doctor.diagnose(report=path)  # replaced, not refused
    doctor, losses = run(lr=0.05, nan_at=12)
    assert math.isnan(losses[-1])
    assert doctor.diagnose().top.code == "nonfinite"


def test_without_any_loss_there_is_nothing_to_diagnose() -> None:
    model, x, y = problem()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    with watch(model, optimizer) as doctor:
        nn.functional.mse_loss(model(x), y).backward()
        doctor.observe(None)
        optimizer.step()
    with pytest.raises(ValueError, match="train_loss"):
        doctor.diagnose()
