"""``unstuck lr-find``: prints suggestions, writes the figure atomically, refuses overwrites."""

from __future__ import annotations

from pathlib import Path

import pytest

from unstuck import cli

pytest.importorskip("sklearn")


def test_help_names_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["lr-find", "--help"]) == 0
    out = capsys.readouterr().out
    for option in ("--optimizer", "--start-lr", "--end-lr", "--steps", "--seed", "-o", "--force"):
        assert option in out
    assert cli.main(["--help"]) == 0
    assert "lr-find" in capsys.readouterr().out


def test_writes_png_prints_suggestions_and_refuses_to_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("matplotlib")
    output = tmp_path / "curve.png"
    argv = ["lr-find", "--steps", "40", "--start-lr", "1e-5", "--end-lr", "10", "-o", str(output)]
    assert cli.main(argv) == 0
    captured = capsys.readouterr()
    assert output.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert "suggested lr (steepest descent)" in captured.out
    assert "suggested lr (valley)" in captured.out
    assert "step 40/40" in captured.err or "diverged" in captured.out
    assert [p.name for p in tmp_path.iterdir()] == ["curve.png"]  # no temporary left

    before = output.read_bytes()
    assert cli.main(argv) == 2
    assert "exists" in capsys.readouterr().err
    assert output.read_bytes() == before
    assert cli.main([*argv, "--force", "--optimizer", "SGD", "--quiet", "--steps", "10"]) == 0
    captured = capsys.readouterr()
    assert captured.err.strip() == f"wrote {output}"
    assert "SGD on digits-mlp" in captured.out


def test_same_seed_same_output(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["lr-find", "--steps", "20", "--optimizer", "ranger", "-q", "--seed", "3"]
    assert cli.main(argv) == 0
    first = capsys.readouterr().out
    assert cli.main(argv) == 0
    assert capsys.readouterr().out == first


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["lr-find", "--optimizer", "nosuch"], "adam"),
        (["lr-find", "--start-lr", "1", "--end-lr", "0.1"], "--end-lr"),
        (["lr-find", "--steps", "1"], "--steps"),
        (["lr-find", "--steps", "0"], "--steps"),
        (["lr-find", "--start-lr", "-1"], "--start-lr"),
        (["lr-find", "-o", "curve.txt"], ".png"),
    ],
)
def test_usage_errors_exit_two(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(argv) == 2
    assert message in capsys.readouterr().err
