"""The ``unstuck`` command line: help, version, exit codes, the demo subcommand."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import unstuck
from unstuck import cli
from unstuck.lab import demo

SRC = Path(__file__).resolve().parents[1] / "src"


def run_module(*args: str) -> subprocess.CompletedProcess[str]:
    """``python -m unstuck ARGS`` with this checkout's src/ first on the path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "unstuck", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_help_exits_zero_and_lists_demo(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: unstuck")
    assert "optimizers" in out
    assert "demo" in out


def test_version_prints_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"unstuck {unstuck.__version__}"


def test_demo_help_names_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["demo", "--help"]) == 0
    out = capsys.readouterr().out
    for option in ("--epochs", "--seed", "--optimizers", "--lr", "--batch-size", "--quiet"):
        assert option in out


def test_demo_epochs_default_matches_library() -> None:
    args = cli.build_parser().parse_args(["demo"])
    assert args.epochs == demo.DEFAULT_EPOCHS


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["no-such-command"],
        ["--no-such-option"],
        ["demo", "--epochs", "0"],
        ["demo", "--epochs", "two"],
        ["demo", "--lr", "-1"],
        ["demo", "--lr", "nan"],
        ["demo", "--optimizers", ","],
        ["demo", "--optimizers", "sgd,NoSuchOpt"],
    ],
)
def test_usage_errors_exit_two(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(argv) == 2
    assert "error" in capsys.readouterr().err


def test_unknown_optimizer_error_lists_choices(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["demo", "--optimizers", "NoSuchOpt"]) == 2
    err = capsys.readouterr().err
    assert "NoSuchOpt" in err
    assert "Ranger" in err


def test_demo_prints_table_of_chosen_optimizers(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["demo", "--epochs", "1", "--optimizers", "sgd,ADAM", "--seed", "3"]
    assert cli.main(argv) == 0
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    assert lines[0].split()[0] == "optimizer"
    assert [line.split()[0] for line in lines[1:]] == ["SGD", "Adam"]
    assert "SGD" in captured.err  # progress goes to stderr


def test_demo_quiet_prints_no_progress(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["demo", "-q", "--epochs", "1", "--optimizers", "LARS"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    assert "LARS" in captured.out


def test_python_dash_m_help() -> None:
    result = run_module("--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: unstuck")


def test_python_dash_m_version() -> None:
    result = run_module("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"unstuck {unstuck.__version__}"


def test_python_dash_m_usage_error_exits_two() -> None:
    result = run_module("no-such-command")
    assert result.returncode == 2
    assert "invalid choice" in result.stderr


def test_output_into_a_closed_pipe_ends_quietly():
    import subprocess
    import sys as _sys

    script = (  # a command whose output (4 MB) cannot fit in the pipe
        "import sys; import unstuck.cli.compare as c; from unstuck.cli import main; "
        "c._list_tasks = lambda: 'x' * 4_000_000; "
        "sys.exit(main(['compare', '--list-tasks']))"
    )
    proc = subprocess.Popen([_sys.executable, "-c", script], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.read(1)  # read a little, then hang up as `| head -c 1` does
    proc.stdout.close()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 141, err.decode()
    assert b"Traceback" not in err and b"BrokenPipe" not in err
