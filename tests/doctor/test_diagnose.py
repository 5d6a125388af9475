"""diagnose(): plain per-epoch lists (the compare path), unusual inputs, ranking, Monitor input."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from unstuck.diagnose import Monitor
from unstuck.doctor import CODES, Verdict, diagnose


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
