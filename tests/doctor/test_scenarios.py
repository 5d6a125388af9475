"""Every built-in scenario finds its verdict over 3 seeds; the healthy one raises no alarm."""

from __future__ import annotations

import pytest

pytest.importorskip("sklearn")

from unstuck.doctor import CODES  # noqa: E402
from unstuck.doctor.scenarios import SCENARIOS, run_scenario  # noqa: E402


def test_one_scenario_per_code():
    assert sorted(SCENARIOS) == sorted(CODES)
    assert all(s.expected in CODES and s.description for s in SCENARIOS.values())


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_scenario_finds_its_verdict(name: str, seed: int):
    scenario = SCENARIOS[name]
    diagnosis = run_scenario(name, seed)
    codes = diagnosis.codes
    if name == "healthy":
        assert codes == ["healthy"], diagnosis
        assert diagnosis.healthy
        return
    assert "healthy" not in codes
    if scenario.composite:
        assert scenario.expected in codes, diagnosis
    else:
        assert codes[0] == scenario.expected, diagnosis
    verdict = next(v for v in diagnosis.verdicts if v.code == scenario.expected)
    assert verdict.evidence and verdict.fixes and verdict.message


def test_unknown_scenario_is_named():
    with pytest.raises(ValueError, match="nosuch"):
        run_scenario("nosuch")
