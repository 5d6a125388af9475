"""The report: escapes names from the user's model, is self-contained, never clobbers a file."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from unstuck.doctor import diagnose, examine

pytest.importorskip("matplotlib")

EVIL = '<script>alert("x")</script>'


class Evil(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.register_parameter(EVIL, nn.Parameter(torch.zeros(3, 1)))

    def forward(self, x):
        return x @ getattr(self, EVIL)


def test_html_escapes_parameter_names_and_is_self_contained(tmp_path: Path):
    x = torch.randn(64, 3, generator=torch.Generator().manual_seed(0))
    y = x @ torch.tensor([[1.0], [2.0], [3.0]])
    d = examine(Evil(), nn.functional.mse_loss, (x, y), steps=30, reference=None,
                probe_hessian=False, title=f"run {EVIL}")
    nan = diagnose([1.0, float("nan")], monitor=None)
    nan.verdicts[0].evidence["first_nonfinite_grad_params"] = [EVIL]
    for diagnosis in (d, nan):
        html = diagnosis.to_html()
        assert "<script>" not in html
        assert "&lt;script&gt;" in html
        assert "http://" not in html and "https://" not in html and "src=\"data:image/png" in html
    path = d.save_html(tmp_path / "report.html")
    text = path.read_text()
    assert text.startswith("<!DOCTYPE html>") and text.index("Figures") > text.index("Fixes")
    assert "<script>" not in d.to_markdown() or EVIL in d.to_markdown()  # markdown is plain text


def test_save_html_refuses_to_overwrite(tmp_path: Path):
    d = diagnose([1.0, 0.5, 0.3, 0.2], val_loss=[0.25])
    path = tmp_path / "r.html"
    path.write_text("mine")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        d.save_html(path)
    assert path.read_text() == "mine"
    d.save_html(path, overwrite=True)
    assert path.read_text().startswith("<!DOCTYPE html>")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.html"]  # no temporary left


def test_to_dict_and_markdown_carry_evidence():
    d = diagnose([2.3, 0.9, 0.3, 0.08, 0.02, 0.01], val_loss=[0.7, 0.9, 1.5])
    data = d.to_dict()
    assert data["codes"] == ["overfitting"]
    assert data["verdicts"][0]["evidence"]["val_loss_end"] == 1.5
    md = d.to_markdown()
    assert "## 1. Overfitting" in md and "| val_loss_end | 1.5 |" in md and "- Early stopping" in md
