"""Evidence and RunOutcome: what a probe's score is and when a probe beats the run."""

from __future__ import annotations

import json
import math

from unstuck.doctor.evidence import Evidence, RunOutcome


def outcome(label: str, train: float, val: float | None = None, diverged: bool = False):
    return RunOutcome(label, train, val, diverged, 10, (1.0, train))


def test_score_is_validation_else_training_and_inf_when_broken():
    assert outcome("a", 0.5).score == 0.5
    assert outcome("a", 0.5, 0.7).score == 0.7
    assert outcome("a", 0.5, 0.7, diverged=True).score == math.inf
    assert outcome("a", math.nan).score == math.inf
    assert outcome("a", 0.5, math.nan).score == math.inf
    d = outcome("lr x3", 0.5, 0.7).to_dict()
    assert d == {"label": "lr x3", "train_loss_end": 0.5, "val_loss_end": 0.7, "diverged": False,
                 "steps": 10}


def test_lr_probe_verdict_picks_the_best_probe_on_the_asked_side():
    ev = Evidence(lr_probes={3.0: outcome("lr x3", 0.6), 10.0: outcome("lr x10", 0.4),
                             0.1: outcome("lr x0.1", 0.1)})
    assert ev.lr_probe_verdict("higher", 0.9, 1.0, 0.1).label == "lr x10"
    assert ev.lr_probe_verdict("lower", 0.9, 1.0, 0.1).label == "lr x0.1"
    assert ev.probed("higher") and ev.probed("lower")
    # the other side's probes never answer: a better run at 3x says nothing about 0.1x
    only_higher = Evidence(lr_probes={3.0: outcome("lr x3", 0.1)})
    assert only_higher.lr_probe_verdict("lower", 0.9, 1.0, 0.1) is None
    only_lower = Evidence(lr_probes={0.3: outcome("lr x0.3", 0.1)})
    assert only_lower.lr_probe_verdict("higher", 0.9, 1.0, 0.1) is None
    assert Evidence(lr_probes={1.0: outcome("lr x1", 0.1)}).lr_probe_verdict(
        "higher", 0.9, 1.0, 0.1) is None  # the run itself is neither side
    assert not Evidence(lr_probes={3.0: outcome("lr x3", 0.6)}).probed("lower")
    assert Evidence().lr_probe_verdict("higher", 0.9, 1.0, 0.1) is None
    assert not Evidence().probed("higher")


def test_lr_probe_verdict_ignores_diverged_probes():
    ev = Evidence(lr_probes={3.0: outcome("lr x3", 0.1, diverged=True)})
    assert ev.lr_probe_verdict("higher", 0.9, 1.0, 0.1) is None
    # a broken run is beaten by any probe that finished
    ok = Evidence(lr_probes={0.1: outcome("lr x0.1", 5.0)})
    assert ok.lr_probe_verdict("lower", math.nan, 1.0, 0.1).label == "lr x0.1"


def test_lr_probe_verdict_margin_is_a_share_of_the_runs_own_fall():
    # a converged run fell 0.6: a probe must be 0.06 lower
    ev = Evidence(lr_probes={3.0: outcome("lr x3", 0.35)})
    assert ev.lr_probe_verdict("higher", 0.4, 1.0, 0.1) is None
    ev = Evidence(lr_probes={3.0: outcome("lr x3", 0.33)})
    assert ev.lr_probe_verdict("higher", 0.4, 1.0, 0.1) is not None
    # a slow run fell 0.01: the floor of 1% of the scale applies, not 0.001
    ev = Evidence(lr_probes={3.0: outcome("lr x3", 0.985)})
    assert ev.lr_probe_verdict("higher", 0.99, 1.0, 0.1) is None
    ev = Evidence(lr_probes={3.0: outcome("lr x3", 0.975)})
    assert ev.lr_probe_verdict("higher", 0.99, 1.0, 0.1) is not None


def test_evidence_to_dict_is_json_ready():
    ev = Evidence(reference=outcome("reference", 0.5), reference_representable=True,
                  reference_kind="linear model", capacity=outcome("bigger", 0.4),
                  lr_probes={10.0: outcome("lr x10", 0.3), 3.0: outcome("lr x3", 0.2)},
                  degenerate_start=[], degenerate_end=[], dead_units={})
    d = ev.to_dict()
    json.dumps(d)
    assert list(d["lr_probes"]) == ["3.0", "10.0"]  # sorted by scale
    assert d["reference"]["label"] == "reference" and d["capacity"]["train_loss_end"] == 0.4
    assert Evidence().to_dict()["reference"] is None
