"""``unstuck compare``: help, task list, a tiny comparison end to end, resume, usage errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from unstuck import cli
from unstuck.cli import compare as compare_command

pytest.importorskip("sklearn")

TINY = ["compare", "--task", "deep-linear", "--optimizers", "sgd, adam", "--seeds", "0",
        "--epochs", "1", "--jobs", "1"]


def test_help_names_every_option_and_shows_examples(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["compare", "--help"]) == 0
    out = capsys.readouterr().out
    for option in ("--task", "--optimizers", "--schedule", "--seeds", "--epochs", "--tune-lr",
                   "--out", "--jobs", "--force", "--quiet", "--list-tasks", "--target-loss"):
        assert option in out
    assert "Examples:" in out and "{warmup}" in out and "RESUMES" in out
    assert cli.main(["--help"]) == 0
    assert "compare" in capsys.readouterr().out


def test_defaults_are_the_promised_ones() -> None:
    args = cli.build_parser().parse_args(["compare"])
    assert (args.task, args.seeds, args.out, args.tune_lr) == (
        "digits-mlp", [0, 1, 2], "unstuck-compare", False)
    assert 1 <= args.jobs <= 4
    assert args.optimizers is None and args.schedule is None  # the library's defaults
    from unstuck.lab.compare import DEFAULT_OPTIMIZERS, DEFAULT_SCHEDULE
    from unstuck.lab.optimizer_specs import parse_optimizers

    assert [s.label for s in parse_optimizers(DEFAULT_OPTIMIZERS)] == [
        "sgd", "momentum", "adagrad", "rmsprop", "adam", "adamw", "radam", "ranger", "lars",
        "rangerlars"]
    assert DEFAULT_SCHEDULE == "warmup(cosine({decay}), {warmup})"
    assert compare_command._default_jobs() == args.jobs


def test_list_tasks(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["compare", "--list-tasks"]) == 0
    out = capsys.readouterr().out
    for name in ("digits-mlp", "digits-cnn", "deep-linear"):
        assert f"{name}:" in out
    assert "epochs, batch" in out


def test_tiny_comparison_end_to_end_then_resume(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report"
    assert cli.main([*TINY, "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "optimizer" in captured.out and "sgd" in captured.out and "adam" in captured.out
    assert f"Report: {out / 'report.html'}" in captured.out
    assert "compare [" in captured.err  # the progress bar
    for name in ("results.json", "report.md", "report.html", "curves.png", "lr_curves.png"):
        assert (out / name).is_file()

    assert cli.main([*TINY, "--out", str(out)]) == 0  # resumes: nothing trained again
    captured = capsys.readouterr()
    assert "2 finished run(s) read back" in captured.err
    assert "read back" in captured.err

    assert cli.main([*TINY, "--out", str(out), "--epochs", "2", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "different comparison" in err and "--force" in err
    assert cli.main([*TINY, "--out", str(out), "--seeds", "1", "--quiet", "--force"]) == 0
    captured = capsys.readouterr()
    assert captured.err == "" and "Report:" in captured.out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--seeds", "a,b"], "--seeds"),
        (["--seeds", "0,0"], "repeat"),
        (["--epochs", "0"], "--epochs"),
        (["--jobs", "0"], "--jobs"),
        (["--optimizers", "sgd, nope"], "unknown optimizer 'nope'"),
        (["--optimizers", "sgd(lr=-1)"], "lr"),
        (["--schedule", "cosine("], "--schedule"),
        (["--schedule", "cosine({total})"], "placeholders"),
        (["--task", "nope"], "--task: unknown 'nope'"),
    ],
)
def test_bad_arguments_are_usage_errors(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main([*TINY, "--out", str(tmp_path / "x"), *argv]) == 2
    err = capsys.readouterr().err
    assert "usage: unstuck compare" in err and message in err
    assert not (tmp_path / "x" / "results.json").exists()
