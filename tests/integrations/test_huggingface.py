"""The doctor inside a real ``transformers.Trainer`` on the CPU (a tiny module returning a dict
with its loss; nothing downloaded): one record per optimizer step, losses read from the log,
reports on the main process only."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import pytest
import torch
import transformers  # a test dependency (pyproject [test]): never skipped
from torch import nn

import unstuck.integrations.huggingface as doctor_huggingface
from unstuck.integrations.huggingface import DoctorCallback

SAMPLES, BATCH = 64, 8


class Regression(nn.Module):
    """A small MLP whose output holds its loss (as a transformers model's does); records each
    training loss it computed."""

    def __init__(self, nan_at: int | None = None) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 1))
        self.nan_at = nan_at
        self.losses: list[float] = []

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.net(x)
        loss = nn.functional.mse_loss(out, labels)
        if self.training:
            if self.nan_at is not None and len(self.losses) >= self.nan_at:
                loss = loss * float("nan")
            self.losses.append(float(loss.detach()))
        return {"loss": loss, "logits": out}


class Data(torch.utils.data.Dataset):
    def __init__(self, seed: int) -> None:
        gen = torch.Generator().manual_seed(seed)
        self.x = torch.randn(SAMPLES, 4, generator=gen)
        self.y = self.x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]])

    def __len__(self) -> int:
        return SAMPLES

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"x": self.x[i], "labels": self.y[i]}


def train(tmp_path: Path, doctor: DoctorCallback, model: Regression | None = None, *,
          lr: float = 0.05, eval_dataset: Any = None, callbacks: tuple[Any, ...] = (),
          **args: Any) -> tuple[transformers.Trainer, Regression]:
    model = model or Regression()
    options = dict(output_dir=str(tmp_path / "out"), num_train_epochs=3,
                   per_device_train_batch_size=BATCH, logging_steps=1, eval_strategy="epoch",
                   save_strategy="no", report_to=[], use_cpu=True, disable_tqdm=True,
                   max_grad_norm=0.0)
    options.update(args)
    trainer = transformers.Trainer(
        model=model, args=transformers.TrainingArguments(**options), train_dataset=Data(0),
        eval_dataset=Data(1) if eval_dataset is None else eval_dataset,
        optimizers=(torch.optim.SGD(model.parameters(), lr=lr), None),
        callbacks=[*callbacks, doctor],
    )
    trainer.remove_callback(transformers.PrinterCallback)
    trainer.train()
    return trainer, model


def logged(trainer: transformers.Trainer, key: str) -> list[float]:
    return [e[key] for e in trainer.state.log_history if key in e]


def test_one_record_per_optimizer_step_with_accumulation(tmp_path: Path) -> None:
    doctor = DoctorCallback(report=None)
    trainer, model = train(tmp_path, doctor, gradient_accumulation_steps=2)
    steps = 3 * SAMPLES // BATCH // 2
    assert trainer.state.global_step == steps
    history = doctor.monitor.history
    assert [r["step"] for r in history] == list(range(steps))
    # the loss observed is the mean of the step's two micro-batch losses
    micro = model.losses
    assert [r["loss"] for r in history] == pytest.approx(
        [(micro[2 * i] + micro[2 * i + 1]) / 2 for i in range(steps)], rel=1e-5)
    # the curves come from the log; each evaluation sits after its epoch's training points
    assert doctor.diagnosis.train_loss == pytest.approx(logged(trainer, "loss"))
    assert doctor.diagnosis.val_loss == pytest.approx(logged(trainer, "eval_loss"))
    assert doctor.diagnosis.val_steps == [3, 7, 11]


def test_gradients_recorded_after_clipping(tmp_path: Path) -> None:
    doctor = DoctorCallback(report=None)
    trainer, _ = train(tmp_path, doctor, max_grad_norm=0.01, num_train_epochs=1)
    before = logged(trainer, "grad_norm")  # the Trainer logs the norm before clipping
    recorded = [r["grad_norm"] for r in doctor.monitor.history]
    assert len(recorded) == len(before) == SAMPLES // BATCH
    assert min(before) > 1.0
    assert max(recorded) <= 0.01 * (1 + 1e-4)


def test_huge_learning_rate_is_a_diagnosis_and_a_report(tmp_path: Path,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    doctor = DoctorCallback()
    with caplog.at_level(logging.INFO, logger="unstuck.integrations"):
        trainer, model = train(tmp_path, doctor, lr=0.5)
    assert model.losses[-1] > 1e6 * model.losses[0]  # it did blow up
    top = doctor.diagnosis.top.code
    assert not doctor.diagnosis.healthy and top in ("divergence", "lr_too_large")
    path = tmp_path / "out" / "doctor.html"
    assert doctor.report_path == path and top in path.read_text()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(f"[{top}]" in m for m in warnings)


def test_nan_loss_does_not_crash_and_is_found(tmp_path: Path) -> None:
    doctor = DoctorCallback(report=None)
    train(tmp_path, doctor, model=Regression(nan_at=10))
    # the Trainer's log hides NaN losses (logging_nan_inf_filter); the Monitor saw them
    assert doctor.diagnosis.top.code == "nonfinite"
    assert any(math.isnan(r["loss"]) for r in doctor.monitor.history)


class NotMainProcess(transformers.TrainerCallback):
    """Makes the run look like a process of rank > 0."""

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        state.is_world_process_zero = False


def test_only_the_main_process_writes(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    doctor = DoctorCallback()
    with caplog.at_level(logging.INFO, logger="unstuck.integrations"):
        train(tmp_path, doctor, lr=0.5, callbacks=(NotMainProcess(),))
    assert doctor.diagnosis is not None and not doctor.diagnosis.healthy
    assert doctor.report_path is None and not list(tmp_path.rglob("doctor.html"))
    assert not [r for r in caplog.records if r.name == "unstuck.integrations"]


def test_keys_configurable_test_loss_and_periodic_diagnoses(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    published: list[tuple[Any, Any]] = []
    monkeypatch.setattr(doctor_huggingface, "publish",
                        lambda diagnosis, path: published.append((diagnosis, path)))
    doctor = DoctorCallback(val_key="eval_dev_loss", every_n_epochs=1)
    trainer, _ = train(tmp_path, doctor, eval_dataset={"dev": Data(1)})
    assert [len(d.val_loss) for d, _ in published] == [1, 2, 3]  # epochs 1, 2, the end
    assert published[-1][1] == tmp_path / "out" / "doctor.html"
    trainer.evaluate(Data(2), metric_key_prefix="test")
    assert len(published) == 4
    assert doctor.diagnosis.test_loss == pytest.approx(logged(trainer, "test_loss"))
    assert doctor.diagnosis.val_loss == pytest.approx(logged(trainer, "eval_dev_loss"))


def test_without_its_keys_nothing_is_misread(tmp_path: Path) -> None:
    doctor = DoctorCallback(report=None, monitor_every=2)
    trainer, _ = train(tmp_path, doctor, eval_dataset={"dev": Data(1)}, num_train_epochs=1)
    assert doctor.diagnosis.val_loss is None  # "eval_dev_loss" is not a default name
    assert len(doctor.monitor.history) == math.ceil(trainer.state.global_step / 2)


@pytest.mark.parametrize(("option", "value"), [
    ("monitor_every", 0), ("every_n_epochs", -1), ("report", "  "), ("val_key", None),
])
def test_bad_options_name_the_argument(option: str, value: Any) -> None:
    with pytest.raises(ValueError, match=f"{option} must be .*got {value!r}"):
        DoctorCallback(**{option: value})
