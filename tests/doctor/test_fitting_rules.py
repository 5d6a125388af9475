"""The guide's fitting rules (fitting_rules): optimisation failure, model bias, noise floor,
overfitting, mismatch; each threshold from both sides, each conjunct on its own."""

from __future__ import annotations

import math

from unstuck.doctor import fitting_rules as F
from unstuck.doctor import thresholds as T
from unstuck.doctor.evidence import RunOutcome
from unstuck.doctor.loss_rules import is_large


def decay(start: float, end: float, n: int = 40) -> list[float]:
    """A loss falling fast from ``start`` and flattening at ``end``."""
    return [end + (start - end) * math.exp(-i / 4) for i in range(n)]


def bigger(train_end: float, val_end: float | None = None, diverged: bool = False) -> RunOutcome:
    return RunOutcome("bigger model: test", train_end, val_end, diverged, 40)


FLAT = decay(1.0, 0.8)  # a large plateau
SLOW_LINE = [1.0 - 0.0005 * i for i in range(40)]  # a plateau by PLATEAU_DROP, still falling
# no plateau (the second half falls 0.05) and not still falling (the slope is noise)
BUMPY = [0.9, 0.5] * 15 + [0.85, 0.45] * 5


# ----------------------------------------------------------------------------- capacity
def test_capacity_does_better_needs_both_margins():
    assert F.capacity_does_better([1.0] * 10, None, bigger(0.8), 1.0)
    assert not F.capacity_does_better([1.0] * 10, None, bigger(0.85), 10.0)  # relative only
    assert not F.capacity_does_better([10.0] * 10, None, bigger(9.5), 1.0)  # absolute only
    assert not F.capacity_does_better([1.0] * 10, None, None, 1.0)
    assert not F.capacity_does_better([1.0] * 10, None, bigger(0.1, diverged=True), 1.0)


def test_capacity_does_better_compares_validation_losses_when_there_are_some():
    # the bigger model's validation loss 0.6 beats this run's training loss 1.0 ...
    assert F.capacity_does_better([1.0] * 10, None, bigger(0.1, 0.6), 1.0)
    # ... but not this run's validation loss 0.5
    assert not F.capacity_does_better([1.0] * 10, [0.9, 0.5], bigger(0.1, 0.6), 1.0)


# ----------------------------------------------------------------------------- optimisation
def test_optimization_failure_margins():
    mine = decay(1.0, 0.7)
    v = F.optimization_failure(mine, decay(1.0, 0.3), 1.0)
    assert v.code == "optimization_failure"
    # 0.66 is not REFERENCE_MARGIN (10%) below 0.7
    assert F.optimization_failure(mine, decay(1.0, 0.66), 1.0) is None
    assert F.optimization_failure(mine, None, 1.0) is None


def test_optimization_failure_confidence_follows_representability():
    mine, ref = decay(1.0, 0.7), decay(1.0, 0.3)
    proven = F.optimization_failure(mine, ref, 1.0, representable=True, kind="linear model")
    assert proven.confidence == T.HIGH and "linear model" in proven.message
    assert proven.evidence["reference"] == "linear model"
    assert proven.evidence["reference_representable"] is True
    assert "can represent" in proven.message
    assumed = F.optimization_failure(mine, ref, 1.0, representable=None)
    assert assumed.confidence == T.MEDIUM and "assumed" in assumed.message
    # a reference the model cannot represent: losing to it is model bias, not optimisation
    assert F.optimization_failure(mine, ref, 1.0, representable=False) is None


def test_optimization_failure_needs_the_reference_to_generalise_better_too():
    mine, ref = decay(1.0, 0.7), decay(1.0, 0.3)
    val = [0.72]
    # the reference fits the training set better but its validation loss is no better: memorised
    assert F.optimization_failure(mine, ref, 1.0, val=val, reference_val=0.72) is None
    assert F.optimization_failure(mine, ref, 1.0, val=val, reference_val=0.66) is None  # < 10%
    assert F.optimization_failure(mine, ref, 1.0, val=val, reference_val=0.4) is not None
    # without either validation loss, the training losses decide
    assert F.optimization_failure(mine, ref, 1.0, val=None, reference_val=0.72) is not None
    assert F.optimization_failure(mine, ref, 1.0, val=val, reference_val=None) is not None


