"""``unstuck doctor``: --help, --list, one scenario with its report, refusals, usage errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from unstuck import cli
from unstuck.doctor.scenarios import SCENARIOS

pytest.importorskip("sklearn")


def test_help_and_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["doctor", "--help"]) == 0
    out = capsys.readouterr().out
    for option in ("--scenario", "--list", "--seed", "-o", "--force", "model bias", "examples"):
        assert option in out
    assert cli.main(["doctor", "--list"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in listed] == list(SCENARIOS)


def test_scenario_prints_verdicts_writes_report_and_refuses_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "saddle.html"
    argv = ["doctor", "--scenario", "saddle_point", "-o", str(out), "-q"]
    assert cli.main(argv) == 0
    captured = capsys.readouterr()
    assert "[saddle_point]" in captured.out and "escape" in captured.out.lower()
    assert out.read_text().startswith("<!DOCTYPE html>")
    before = out.read_bytes()
    assert cli.main(argv) == 2
    assert "exists" in capsys.readouterr().err
    assert out.read_bytes() == before
    assert cli.main([*argv, "--force"]) == 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["doctor"], "--scenario"),
        (["doctor", "--scenario", "nosuch"], "saddle_point"),
        (["doctor", "--scenario", "all", "-o", "/nonexistent/dir"], "directory"),
    ],
)
def test_usage_errors(argv, message, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(argv) == 2
    assert message in capsys.readouterr().err


def test_try_fixes_reports_each_fix_measured(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "large.html"
    argv = ["doctor", "--scenario", "lr_too_large", "--try-fixes", "-o", str(out), "-q"]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "[lr_too_large]" in printed and "tried lr x0.1: loss" in printed
    assert "Fixes tried" in out.read_text()
