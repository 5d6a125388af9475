"""Loss-curve rules and readers (loss_rules): each threshold from both sides, each conjunct."""

from __future__ import annotations

import math
import random

import pytest

from unstuck.doctor import loss_rules as L
from unstuck.doctor import thresholds as T
from unstuck.doctor.curves import halves_drop


def decay(start: float, end: float, n: int = 40) -> list[float]:
    """A loss falling fast from ``start`` and flattening at ``end``."""
    return [end + (start - end) * math.exp(-i / 4) for i in range(n)]


def line(start: float, slope: float, n: int = 40) -> list[float]:
    return [start - slope * i for i in range(n)]


# ----------------------------------------------------------------------------- curve readers
def test_head_near_zero_is_large_is_plateau_thresholds():
    assert L.head([9.0, 1.0, 1.0, 1.0, 1.0, 50.0]) == 1.0  # a median, the 6th value unread
    assert L.near_zero([1.0] * 5 + [0.04] * 5, 1.0)
    assert not L.near_zero([1.0] * 5 + [0.06] * 5, 1.0)
    assert not L.near_zero([math.nan], 1.0)
    assert L.is_large([1.0] * 5 + [0.5] * 5, 1.0)
    assert not L.is_large([1.0] * 5 + [0.49] * 5, 1.0)
    assert not L.is_large([math.inf, math.nan], 1.0)
    # second-half fall (mean q3 - mean q4) of a straight line of slope s over 40 values: 10 s
    assert L.is_plateau(line(1.0, 0.0019), 1.0)  # 0.019 < PLATEAU_DROP
    assert not L.is_plateau(line(1.0, 0.0021), 1.0)  # 0.021
    assert not L.is_plateau([1.0, 1.0, 1.0], 1.0)  # too short to read


def test_still_falling_straight_line_vs_converged_vs_noise():
    assert L.still_falling(line(1.0, 0.002))  # a slow straight line
    assert not L.still_falling(decay(1.0, 0.5))  # fast fall, then flat: converged
    assert not L.still_falling([1.0] * 40)
    rng = random.Random(0)
    # a noisy floor drifting down a little: the halves say "falling", the slope is within
    # 3 standard errors of 0 (about 0.4 of one)
    noisy = [1.0 - 0.0005 * i + 0.05 * rng.uniform(-1, 1) for i in range(40)]
    first, second = halves_drop(noisy)
    assert second > 0 and second >= T.STEADY_FALL * first
    assert not L.still_falling(noisy)
    assert not L.still_falling(line(1.0, 0.002, n=2 * T.MIN_TREND_POINTS - 1))  # too short


def test_still_falling_second_half_must_keep_pace():
    # falls 0.4 over the first half and about 0.1 over the second: flattening, not a steady line
    bent = [1.0 - 0.02 * i for i in range(20)] + [0.62 - 0.005 * i for i in range(20)]
    assert not L.still_falling(bent)
    assert L.still_falling([1.0 - 0.02 * i for i in range(40)])


def test_reference_does_better_needs_both_margins():
    assert L.reference_does_better([1.0] * 10, [0.8] * 10, 1.0)  # 20% and 0.2 of the scale
    # relative margin alone: 15% lower, but 0.15 < REFERENCE_GAP * 10
    assert not L.reference_does_better([1.0] * 10, [0.85] * 10, 10.0)
    # absolute margin alone: 0.5 >= 0.05 of the scale, but only 5% lower
    assert not L.reference_does_better([10.0] * 10, [9.5] * 10, 1.0)
    assert not L.reference_does_better([1.0] * 10, None, 1.0)
    assert not L.reference_does_better([1.0] * 10, [math.nan] * 10, 1.0)
    assert not L.reference_does_better([math.inf] * 10, [0.1] * 10, 1.0)


def test_reference_does_better_thresholds_from_both_sides():
    assert L.reference_does_better([1.0] * 10, [0.899] * 10, 1.0)
    assert not L.reference_does_better([1.0] * 10, [0.91] * 10, 1.0)  # 9% < REFERENCE_MARGIN
    assert L.reference_does_better([1.0] * 10, [0.89] * 10, 2.1)  # 0.11 >= 0.05 * 2.1
    assert not L.reference_does_better([1.0] * 10, [0.89] * 10, 2.3)  # 0.11 < 0.05 * 2.3


