"""diagnose(): plain per-epoch lists (the compare path), unusual inputs, ranking, Monitor input."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from unstuck.diagnose import Monitor
from unstuck.doctor import CODES, Verdict, diagnose
from unstuck.doctor.diagnose import EXPLAINED_BY
from unstuck.doctor.evidence import Evidence, RunOutcome


def test_plain_lists_per_epoch_overfitting_and_healthy():
    d = diagnose(train_loss=[2.3, 0.9, 0.3, 0.08, 0.02, 0.01],
                 val_loss=[2.3, 1.0, 0.7, 0.9, 1.2, 1.5], test_loss=[2.3, 1.1, 0.8, 0.9, 1.3, 1.6])
    assert d.codes == ["overfitting"]
    ok = diagnose([2.3, 1.2, 0.6, 0.4, 0.35, 0.3], [2.3, 1.3, 0.7, 0.5, 0.4, 0.38],
                  [2.3, 1.3, 0.7, 0.5, 0.41, 0.39])
    assert ok.healthy and ok.top.code == "healthy"


def test_accepts_tensors_arrays_and_scalars():
    train = torch.tensor([2.3, 0.5, 0.1, 0.05, 0.02])
    d = diagnose(train, val_loss=np.array([0.06]), test_loss=1.4)
    assert d.codes == ["mismatch"]
    assert d.train_loss == pytest.approx(train.tolist())


@pytest.mark.parametrize("empty", [[], (), torch.tensor([])])
def test_empty_train_loss_is_a_clear_error(empty):
    with pytest.raises(ValueError, match="train_loss must hold at least one value"):
        diagnose(empty)
    with pytest.raises(ValueError, match="train_loss"):
        diagnose(None)


def test_length_one_history_is_healthy_with_a_note():
    d = diagnose([0.7])
    assert d.healthy
    assert any("need at least" in n for n in d.notes)
    assert d.top.confidence < 0.9  # less sure when things could not be checked


def test_nan_in_loss_is_nonfinite_and_blocks_shape_rules():
    d = diagnose([0.7, 0.6, math.nan, math.nan], val_loss=[0.6], test_loss=[3.0])
    assert d.codes == ["nonfinite"]
    assert d.top.evidence["first_nonfinite_loss_step"] == 2
    assert math.isnan(d.train_loss[2]) and d.to_dict()["train_loss"][2] == "NaN"
    json.dumps(d.to_dict())  # non-finite floats are encoded as strings


def test_missing_val_loss_falls_back_to_test_with_low_confidence():
    d = diagnose([0.7, 0.3, 0.05, 0.01, 0.005], test_loss=[0.9])
    assert d.codes == ["overfitting"]
    assert d.top.confidence == 0.3
    assert any("train-dev" in n for n in d.notes)


def test_bad_inputs_name_the_argument():
    with pytest.raises(TypeError, match=r"val_loss\[1\]"):
        diagnose([1.0, 0.5], val_loss=[1.0, "x"])
    with pytest.raises(TypeError, match="train_loss"):
        diagnose("0.5")
    with pytest.raises(ValueError, match="baseline must be"):
        diagnose([1.0], baseline=-1.0)
    with pytest.raises(ValueError, match="optimizer_family"):
        diagnose([1.0], optimizer_family="lion")
    with pytest.raises(TypeError, match="monitor"):
        diagnose([1.0], monitor=42)
    with pytest.raises(ValueError, match="1-D"):
        diagnose(torch.ones(2, 2))
    with pytest.raises(ValueError, match="code must be one of"):
        Verdict("nope", "t", 0.5, "m")


def test_ranking_follows_codes_and_drops_model_bias_when_optimiser_is_blamed():
    flat = [1.0, 0.9, 0.85, 0.84, 0.84, 0.84, 0.84, 0.84]
    d = diagnose(flat, reference_train_loss=[1.0, 0.5, 0.2, 0.1, 0.1, 0.1, 0.1, 0.1],
                 critical_point={"verdict": "saddle point", "lambda_min": -1.0,
                                 "lambda_max": 1.0, "grad_norm": 0.0})
    assert d.codes == ["saddle_point", "optimization_failure"]
    assert [CODES.index(c) for c in d.codes] == sorted(CODES.index(c) for c in d.codes)
    assert diagnose(flat).codes == ["model_bias"]


def test_monitor_history_and_object():
    model = torch.nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.randn(32, 3, generator=torch.Generator().manual_seed(0)), torch.zeros(32, 1)
    with Monitor(model, opt) as monitor:
        for _ in range(30):
            opt.zero_grad()
            loss = torch.nn.functional.mse_loss(model(x), y)
            loss.backward()
            monitor.observe(loss)
            opt.step()
    from_object = diagnose(None, monitor=monitor)  # the losses come from the monitor
    from_history = diagnose(None, monitor=monitor.history, optimizer_family="none")
    assert from_object.codes == from_history.codes
    assert len(from_object.train_loss) == 30
    assert not any("no Monitor" in n for n in from_object.notes)


# ----------------------------------------------------------------------------- explained by
def record(step, grad=1.0, ratio=1e-3, loss=1.0):
    return {"step": step, "loss": loss, "grad_norm": grad, "update_norm": ratio,
            "weight_norm": 1.0, "update_ratio": ratio, "update_cosine": None, "layers": {},
            "effective_lr": None, "nonfinite_grads": [], "nonfinite_forward": None}


PLATEAU = [0.8 + 0.2 * math.exp(-i / 4) for i in range(40)]  # converged at a large loss
ZERO = [{"name": "0.weight", "kind": "zero", "shape": (4, 3), "units": 4, "constant": True}]


def bigger(score):
    return RunOutcome("bigger model: test", score, None, False, 40)


def test_explained_by_names_codes_only():
    for code, causes in EXPLAINED_BY.items():
        assert code in CODES and causes <= set(CODES) and code not in causes


def test_exploding_gradients_dropped_when_lr_too_large_fires():
    grads = [1.0] * 30
    grads[20] = 50.0

    def history(ratio):
        return [record(i, grads[i], ratio) for i in range(30)]

    assert diagnose([1.0] * 30, monitor=history(0.2), optimizer_family="none").codes == [
        "lr_too_large"]
    small_steps = diagnose([1.0] * 30, monitor=history(1e-3), optimizer_family="none")
    assert small_steps.codes == ["exploding_gradients"]  # and model_bias, the symptom, dropped


def _spiky(first: float = 1.0, end: float = 0.2) -> tuple[list[float], list[dict]]:
    """A run that falls from ``first`` to ``end`` in 10 steps, stays there, with one gradient
    spike at step 20."""
    losses = [first + (end - first) * min(i, 10) / 10 for i in range(30)]
    grads = [1.0] * 30
    grads[20] = 50.0
    return losses, [record(i, grads[i], 1e-3, losses[i]) for i in range(30)]


def _checked(score: float, losses: list[float], history: list[dict],
             val: list[float] | None = None):
    check = RunOutcome("clip at 2", score, None, not math.isfinite(score), 30)
    return diagnose(losses, val, monitor=history, optimizer_family="none",
                    evidence=Evidence(fix_checks={"exploding_gradients": check}))


def test_a_spike_whose_fix_does_not_help_is_not_reported():
    losses, history = _spiky()
    end = losses[-1]
    harmless = _checked(end * 0.95, losses, history)  # 5% better: below FIX_CHECK_MARGIN
    assert harmless.codes == ["healthy"]
    assert any("not reported (exploding_gradients)" in n and "clip at 2" in n
               for n in harmless.notes)
    assert _checked(math.inf, losses, history).codes == ["healthy"]  # the fix diverged
    confirmed = _checked(end * 0.8, losses, history)
    assert confirmed.codes == ["exploding_gradients"]
    assert confirmed.top.evidence["fix_check"]["fix"] == "clip at 2"
    assert "does better" in confirmed.top.message
    # no check ran (diagnose on curves alone): the rule decides alone
    unchecked = diagnose(losses, monitor=history, optimizer_family="none")
    assert unchecked.codes == ["exploding_gradients"]


def test_a_fix_check_needs_an_absolute_difference_too():
    losses, history = _spiky(end=0.002)  # converged near zero: 0.002 vs 0.001 is no difference
    assert _checked(0.001, losses, history).codes == ["healthy"]


def test_a_run_that_diverged_keeps_its_verdict_whatever_the_fix_did():
    losses, history = _spiky()
    kept = _checked(math.inf, losses, history, val=[0.9, math.nan])  # it broke on held-out data
    assert "exploding_gradients" in kept.codes
    verdict = next(v for v in kept.verdicts if v.code == "exploding_gradients")
    assert "did too" in verdict.message


def test_model_bias_dropped_when_a_training_failure_fires():
    assert diagnose(PLATEAU).codes == ["model_bias"]
    stuck = Evidence(degenerate_start=ZERO, degenerate_end=ZERO)
    assert diagnose(PLATEAU, evidence=stuck).codes == ["symmetric_init"]


def test_noise_floor_or_model_bias_decided_by_the_bigger_model():
    floor = diagnose(PLATEAU, evidence=Evidence(capacity=bigger(0.79)))
    assert floor.codes == ["noise_floor"] and floor.healthy
    assert diagnose(PLATEAU, evidence=Evidence(capacity=bigger(0.3))).codes == ["model_bias"]
    # still falling: neither (the slow line is the learning rate's, unconfirmed)
    slow = [1.0 - 0.0005 * i for i in range(40)]
    codes = diagnose(slow, evidence=Evidence(capacity=bigger(1.0))).codes
    assert "noise_floor" not in codes and "model_bias" not in codes
    # a gap to the validation loss: overfitting, not the noise floor
    gap = diagnose(PLATEAU, val_loss=[1.9], evidence=Evidence(capacity=bigger(0.79)))
    assert "noise_floor" not in gap.codes


def test_noise_floor_dropped_when_lr_too_small_fires():
    faster = Evidence(capacity=bigger(0.79), lr_probes={3.0: RunOutcome("lr x3", 0.5)})
    d = diagnose(PLATEAU, evidence=faster)
    assert d.codes == ["lr_too_small"] and d.top.confidence == 0.9
    no_faster = Evidence(capacity=bigger(0.79), lr_probes={3.0: RunOutcome("lr x3", 0.79)})
    assert diagnose(PLATEAU, evidence=no_faster).codes == ["noise_floor"]


def test_dead_units_need_the_bigger_model_below_dead_share_alone():
    dead = {"0.relu": {"units": 10, "dead": 6, "share": 0.6}}
    helps = diagnose(PLATEAU, evidence=Evidence(capacity=bigger(0.3), dead_units=dead))
    assert helps.codes == ["dead_units"]  # model bias explained by the dead units
    no_help = diagnose(PLATEAU, evidence=Evidence(capacity=bigger(0.79), dead_units=dead))
    assert no_help.codes == ["noise_floor"]


def test_dead_units_from_the_start_explain_a_lower_lr_doing_better():
    flat = [1.0, 1.02, 0.99, 1.01] * 10  # no progress
    dead = {"0.relu": {"units": 10, "dead": 10, "share": 1.0}}
    lower = {0.1: RunOutcome("lr x0.1", 0.5)}
    killed = diagnose(flat, evidence=Evidence(dead_units=dead, lr_probes=dict(lower)))
    assert killed.codes[0] == "lr_too_large"  # units died in training: the lr is the cause
    born = diagnose(flat, evidence=Evidence(dead_units=dead, dead_units_start=dead,
                                            lr_probes=dict(lower)))
    assert born.codes[0] == "dead_units" and "lr_too_large" not in born.codes


# ----------------------------------------------------------------------------- never raises
BAD = [math.inf, -math.inf, math.nan]


@pytest.mark.parametrize("train", [
    [math.inf] * 10, [-math.inf] * 10, [math.nan] * 10, BAD * 4, [math.inf], [-math.inf, 1.0],
    [1.0, 0.5, 0.2, 0.1, 0.1, 0.1],
])
def test_non_finite_everywhere_never_raises(train):
    history = [record(i, grad=BAD[i % 3], ratio=BAD[(i + 1) % 3], loss=BAD[(i + 2) % 3])
               for i in range(30)]
    for r in history:
        r["update_cosine"] = math.nan
        r["layers"] = {"a.weight": {"update_ratio": math.inf}, "b.weight": {"update_ratio": 0.0}}
        r["effective_lr"] = {"min": math.nan, "median": math.nan, "max": math.inf}
        r["lr"] = [math.nan]
    critical = {"verdict": "saddle point", "lambda_min": math.nan, "lambda_max": math.inf,
                "grad_norm": math.nan, "escape_loss_change": math.nan}
    for kwargs in (
        {},
        {"val_loss": [math.nan] * 3, "test_loss": [math.inf, -math.inf],
         "reference_train_loss": [-math.inf] * 5, "monitor": history,
         "critical_point": critical, "optimizer_family": "adam"},
        {"val_loss": math.nan, "test_loss": math.inf, "monitor": history,
         "evidence": Evidence(capacity=RunOutcome("bigger", math.nan, math.inf, True),
                              lr_probes={3.0: RunOutcome("lr x3", math.inf),
                                         0.1: RunOutcome("lr x0.1", -math.inf)})},
    ):
        d = diagnose(train, **kwargs)
        if not all(math.isfinite(v) for v in train):
            assert d.top.code == "nonfinite"
        assert math.isfinite(d.baseline) and d.baseline > 0
        json.dumps(d.to_dict())
        assert str(d) and d.to_markdown()


def _log_zero_run(watch_forward: bool) -> Monitor:
    torch.manual_seed(0)
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.ones(4, 2)
    with Monitor(model, opt, watch_forward=watch_forward) as monitor:
        for _ in range(3):
            opt.zero_grad()
            out = model(x)  # finite
            loss = -torch.log(out * 0.0).mean()  # the loss function makes the inf
            loss.backward()
            monitor.observe(loss)
            opt.step()
    return monitor


def test_monitor_watching_forward_blames_the_loss_function():
    d = diagnose(None, monitor=_log_zero_run(watch_forward=True))
    assert d.top.code == "nonfinite" and d.top.evidence["source"] == "loss function"


def test_monitor_not_watching_forward_blames_nothing():
    d = diagnose(None, monitor=_log_zero_run(watch_forward=False))
    assert d.top.code == "nonfinite" and d.top.evidence.get("source") != "loss function"
