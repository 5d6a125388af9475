"""What the doctor measured besides the run itself: the checks that can refute a verdict.

A verdict is not a threshold alone: before it blames the learning rate, the model or the data,
:func:`~unstuck.doctor.examine` runs the check that could prove it wrong, and
:func:`~unstuck.doctor.diagnose` reads the outcome from an :class:`Evidence`:

- ``reference``: a simpler model trained the same way (guide step 1). Only a reference whose
  function the model can represent (``reference_representable``) proves an optimisation failure.
- ``capacity``: a bigger model (a wider copy, or a wide MLP on the flattened input). Does more
  capacity reach a lower loss? Yes: model bias. No, with training and validation loss alike: the
  noise floor (irreducible error).
- ``lr_probes``: the same run at other learning rates (scale -> outcome): "raise the learning
  rate" only when a higher one measurably did better, "lower it" only when a lower one did.
- ``degenerate_start`` / ``degenerate_end``: weight tensors whose units are identical (all zero,
  or equal rows) before and after training (:func:`unstuck.diagnose.degenerate_weights`).
- ``dead_units`` / ``dead_units_start``: per ReLU module, the share of units that never activate
  on the training data after training / in the model as initialised
  (:func:`unstuck.diagnose.dead_units`).
- ``fix_checks``: for a step-level verdict whose fix is one change to the run (exploding
  gradients: clipping; a missing warm-up: a warm-up), that run (verdict code -> outcome). A
  gradient spike that clipping does not improve on, an early rise that a warm-up does not avoid,
  did the run no harm: the verdict is not given.

Every field is optional: a rule whose check did not run says so in the verdict (lower confidence,
a note) instead of guessing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from unstuck.doctor.curves import finite, tail

__all__ = ["Evidence", "RunOutcome", "beats"]


@dataclass(frozen=True)
class RunOutcome:
    """The end of one extra run (same data, batches and steps as the run under diagnosis).

    Attributes:
        label: what was changed (``"lr x3"``, ``"reference: Linear(64, 10)"``).
        train_loss_end: the median of the last 10% of its training losses (nan if none finite).
        val_loss_end: its last validation loss, or None without validation data.
        diverged: its loss became non-finite or ended above twice its first value.
        steps: the steps it ran.
        train_loss: its training-loss curve (for the report).
    """

    label: str
    train_loss_end: float
    val_loss_end: float | None = None
    diverged: bool = False
    steps: int = 0
    train_loss: tuple[float, ...] = ()

    @property
    def loss(self) -> float:
        """The validation loss when there is one, else the training loss (as measured)."""
        return self.val_loss_end if self.val_loss_end is not None else self.train_loss_end

    @property
    def score(self) -> float:
        """What "did better" compares: :attr:`loss`, or inf for a run that diverged."""
        value = self.loss
        return value if not self.diverged and math.isfinite(value) else math.inf

    @classmethod
    def of(cls, label: str, losses: list[float], val_loss_end: float | None) -> RunOutcome:
        """The outcome of a run from its step losses and final validation loss: the end is the
        median of the last 10% of the finite losses; it *diverged* when a loss or the validation
        loss is not finite, or the end is above twice the first loss."""
        values = finite(losses)
        end = tail(values) if values else math.nan
        diverged = len(values) < len(losses) or (
            bool(values) and values[0] > 0 and end > 2 * values[0]
        ) or (val_loss_end is not None and not math.isfinite(val_loss_end))
        return cls(label, end, val_loss_end, diverged, len(losses), tuple(losses))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (without the curve)."""
        return {
            "label": self.label,
            "train_loss_end": self.train_loss_end,
            "val_loss_end": self.val_loss_end,
            "diverged": self.diverged,
            "steps": self.steps,
        }


def beats(candidate: RunOutcome, own: float, baseline: float, margin: float) -> bool:
    """``candidate`` does better than the run whose own score is ``own``: its score is lower by
    ``margin`` of the run's own fall from the loss scale ``baseline`` (``baseline - own``), and
    by at least 1% of ``baseline`` (a slow run that fell 0.006 is beaten by a change that fell
    0.03, a converged run that fell 0.6 is not beaten by one 0.002 lower). A candidate that
    diverged never beats; any finite one beats a run whose own score is not finite."""
    if not math.isfinite(candidate.score):
        return False
    if not math.isfinite(own):
        return True
    return candidate.score < own - max(margin * (baseline - own), 0.01 * baseline)


@dataclass
class Evidence:
    """The checks :func:`~unstuck.doctor.examine` ran (see the module docstring)."""

    reference: RunOutcome | None = None
    reference_representable: bool | None = None
    reference_kind: str | None = None
    capacity: RunOutcome | None = None
    lr_probes: dict[float, RunOutcome] = field(default_factory=dict)
    degenerate_start: list[dict[str, Any]] | None = None
    degenerate_end: list[dict[str, Any]] | None = None
    dead_units: dict[str, dict[str, Any]] | None = None
    dead_units_start: dict[str, dict[str, Any]] | None = None
    fix_checks: dict[str, RunOutcome] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def lr_probe_verdict(self, direction: str, own: float, baseline: float,
                         margin: float) -> RunOutcome | None:
        """The best probe on the ``"higher"`` (or ``"lower"``) side of the run's lr that
        :func:`beats` ``own`` (the run's own score), or None when none does (or none ran)."""
        side = [
            p for s, p in self.lr_probes.items() if (s > 1 if direction == "higher" else s < 1)
        ]
        if not side:
            return None
        best = min(side, key=lambda p: p.score)
        return best if beats(best, own, baseline, margin) else None

    def probed(self, direction: str) -> bool:
        """True when an lr probe on that side (``"higher"``/``"lower"``) ran."""
        return any((s > 1 if direction == "higher" else s < 1) for s in self.lr_probes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "reference": self.reference.to_dict() if self.reference else None,
            "reference_representable": self.reference_representable,
            "reference_kind": self.reference_kind,
            "capacity": self.capacity.to_dict() if self.capacity else None,
            "lr_probes": {str(s): p.to_dict() for s, p in sorted(self.lr_probes.items())},
            "degenerate_start": self.degenerate_start,
            "degenerate_end": self.degenerate_end,
            "dead_units": self.dead_units,
            "dead_units_start": self.dead_units_start,
            "fix_checks": {code: p.to_dict() for code, p in self.fix_checks.items()},
        }
