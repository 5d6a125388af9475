"""The doctor's thresholds: every number a rule compares against, named and explained.

Loss thresholds are fractions of the *loss scale* ``baseline`` (see
:func:`unstuck.doctor.diagnose`): by default the first training loss, the loss of the model as
initialised, which for a fresh classifier is close to the loss of a constant prediction
(``ln C`` for ``C`` balanced classes). So "the training loss is large" reads "the training loss
is still at least half of where it started", whatever the loss function's units.

The values were chosen on the built-in scenarios (``unstuck doctor --scenario all``) and the
*calibration* part of the scenario corpus (``benchmarks/doctor_corpus``: MLPs and linear models
on tabular data), so that each failure is found across seeds and the healthy runs raise no alarm;
the corpus's *held-out* part (CNNs, recurrent nets, Transformers, embeddings) was not used to
choose them, only to measure them (``benchmarks/doctor_accuracy.py``). They are deliberately
coarse (factors of 2 to 10, orders of magnitude), since a verdict should only fire on a clear
signal, and most verdicts are confirmed by a check that could refute them
(:mod:`unstuck.doctor.evidence`) rather than by a threshold alone.
"""

from __future__ import annotations

__all__ = [
    "NO_PROGRESS",
    "LARGE_UPDATE_RATIO",
    "LR_PROBE_MARGIN",
    "FIX_CHECK_MARGIN",
    "EXPLODING_EARLY",
    "NEAR_ZERO",
    "DEAD_SHARE",
    "DEAD_SHARE_ALONE",
    "BLOWUP_GROWTH",
    "BLOWUP_SPIKE",
    "CLIP_MEDIAN_FACTOR",
    "DIVERGENCE_FACTOR",
    "EXPLODING_SPIKE",
    "FLAT_GRADIENT",
    "HIGH",
    "LARGE_LOSS",
    "LAYER_RATIO_SPREAD",
    "LOW",
    "MEDIUM",
    "MIN_TREND_POINTS",
    "MIN_WINDOW",
    "MISMATCH_GAP",
    "OSCILLATION_COSINE",
    "OSCILLATION_GRADIENT_KEPT",
    "OVERFIT_GAP",
    "PLATEAU_DROP",
    "REFERENCE_GAP",
    "REFERENCE_MARGIN",
    "SLOW_DROP",
    "SMALL_UPDATE_RATIO",
    "STEADY_FALL",
    "TAIL_FRACTION",
    "WARMUP_FRACTION",
    "WARMUP_LR_RAMP",
    "WARMUP_LOSS_RISE",
    "WARMUP_UPDATE_RATIO",
    "GAP_RATIO",
]

# ----------------------------------------------------------------------------- confidence
HIGH = 0.9
"""Confidence of a verdict whose every signal is present (e.g. a gap *and* a rising curve)."""
MEDIUM = 0.6
"""Confidence of a verdict on its main signal alone."""
LOW = 0.3
"""Confidence of a verdict that an input needed to confirm it is missing (e.g. no train-dev)."""

# ----------------------------------------------------------------------------- curves
TAIL_FRACTION = 0.1
""""The end of a curve" is the median of its last 10% of values (at least one), robust to the
noise of mini-batch losses."""
MIN_TREND_POINTS = 4
"""Rules that read a curve's shape (plateau, steady fall, divergence) need at least 4 values."""
MIN_WINDOW = 5
"""Windows of monitor records (spikes, early steps) hold at least 5 records."""

# ----------------------------------------------------------------------------- training loss
LARGE_LOSS = 0.5
"""The training loss is *large* when its end is at least half the loss scale (guide step 1)."""
PLATEAU_DROP = 0.02
"""The loss has *plateaued* when over the second half of the run it fell by less than 2% of
the loss scale."""
REFERENCE_MARGIN = 0.1
"""A reference (simpler) model *does better* when its final training loss is at least 10% below
the model's (relative) ..."""
REFERENCE_GAP = 0.05
"""... and at least 5% of the loss scale below it (absolute): both, so noise does not decide."""
SLOW_DROP = 0.2
"""*Learning rate too small*: over the whole run the loss fell by less than 20% of the scale ..."""
STEADY_FALL = 0.5
"""... while still falling: the second half's fall is at least half the first half's (no
sign of convergence: the curve is a slow straight line, not a flattening one)."""
SMALL_UPDATE_RATIO = 1e-4
"""A median update/weight ratio below 1e-4 per step is a tiny step (1e-3 is the usual healthy
order of magnitude): strong evidence for *learning rate too small*."""
DIVERGENCE_FACTOR = 2.0
"""*Divergence*: the end of the finite loss curve is more than twice its first value, and the
means of its last three quarters increase (a spike that training recovers from is not
divergence)."""

# ----------------------------------------------------------------------------- generalisation
OVERFIT_GAP = 0.1
"""*Overfitting*: the validation (train-dev) loss ends above the training loss by at least 10%
of the loss scale ..."""
GAP_RATIO = 1.5
"""... and at least 1.5 times it (both: an absolute and a relative gap). Same for mismatch."""
MISMATCH_GAP = 0.1
"""*Mismatch*: the test loss ends above the train-dev loss by at least 10% of the loss scale
(and ``GAP_RATIO`` times it)."""

