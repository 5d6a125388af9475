"""The doctor inside Lightning: a :class:`DoctorCallback` that monitors every optimizer step of
``Trainer.fit`` and diagnoses the run at its end.

Example::

    import lightning
    from unstuck.integrations.lightning import DoctorCallback

    doctor = DoctorCallback()                      # report: <trainer.log_dir>/doctor.html
    trainer = lightning.Trainer(max_epochs=10, callbacks=[doctor])
    trainer.fit(model, train_loader, val_loader)   # model logs "train_loss" and "val_loss"
    print(doctor.diagnosis)                        # the verdicts, evidence and fixes

Where it hooks in (Lightning 2.x):

- ``on_fit_start``: one :class:`~unstuck.diagnose.Monitor` per optimizer in
  ``trainer.optimizers`` (:attr:`DoctorCallback.monitors`), each watching only the parameters of
  the LightningModule that its optimizer steps, so one optimizer's step is never counted as
  another's update.
- ``on_before_backward``: the loss about to be backpropagated is added up (no device sync) until
  the next optimizer step. In automatic optimization Lightning has divided each micro-batch's
  loss by ``accumulate_grad_batches``, so the sum is the mean loss of the step's micro-batches.
- ``on_before_optimizer_step``: ``monitor.observe(loss)`` for the optimizer that is about to
  step. Lightning calls it once per optimizer step (never per micro-batch under
  ``accumulate_grad_batches``), after the last backward and, with ``"16-mixed"``, after the
  GradScaler unscaled the gradients, so the Monitor records the true (unscaled) gradients.
  Lightning clips gradients (``gradient_clip_val``) *after* this hook: the recorded gradient
  and its norm are **before clipping** (what the exploding-gradients rule needs), while the
  update and update/weight ratios are measured from the parameters, so they show the clipped
  step that was taken. A step the GradScaler skips (overflow) leaves no update.
- ``on_train_batch_end``, ``on_validation_end``, ``on_test_end``: the logged losses, read from
  ``trainer.callback_metrics`` when this batch or loop logged them (a value left over from an
  earlier one is not read twice).
- ``on_train_end`` (and every ``every_n_epochs`` training epochs, after that epoch's
  validation): :func:`unstuck.doctor.diagnose`, the verdicts logged, the HTML report written;
  ``on_test_end`` after a fit diagnoses again with the test loss. ``on_exception``: a run that
  crashed or was interrupted is diagnosed too.

Which logged names are read: ``train_key`` (default ``"train_loss"``), else
``<train_key>_step``, ``train_loss``, ``train_loss_step``, ``train/loss``, ``loss``, the first one
this batch logged; a training loss logged only per epoch is not a per-step curve, so without a
per-step one the curve is the loss backpropagated at each optimizer step (what the Monitor
observed). Validation: ``val_key`` (``"val_loss"``), ``<val_key>_epoch``, ``val_loss``,
``val/loss``, ``valid_loss``, ``validation_loss``, each also with ``/dataloader_idx_0``; test
likewise with ``test_key``. Validation during the sanity check is not read.

Several optimizers (GANs, manual optimization): one Monitor and one diagnosis per optimizer
(:attr:`DoctorCallback.diagnoses`; :attr:`DoctorCallback.diagnosis` is the first optimizer's),
reports ``doctor.html``, ``doctor-optimizer1.html``, ... The loss each one observes is what was
backpropagated since the previous optimizer step. An optimizer whose ``step`` calls its closure
several times (LBFGS) is observed at each call.

Distributed (DDP): every rank monitors and diagnoses its own process; only global rank 0
(``trainer.is_global_zero``) logs the verdicts and writes the report. Strategies that shard the
parameters (FSDP, DeepSpeed) are not supported: the Monitor would see one shard.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from torch import Tensor
from torch.optim import Optimizer

from unstuck.diagnose import Monitor
from unstuck.doctor import Diagnosis
from unstuck.integrations._reporting import (
    LossCurve,
    key_variants,
    publish,
    report_path,
    run_doctor,
    set_options,
    verdict_metrics,
    watch_optimizer,
)

__all__ = ["DoctorCallback"]

log = logging.getLogger("unstuck.integrations")

_DATALOADER_0 = "/dataloader_idx_0"


def _eval_keys(key: str, role: str, *variants: str) -> list[str]:
    names = key_variants(key, f"{key}_epoch", f"{role}_loss", f"{role}/loss", *variants)
    return names + [name + _DATALOADER_0 for name in names]


def _log_dir(trainer: pl.Trainer) -> str:
    """``trainer.log_dir`` as rank 0 sees it, without its broadcast (which would wait forever
    for the other ranks when only rank 0 asks, or when one rank failed)."""
    directory = None
    if trainer.loggers:
        logger = trainer.loggers[0]
        directory = getattr(logger, "log_dir", None) or getattr(logger, "save_dir", None)
    return str(directory or trainer.default_root_dir)


class DoctorCallback(pl.Callback):
    """Monitor every optimizer step of a Lightning fit and diagnose it (see the module
    docstring for the hooks, the loss names read and the clipping semantics).

    Args:
        train_key: the logged name of the training loss (see the module docstring for the
            names tried when it is absent).
        val_key: the logged name of the validation (train-dev) loss.
        test_key: the logged name of the test loss (``trainer.test`` after the fit).
        monitor_every: the Monitor samples one optimizer step in ``monitor_every``.
        every_n_epochs: also diagnose (and rewrite the report) after every ``every_n_epochs``
            training epochs; ``None``: only at the end of the fit.
        report: the HTML report's file name, inside ``trainer.log_dir`` (``default_root_dir``
            without a logger); ``None`` writes no report.

    Attributes:
        monitors: one :class:`~unstuck.diagnose.Monitor` per monitored optimizer.
        diagnosis: the last :class:`~unstuck.doctor.Diagnosis` (first optimizer), or ``None``.
        diagnoses: the last diagnosis of each monitored optimizer.
        report_path: the last report written (rank 0), or ``None``.

    Raises:
        ValueError: an option out of range (the message names it and its value).

    Example::

        doctor = DoctorCallback(val_key="valid/loss", every_n_epochs=5)
        lightning.Trainer(callbacks=[doctor]).fit(model, train_loader, val_loader)
        doctor.diagnosis.healthy, doctor.diagnosis.codes
    """

    def __init__(
        self,
        *,
        train_key: str = "train_loss",
        val_key: str = "val_loss",
        test_key: str = "test_loss",
        monitor_every: int = 1,
        every_n_epochs: int | None = None,
        report: str | None = "doctor.html",
    ) -> None:
        set_options(self, train_key=train_key, val_key=val_key, test_key=test_key,
                    monitor_every=monitor_every, every_n_epochs=every_n_epochs, report=report)
        self._train_keys = key_variants(train_key, f"{train_key}_step", "train_loss",
                                        "train_loss_step", "train/loss", "loss")
        self._val_keys = _eval_keys(val_key, "val", "valid_loss", "validation_loss")
        self._test_keys = _eval_keys(test_key, "test")
        self.monitors: list[Monitor] = []
        self.diagnosis: Diagnosis | None = None
        self.diagnoses: list[Diagnosis] = []
        self.report_path: Path | None = None
        self._reset()

    def _reset(self) -> None:
        for monitor in self.monitors:
            monitor.close()
        self.monitors = []
        self._by_optimizer: dict[int, int] = {}  # id(optimizer) -> index in monitors
        self._observed: list[LossCurve] = []  # per monitor: the loss it observed
        self._pending: Tensor | None = None  # loss backpropagated since the last step
        self._train = LossCurve()  # the logged training loss, per batch
        self._train_key: str | None = None
        self._val, self._test = LossCurve(), LossCurve()
        self._val_at: list[tuple[int, int]] = []  # (logged, observed) train points before it
        self._test_at: list[tuple[int, int]] = []
        self._seen: dict[str, Any] = {}  # each metric's value before a batch or loop

    # ------------------------------------------------------------------- monitoring
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Attach one Monitor per optimizer (a new fit starts afresh)."""
        self._reset()
        self.diagnosis, self.diagnoses, self.report_path = None, [], None
        optimizers = list(trainer.optimizers)
        for index, optimizer in enumerate(optimizers):
            title = f"optimizer {index}" if len(optimizers) > 1 else "the optimizer"
            monitor = watch_optimizer(pl_module, optimizer, self.monitor_every, title)
            if monitor is not None:
                self._by_optimizer[id(optimizer)] = len(self.monitors)
                self.monitors.append(monitor)
                self._observed.append(LossCurve())

    def on_before_backward(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: Tensor
    ) -> None:
        """Add the loss about to be backpropagated to this optimizer step's loss."""
        loss = loss.detach()
        self._pending = loss if self._pending is None else self._pending + loss

    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Optimizer
    ) -> None:
        """Observe the step ``optimizer`` is about to take (gradients unscaled, not clipped)."""
        index = self._by_optimizer.get(id(optimizer))
        if index is None:  # a LightningOptimizer around the optimizer
            index = self._by_optimizer.get(id(getattr(optimizer, "_optimizer", None)))
        loss, self._pending = self._pending, None
        if index is None:
            return
        if loss is not None and loss.numel() != 1:
            loss = None
        self.monitors[index].observe(loss)
        if loss is not None:
            self._observed[index].append(loss)

    # ------------------------------------------------------------------- logged losses
    def _remember(self, trainer: pl.Trainer, keys: list[str]) -> None:
        # the values themselves, not their ids: a freed value's id can be reused by a new one
        metrics = trainer.callback_metrics
        self._seen = {key: metrics[key] for key in keys if key in metrics}

    def _fresh(self, trainer: pl.Trainer, keys: list[str]) -> tuple[str, Tensor | float] | None:
        """The first of ``keys`` whose one-element value was logged since :meth:`_remember`."""
        metrics = trainer.callback_metrics
        for key in keys:
            value = metrics.get(key)
            if value is None or value is self._seen.get(key):
                continue
            if isinstance(value, Tensor) and value.numel() == 1:
                return key, value
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return key, float(value)
        return None

    def _train_points(self) -> tuple[int, int]:
        return len(self._train), len(self._observed[0]) if self._observed else 0

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._remember(trainer, self._train_keys)

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        """Read the training loss this batch logged."""
        keys = self._train_keys if self._train_key is None else [self._train_key]
        found = self._fresh(trainer, keys)
        if found is not None:
            self._train_key = found[0]
            self._train.append(found[1])

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._remember(trainer, self._val_keys)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Read the validation loss (not during the sanity check)."""
        found = self._fresh(trainer, self._val_keys)
        if found is not None and not trainer.sanity_checking:
            self._val.append(found[1])
            self._val_at.append(self._train_points())

    def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._remember(trainer, self._test_keys)

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Read the test loss; after a fit, diagnose again with it."""
        found = self._fresh(trainer, self._test_keys)
        if found is not None:
            self._test.append(found[1])
            self._test_at.append(self._train_points())
            if self.monitors:
                self._diagnose(trainer, pl_module)

    # ------------------------------------------------------------------- diagnosis
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Every ``every_n_epochs`` epochs (not the last: ``on_train_end`` does it)."""
        n, epoch = self.every_n_epochs, trainer.current_epoch + 1
        if n is not None and epoch % n == 0 and epoch != trainer.max_epochs:
            self._diagnose(trainer, pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Diagnose the fit (the loggers are still open here, unlike at ``on_fit_end``)."""
        self._diagnose(trainer, pl_module)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Remove the Monitors' hooks; their history stays readable."""
        for monitor in self.monitors:
            monitor.close()

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        """Diagnose a fit that crashed or was interrupted, without hiding its exception."""
        if not self.monitors:
            return
        try:
            self._diagnose(trainer, pl_module)
        except Exception:  # the run's own exception is the one to see
            log.exception("unstuck doctor: diagnosing the failed run failed")

    def _diagnose(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        train = self._train.values() if len(self._train) else None
        which = 0 if train is not None else 1
        val_steps = [max(at[which] - 1, 0) for at in self._val_at]
        test_steps = [max(at[which] - 1, 0) for at in self._test_at]
        val, test = self._val.values(), self._test.values()
        diagnoses: list[Diagnosis] = []
        for index, monitor in enumerate(self.monitors):
            title = f"unstuck doctor: {type(pl_module).__name__}"
            if len(self.monitors) > 1:
                title += f", optimizer {index}"
            diagnosis = run_doctor(
                train if train is not None else self._observed[index].values(), val, test,
                monitor, val_steps=val_steps, test_steps=test_steps, title=title,
            )
            if diagnosis is None:
                continue
            diagnoses.append(diagnosis)
            if not trainer.is_global_zero:
                continue
            path = None if self.report is None else report_path(
                _log_dir(trainer), self.report, index, len(self.monitors))
            written = publish(diagnosis, path)
            if index == 0:
                self.report_path = written or self.report_path
            self._log_to_loggers(trainer, diagnosis, index)
        if diagnoses:
            self.diagnoses = diagnoses
            self.diagnosis = diagnoses[0]

    def _log_to_loggers(self, trainer: pl.Trainer, diagnosis: Diagnosis, index: int) -> None:
        """The verdicts as metrics to every logger, and as text to TensorBoard."""
        prefix = f"optimizer{index}/" if index else ""
        metrics = {prefix + k: v for k, v in verdict_metrics(diagnosis).items()}
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)
            add_text = getattr(getattr(logger, "experiment", None), "add_text", None)
            if callable(add_text):
                add_text(prefix + "doctor", diagnosis.to_markdown(), trainer.global_step)
