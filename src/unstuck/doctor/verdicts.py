"""What the doctor says: :class:`Verdict` (one finding) and :class:`Diagnosis` (all of them).

The verdict codes are stable strings (:data:`CODES`): scripts may compare against them. They are
listed in the order :func:`~unstuck.doctor.diagnose` ranks them, most important first: broken
numbers before unstable dynamics, causes (a saddle, a local minimum) before the general finding
they explain (an optimisation failure), training before generalisation (the guide checks the
training loss first), and ``healthy`` last, alone.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["BENIGN", "CODES", "TITLES", "Diagnosis", "Verdict"]

CODES: tuple[str, ...] = (
    "nonfinite",
    "divergence",
    "lr_too_large",
    "adagrad_blowup",
    "exploding_gradients",
    "needs_warmup",
    "oscillation",
    "symmetric_init",
    "saddle_point",
    "local_minimum",
    "dead_units",
    "lr_too_small",
    "optimization_failure",
    "model_bias",
    "noise_floor",
    "layer_ratio_spread",
    "overfitting",
    "mismatch",
    "healthy",
)
"""Every verdict code, in rank order (most important first)."""

BENIGN: frozenset[str] = frozenset({"healthy", "noise_floor"})
"""Codes that raise no alarm: ``noise_floor`` says the run is as good as the data allow."""

TITLES: dict[str, str] = {
    "nonfinite": "Non-finite values (NaN/Inf) in the loss or the gradients",
    "divergence": "The training loss diverges",
    "lr_too_large": "Learning rate too large: the loss makes no progress under huge steps",
    "exploding_gradients": "Exploding gradients: spikes in the gradient norm",
    "adagrad_blowup": "Adaptive step blow-up after a flat stretch",
    "needs_warmup": "The adaptive optimizer needs a learning-rate warm-up",
    "oscillation": "Oscillation across a valley: stuck with a large gradient",
    "symmetric_init": "Symmetric initialisation: units are identical and stay identical",
    "saddle_point": "Stuck at a saddle point",
    "local_minimum": "Stuck in a local minimum",
    "dead_units": "Dead units: ReLU units that never activate",
    "optimization_failure": "Optimisation failure: a simpler model trains better",
    "model_bias": "Model bias: the model is too simple",
    "noise_floor": "At the noise floor: a bigger model does no better (irreducible error)",
    "lr_too_small": "Learning rate too small: the loss falls, but far too slowly",
    "layer_ratio_spread": "Layers need different step sizes (update/weight ratios spread)",
    "overfitting": "Overfitting: small training loss, large validation loss",
    "mismatch": "Mismatch: the test data come from another distribution",
    "healthy": "Healthy: no problem found",
}
"""The title of each code."""


@dataclass(frozen=True)
class Verdict:
    """One finding of the doctor.

    Attributes:
        code: one of :data:`CODES`.
        title: a one-line title (:data:`TITLES`).
        confidence: in ``(0, 1]``: ``HIGH`` (0.9) when every signal of the rule is present,
            ``MEDIUM`` (0.6) on the main signal alone, ``LOW`` (0.3) when an input that would
            confirm it is missing (:mod:`unstuck.doctor.thresholds`).
        message: one sentence with the measured numbers that triggered it.
        evidence: those numbers by name (plain floats, ints, strings and lists: JSON-ready).
        fixes: concrete actions, most promising first, in the words of the guide.
        trials: the fixes that were tried on copies of the run (``examine(try_fixes=True)``),
            each a dict with the fix, its measured losses before/after and whether it helped,
            best first (:mod:`unstuck.doctor.trials`).
    """

    code: str
    title: str
    confidence: float
    message: str
    evidence: dict[str, Any] = field(default_factory=dict)
    fixes: tuple[str, ...] = ()
    trials: tuple[dict[str, Any], ...] = ()

    def __post_init__(self) -> None:
        if self.code not in CODES:
            raise ValueError(f"code must be one of {list(CODES)}, got {self.code!r}")
        if not 0 < self.confidence <= 1:
            raise ValueError(f"confidence must be in (0, 1], got {self.confidence}")

    def to_dict(self) -> dict[str, Any]:
        """The verdict as a plain, JSON-ready dict."""
        return {
            "code": self.code,
            "title": self.title,
            "confidence": self.confidence,
            "message": self.message,
            "evidence": dict(self.evidence),
            "fixes": list(self.fixes),
            "trials": [dict(t) for t in self.trials],
        }


@dataclass
class Diagnosis:
    """The verdicts on one training run, most important first, and the measurements behind them.

    ``verdicts`` is never empty: when no rule fires it holds the single ``healthy`` verdict.

    Attributes:
        verdicts: the findings, ranked (:data:`CODES` order).
        train_loss, val_loss, test_loss, reference_train_loss: the curves that were read (lists
            of floats; ``val_loss`` is train-dev, ``test_loss`` the test/dev distribution).
        baseline: the loss scale the loss thresholds are fractions of.
        val_steps, test_steps: the training step of each val/test value, when known (else the
            report spreads them evenly over the training curve).
        history: the Monitor's records that were read (or ``None``).
        critical_point: the critical-point probe as a plain dict (or ``None``).
        spectrum: a Hessian eigenvalue density (:class:`unstuck.diagnose.Spectrum`) to plot.
        notes: what could not be judged and why (too short a curve, a missing input).
        title: the report's title.
    """

    verdicts: list[Verdict]
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] | None = None
    test_loss: list[float] | None = None
    reference_train_loss: list[float] | None = None
    baseline: float | None = None
    val_steps: list[int] | None = None
    test_steps: list[int] | None = None
    history: list[dict[str, Any]] | None = None
    critical_point: dict[str, Any] | None = None
    spectrum: Any = None
    notes: list[str] = field(default_factory=list)
    title: str = "unstuck doctor"

    @property
    def codes(self) -> list[str]:
        """The verdict codes, ranked."""
        return [v.code for v in self.verdicts]

    @property
    def top(self) -> Verdict:
        """The most important verdict."""
        return self.verdicts[0]

    @property
    def healthy(self) -> bool:
        """True when no problem was found (``healthy``, or only ``noise_floor``: :data:`BENIGN`)."""
        return all(code in BENIGN for code in self.codes)

    def to_dict(self) -> dict[str, Any]:
        """Everything as a plain, JSON-ready dict (see :mod:`unstuck.doctor.report`)."""
        from unstuck.doctor.report import diagnosis_dict

        return diagnosis_dict(self)

    def to_markdown(self) -> str:
        """The verdicts, their evidence and fixes as Markdown (no figures)."""
        from unstuck.doctor.report import diagnosis_markdown

        return diagnosis_markdown(self)

    def to_html(self) -> str:
        """The self-contained HTML report (figures embedded as PNG; needs matplotlib)."""
        from unstuck.doctor.report import diagnosis_html

        return diagnosis_html(self)

    def _repr_html_(self) -> str:
        """Jupyter's inline view: :meth:`to_html`'s content as a fragment (no ``<html>`` page),
        or the text form when matplotlib is missing."""
        from unstuck.doctor.report import diagnosis_fragment

        return diagnosis_fragment(self)

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        """IPython's text view: the text form, not the dataclass repr with every record."""
        p.text(str(self))

    def save_html(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Write :meth:`to_html` to ``path`` atomically.

        Raises:
            FileExistsError: ``path`` exists and ``overwrite`` is False.
        """
        from unstuck.files import write_text

        path = Path(path)
        if not overwrite and path.exists():  # fail before drawing the figures
            raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
        write_text(path, self.to_html(), overwrite=overwrite)
        return path

    def __str__(self) -> str:
        lines = []
        for i, v in enumerate(self.verdicts, 1):
            lines.append(f"{i}. [{v.code}] {v.title} (confidence {v.confidence:.1f})")
            lines.append(f"   {v.message}")
            for fix in v.fixes[:3]:
                lines.append(f"   - {fix}")
            for t in v.trials:
                after = "diverged" if t["diverged"] else f"{t['score_after']:.4g}"
                lines.append(f"   tried {t['fix']}: loss {t['score_before']:.4g} -> {after} "
                             f"({'helped' if t['helped'] else 'did not help'})")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)
