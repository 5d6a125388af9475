"""Structure rules (structure_rules): symmetric and dead units, saddle points, local minima."""

from __future__ import annotations

import math

from unstuck.doctor import structure_rules as U
from unstuck.doctor import thresholds as T


def decay(start: float, end: float, n: int = 40) -> list[float]:
    """A loss falling fast from ``start`` and flattening at ``end``."""
    return [end + (start - end) * math.exp(-i / 4) for i in range(n)]


def tensor(name: str, kind: str = "zero") -> dict:
    return {"name": name, "kind": kind, "shape": (4, 3), "units": 4, "constant": True}


# ----------------------------------------------------------------------------- symmetric init
def test_symmetric_init_fires_on_tensors_degenerate_at_start_and_end():
    start = [tensor("0.weight"), tensor("2.weight", "identical_units")]
    v = U.symmetric_init(start, [tensor("0.weight"), tensor("2.weight", "identical_units")])
    assert v.code == "symmetric_init" and v.confidence == T.HIGH
    assert [t["name"] for t in v.evidence["tensors"]] == ["0.weight", "2.weight"]
    assert v.evidence["kinds"] == ["identical_units", "zero"]
    assert "exactly 0" in v.message
    only_rows = U.symmetric_init([tensor("0.weight", "identical_units")],
                                 [tensor("0.weight", "identical_units")])
    assert "exactly 0" not in only_rows.message


def test_symmetric_init_not_when_training_broke_the_symmetry():
    # a zero last layer that moved (behind random layers): common and harmless
    assert U.symmetric_init([tensor("2.weight")], []) is None
    # only the tensors degenerate at both ends are reported
    v = U.symmetric_init([tensor("0.weight"), tensor("2.weight")], [tensor("0.weight")])
    assert [t["name"] for t in v.evidence["tensors"]] == ["0.weight"]
    # degenerate at the end only (collapsed during training) is not a symmetric start
    assert U.symmetric_init([], [tensor("0.weight")]) is None
    assert U.symmetric_init(None, [tensor("0.weight")]) is None
    assert U.symmetric_init([tensor("0.weight")], None) is None  # the end was not checked


# ----------------------------------------------------------------------------- dead units
def dead(share: float, units: int = 20) -> dict:
    return {"0.relu": {"units": units, "dead": round(share * units), "share": share}}


def test_dead_units_alone_at_dead_share_alone():
    v = U.dead_units(dead(0.95))
    assert v.code == "dead_units" and v.confidence == T.HIGH
    assert v.evidence["worst_module"] == "0.relu"
    assert U.dead_units(dead(T.DEAD_SHARE_ALONE)) is not None
    assert U.dead_units(dead(0.85)) is None
    assert U.dead_units(dead(0.6)) is None  # many dead units, but nothing says they matter


def test_dead_units_above_dead_share_only_when_capacity_helps():
    v = U.dead_units(dead(0.6), capacity_helps=True)
    assert v.confidence == T.MEDIUM and "bigger model does better" in v.message
    assert U.dead_units(dead(T.DEAD_SHARE), capacity_helps=True) is not None
    assert U.dead_units(dead(0.45), capacity_helps=True) is None
    sure = U.dead_units(dead(0.95), capacity_helps=True)
    assert sure.confidence == T.HIGH and "bigger model" not in sure.message


def test_dead_units_above_dead_share_when_dead_from_the_start():
    dead = {"0.relu": {"units": 10, "dead": 6, "share": 0.6}}
    assert U.dead_units(dead) is None
    start = {"0.relu": {"units": 10, "dead": 6, "share": 0.6}}
    v = U.dead_units(dead, dead_start=start)
    assert v.code == "dead_units" and v.evidence["share_at_start"] == 0.6
    few = {"0.relu": {"units": 10, "dead": 4, "share": 0.4}}  # below DEAD_SHARE at the start
    assert U.dead_units(dead, dead_start=few) is None
    other = {"1.relu": {"units": 10, "dead": 10, "share": 1.0}}  # another module
    assert U.dead_units(dead, dead_start=other) is None


def test_dead_units_reads_the_worst_module_and_skips_empty_ones():
    layers = {"a": {"units": 10, "dead": 1, "share": 0.1},
              "b": {"units": 10, "dead": 10, "share": 1.0},
              "c": {"units": 0, "dead": 0, "share": 1.0}}
    v = U.dead_units(layers)
    assert v.evidence["worst_module"] == "b" and "c" not in v.evidence["per_module"]
    assert U.dead_units({"c": {"units": 0, "dead": 0, "share": 1.0}}) is None
    assert U.dead_units({}) is None
    assert U.dead_units(None) is None


# ----------------------------------------------------------------------------- critical points
SADDLE = {"verdict": "saddle point", "grad_norm": 0.0, "lambda_min": -1.0, "lambda_max": 1.0,
          "escape_loss_change": -0.01, "eps": 0.01}
MINIMUM = {"verdict": "local minimum", "grad_norm": 1e-6, "lambda_min": 0.1, "lambda_max": 2.0}


def test_saddle_point_confidence_follows_the_escape_step():
    assert U.saddle_point(SADDLE).confidence == T.HIGH
    assert U.saddle_point({**SADDLE, "escape_loss_change": None}).confidence == T.MEDIUM
    assert U.saddle_point({**SADDLE, "escape_loss_change": 0.01}).confidence == T.MEDIUM
    assert U.saddle_point({**SADDLE, "verdict": "local maximum"}) is not None
    assert U.saddle_point({"verdict": "local minimum"}) is None
    assert U.saddle_point({"verdict": "not a critical point"}) is None
    assert U.saddle_point(None) is None


def test_local_minimum_needs_a_better_reference():
    train = decay(1.0, 0.5)
    v = U.local_minimum(MINIMUM, train, 1.0, decay(1.0, 0.01))
    assert v.code == "local_minimum" and v.confidence == T.HIGH
    assert U.local_minimum(MINIMUM, train, 1.0, None) is None  # no better reference: model bias
    assert U.local_minimum(MINIMUM, train, 1.0, decay(1.0, 0.48)) is None  # not by the margins
    assert U.local_minimum(SADDLE, train, 1.0, decay(1.0, 0.01)) is None
    assert U.local_minimum(None, train, 1.0, decay(1.0, 0.01)) is None
