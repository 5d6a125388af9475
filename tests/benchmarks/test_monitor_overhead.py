"""Smoke test of ``benchmarks/monitor_overhead.py``: a tiny run prints its table."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import monitor_overhead  # noqa: E402


def test_tiny_run_prints_the_table(capsys):
    rows = monitor_overhead.main(
        ["-q", "--models", "mlp", "--repeats", "1", "--mlp-block", "16", "--quick"]
    )
    out = capsys.readouterr().out
    assert [r["every"] for r in rows] == [1, 10]
    assert all(r["model"] == "mlp" and r["without"] > 0 and r["with"] > 0 for r in rows)
    assert "overhead" in out and "in observe" in out and out.count("mlp ") == 2


def test_language_model_shapes():
    model = monitor_overhead.LanguageModel(vocab=30, d_model=16, heads=2, layers=2, seq=8)
    logits = model(torch.zeros(3, 8, dtype=torch.long))
    assert logits.shape == (3, 8, 30)
    work = monitor_overhead.transformer_workload(10, vocab=30, seq=8, batch=2)
    x, y = work.batches[0]
    assert x.shape == y.shape == (2, 8)
