"""Learning-rate rules (lr_rules): too small, too large, and how the lr probes decide them."""

from __future__ import annotations

import math

from unstuck.doctor import lr_rules as R
from unstuck.doctor import thresholds as T
from unstuck.doctor.evidence import Evidence, RunOutcome


def decay(start: float, end: float, n: int = 40) -> list[float]:
    """A loss falling fast from ``start`` and flattening at ``end``."""
    return [end + (start - end) * math.exp(-i / 4) for i in range(n)]


def probes(**scores: float | None) -> Evidence:
    """Evidence with lr probes ``x3=0.5`` -> scale 3 reached training loss 0.5 (None: diverged)."""
    out = {}
    for key, score in scores.items():
        scale = float(key[1:].replace("_", "."))
        out[scale] = RunOutcome(f"lr x{scale:g}", math.nan if score is None else score, None,
                                score is None, 60)
    return Evidence(lr_probes=out)


SLOW = [1.0 - 0.002 * i for i in range(60)]  # a steady straight fall of 0.11 in all
FLAT = [1.0] * 30  # no progress at all


# ----------------------------------------------------------------------------- too small
def test_lr_too_small_steady_slow_fall_without_probes_is_low():
    v = R.lr_too_small(SLOW, 1.0)
    assert v.code == "lr_too_small" and v.confidence == T.LOW
    assert "no probe" in v.evidence["note"]
    assert R.lr_too_small(SLOW, 1.0, evidence=Evidence()).confidence == T.LOW
    fast = [1.0 - 0.01 * i for i in range(60)]  # total 0.55 > SLOW_DROP
    assert R.lr_too_small(fast, 1.0) is None
    assert R.lr_too_small(decay(1.0, 0.9), 1.0) is None  # flattening: converged, not slow
    # bends: the second half falls 0.012, less than STEADY_FALL of the first half's 0.06
    bent = [1.0 - 0.004 * i for i in range(30)] + [0.88 - 0.0008 * i for i in range(30)]
    assert R.lr_too_small(bent, 1.0) is None
    assert R.lr_too_small([1.0], 1.0) is None


def test_lr_too_small_slow_drop_threshold_from_both_sides():
    # head (median of the first 5) minus tail (median of the last 6) is 54.5 slopes
    assert R.lr_too_small([1.0 - 0.0034 * i for i in range(60)], 1.0) is not None  # 0.185
    assert R.lr_too_small([1.0 - 0.004 * i for i in range(60)], 1.0) is None  # 0.218


def test_lr_too_small_a_rising_curve_never_fires():
    rising = [0.5 + 0.002 * i for i in range(60)]
    assert R.lr_too_small(rising, 1.0) is None
    assert R.lr_too_small(rising, 1.0, update_ratio=1e-7) is None
    assert R.lr_too_small(rising, 1.0, evidence=probes(x3=0.1, x10=0.05)) is None
    assert R.lr_too_small([1.0] * 60, 1.0, update_ratio=1e-7) is None  # flat: no fall either


def test_lr_too_small_confirmed_by_a_better_higher_lr_probe():
    v = R.lr_too_small(SLOW, 1.0, evidence=probes(x3=0.5, x10=None))
    assert v.confidence == T.HIGH
    assert v.evidence["probe"]["label"] == "lr x3"
    assert v.fixes[0].startswith("Raise the learning rate to 3 times")
    best = R.lr_too_small(SLOW, 1.0, evidence=probes(x3=0.6, x10=0.4))
    assert best.fixes[0].startswith("Raise the learning rate to 10 times")  # the best probe


def test_lr_too_small_dropped_when_higher_lrs_do_no_better():
    assert R.lr_too_small(SLOW, 1.0, evidence=probes(x3=0.9, x10=None)) is None
    # better, but by less than LR_PROBE_MARGIN of the run's own fall (0.11): not confirmed
    own = 1.0 - 0.002 * 56.5
    assert R.lr_too_small(SLOW, 1.0, evidence=probes(x3=own - 0.005)) is None
    assert R.lr_too_small(SLOW, 1.0, evidence=probes(x3=own - 0.05)).confidence == T.HIGH
    # only lower learning rates ran, and one did better: says nothing about a higher one
    lower = R.lr_too_small(SLOW, 1.0, evidence=probes(x0_1=0.1))
    assert lower.confidence == T.LOW


