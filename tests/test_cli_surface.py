"""``unstuck surface``: the table, the PNG and GIF it writes, overwrite refusal, bad input, help,
and the figure functions behind it."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from unstuck import cli
from unstuck.lab.optimizer_specs import parse_optimizers
from unstuck.lab.surfaces import SURFACES
from unstuck.lab.trajectories import LR_GRID, run_trajectory

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
FAST = ["surface", "--steps", "20", "--quiet"]


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    status = cli.main(argv)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_table_without_output(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(FAST, capsys)
    assert status == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("valley: f(x, y) = (x^2 + 100 y^2) / 20")
    assert lines[1].split() == ["optimizer", "lr", "final", "loss", "grad", "norm", "to",
                                "minimum", "steps", "status"]
    assert [line.split()[0] for line in lines[2:]] == [
        "sgd", "momentum", "adagrad", "rmsprop", "adam"]
    assert all(line.split()[-1] == "finished" for line in lines[2:])


def test_png_and_gif_are_written_and_not_overwritten_without_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    png, gif = tmp_path / "out.png", tmp_path / "out.gif"
    argv = [*FAST, "--optimizers", "sgd(lr=0.01), adam", "-o", str(png), "--gif", str(gif),
            "--frames", "3"]
    status, _, err = run(argv, capsys)
    assert status == 0, err
    assert png.read_bytes().startswith(PNG_SIGNATURE) and png.stat().st_size > 20_000
    assert gif.read_bytes()[:6] in (b"GIF87a", b"GIF89a") and gif.stat().st_size > 5_000
    assert f"wrote {png}" in err and f"wrote {gif}" in err
    for path in (png, gif):
        before = path.read_bytes()
        status, _, err = run([*FAST, "-o" if path == png else "--gif", str(path)], capsys)
        assert status == 2 and "--force" in err and path.read_bytes() == before
    status, _, err = run([*FAST, "-o", str(png), "--force"], capsys)
    assert status == 0, err and png.read_bytes().startswith(PNG_SIGNATURE)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.gif", "out.png"]  # no temp files


def test_help_lists_examples(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(["surface", "--help"], capsys)
    assert status == 0
    for word in ("--optimizers", "--tune", "--gif", "--noise", "adagrad_rms", "torch.NAME",
                 "module:function", "unstuck surface --surface saddle"):
        assert word in out


def test_list(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(["surface", "--list"], capsys)
    assert status == 0
    for name in (*SURFACES, "rangerlars", "torch.lbfgs"):
        assert name in out


def test_tune_schedule_noise_start(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run([*FAST, "--surface", "saddle", "--optimizers", "sgd", "--tune",
                            "--schedule", "cosine(20)", "--noise", "0.1", "--start", "1,0"],
                           capsys)
    assert status == 0, err
    assert "start (1.0, 0.0)" in out and float(out.splitlines()[2].split()[1]) in LR_GRID


@pytest.mark.parametrize(("extra", "message"), [
    (["--optimizers", "sgd, adamm"], "did you mean 'adam'"),
    (["--surface", "valey"], "did you mean 'valley'"),
    (["--schedule", "cosin(10)"], "unknown schedule 'cosin'"),
    (["--start", "1"], "X,Y"),
    (["--noise", "-1"], ">= 0"),
    (["--gif", "out.png"], "must end in .gif"),
])
def test_bad_arguments_are_usage_errors(extra: list[str], message: str,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run([*FAST, *extra], capsys)
    assert status == 2 and message in err


def test_user_function(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                       capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "cli_bowls.py").write_text(textwrap.dedent("""
        def bowl(x, y):
            return x ** 2 + 4 * y ** 2
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        status, out, err = run([*FAST, "--surface", "cli_bowls:bowl", "--box=-3,3,-3,3",
                                "--optimizers", "adam(lr=0.1)"], capsys)
    finally:
        sys.modules.pop("cli_bowls", None)
    assert status == 0, err
    assert out.startswith("cli_bowls:bowl: f(x, y) = bowl(x, y); start (-2.25, 2.25)")


@pytest.mark.parametrize("name", ["valley", "saddle"])
def test_surface_figure_has_paths_and_log_panels(name: str) -> None:
    from unstuck.plots import surface_figure

    surface = SURFACES[name]
    trajectories = [run_trajectory(surface, spec, steps=40)
                    for spec in parse_optimizers("sgd, momentum")]
    figure = surface_figure(surface, trajectories)
    contour, loss, norm = figure.axes[:3]
    labels = [line.get_label() for line in contour.get_lines()]
    assert any(label.startswith("sgd") for label in labels) and "start" in labels
    assert ("minimum" in labels) == bool(surface.minima)
    assert loss.get_yscale() == ("log" if surface.bounded else "symlog")
    assert norm.get_yscale() == "log" and norm.get_xlabel() == "step"
    assert contour.get_xlabel() == "x" and contour.get_ylabel() == "y"
    assert name in figure.get_suptitle()
