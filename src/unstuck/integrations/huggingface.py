"""The doctor inside Hugging Face's ``transformers.Trainer``: a :class:`DoctorCallback` that
monitors every optimizer step of ``Trainer.train`` and diagnoses the run at its end.

Example::

    from transformers import Trainer, TrainingArguments
    from unstuck.integrations.huggingface import DoctorCallback

    doctor = DoctorCallback()                  # report: <output_dir>/doctor.html
    args = TrainingArguments("out", logging_steps=10, eval_strategy="epoch", report_to=[])
    trainer = Trainer(model=model, args=args, train_dataset=train, eval_dataset=val,
                      callbacks=[doctor])
    trainer.train()
    print(doctor.diagnosis)                    # the verdicts, evidence and fixes

Where it hooks in:

- ``on_train_begin``: a :class:`~unstuck.diagnose.Monitor` of ``model`` and the trainer's
  optimizer (the torch optimizer inside Accelerate's wrapper), watching the parameters that
  optimizer steps; when the optimizer is not there yet, at the first optimizer step. A forward
  hook on the model keeps the ``loss`` its output holds (``outputs["loss"]`` or
  ``outputs.loss``) in training mode, without waiting for the device.
- ``on_pre_optimizer_step``: ``monitor.observe(loss)``, ``loss`` being the mean of the
  micro-batch losses since the last step. The Trainer calls it once per optimizer step (after
  the last of ``gradient_accumulation_steps`` backward passes), after Accelerate unscaled fp16
  gradients and **after it clipped them** (``max_grad_norm``): transformers has no hook between
  the last backward and the clipping, so the recorded gradient norm is at most
  ``max_grad_norm`` (the Trainer logs the norm before clipping as ``grad_norm``); the update and
  update/weight ratios are the step that was taken. Pass ``max_grad_norm=0`` to record
  unclipped gradients. (The Lightning callback records them before clipping.)
- ``on_train_end`` (and, with ``every_n_epochs``, at the start of the epoch that follows every
  ``every_n_epochs``-th, when that epoch's evaluation is logged):
  :func:`unstuck.doctor.diagnose` on the losses of ``state.log_history``, the verdicts logged,
  the HTML report written into ``args.output_dir``. ``on_evaluate`` after training, with a test
  loss (``trainer.evaluate(test_set, metric_key_prefix="test")``), diagnoses again with it.

Which logged names are read: ``train_key`` (default ``"loss"``, what the Trainer logs every
``logging_steps``: the curve's resolution, so keep ``logging_steps`` small), else ``loss``;
``val_key`` (``"eval_loss"``), else ``eval_loss``, ``val_loss``; ``test_key``
(``"test_loss"``), else ``test_loss``, ``eval_test_loss``. Without a logged training loss the
curve is the loss observed at each optimizer step. By default the Trainer replaces a NaN or
Inf loss by an average in its log (``logging_nan_inf_filter``); the Monitor's records keep
them, so non-finite values are still found.

Distributed: every process monitors and diagnoses its own; only the main process
(``state.is_world_process_zero``) logs the verdicts and writes the report. Parameter-sharding
setups (FSDP, DeepSpeed ZeRO-3) are not supported: the Monitor would see one shard.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import transformers
from torch import Tensor, nn
from torch.optim import Optimizer

from unstuck.diagnose import Monitor
from unstuck.doctor import Diagnosis
from unstuck.integrations._reporting import (
    LossCurve,
    first_key,
    key_variants,
    publish,
    report_path,
    run_doctor,
    set_options,
    watch_optimizer,
)

__all__ = ["DoctorCallback"]

if not hasattr(transformers.TrainerCallback, "on_pre_optimizer_step"):
    raise ImportError(
        "unstuck.integrations.huggingface needs a transformers whose TrainerCallback has "
        f"on_pre_optimizer_step; transformers {transformers.__version__} has not: upgrade it"
    )


def _torch_optimizer(optimizer: Optimizer) -> Optimizer:
    """The torch optimizer inside Accelerate's ``AcceleratedOptimizer`` (its own step hooks
    would not fire: it steps the inner one)."""
    inner = getattr(optimizer, "optimizer", None)
    if type(optimizer).__name__ == "AcceleratedOptimizer" and isinstance(inner, Optimizer):
        return inner
    return optimizer


def _output_loss(output: Any) -> Tensor | None:
    loss = output.get("loss") if isinstance(output, Mapping) else getattr(output, "loss", None)
    return loss if isinstance(loss, Tensor) and loss.numel() == 1 else None


class DoctorCallback(transformers.TrainerCallback):
    """Monitor every optimizer step of a ``transformers.Trainer`` run and diagnose it (see the
    module docstring for the hooks, the loss names read and the clipping semantics).

    Args:
        train_key: the ``log_history`` key of the training loss.
        val_key: the key of the evaluation (train-dev) loss.
        test_key: the key of the test loss.
        monitor_every: the Monitor samples one optimizer step in ``monitor_every``.
        every_n_epochs: also diagnose (and rewrite the report) every ``every_n_epochs``
            epochs; ``None``: only at the end of training.
        report: the HTML report's file name inside ``args.output_dir``; ``None`` writes none.

    Attributes:
        monitor: the :class:`~unstuck.diagnose.Monitor` (``None`` before the first step).
        diagnosis: the last :class:`~unstuck.doctor.Diagnosis`, or ``None``.
        report_path: the last report written (main process), or ``None``.

    Raises:
        ValueError: an option out of range (the message names it and its value).

    Example::

        doctor = DoctorCallback(val_key="eval_dev_loss", report=None)
        Trainer(..., callbacks=[doctor]).train()
        doctor.diagnosis.codes
    """

    def __init__(
        self,
        *,
        train_key: str = "loss",
        val_key: str = "eval_loss",
        test_key: str = "test_loss",
        monitor_every: int = 1,
        every_n_epochs: int | None = None,
        report: str | None = "doctor.html",
    ) -> None:
        set_options(self, train_key=train_key, val_key=val_key, test_key=test_key,
                    monitor_every=monitor_every, every_n_epochs=every_n_epochs, report=report)
        self._keys = {
            "train": key_variants(train_key, "loss"),
            "val": key_variants(val_key, "eval_loss", "val_loss"),
            "test": key_variants(test_key, "test_loss", "eval_test_loss"),
        }
        self.monitor: Monitor | None = None
        self.diagnosis: Diagnosis | None = None
        self.report_path: Path | None = None
        self._observed = LossCurve()
        self._loss_sum: Tensor | None = None
        self._loss_count = 0
        self._hook: Any = None
        self._trained = False
        self._diagnosed_epoch = 0

    # ------------------------------------------------------------------- monitoring
    def on_train_begin(self, args: Any, state: Any, control: Any, model: nn.Module | None = None,
                       optimizer: Optimizer | None = None, **kwargs: Any) -> None:
        """Start afresh: the loss hook, and the Monitor when the optimizer exists already."""
        self._close()
        self.monitor, self.diagnosis, self.report_path = None, None, None
        self._observed, self._loss_sum, self._loss_count = LossCurve(), None, 0
        self._trained, self._diagnosed_epoch = False, 0
        if model is not None:
            self._hook = model.register_forward_hook(self._keep_loss)
            if optimizer is not None:
                self._attach(model, optimizer)

    def _attach(self, model: nn.Module, optimizer: Optimizer) -> None:
        self.monitor = watch_optimizer(model, _torch_optimizer(optimizer), self.monitor_every,
                                       "the Trainer's optimizer")

    def _keep_loss(self, module: nn.Module, inputs: Any, output: Any) -> None:
        if not module.training or not torch.is_grad_enabled():
            return
        loss = _output_loss(output)
        if loss is not None:
            loss = loss.detach().float().reshape(())
            self._loss_sum = loss if self._loss_sum is None else self._loss_sum + loss
            self._loss_count += 1

    def on_pre_optimizer_step(self, args: Any, state: Any, control: Any,
                              model: nn.Module | None = None,
                              optimizer: Optimizer | None = None, **kwargs: Any) -> None:
        """Observe the step about to be taken (gradients unscaled, clipped by then)."""
        if self.monitor is None and model is not None and optimizer is not None:
            self._attach(model, optimizer)
        loss = None if self._loss_sum is None else self._loss_sum / self._loss_count
        self._loss_sum, self._loss_count = None, 0
        if self.monitor is None:
            return
        self.monitor.observe(loss)
        if loss is not None:
            self._observed.append(loss)

    # ------------------------------------------------------------------- diagnosis
    def on_epoch_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Every ``every_n_epochs`` epochs, once the previous epoch's evaluation is logged."""
        done = int(round(state.epoch or 0))
        n = self.every_n_epochs
        if n is not None and done > self._diagnosed_epoch and done % n == 0:
            self._diagnosed_epoch = done
            self._diagnose(args, state)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Diagnose the run; remove the hooks (the Monitor's history stays readable)."""
        self._diagnose(args, state)
        self._trained = True
        self._close()

    def on_evaluate(self, args: Any, state: Any, control: Any,
                    metrics: Mapping[str, float] | None = None, **kwargs: Any) -> None:
        """After training, an evaluation that logged a test loss: diagnose again with it."""
        if self._trained and metrics and first_key(self._keys["test"], metrics) is not None:
            self._diagnose(args, state)

    def _close(self) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        if self.monitor is not None:
            self.monitor.close()

    def _curves(self, log_history: list[dict[str, Any]]) -> dict[str, Any]:
        """The train/val/test curves of the log, with the train-curve index of each val/test
        point (the number of training points logged before it, less one)."""
        found = {role: first_key(keys, (k for entry in log_history for k in entry))
                 for role, keys in self._keys.items()}
        curves: dict[str, Any] = {role: [] for role in found}
        at: dict[str, list[int]] = {"val": [], "test": []}
        train_points = 0
        for entry in log_history:
            for role, key in found.items():
                value = entry.get(key) if key is not None else None
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    curves[role].append(float(value))
                    if role == "train":
                        train_points += 1
                    elif found["train"] is not None:
                        at[role].append(max(train_points - 1, 0))
                    else:  # the observed curve: one point per optimizer step
                        at[role].append(max(int(entry.get("step", 1)) - 1, 0))
        curves["val_steps"], curves["test_steps"] = at["val"], at["test"]
        return curves

    def _diagnose(self, args: Any, state: Any) -> None:
        if self.monitor is None:
            return
        curves = self._curves(list(state.log_history))
        train = curves["train"] or self._observed.values()
        diagnosis = run_doctor(
            train, curves["val"], curves["test"], self.monitor, val_steps=curves["val_steps"],
            test_steps=curves["test_steps"], title="unstuck doctor: transformers.Trainer",
        )
        if diagnosis is None:
            return
        self.diagnosis = diagnosis
        if not state.is_world_process_zero:
            return
        path = None if self.report is None else report_path(args.output_dir, self.report, 0, 1)
        self.report_path = publish(diagnosis, path) or self.report_path