# ----------------------------------------------------------------------------- nonfinite
def test_nonfinite_fires_on_nan_loss_or_named_grads():
    assert L.nonfinite([1.0, 0.9, 0.8]) is None
    v = L.nonfinite([1.0, math.nan, math.nan])
    assert v.code == "nonfinite" and v.evidence["first_nonfinite_loss_step"] == 1
    assert v.confidence == T.HIGH
    v = L.nonfinite([1.0], {"fc.weight": 3, "fc.bias": 5}, {"module": "fc", "step": 3})
    assert v.evidence["first_nonfinite_grad_params"] == ["fc.weight"]
    assert v.evidence["first_nonfinite_module"] == "fc"
    assert v.evidence["source"] == "module fc"
    for broken in ([1.0, math.inf], [1.0, -math.inf]):
        assert L.nonfinite(broken).evidence["first_nonfinite_loss_step"] == 1


def test_nonfinite_blames_the_loss_function_when_every_module_was_finite():
    v = L.nonfinite([1.0, 0.9, math.inf], forward_watched=True)
    assert v.evidence["source"] == "loss function"
    assert "log_softmax" in v.fixes[0] and "clamp" in v.fixes[0]
    # the module broke only after the loss did: still the loss function
    later = L.nonfinite([1.0, 0.9, math.inf], None, {"module": "fc", "step": 5},
                        forward_watched=True)
    assert later.evidence["source"] == "loss function"
    # a module broke at the same step: the module is to blame
    same = L.nonfinite([1.0, 0.9, math.inf], None, {"module": "fc", "step": 2},
                       forward_watched=True)
    assert same.evidence["source"] == "module fc"
    assert not any("log_softmax instead" in f for f in same.fixes)
    # forward hooks did not run: nothing is known about the modules
    blind = L.nonfinite([1.0, 0.9, math.inf], forward_watched=False)
    assert "source" not in blind.evidence
    assert not any("log_softmax instead" in f for f in blind.fixes)
    # gradients broke but the loss did not: not the loss function
    grads = L.nonfinite([1.0, 0.9, 0.8], {"w": 1}, forward_watched=True)
    assert grads.evidence.get("source") != "loss function"


def test_nonfinite_all_parameters_at_once_is_every_parameter():
    grads = {"a.weight": 4, "b.weight": 4, "c.bias": 4}
    v = L.nonfinite([1.0] * 5, grads, n_params=3)
    assert "every parameter" in v.message
    assert v.evidence["first_nonfinite_grad_params"] == sorted(grads)
    some = L.nonfinite([1.0] * 5, {"a.weight": 4, "b.weight": 6}, n_params=3)
    assert "every parameter" not in some.message and "a.weight" in some.message
    part = L.nonfinite([1.0] * 5, {"a.weight": 4, "b.weight": 4}, n_params=3)
    assert "every parameter" not in part.message
    alone = L.nonfinite([1.0] * 5, {"w": 2}, n_params=1)  # one parameter: just name it
    assert "every parameter" not in alone.message and "w" in alone.message
    unknown = L.nonfinite([1.0] * 5, grads)
    assert "every parameter" not in unknown.message


# ----------------------------------------------------------------------------- divergence
def test_divergence_threshold_and_recovery():
    grow = [1.0 * 1.3**i for i in range(20)]
    v = L.divergence(grow)
    assert v.code == "divergence" and v.evidence["growth"] > T.DIVERGENCE_FACTOR
    assert L.divergence([1.0, 1.1, 1.3, 1.5, 1.7, 1.9]) is None  # below DIVERGENCE_FACTOR
    assert L.divergence([1.0, 1.2, 1.5, 1.8, 2.1, 2.4]) is not None  # above it
    spike = [1.0] * 10 + [50.0] + [3.0 - 0.05 * i for i in range(10)]  # knocked, recovering
    assert L.divergence(spike) is None
    assert L.divergence([1.0, 5.0, 9.0]) is None  # too short to read a trend


def test_divergence_needs_a_positive_start_and_reads_finite_values():
    assert L.divergence([0.0] + [0.1 * 1.3**i for i in range(20)]) is None
    assert L.divergence([math.nan, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0]) is not None


@pytest.mark.parametrize("x, text", [(None, "n/a"), (1.23456, "1.235")])
def test_g_formats_numbers(x, text):
    assert L.g(x) == text
