"""Step rules (step_rules) on synthetic Monitor records, on both sides of each threshold."""

from __future__ import annotations

from unstuck.doctor import step_rules as S
from unstuck.doctor import thresholds as T


def record(step, loss=1.0, grad=1.0, update=0.01, weight=1.0, cosine=None, layers=None, eff=None):
    return {
        "step": step, "loss": loss, "grad_norm": grad, "update_norm": update,
        "weight_norm": weight, "update_ratio": update / weight, "update_cosine": cosine,
        "layers": layers or {}, "effective_lr": eff, "rectification": None,
        "nonfinite_grads": [], "nonfinite_forward": None,
    }


def grads_run(grads: list[float]) -> list[dict]:
    return [record(i, grad=g) for i, g in enumerate(grads)]


# ----------------------------------------------------------------------------- oscillation
def test_oscillation_needs_negative_cosine_and_kept_gradient():
    bouncing = [record(i, grad=1.0, cosine=-0.95) for i in range(40)]
    v = S.oscillation(bouncing)
    assert v.code == "oscillation" and v.confidence == T.HIGH
    noisy = [record(i, grad=1.0, cosine=0.1 * (-1) ** i) for i in range(40)]
    assert S.oscillation(noisy) is None
    converging = [record(i, grad=0.9**i, cosine=-0.95) for i in range(40)]
    assert S.oscillation(converging) is None  # the gradient vanished: a critical point
    assert S.oscillation(bouncing[:5]) is None


def test_oscillation_thresholds_from_both_sides():
    def run(cosine: float, late_grad: float) -> list[dict]:
        return [record(i, grad=1.0 if i < 20 else late_grad, cosine=cosine) for i in range(40)]

    assert S.oscillation(run(-0.55, 1.0)) is not None
    assert S.oscillation(run(-0.45, 1.0)) is None  # above OSCILLATION_COSINE
    assert S.oscillation(run(-0.95, 0.31)) is not None
    assert S.oscillation(run(-0.95, 0.29)) is None  # below OSCILLATION_GRADIENT_KEPT
    # most late cosines negative but not 80% of them: medium confidence
    mixed = [record(i, cosine=0.5 if i % 4 == 0 else -0.9) for i in range(40)]
    assert S.oscillation(mixed).confidence == T.MEDIUM


# ----------------------------------------------------------------------------- exploding
def test_exploding_gradients_spike_and_clip_value():
    grads = [1.0 + 0.1 * (i % 3) for i in range(50)]
    assert S.exploding_gradients(grads_run(grads)) is None
    grads[30] = 9.0  # below EXPLODING_SPIKE times the median
    assert S.exploding_gradients(grads_run(grads)) is None
    grads[30] = 50.0
    v = S.exploding_gradients(grads_run(grads))
    assert v.evidence["worst_spike_step"] == 30
    assert v.evidence["clip_grad_norm"] == T.CLIP_MEDIAN_FACTOR * v.evidence["median_grad_norm"]
    assert v.evidence["median_grad_norm"] == 1.1
    assert S.exploding_gradients(grads_run([1.0] * 5 + [50.0] * 4)) is None  # too few records


def test_exploding_gradients_not_an_ordinary_step_after_convergence():
    # the gradient shrinks 1000-fold as the loss reaches zero; then one ordinary step of 0.03
    # is 30 times the recent median but far below EXPLODING_EARLY times the early one
    grads = [1.0] * 20 + [10 ** (-3 * i / 20) for i in range(1, 21)] + [1e-3] * 40
    assert S.exploding_gradients(grads_run(grads)) is None
    grads[70] = 0.03
    assert grads[70] > T.EXPLODING_SPIKE * 1e-3 and grads[70] < T.EXPLODING_EARLY * 1.0
    assert S.exploding_gradients(grads_run(grads)) is None
    grads[70] = 50.0  # large on the scale of the whole run too
    assert S.exploding_gradients(grads_run(grads)).evidence["worst_spike_step"] == 70


def test_exploding_gradients_not_a_steady_growth():
    # 1000x the early norm at the end, but never 10x the records just before
    growing = [1.15**i for i in range(50)]
    assert growing[-1] > T.EXPLODING_EARLY * growing[0]
    assert S.exploding_gradients(grads_run(growing)) is None


# ----------------------------------------------------------------------------- adagrad blow-up
def test_adagrad_blowup_needs_flat_stretch_growth_and_spike():
    def run(spike: float, flat: float, flat_update: float = 0.01) -> list[dict]:
        rows = [record(i, grad=1.0, update=0.01) for i in range(10)]
        rows += [record(i, grad=flat, update=flat_update) for i in range(10, 60)]
        rows += [record(60, grad=1.0, update=spike)]
        rows += [record(i, grad=1.0, update=0.01) for i in range(61, 70)]
        return rows

    v = S.adagrad_blowup(run(1.0, 1e-3), "adagrad")  # the step per gradient grew 1000x
    assert v.code == "adagrad_blowup" and v.evidence["blowup_step"] == 60
    assert any("RMSProp" in f for f in v.fixes)
    assert not any("RMSProp" in f for f in S.adagrad_blowup(run(1.0, 1e-3), "adam").fixes)
    assert S.adagrad_blowup(run(0.05, 1e-3)) is None  # spike below BLOWUP_SPIKE
    assert S.adagrad_blowup(run(1.0, 0.5)) is None  # no flat stretch: sgd-like ratio
    # a flat stretch and a spike, but the step per gradient did not grow (plain SGD)
    assert S.adagrad_blowup(run(1.0, 1e-3, flat_update=1e-5)) is None
    assert S.adagrad_blowup(run(1.0, 1e-3)[:14]) is None  # too few records


# ----------------------------------------------------------------------------- warm-up
def test_needs_warmup_early_loss_rise_with_large_steps():
    def run(rise: float, ratio: float) -> list[dict]:
        return [record(i, loss=2.0 + (rise if 1 <= i <= 3 else 0.0) - 0.01 * i,
                       update=ratio if i < 5 else 1e-3, eff={"min": 1, "median": 1, "max": 1})
                for i in range(50)]

    assert S.needs_warmup(run(0.5, 0.3), "adam").code == "needs_warmup"
    assert S.needs_warmup(run(0.05, 0.3), "adam") is None  # rise 2.5% < WARMUP_LOSS_RISE
    assert S.needs_warmup(run(0.5, 0.05), "adam") is None  # steps below WARMUP_UPDATE_RATIO
    assert S.needs_warmup(run(0.5, 0.3), "radam") is None  # rectification is a warm-up
    assert S.needs_warmup(run(0.5, 0.3), "none") is None  # not adaptive
    assert S.needs_warmup(run(0.5, 0.3), None).code == "needs_warmup"  # records say adaptive
    assert S.needs_warmup(run(0.5, 0.3), "adam").confidence == T.HIGH
    plain = [dict(r, effective_lr=None) for r in run(0.5, 0.3)]
    assert S.needs_warmup(plain, None) is None  # unknown optimizer, no sign of an adaptive one


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


# ----------------------------------------------------------------------------- layer ratios
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
    assert S.layer_ratio_spread(run(0.99e-4)) is not None  # just over 100x
    assert S.layer_ratio_spread(run(1.01e-4)) is None  # just under
    assert S.layer_ratio_spread(run(1e-5), weights={"fc.weight"}) is None
    assert S.layer_ratio_spread(run(1e-5)[:8]) is None  # too few records in the second half


def test_median_update_ratio():
    assert S.median_update_ratio([record(i, update=u) for i, u in enumerate([1, 2, 30])]) == 2
    assert S.median_update_ratio([{"step": 0}]) is None