def test_lr_too_small_tiny_steps_on_a_large_loss():
    converged = decay(1.0, 0.9)
    assert R.lr_too_small(converged, 1.0, update_ratio=1e-6).confidence == T.LOW
    assert R.lr_too_small(converged, 1.0, update_ratio=0.99e-4) is not None
    assert R.lr_too_small(converged, 1.0, update_ratio=1.01e-4) is None  # SMALL_UPDATE_RATIO
    assert R.lr_too_small(decay(1.0, 0.3), 1.0, update_ratio=1e-6) is None  # not large
    v = R.lr_too_small(converged, 1.0, update_ratio=1e-6)
    assert v.evidence["median_update_ratio"] == 1e-6


def test_lr_too_small_stuck_high_needs_a_probe_and_a_loss_above_zero():
    stuck = decay(1.0, 0.8)  # converged, not slow: only a probe can say the lr is too small
    assert R.lr_too_small(stuck, 1.0) is None
    assert R.lr_too_small(stuck, 1.0, evidence=probes(x3=0.5)).confidence == T.HIGH
    # near zero on the training data: not "stuck high", whatever the validation probes say
    low = decay(1.0, 0.01)
    probe = RunOutcome("lr x3", 0.0, 0.3, False, 40)
    assert R.lr_too_small(low, 1.0, val=[0.8], evidence=Evidence(lr_probes={3.0: probe})) is None


def test_lr_too_small_adaptive_optimizer_fix_only_for_non_adaptive():
    def adaptive_fix(family):
        v = R.lr_too_small(SLOW, 1.0, family=family)
        return any("adaptive optimizer" in f for f in v.fixes)

    assert adaptive_fix("none")
    assert not adaptive_fix("adam")
    assert not adaptive_fix(None)  # unknown: not offered


# ----------------------------------------------------------------------------- too large
def test_lr_too_large_no_progress_with_big_steps():
    v = R.lr_too_large(FLAT, 1.0, update_ratio=0.2)
    assert v.code == "lr_too_large" and v.confidence == T.MEDIUM
    assert v.fixes[0].startswith("Lower the learning rate 10x")
    assert v.evidence["median_update_ratio"] == 0.2
    assert R.lr_too_large(FLAT, 1.0, update_ratio=0.051) is not None
    assert R.lr_too_large(FLAT, 1.0, update_ratio=0.049) is None  # LARGE_UPDATE_RATIO
    assert R.lr_too_large(FLAT, 1.0) is None  # no sign of big steps
    assert R.lr_too_large(FLAT, 1.0, update_ratio=math.inf) is None
    assert R.lr_too_large(FLAT, 1.0, update_ratio=math.nan) is None
    assert R.lr_too_large(FLAT[:3], 1.0, update_ratio=0.2) is None


def test_lr_too_large_progress_does_not_fire():
    assert R.lr_too_large(decay(1.0, 0.5), 1.0, update_ratio=0.2) is None
    # the end against the first loss (not a median): 0.91 is no progress, 0.89 is
    assert R.lr_too_large([1.0] + [0.91] * 29, 1.0, update_ratio=0.2) is not None
    assert R.lr_too_large([1.0] + [0.89] * 29, 1.0, update_ratio=0.2) is None
    rising = [1.0 + 0.01 * i for i in range(30)]  # rising without diverging: no progress
    assert R.lr_too_large(rising, 1.0, update_ratio=0.2) is not None


def test_lr_too_large_lower_lr_probes_decide():
    confirmed = R.lr_too_large(FLAT, 1.0, evidence=probes(x0_1=0.5, x0_3=0.8))
    assert confirmed.confidence == T.HIGH
    assert confirmed.fixes[0].startswith("Lower the learning rate to 0.1 times")
    # lower learning rates ran and none did better: not the lr, even with big steps
    assert R.lr_too_large(FLAT, 1.0, 0.2, evidence=probes(x0_1=0.995, x0_3=None)) is None
    # only higher ones ran: the big steps alone decide, unconfirmed
    higher = R.lr_too_large(FLAT, 1.0, 0.2, evidence=probes(x3=0.5))
    assert higher.confidence == T.MEDIUM
    assert R.lr_too_large(FLAT, 1.0, evidence=probes(x3=0.5)) is None


def test_lr_too_large_reference_diverged():
    broke = Evidence(reference=RunOutcome("reference: linear model", math.nan, None, True, 5))
    v = R.lr_too_large(FLAT, 1.0, evidence=broke)
    assert v.confidence == T.MEDIUM and v.evidence["reference_diverged"] is True
    fine = Evidence(reference=RunOutcome("reference: linear model", 0.9, None, False, 30))
    assert R.lr_too_large(FLAT, 1.0, evidence=fine) is None
    assert R.lr_too_large(decay(1.0, 0.5), 1.0, evidence=broke) is None  # progress
