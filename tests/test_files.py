"""unstuck.files: atomic writes that never clobber a file silently."""

from __future__ import annotations

import os

import pytest

from unstuck.files import figure_format, write_atomically, write_bytes, write_text


def test_write_text_creates_the_file(tmp_path):
    path = tmp_path / "a.txt"
    write_text(path, "héllo\n")
    assert path.read_text(encoding="utf-8") == "héllo\n"


def test_existing_file_is_kept_unless_overwrite(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("mine")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_text(path, "theirs")
    assert path.read_text() == "mine"
    write_text(path, "theirs", overwrite=True)
    assert path.read_text() == "theirs"


def test_failure_leaves_no_partial_file_and_no_temporary(tmp_path):
    path = tmp_path / "a.bin"
    path.write_bytes(b"old")

    def fail(stream):
        stream.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_atomically(path, fail, overwrite=True)
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["a.bin"]


def test_directory_and_missing_directory_are_clear_errors(tmp_path):
    with pytest.raises(IsADirectoryError):
        write_bytes(tmp_path, b"x")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        write_bytes(tmp_path / "no" / "a.bin", b"x")


def test_figure_format_from_suffix():
    assert figure_format("a.PNG") == "png"
    assert figure_format("a.svg") == "svg"
    assert figure_format("a") == "png"
