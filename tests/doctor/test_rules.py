"""Each rule on synthetic inputs, on both sides of its threshold."""

from __future__ import annotations

import math

from unstuck.doctor import loss_rules as L
from unstuck.doctor import step_rules as S
from unstuck.doctor import thresholds as T


def decay(start: float, end: float, n: int = 40) -> list[float]:
    """A loss falling fast from ``start`` and flattening at ``end``."""
    return [end + (start - end) * math.exp(-i / 4) for i in range(n)]


def record(step, loss=1.0, grad=1.0, update=0.01, weight=1.0, cosine=None, layers=None, eff=None):
    return {
        "step": step, "loss": loss, "grad_norm": grad, "update_norm": update,
        "weight_norm": weight, "update_ratio": update / weight, "update_cosine": cosine,
        "layers": layers or {}, "effective_lr": eff, "rectification": None,
        "nonfinite_grads": [], "nonfinite_forward": None,
    }


# ----------------------------------------------------------------------------- loss rules
def test_nonfinite_fires_on_nan_loss_or_named_grads():
    assert L.nonfinite([1.0, 0.9, 0.8]) is None
    v = L.nonfinite([1.0, math.nan, math.nan])
    assert v.code == "nonfinite" and v.evidence["first_nonfinite_loss_step"] == 1
    v = L.nonfinite([1.0], {"fc.weight": 3, "fc.bias": 5}, {"module": "fc", "step": 3})
    assert v.evidence["first_nonfinite_grad_params"] == ["fc.weight"]
    assert v.evidence["first_nonfinite_module"] == "fc"


def test_divergence_threshold_and_recovery():
    grow = [1.0 * 1.3**i for i in range(20)]
    assert L.divergence(grow).code == "divergence"
    assert L.divergence([1.0, 1.1, 1.3, 1.5, 1.7, 1.9]) is None  # below DIVERGENCE_FACTOR
    spike = [1.0] * 10 + [50.0] + [3.0 - 0.05 * i for i in range(10)]  # knocked, recovering
    assert L.divergence(spike) is None
    assert L.divergence([1.0, 5.0, 9.0]) is None  # too short to read a trend


def test_model_bias_needs_large_plateau_and_no_better_reference():
    flat = decay(1.0, 0.8)
    assert L.model_bias(flat, 1.0).code == "model_bias"
    assert L.model_bias(decay(1.0, 0.4), 1.0) is None  # below LARGE_LOSS
    falling = [1.0 - 0.005 * i for i in range(40)]  # second-half fall 0.1 > PLATEAU_DROP
    assert L.model_bias(falling, 1.0) is None
    assert L.model_bias(flat, 1.0, reference=decay(1.0, 0.2)) is None
    sure = L.model_bias(flat, 1.0, reference=decay(1.0, 0.79))
    assert sure.confidence == T.HIGH
    assert L.model_bias(flat, 1.0, critical={"verdict": "saddle point"}) is None


def test_optimization_failure_margins():
    mine = decay(1.0, 0.7)
    assert L.optimization_failure(mine, decay(1.0, 0.3), 1.0).code == "optimization_failure"
    # 0.66 is not REFERENCE_MARGIN (10%) below 0.7
    assert L.optimization_failure(mine, decay(1.0, 0.66), 1.0) is None
    assert L.optimization_failure(mine, None, 1.0) is None


def test_lr_too_small_steady_slow_fall():
    slow = [1.0 - 0.002 * i for i in range(60)]  # total 0.12 < SLOW_DROP, straight line
    assert L.lr_too_small(slow, 1.0).code == "lr_too_small"
    fast = [1.0 - 0.01 * i for i in range(60)]  # total 0.59 > SLOW_DROP
    assert L.lr_too_small(fast, 1.0) is None
    assert L.lr_too_small(decay(1.0, 0.9), 1.0) is None  # flattening: converged, not slow
    assert L.lr_too_small(decay(1.0, 0.9), 1.0, update_ratio=1e-6).confidence == T.MEDIUM
    assert L.lr_too_small(decay(1.0, 0.9), 1.0, update_ratio=1e-3) is None


def test_overfitting_gap_and_proxy():
    train = decay(0.7, 0.01)
    v = L.overfitting(train, [0.7, 0.4, 0.3, 0.5, 0.9], 0.7)
    assert v.code == "overfitting" and v.confidence == T.HIGH  # val rose from its minimum
    assert L.overfitting(train, [0.7, 0.3, 0.06], 0.7) is None  # gap 0.05 < 0.1 * 0.7
    assert L.overfitting(decay(0.7, 0.6), [0.9], 0.7) is None  # training loss large
    proxy = L.overfitting(train, None, 0.7, test=[0.9])
    assert proxy.confidence == T.LOW and "mismatch" in proxy.message


def test_mismatch_needs_both_splits():
    train = decay(0.7, 0.02)
    assert L.mismatch(train, [0.03], [1.5], 0.7).code == "mismatch"
    assert L.mismatch(train, [0.03], [0.08], 0.7) is None
    assert L.mismatch(train, None, [1.5], 0.7) is None


def test_critical_point_rules():
    saddle = {"verdict": "saddle point", "grad_norm": 0.0, "lambda_min": -1.0, "lambda_max": 1.0,
              "escape_loss_change": -0.01, "eps": 0.01}
    assert L.saddle_point(saddle).confidence == T.HIGH
    assert L.saddle_point({"verdict": "local minimum"}) is None
    assert L.saddle_point(None) is None
    minimum = {"verdict": "local minimum", "grad_norm": 1e-6, "lambda_min": 0.1, "lambda_max": 2.0}
    train = decay(1.0, 0.5)
    assert L.local_minimum(minimum, train, 1.0, decay(1.0, 0.01)).code == "local_minimum"
    assert L.local_minimum(minimum, train, 1.0, None) is None  # no better reference: model bias
    assert L.local_minimum(saddle, train, 1.0, decay(1.0, 0.01)) is None


