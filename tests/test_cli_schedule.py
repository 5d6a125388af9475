"""``unstuck schedule``: CSV values, the PNG it writes, overwrite refusal, bad text, help."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from unstuck import cli
from unstuck.schedules import SCHEDULES, parse

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TEXTS = ("warmup(cosine(100), 10)", "step_decay(30, gamma=0.5)")
BASE = 0.1
STEPS = 120  # past the end of cosine(100): its last value is held


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    status = cli.main(argv)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_csv_values_are_base_times_schedule(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(
        ["schedule", *TEXTS, "--steps", str(STEPS), "--lr", str(BASE), "--csv"], capsys
    )
    assert status == 0, err
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0] == ["step", *TEXTS]  # the labels hold commas: quoted, read back whole
    assert len(rows) == 1 + STEPS
    schedules = [parse(text) for text in TEXTS]
    for step, row in enumerate(rows[1:]):
        assert int(row[0]) == step
        for schedule, value in zip(schedules, row[1:]):
            assert float(value) == BASE * schedule(step)
    assert float(rows[1][1]) == 0.0  # linear warm-up from 0
    assert float(rows[11][1]) == pytest.approx(BASE)  # its peak at the end of warm-up
    assert float(rows[61][2]) == pytest.approx(BASE * 0.25)  # step 60: two halvings


def test_summary_without_output_or_csv(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(["schedule", TEXTS[0], "--steps", "100", "--lr", "1e-3"], capsys)
    assert status == 0
    assert TEXTS[0] in out
    assert "max: 0.001 at step 10" in out
    assert "final (step 99)" in out


def test_output_writes_a_png_and_refuses_to_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "schedules.png"
    argv = ["schedule", *TEXTS, "--steps", "50", "--lr", "1e-3", "--log", "-o", str(path)]
    status, out, err = run(argv, capsys)
    assert status == 0, err
    assert out == ""  # -o alone prints no table
    first = path.read_bytes()
    assert first.startswith(PNG_SIGNATURE) and len(first) > 1000
    assert [p.name for p in tmp_path.iterdir()] == ["schedules.png"]  # no temporary left
    plain = tmp_path / "plain"
    plain.touch()
    assert path.stat().st_mode == plain.stat().st_mode  # not mkstemp's private 0o600
    plain.unlink()

    path.write_bytes(b"keep me")
    status, _, err = run(argv, capsys)
    assert status == 2
    assert "exists" in err and "--force" in err
    assert path.read_bytes() == b"keep me"

    status, _, err = run([*argv, "--force"], capsys)
    assert status == 0, err
    assert path.read_bytes().startswith(PNG_SIGNATURE)
    assert [p.name for p in tmp_path.iterdir()] == ["schedules.png"]


def test_output_and_csv_together(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "lr.png"
    status, out, _ = run(
        ["schedule", "cosine(10)", "--steps", "10", "-o", str(path), "--csv"], capsys
    )
    assert status == 0
    assert path.read_bytes().startswith(PNG_SIGNATURE)
    assert out.splitlines()[0] == "step,cosine(10)"
    assert len(out.splitlines()) == 11


@pytest.mark.parametrize(
    ("argv_tail", "message"),
    [
        (["-o", "{tmp}/no/such/dir/x.png"], "does not exist"),
        (["-o", "{tmp}/x.jpg2"], ".png"),
        (["-o", "{tmp}"], "directory"),
    ],
)
def test_bad_output_paths_exit_two(
    argv_tail: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["schedule", "cosine(10)", "--steps", "10"]
    argv += [arg.format(tmp=tmp_path) for arg in argv_tail]
    status, _, err = run(argv, capsys)
    assert status == 2
    assert message in err


@pytest.mark.parametrize(
    ("text", "caret_under"),
    [
        ("cosin(100)", "cosin"),  # unknown name
        ("cosine(100", "("),  # unbalanced
        ("step_decay(100, gamma=0)", "0"),  # a bad value
    ],
)
def test_bad_text_exits_two_with_a_caret(
    text: str, caret_under: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = run(["schedule", "cosine(10)", text, "--steps", "10", "--csv"], capsys)
    assert status == 2
    assert out == ""  # nothing is printed for the good schedule either
    lines = err.splitlines()
    text_line = next(i for i, line in enumerate(lines) if line.strip() == text)
    caret = lines[text_line + 1]
    assert "^" in caret
    column = caret.index("^")
    assert lines[text_line][column:].startswith(caret_under)


@pytest.mark.parametrize(
    "argv",
    [
        ["schedule", "cosine(10)"],  # --steps is required
        ["schedule", "cosine(10)", "--steps", "0"],
        ["schedule", "cosine(10)", "--steps", "10", "--lr", "-1"],
        ["schedule", "--steps", "10"],  # no TEXT
    ],
)
def test_usage_errors_exit_two(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(argv) == 2
    assert "error" in capsys.readouterr().err


def test_help_explains_the_text_form_and_lists_every_schedule(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status, out, _ = run(["schedule", "--help"], capsys)
    assert status == 0
    assert "text form" in out
    assert "warmup(cosine(10000), 500)" in out
    for name in SCHEDULES:
        assert f"\n  {name}(" in out
    assert "cosine(total, final=0.0)" in out


def test_top_level_help_lists_schedule(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(["--help"], capsys)
    assert status == 0
    assert "schedule" in out and "demo" in out