# ----------------------------------------------------------------------------- model bias
def test_model_bias_needs_large_plateau_and_no_better_reference():
    v = F.model_bias(FLAT, 1.0)
    assert v.code == "model_bias" and v.confidence == T.MEDIUM
    assert F.model_bias(decay(1.0, 0.4), 1.0) is None  # below LARGE_LOSS
    falling = [1.0 - 0.005 * i for i in range(40)]  # second-half fall 0.05 > PLATEAU_DROP
    assert F.model_bias(falling, 1.0) is None
    assert F.model_bias(FLAT, 1.0, reference=decay(1.0, 0.2)) is None
    sure = F.model_bias(FLAT, 1.0, reference=decay(1.0, 0.79))
    assert sure.confidence == T.HIGH and "reference_train_loss_end" in sure.evidence
    assert F.model_bias(FLAT, 1.0, critical={"verdict": "saddle point"}) is None
    assert F.model_bias(FLAT[:3], 1.0) is None


def test_model_bias_hessian_minimum_raises_confidence():
    for kind in ("local minimum", "degenerate"):
        v = F.model_bias(FLAT, 1.0, critical={"verdict": kind, "lambda_min": 0.1})
        assert v.confidence == T.HIGH and v.evidence["hessian"] == kind


def test_model_bias_not_while_still_falling():
    assert F.model_bias(SLOW_LINE, 1.0) is None  # a plateau by PLATEAU_DROP, but still falling


def test_model_bias_with_capacity():
    v = F.model_bias(FLAT, 1.0, capacity=bigger(0.3))
    assert v.confidence == T.HIGH and v.evidence["bigger_model"]["train_loss_end"] == 0.3
    assert "more capacity helps" in v.message
    # a bigger model that does no better: the noise floor, not model bias
    assert F.model_bias(FLAT, 1.0, capacity=bigger(0.79)) is None
    # with capacity evidence the loss need not be large: a bigger model doing better decides
    assert not is_large(decay(1.0, 0.4), 1.0)
    assert F.model_bias(decay(1.0, 0.4), 1.0, capacity=bigger(0.1)).confidence == T.HIGH
    # near zero on the training data: no capacity question, even when the bigger model's
    # validation loss beats this run's
    low = decay(1.0, 0.01)
    assert F.capacity_does_better(low, [0.5], bigger(0.0, 0.1), 1.0)
    assert F.model_bias(low, 1.0, val=[0.5], capacity=bigger(0.0, 0.1)) is None


# ----------------------------------------------------------------------------- noise floor
def test_noise_floor_needs_a_bigger_model_doing_no_better():
    v = F.noise_floor(FLAT, None, 1.0, bigger(0.79))
    assert v.code == "noise_floor" and v.confidence == T.MEDIUM
    held = F.noise_floor(FLAT, [0.82], 1.0, bigger(0.0, 0.81))
    assert held.confidence == T.HIGH and held.evidence["val_loss_end"] == 0.82
    assert F.noise_floor(FLAT, None, 1.0, None) is None  # no capacity check ran
    assert F.noise_floor(FLAT, None, 1.0, bigger(0.5)) is None  # the bigger model did better
    assert F.noise_floor(FLAT, None, 1.0, bigger(0.1, diverged=True)) is None
    assert F.noise_floor(FLAT[:3], None, 1.0, bigger(0.79)) is None


def test_noise_floor_needs_a_loss_above_zero_that_stopped_falling():
    assert F.noise_floor(SLOW_LINE, None, 1.0, bigger(1.0)) is None  # still falling
    # a noisy floor without a trend is a floor too: the bigger model decides, not the shape
    assert F.noise_floor(BUMPY, None, 1.0, bigger(0.65)) is not None
    assert F.noise_floor(BUMPY, None, 1.0, bigger(0.3)) is None  # a bigger model does better
    assert F.noise_floor(decay(1.0, 0.01), None, 1.0, bigger(0.01)) is None  # near zero
    # the same shape above NEAR_ZERO fires: the loss's size does not decide
    assert F.noise_floor(decay(1.0, 0.06), None, 1.0, bigger(0.06)) is not None


def test_noise_floor_not_with_an_overfitting_gap():
    train = decay(1.0, 0.3)
    assert F.noise_floor(train, [0.8], 1.0, bigger(0.0, 0.85)) is None  # gap 0.5, 2.7x
    assert F.noise_floor(train, [0.35], 1.0, bigger(0.0, 0.35)) is not None
    # a gap needs both the absolute and the relative part
    assert F.noise_floor(decay(1.0, 0.4), [0.55], 1.0, bigger(0.0, 0.56)) is not None
    assert F.noise_floor(decay(1.0, 0.06), [0.1], 1.0, bigger(0.0, 0.1)) is not None


