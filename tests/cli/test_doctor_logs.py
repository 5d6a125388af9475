"""``unstuck doctor PATH``: a log file diagnosed from the shell (keys printed, verdicts, the HTML
report), the default report name, format and key options, refusals and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from unstuck import cli

OVERFIT = "\n".join([
    "epoch,train_loss,val_loss,acc",
    *(f"{e},{t},{v},0.5" for e, (t, v) in enumerate(zip(
        [2.3, 0.9, 0.3, 0.08, 0.02, 0.01], [2.3, 1.0, 0.7, 0.9, 1.2, 1.5]))),
]) + "\n"


@pytest.fixture
def losses(tmp_path: Path) -> Path:
    path = tmp_path / "logs" / "losses.csv"
    path.parent.mkdir()
    path.write_text(OVERFIT)
    return path


def test_help_names_path_options_and_examples(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["doctor", "--help"]) == 0
    out = capsys.readouterr().out
    for text in ("PATH", "--format", "--train-key", "--val-key", "--test-key", "tensorboard",
                 "trainer_state.json", "metrics.csv", "unstuck doctor lightning_logs/version_0",
                 "current directory"):
        assert text in out


def test_path_prints_keys_and_verdicts_and_writes_the_report(
    losses: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "report.html"
    assert cli.main(["doctor", str(losses), "-o", str(out)]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines[0] == f"read {losses} as csv"
    assert "training loss:   column 'train_loss' (6 values, steps 0-5; guessed)" in captured.out
    assert "validation loss: column 'val_loss' (6 values" in captured.out
    assert "name one with --test-key" in captured.out
    assert f"unstuck doctor: {losses}" in lines
    assert "1. [overfitting]" in captured.out
    assert f"wrote {out}" in captured.err
    assert out.read_text().startswith("<!DOCTYPE html>") and "overfitting" in out.read_text()


def test_default_report_in_the_current_directory_and_refused_overwrite(
    losses: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pytest.importorskip("matplotlib")
    monkeypatch.chdir(tmp_path)
    argv = ["doctor", str(losses), "-q"]
    assert cli.main(argv) == 0
    report = tmp_path / "doctor_losses.html"
    assert report.is_file() and not (losses.parent / "doctor_losses.html").exists()
    assert capsys.readouterr().err == "wrote doctor_losses.html\n"
    before = report.read_bytes()
    assert cli.main(argv) == 2
    assert "exists" in capsys.readouterr().err and report.read_bytes() == before
    assert cli.main([*argv, "--force"]) == 0
    assert cli.main(["doctor", str(losses.parent), "-q"]) == 0  # a directory: its name
    assert (tmp_path / "doctor_logs.html").is_file()


def test_named_keys_and_forced_format(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("matplotlib")
    log = tmp_path / "run.txt"
    log.write_text("step,mse,holdout_mse\n" + "".join(  # levels off at half the first loss
        f"{s},{0.5 + 0.5 * 0.5**s},{0.55 + 0.5 * 0.5**s}\n" for s in range(20)))
    out = str(tmp_path / "r.html")
    argv = ["doctor", str(log), "-o", out, "--format", "csv", "--train-key", "mse",
            "--val-key", "holdout_mse"]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "column 'mse' (20 values, steps 0-19; named)" in printed
    assert "column 'holdout_mse' (20 values, steps 0-19; named)" in printed
    assert "1. [model_bias]" in printed  # stuck at half the loss scale (the first loss)
    # a loss scale 100 times the first loss: the same end is small
    assert cli.main([*argv, "--force", "--baseline", "100"]) == 0
    assert "1. [healthy]" in capsys.readouterr().out


def test_monitor_jsonl_runs_the_step_rules(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("matplotlib")
    torch = pytest.importorskip("torch")
    from unstuck.diagnose import Monitor

    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    x = torch.randn(16, 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with Monitor(model, optimizer) as monitor:
        for _ in range(12):
            optimizer.zero_grad()
            loss = torch.nn.functional.mse_loss(model(x), x.sum(1, keepdim=True))
            loss.backward()
            monitor.observe(loss)
            optimizer.step()
        monitor.to_jsonl(tmp_path / "run.jsonl")
    assert cli.main(["doctor", str(tmp_path / "run.jsonl"), "-o", str(tmp_path / "r.html"),
                     "-q"]) == 0
    printed = capsys.readouterr().out
    assert "Monitor records: 12 (the step rules run)" in printed
    assert "no Monitor history" not in printed
    argv = ["doctor", str(tmp_path / "run.jsonl"), "-o", str(tmp_path / "r.html"), "--force",
            "--optimizer-family", "adam"]
    assert cli.main(argv) == 0
    capsys.readouterr()
    assert cli.main([*argv[:-1], "lion"]) == 2
    assert "invalid choice: 'lion'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("content", "extra", "message"),
    [
        (None, [], "missing.csv: no such file or directory"),
        ("epoch,step,acc\n0,0,0.5\n", [],
         "no column looks like a training loss (columns: epoch, step, acc)"),
        ("step,loss\n0,1.0\n", ["--train-key", "nosuch"], "no column 'nosuch' (columns: step, "),
        ("step,loss\n0,1.0\n1,oops\n", [], "line 3: 'oops' is not a number"),
        ('{"log_history": [', ["--format", "huggingface"], "not valid JSON"),
    ],
)
def test_a_bad_log_is_one_line_on_stderr(
    tmp_path: Path, content: str | None, extra: list[str], message: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "missing.csv"
    if content is not None:
        path.write_text(content)
    out = tmp_path / "r.html"
    assert cli.main(["doctor", str(path), "-o", str(out), *extra]) == 1
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err
    assert captured.err.startswith(f"unstuck doctor: {path}: ") and message in captured.err
    assert captured.out == "" and not out.exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["doctor", "x.csv", "--scenario", "saddle_point"], "not allowed with argument"),
        (["doctor", "x.csv", "--list"], "not allowed with argument"),
        (["doctor", "--train-key", "loss"], "--train-key needs a PATH"),
        (["doctor", "--format", "csv", "--list"], "--format needs a PATH"),
        (["doctor", "--baseline", "2", "--scenario", "saddle_point"], "--baseline needs a PATH"),
        (["doctor", "x.csv", "--baseline", "0"], "must be a finite number > 0"),
        (["doctor", "x.csv", "--try-fixes"], "--try-fixes needs --scenario"),
        (["doctor", "x.csv", "--format", "xml"], "invalid choice: 'xml'"),
        (["doctor"], "pass a PATH"),
    ],
)
def test_usage_errors(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(argv) == 2
    assert message in capsys.readouterr().err


def test_output_checked_before_reading(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "trainer_state.json"
    state.write_text(json.dumps({"log_history": [{"loss": 1.0, "step": 1}]}))
    assert cli.main(["doctor", str(state), "-o", str(tmp_path / "no" / "r.html")]) == 2
    assert "does not exist" in capsys.readouterr().err
