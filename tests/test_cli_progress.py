"""unstuck.cli.progress: the progress bar of long commands."""

from __future__ import annotations

import io

import pytest

from unstuck.cli.progress import ProgressBar


def test_non_terminal_prints_the_first_unit_and_one_line_per_tenth():
    stream = io.StringIO()
    with ProgressBar(total=20, label="runs", stream=stream) as bar:
        for _ in range(20):
            bar.advance(note="x")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 11  # the first unit, then 10%, 20%, ..., 100%
    assert lines[0].startswith("runs [") and " 1/20 " in lines[0]
    assert lines[-1].startswith("runs [########################] 20/20 100%")
    assert "\r" not in stream.getvalue()


def test_disabled_bar_prints_nothing():
    stream = io.StringIO()
    bar = ProgressBar(total=3, stream=stream, enabled=False)
    bar.advance(3)
    bar.close()
    assert stream.getvalue() == ""
    assert bar.done == 3


def test_line_shows_time_left_midway():
    bar = ProgressBar(total=4, stream=io.StringIO(), width=4)
    bar.advance(2)
    assert bar.line().startswith("[##..] 2/4  50%")
    assert "left" in bar.line()


def test_total_must_be_positive():
    with pytest.raises(ValueError, match="total must be >= 1, got 0"):
        ProgressBar(total=0)
