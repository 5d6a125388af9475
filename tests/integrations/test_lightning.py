"""The doctor inside a real Lightning ``Trainer.fit`` on the CPU: one record per optimizer
step, unscaled and unclipped gradients, logged losses read by name, reports on rank 0 only."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import lightning  # a test dependency (pyproject [test]): never skipped
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.plugins import MixedPrecision
from torch import nn

import unstuck.integrations.lightning as doctor_lightning
from unstuck.integrations.lightning import DoctorCallback

BATCHES, EPOCHS = 8, 3  # batches per epoch


def data(seed: int = 0) -> torch.utils.data.DataLoader:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(8 * BATCHES, 4, generator=gen)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]]) + 0.1 * torch.randn(8 * BATCHES, 1,
                                                                             generator=gen)
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8)


class Regression(lightning.LightningModule):
    """A small MLP that logs its losses under the given names and records, in its own
    ``on_before_optimizer_step`` (after the callbacks', before Lightning clips), the global
    gradient norm and the micro-batch losses of each step."""

    def __init__(self, lr: float = 0.05, train_name: str = "train_loss",
                 val_name: str = "val_loss", nan_at: int | None = None) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 1))
        self.lr, self.train_name, self.val_name, self.nan_at = lr, train_name, val_name, nan_at
        self.grad_norms: list[float] = []
        self.micro: list[float] = []  # micro-batch losses since the last step
        self.step_losses: list[list[float]] = []
        self.logged: list[float] = []

    def training_step(self, batch: Any, index: int) -> torch.Tensor:
        x, y = batch
        loss = nn.functional.mse_loss(self.net(x).float(), y)
        if self.nan_at is not None and self.global_step >= self.nan_at:
            loss = loss * float("nan")
        self.log(self.train_name, loss)
        self.logged.append(float(loss.detach()))
        self.micro.append(float(loss.detach()))
        return loss

    def validation_step(self, batch: Any, index: int) -> None:
        x, y = batch
        self.log(self.val_name, nn.functional.mse_loss(self.net(x).float(), y))

    def test_step(self, batch: Any, index: int) -> None:
        x, y = batch
        self.log("test_loss", nn.functional.mse_loss(self.net(x).float(), y))

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        grads = [p.grad for p in self.parameters()]
        self.grad_norms.append(float(torch.nn.utils.get_total_norm(grads)))
        self.step_losses.append(self.micro)
        self.micro = []

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.lr)


def fit(tmp_path: Path, callback: DoctorCallback, model: Regression | None = None,
        **trainer_args: Any) -> tuple[lightning.Trainer, Regression]:
    model = model or Regression()
    args = dict(max_epochs=EPOCHS, logger=CSVLogger(tmp_path), enable_checkpointing=False,
                enable_progress_bar=False, enable_model_summary=False, accelerator="cpu",
                devices=1, num_sanity_val_steps=1, limit_val_batches=2)
    args.update(trainer_args)
    trainer = lightning.Trainer(callbacks=[callback], **args)
    trainer.fit(model, data(0), data(1))
    return trainer, model


def test_one_record_per_optimizer_step_with_accumulation_and_clipping(tmp_path: Path) -> None:
    doctor = DoctorCallback(report=None)
    trainer, model = fit(tmp_path, doctor, accumulate_grad_batches=2, gradient_clip_val=0.01)
    steps = EPOCHS * BATCHES // 2
    assert trainer.global_step == steps
    history = doctor.monitors[0].history
    assert [r["step"] for r in history] == list(range(steps))
    # the gradient recorded is the one before clipping (all of them are far above 0.01)
    recorded = [r["grad_norm"] for r in history]
    assert min(model.grad_norms) > 1.0
    assert recorded == pytest.approx(model.grad_norms, rel=1e-5)
    # the loss of a step is the mean of its two micro-batches' losses
    assert [r["loss"] for r in history] == pytest.approx(
        [sum(m) / len(m) for m in model.step_losses], rel=1e-5)
    # the logged training loss is read per batch, the validation loss per epoch (no sanity check)
    assert doctor.diagnosis is not None
    assert doctor.diagnosis.train_loss == pytest.approx(model.logged, rel=1e-6)
    assert len(doctor.diagnosis.val_loss) == EPOCHS
    assert doctor.diagnosis.val_steps == [BATCHES * (e + 1) - 1 for e in range(EPOCHS)]


def first_step_gradient_norm() -> float:
    """The fp32 gradient norm of the first batch at the initial weights, by hand."""
    model = Regression()
    x, y = next(iter(data(0)))
    nn.functional.mse_loss(model.net(x), y).backward()
    return float(torch.nn.utils.get_total_norm([p.grad for p in model.parameters()]))


@pytest.mark.parametrize("precision", ["bf16-mixed", "16-mixed with GradScaler"])
def test_gradients_recorded_are_unscaled_under_mixed_precision(tmp_path: Path,
                                                                precision: str) -> None:
    if precision == "bf16-mixed":
        args: dict[str, Any] = {"precision": "bf16-mixed"}
    else:  # Lightning turns "16-mixed" into bf16 on the CPU: force fp16 with a real GradScaler
        scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
        args = {"plugins": [MixedPrecision("16-mixed", "cpu", scaler=scaler)]}
    doctor = DoctorCallback(report=None)
    trainer, _ = fit(tmp_path, doctor, max_epochs=1, **args)
    history = doctor.monitors[0].history
    assert len(history) == trainer.global_step == BATCHES
    first = history[0]["grad_norm"]
    assert math.isfinite(first)
    assert first == pytest.approx(first_step_gradient_norm(), rel=0.05)  # not 1024 times it


def test_huge_learning_rate_is_a_diagnosis_and_a_report(tmp_path: Path,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    doctor = DoctorCallback()
    with caplog.at_level(logging.INFO, logger="unstuck.integrations"):
        trainer, model = fit(tmp_path, doctor, model=Regression(lr=0.5))
    assert model.logged[-1] > 1e6 * model.logged[0]  # it did blow up
    assert doctor.diagnosis is not None and not doctor.diagnosis.healthy
    top = doctor.diagnosis.top.code
    assert top in ("divergence", "lr_too_large")
    path = Path(trainer.log_dir) / "doctor.html"
    assert doctor.report_path == path and path.stat().st_size > 1000
    assert top in path.read_text()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(f"[{top}]" in m for m in warnings)
    logged = (Path(trainer.log_dir) / "metrics.csv").read_text()
    assert "doctor/healthy" in logged and f"doctor/confidence/{top}" in logged


@pytest.mark.parametrize("model", [Regression(lr=50.0), Regression(nan_at=10)],
                         ids=["overflow", "nan"])
def test_non_finite_losses_do_not_crash_and_are_found(tmp_path: Path, model: Regression) -> None:
    doctor = DoctorCallback(report=None)
    fit(tmp_path, doctor, model=model)
    assert not all(math.isfinite(v) for v in model.logged)
    assert doctor.diagnosis is not None
    assert doctor.diagnosis.top.code == "nonfinite"


@pytest.mark.parametrize(("train_name", "val_name", "keys"), [
    ("loss", "val/loss", {}),  # guessed
    ("my/train", "my/val", {"train_key": "my/train", "val_key": "my/val"}),  # named
])
def test_loss_names_are_configurable_or_guessed(tmp_path: Path, train_name: str, val_name: str,
                                                keys: dict[str, str]) -> None:
    doctor = DoctorCallback(report=None, **keys)
    model = Regression(train_name=train_name, val_name=val_name)
    fit(tmp_path, doctor, model=model, max_epochs=2)
    assert doctor.diagnosis.train_loss == pytest.approx(model.logged, rel=1e-6)
    assert doctor.diagnosis.val_loss is not None and len(doctor.diagnosis.val_loss) == 2


def test_without_a_logged_loss_the_backpropagated_one_is_the_curve(tmp_path: Path) -> None:
    doctor = DoctorCallback(report=None, monitor_every=3)
    model = Regression(train_name="something_else", val_name="nothing")
    trainer, _ = fit(tmp_path, doctor, model=model, max_epochs=2, logger=False,
                     default_root_dir=tmp_path)
    assert doctor.diagnosis.val_loss is None
    assert doctor.diagnosis.train_loss == pytest.approx(model.logged, rel=1e-5)
    assert len(doctor.monitors[0].history) == math.ceil(trainer.global_step / 3)


def test_test_loss_after_fit_and_periodic_diagnoses(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    published: list[Any] = []

    def count(diagnosis: Any, path: Any) -> None:
        published.append((diagnosis, path))

    monkeypatch.setattr(doctor_lightning, "publish", count)
    doctor = DoctorCallback(every_n_epochs=1)
    trainer, model = fit(tmp_path, doctor)
    assert len(published) == EPOCHS  # after epochs 1, 2 and at the end of the fit
    assert len(published[0][0].val_loss) == 1 and len(published[-1][0].val_loss) == EPOCHS
    assert published[-1][1] == Path(trainer.log_dir) / "doctor.html"
    trainer.test(model, data(2), verbose=False)
    assert len(published) == EPOCHS + 1
    assert doctor.diagnosis.test_loss is not None and len(doctor.diagnosis.test_loss) == 1


def test_only_rank_zero_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                               caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(lightning.Trainer, "is_global_zero", property(lambda self: False))
    doctor = DoctorCallback()
    with caplog.at_level(logging.INFO, logger="unstuck.integrations"):
        fit(tmp_path, doctor, model=Regression(lr=50.0), max_epochs=1)
    assert doctor.diagnosis is not None and not doctor.diagnosis.healthy  # diagnosed here too
    assert doctor.report_path is None
    assert not list(tmp_path.rglob("doctor.html"))
    assert not [r for r in caplog.records if r.name == "unstuck.integrations"]


class TwoOptimizers(lightning.LightningModule):
    """Manual optimization with one optimizer per layer (as a GAN has)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.first, self.second = nn.Linear(4, 8), nn.Linear(8, 1)
        self.automatic_optimization = False

    def training_step(self, batch: Any, index: int) -> None:
        x, y = batch
        for optimizer in self.optimizers():
            optimizer.zero_grad()
            loss = nn.functional.mse_loss(self.second(torch.tanh(self.first(x))), y)
            self.manual_backward(loss)
            optimizer.step()
        self.log("train_loss", loss)

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        return [torch.optim.SGD(self.first.parameters(), lr=0.05),
                torch.optim.Adam(self.second.parameters(), lr=0.01)]


def test_one_monitor_per_optimizer(tmp_path: Path) -> None:
    doctor = DoctorCallback(report=None)
    trainer = lightning.Trainer(max_epochs=1, logger=False, enable_checkpointing=False,
                                enable_progress_bar=False, enable_model_summary=False,
                                accelerator="cpu", callbacks=[doctor], default_root_dir=tmp_path)
    trainer.fit(TwoOptimizers(), data(0))
    assert [m.names for m in doctor.monitors] == [["first.weight", "first.bias"],
                                                  ["second.weight", "second.bias"]]
    for monitor in doctor.monitors:
        history = monitor.history
        assert len(history) == BATCHES
        assert all(r["update_norm"] is None or r["update_norm"] > 0 for r in history)
    assert len(doctor.diagnoses) == 2 and doctor.diagnosis is doctor.diagnoses[0]
    assert "optimizer 1" in doctor.diagnoses[1].title


@pytest.mark.parametrize(("option", "value"), [
    ("monitor_every", 0), ("every_n_epochs", 0), ("report", ""), ("train_key", ""),
    ("monitor_every", True),
])
def test_bad_options_name_the_argument(option: str, value: Any) -> None:
    with pytest.raises(ValueError, match=f"{option} must be .*got {value!r}"):
        DoctorCallback(**{option: value})
