"""README code blocks run as written: each listed section's blocks, in order, in a fresh folder.

Python blocks run with this interpreter, shell blocks with this environment's ``bin`` first on
``PATH`` (so ``python`` and ``unstuck`` are the installed ones), as a reader would paste them.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
SECTIONS = {
    "## Optimizers": [],
    "## The doctor where you train": ["doctor.html", "doctor_losses.html", "runs/demo"],
}
"""Sections whose every block is checked here, and the files their blocks write."""

BLOCK = re.compile(r"^```(python|bash)\n(.*?)^```", re.S | re.M)


def blocks(heading: str) -> list[tuple[str, str]]:
    """The (language, code) blocks of the README section under ``heading``."""
    text = README.read_text()
    start = text.index(heading + "\n")
    end = text.find("\n## ", start + len(heading))
    return BLOCK.findall(text[start : end if end >= 0 else len(text)])


@pytest.mark.parametrize("heading", SECTIONS)
def test_readme_section_runs_as_written(heading: str, tmp_path: Path) -> None:
    found = blocks(heading)
    assert found, f"no code block under {heading!r}"
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               MPLBACKEND="Agg", PYTHONWARNINGS="ignore")
    for language, code in found:
        command = ([sys.executable, "-c", code] if language == "python"
                   else ["bash", "-e", "-c", code])
        done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, f"{language} block failed:\n{code}\n{done.stderr[-3000:]}"
    for name in SECTIONS[heading]:
        assert (tmp_path / name).exists(), name
