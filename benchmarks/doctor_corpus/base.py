"""The doctor's scenario corpus: what a case is, and the registry every part adds to.

A :class:`Case` is one small, real training with a known truth (the verdict code a correct doctor
gives first), built for a seed as the keyword arguments of :func:`unstuck.doctor.examine`, and a
:func:`proof` that shows the truth with runs that do not use the doctor (the fix works; a bigger
model does no better; the lr in use is the best of a sweep).

Cases are split in three parts:

- *calibration* (MLPs and linear models): thresholds may be chosen on it;
- *development* (CNNs, 1-D CNNs, recurrent nets, attention, Transformers, autoencoders,
  embeddings): two earlier held-out parts, looked at while the rules were built (their errors
  showed mechanisms the rules then had to handle), so they no longer measure anything unseen;
  thresholds are never chosen on them;
- *held-out* (other cases on families the calibration part does not use, built apart from the
  rules and run only to report): the accuracy figures that count.

``benchmarks/doctor_accuracy.py`` runs every part.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["BENIGN", "CASES", "PARTS", "Case", "Proof", "register"]

PARTS = ("calibration", "development", "held-out")
BENIGN = frozenset({"healthy", "noise_floor"})
"""Top verdicts that raise no alarm: on a healthy run, any other top verdict is a false alarm."""


@dataclass(frozen=True)
class Proof:
    """What a proof run measured: ``holds`` says whether the truth was confirmed."""

    holds: bool
    summary: str
    numbers: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Case:
    """One corpus case.

    Attributes:
        name: unique, ``family_dataset_truth`` style (``"cnn_digits_lr_too_small"``).
        family: the model family (``"mlp"``, ``"linear"``, ``"cnn"``, ``"rnn"``,
            ``"transformer"``, ``"embedding"``, ...).
        truth: the verdict code a correct doctor puts first.
        part: one of :data:`PARTS`.
        build: ``build(seed)`` -> keyword arguments of ``unstuck.doctor.examine`` (a fresh model,
            data, optimizer factory, steps, ...), deterministic in ``seed``.
        proof: ``proof(seed)`` -> :class:`Proof`, runs that show the truth without the doctor.
        description: one line: model, data, optimizer, what is wrong (or right).
    """

    name: str
    family: str
    truth: str
    part: str
    build: Callable[[int], dict[str, Any]]
    proof: Callable[[int], Proof] | None
    description: str

    def __post_init__(self) -> None:
        if self.part not in PARTS:
            raise ValueError(f"part must be one of {PARTS}, got {self.part!r}")


CASES: dict[str, Case] = {}
"""Every case by name (filled by the part modules at import)."""


def register(case: Case) -> Case:
    """Add ``case`` to :data:`CASES` (names are unique)."""
    if case.name in CASES:
        raise ValueError(f"case {case.name!r} is registered twice")
    CASES[case.name] = case
    return case
