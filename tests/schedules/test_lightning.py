"""unstuck's optimizers and schedulers inside a real Lightning ``Trainer.fit``."""

from __future__ import annotations

import math

import lightning  # a test dependency (pyproject [test]): never skipped
import torch
from torch import nn

import unstuck
from unstuck.schedules import ReduceLROnPlateau, Scheduler, parse


class Regression(lightning.LightningModule):
    """A linear model whose ``configure_optimizers`` returns what the test chose."""

    def __init__(self, make: str) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Linear(4, 1)
        self.make = make
        self.lrs: list[float] = []

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], index: int) -> torch.Tensor:
        x, y = batch
        loss = nn.functional.mse_loss(self.net(x), y)
        self.log("train_loss", loss)
        return loss

    def on_train_batch_start(self, batch: object, index: int) -> None:
        self.lrs.append(self.trainer.optimizers[0].param_groups[0]["lr"])

    def configure_optimizers(self) -> dict[str, object]:
        opt = unstuck.Lookahead(unstuck.Ranger(self.parameters(), lr=1e-2))
        if self.make == "plateau":
            scheduler = ReduceLROnPlateau(opt, patience=1, warmup_steps=2)
            config = {"scheduler": scheduler, "monitor": "train_loss", "interval": "epoch"}
        else:
            config = {"scheduler": Scheduler(opt, parse("warmup(cosine(20), 5)")),
                      "interval": "step"}
        return {"optimizer": opt, "lr_scheduler": config}


def fit(make: str) -> Regression:
    gen = torch.Generator().manual_seed(0)
    data = torch.utils.data.TensorDataset(torch.randn(64, 4, generator=gen),
                                          torch.randn(64, 1, generator=gen))
    model = Regression(make)
    trainer = lightning.Trainer(
        max_epochs=5, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, accelerator="cpu", devices=1,
    )
    trainer.fit(model, torch.utils.data.DataLoader(data, batch_size=16))
    return model


def test_scheduler_steps_every_optimizer_step_in_lightning() -> None:
    model = fit("schedule")
    schedule = parse("warmup(cosine(20), 5)")
    assert len(model.lrs) == 20
    for step, lr in enumerate(model.lrs):
        assert math.isclose(lr, 1e-2 * schedule(step), rel_tol=1e-12, abs_tol=1e-15)


def test_plateau_scheduler_with_warmup_in_lightning() -> None:
    model = fit("plateau")
    per_epoch = model.lrs[::4]  # 4 batches an epoch; the scheduler steps once an epoch
    assert per_epoch[:3] == [0.0, 0.005, 0.01]
    assert all(lr <= 0.01 for lr in per_epoch)