# ----------------------------------------------------------------------------- step rules
def test_oscillation_needs_negative_cosine_and_kept_gradient():
    bouncing = [record(i, grad=1.0, cosine=-0.95) for i in range(40)]
    assert S.oscillation(bouncing).code == "oscillation"
    noisy = [record(i, grad=1.0, cosine=0.1 * (-1) ** i) for i in range(40)]
    assert S.oscillation(noisy) is None
    converging = [record(i, grad=0.9**i, cosine=-0.95) for i in range(40)]
    assert S.oscillation(converging) is None  # the gradient vanished: a critical point
    assert S.oscillation(bouncing[:5]) is None


def test_exploding_gradients_spike_and_clip_value():
    grads = [1.0 + 0.1 * (i % 3) for i in range(50)]
    assert S.exploding_gradients([record(i, grad=g) for i, g in enumerate(grads)]) is None
    grads[30] = 9.0  # below EXPLODING_SPIKE times the median
    assert S.exploding_gradients([record(i, grad=g) for i, g in enumerate(grads)]) is None
    grads[30] = 50.0
    v = S.exploding_gradients([record(i, grad=g) for i, g in enumerate(grads)])
    assert v.evidence["worst_spike_step"] == 30
    assert 1.0 <= v.evidence[f"p{T.CLIP_PERCENTILE}_grad_norm"] <= 1.2


def test_adagrad_blowup_needs_flat_stretch_growth_and_spike():
    def run(spike: float, flat: float) -> list[dict]:
        rows = [record(i, grad=1.0, update=0.01) for i in range(10)]
        rows += [record(i, grad=flat, update=0.01) for i in range(10, 60)]  # step per grad grows
        rows += [record(60, grad=1.0, update=spike)]
        rows += [record(i, grad=1.0, update=0.01) for i in range(61, 70)]
        return rows

    v = S.adagrad_blowup(run(1.0, 1e-3), "adagrad")
    assert v.code == "adagrad_blowup" and v.evidence["blowup_step"] == 60
    assert any("RMSProp" in f for f in v.fixes)
    assert S.adagrad_blowup(run(0.05, 1e-3)) is None  # spike below BLOWUP_SPIKE
    assert S.adagrad_blowup(run(1.0, 0.5)) is None  # no flat stretch: sgd-like ratio


def test_needs_warmup_early_loss_rise_with_large_steps():
    def run(rise: float, ratio: float) -> list[dict]:
        rows = [record(i, loss=2.0 + (rise if 1 <= i <= 3 else 0.0) - 0.01 * i,
                       update=ratio if i < 5 else 1e-3, eff={"min": 1, "median": 1, "max": 1})
                for i in range(50)]
        return rows

    assert S.needs_warmup(run(0.5, 0.3), "adam").code == "needs_warmup"
    assert S.needs_warmup(run(0.05, 0.3), "adam") is None  # rise 2.5% < WARMUP_LOSS_RISE
    assert S.needs_warmup(run(0.5, 0.05), "adam") is None  # steps below WARMUP_UPDATE_RATIO
    assert S.needs_warmup(run(0.5, 0.3), "radam") is None  # rectification is a warm-up
    assert S.needs_warmup(run(0.5, 0.3), "none") is None  # not adaptive
    assert S.needs_warmup(run(0.5, 0.3), None).code == "needs_warmup"  # records say adaptive
    assert S.needs_warmup(run(0.5, 0.3), "adam").confidence == T.HIGH


def test_needs_warmup_with_a_warmup_already_asks_for_a_longer_one():
    def run(first_lr: float) -> list[dict]:
        rows = []
        for i in range(50):
            r = record(i, loss=2.0 + (0.5 if 1 <= i <= 3 else 0.0) - 0.01 * i,
                       update=0.3 if i < 5 else 1e-3)
            r["lr"] = [min(1e-3, first_lr + (1e-3 - first_lr) * i / 4)]  # peak at step 4
            rows.append(r)
        return rows

    v = S.needs_warmup(run(0.0), "adam")
    assert v.code == "needs_warmup" and v.confidence == T.MEDIUM
    assert v.evidence["warmup_schedule"] == {"first_lr": 0.0, "peak_lr": 1e-3, "peak_step": 4}
    assert any("Lengthen the warm-up" in f for f in v.fixes)
    assert S.warmup_ramp(run(0.6e-3)) is None  # rises by less than WARMUP_LR_RAMP
    assert S.needs_warmup(run(0.6e-3), "adam").confidence == T.HIGH
    assert S.warmup_ramp([record(0), record(1)]) is None  # no lr recorded


def test_layer_ratio_spread_weights_only():
    def run(slow: float) -> list[dict]:
        layers = {
            "embed.weight": {"update_ratio": slow}, "fc.weight": {"update_ratio": 1e-2},
            "fc.bias": {"update_ratio": 1e-9},
        }
        return [record(i, layers=layers) for i in range(20)]

    v = S.layer_ratio_spread(run(1e-5))
    assert v.evidence["slowest_tensor"] == "embed.weight"
    assert S.layer_ratio_spread(run(1e-3)) is None  # 10x < LAYER_RATIO_SPREAD; bias ignored
    assert S.layer_ratio_spread(run(1e-5), weights={"fc.weight"}) is None