# ----------------------------------------------------------------------------- monitor
OSCILLATION_COSINE = -0.5
"""*Oscillation*: the median cosine between consecutive updates over the second half is below
-0.5 (each step mostly undoes the previous one: bouncing between the walls of a valley). Noise
alone gives cosines around 0, momentum positive ones."""
OSCILLATION_GRADIENT_KEPT = 0.3
"""... while the gradient stays large: its median over the second half is at least 30% of its
median over the first quarter (at a critical point it would shrink by orders of magnitude)."""
EXPLODING_SPIKE = 10.0
"""*Exploding gradients*: a gradient norm more than 10 times the median of the records before it
..."""
EXPLODING_EARLY = 10.0
"""... and more than 10 times the median gradient norm of the run's first records: once the loss
is near zero the recent median shrinks by orders of magnitude, and an ordinary step would read as
a "spike" against it; a real explosion is large on the scale of the whole run. (On the
calibration runs, the catapult steps of healthy full-batch SGD reach about 4x the early norm;
outlier targets 40x to 200x.)"""
CLIP_MEDIAN_FACTOR = 2.0
"""The suggested clipping threshold is twice the median of the observed gradient norms: the
typical steps are (nearly) unchanged, a spike (over ``EXPLODING_SPIKE`` times the median) is cut
at least 5-fold, however many spikes there are (a percentile of the norms is not: with outliers in
one batch in ten, the 90th percentile is a spike)."""
BLOWUP_SPIKE = 10.0
"""*Adaptive step blow-up*: an update norm more than 10 times the median of the updates before it
..."""
BLOWUP_GROWTH = 10.0
"""... after the step taken per unit of gradient (``update_norm / grad_norm``, the measured
effective learning rate) grew more than 10-fold since the first records ..."""
FLAT_GRADIENT = 0.1
"""... over a flat stretch: the gradient norm before the blow-up is below 10% of its early value."""
WARMUP_FRACTION = 0.1
"""*Needs warm-up* looks at the first 10% of the records (at least ``MIN_WINDOW``) ..."""
WARMUP_LOSS_RISE = 0.05
"""... where the loss rose more than 5% above its first value ..."""
WARMUP_UPDATE_RATIO = 0.1
"""... with updates larger than 10% of the weights in one step (an adaptive optimizer's first
steps are ``lr`` per element, whatever the gradient, while its ``sigma`` rests on few samples)."""
WARMUP_LR_RAMP = 2.0
"""A warm-up is already in place when the records' learning rate (``lr``, each group's, as the
Monitor records it) rises to at least twice its first value: then the verdict asks for a longer
warm-up or a lower peak instead of a warm-up."""
LAYER_RATIO_SPREAD = 100.0
"""*Layer-wise ratio spread*: the update/weight ratios of the weight tensors differ by more than
100 times (two orders of magnitude; median over the second half of the records)."""

# ----------------------------------------------------------------------------- learning rate
NO_PROGRESS = 0.1
"""*Learning rate too large*: the training loss made no progress: its end is above 90% of its
first value (the loss of the model as initialised) ..."""
LARGE_UPDATE_RATIO = 0.05
"""... while the median update changes the weights by more than 5% per step (healthy runs move
them by about 0.1%), or a lower learning rate measurably does better, or the reference model
trained the same way diverged."""
LR_PROBE_MARGIN = 0.1
"""A probe at another learning rate *does better* when its score (validation loss, else training
loss) is below the run's own by at least 10% of the run's own fall from the loss scale (and 1% of
the scale): a slow run is beaten by a probe that fell several times as far, a converged one is not
beaten by noise."""

FIX_CHECK_MARGIN = 0.1
"""A fix check (clipping for gradient spikes, a warm-up for an early rise) *confirms* its verdict
when the run with the fix ends at least 10% lower (and lower by 1% of the typical starting loss,
so that two converged runs do not count as a difference). Relative to the run's own score, not
to the first loss: outlier batches, the usual cause of spikes, inflate the first loss. The same
10% as ``LR_PROBE_MARGIN``, not tuned: the checks are runs of the same batches, so a fix that
matters moves the end by far more (the outlier-target calibration MLP ends several times
lower when clipped)."""

# ----------------------------------------------------------------------------- capacity
NEAR_ZERO = 0.05
"""A training loss below 5% of the loss scale is *near zero*: the capacity questions (model bias,
noise floor) are not asked of it."""

# ----------------------------------------------------------------------------- units
DEAD_SHARE = 0.5
"""*Dead units*: a ReLU module of which at least half the units never activate on the training
data, while a bigger model does better (the model misses the capacity) or half were dead already
as initialised ..."""
DEAD_SHARE_ALONE = 0.9
"""... or at least 90% of them, whatever the loss."""