# ----------------------------------------------------------------------------- overfitting
def test_overfitting_gap_and_proxy():
    train = decay(0.7, 0.01)
    v = F.overfitting(train, [0.7, 0.4, 0.3, 0.5, 0.9], 0.7)
    assert v.code == "overfitting" and v.confidence == T.HIGH  # val rose from its minimum
    assert F.overfitting(train, [0.7, 0.3, 0.06], 0.7) is None  # gap 0.05 < 0.1 * 0.7
    assert F.overfitting(decay(0.7, 0.6), [0.9], 0.7) is None  # training loss large
    proxy = F.overfitting(train, None, 0.7, test=[0.9])
    assert proxy.confidence == T.LOW and "mismatch" in proxy.message
    assert "test_loss_end" in proxy.evidence
    assert F.overfitting(train, None, 0.7) is None
    # a val curve without a finite value: the test loss stands in
    assert F.overfitting(train, [math.nan], 0.7, test=[0.9]).confidence == T.LOW


def test_overfitting_needs_both_the_absolute_and_the_relative_gap():
    train = decay(1.0, 0.4)  # not large (below LARGE_LOSS)
    assert F.overfitting(train, [0.65], 1.0) is not None  # gap 0.25, 1.6x
    assert F.overfitting(train, [0.55], 1.0) is None  # gap 0.15 >= OVERFIT_GAP, 1.4x < GAP_RATIO
    low = decay(1.0, 0.01)
    assert F.overfitting(low, [0.05], 1.0) is None  # 5x, but gap 0.04 < OVERFIT_GAP
    assert F.overfitting(low, [0.12], 1.0) is not None


def test_overfitting_confidence_high_only_when_val_rose_from_its_minimum():
    train = decay(1.0, 0.01)
    assert F.overfitting(train, [1.0, 0.8, 0.7], 1.0).confidence == T.MEDIUM  # still falling
    assert F.overfitting(train, [0.7, 0.5, 0.54], 1.0).confidence == T.MEDIUM  # < 10% above min
    assert F.overfitting(train, [0.7, 0.5, 0.56], 1.0).confidence == T.HIGH
    assert F.overfitting(train, [0.5, 0.56], 1.0).confidence == T.MEDIUM  # too few evaluations


# ----------------------------------------------------------------------------- mismatch
def test_mismatch_needs_both_splits():
    train = decay(0.7, 0.02)
    assert F.mismatch(train, [0.03], [1.5], 0.7).code == "mismatch"
    assert F.mismatch(train, [0.03], [0.08], 0.7) is None
    assert F.mismatch(train, None, [1.5], 0.7) is None
    assert F.mismatch(train, [0.03], None, 0.7) is None


def test_mismatch_needs_both_the_absolute_and_the_relative_gap():
    train = decay(1.0, 0.01)
    assert F.mismatch(train, [0.4], [0.65], 1.0) is not None  # gap 0.25, 1.6x
    assert F.mismatch(train, [0.4], [0.55], 1.0) is None  # MISMATCH_GAP only: 1.4x < GAP_RATIO
    assert F.mismatch(train, [0.01], [0.05], 1.0) is None  # GAP_RATIO only: gap 0.04
    assert F.mismatch(train, [0.01], [0.12], 1.0) is not None


def test_mismatch_confidence_high_when_train_dev_is_close_to_training():
    train = decay(1.0, 0.02)
    close = F.mismatch(train, [0.05], [1.5], 1.0)  # train-dev 0.03 above training
    assert close.confidence == T.HIGH
    apart = F.mismatch(train, [0.5], [1.5], 1.0)  # train-dev 0.48 above: overfitting too
    assert apart.confidence == T.MEDIUM
    # the boundary: train-dev above training by just under / over OVERFIT_GAP
    end = close.evidence["train_loss_end"]
    assert F.mismatch(train, [end + 0.09], [1.5], 1.0).confidence == T.HIGH
    assert F.mismatch(train, [end + 0.11], [1.5], 1.0).confidence == T.MEDIUM
    broken = F.mismatch([math.nan], [0.05], [1.5], 1.0)  # no finite training loss: not close
    assert broken.confidence == T.MEDIUM and math.isnan(broken.evidence["train_loss_end"])
