"""Print the measured parity of every optimizer with its reference, as the tests check it.

Reference: torch.optim for SGD, Adagrad, RMSprop, Adam, AdamW, RAdam; the slow float64-style
references in tests/reference/ for Ranger, LARS, RangerLARS, Lookahead and Gradient
Centralization. 200 steps, scalar + vector + matrix + 4-D kernel, 4 random hyper-parameter sets
per optimizer (the same draws as the tests), both code paths.

Usage: .venv/bin/python benchmarks/parity.py
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

import torch

TESTS = Path(__file__).resolve().parent.parent / "tests"
sys.path[:0] = [str(TESTS), str(TESTS / "optim")]

import test_reference_parity as ref_parity  # noqa: E402
import test_torch_parity as torch_parity  # noqa: E402

from support import SHAPES, TOLERANCE  # noqa: E402


def main() -> None:
    rows = []
    for name in torch_parity.NAMES:
        for dtype in (torch.float64, torch.float32):
            for foreach in (True, False):
                rng = random.Random(f"{name}-{foreach}-{dtype}")
                worst = 0.0
                for trial in range(4):
                    hyper = torch_parity.draw_hyper_parameters(name, rng)
                    worst = max(worst, torch_parity.run_pair(
                        name, hyper, SHAPES, dtype, trial, foreach, trial == 3, 200
                    ))
                rows.append((name, f"torch.optim.{name}", dtype, foreach, worst))
    for name in ref_parity.NAMES:
        for dtype in (torch.float64, torch.float32):
            for foreach in (True, False):
                worst = max(
                    ref_parity.parity_difference(name, trial, dtype, foreach) for trial in range(4)
                )
                rows.append((name, "tests/reference", dtype, foreach, worst))
    print(f"| {'optimizer':28} | {'reference':22} | dtype   | path       | max rel. diff | limit |")
    print(f"|{'-' * 30}|{'-' * 24}|---------|------------|---------------|-------|")
    for name, reference, dtype, foreach, worst in rows:
        path = "foreach" if foreach else "per-tensor"
        print(f"| {name:28} | {reference:22} | {str(dtype)[6:]:7} | {path:10} | {worst:13.2e} "
              f"| {TOLERANCE[dtype]:.0e} |")


if __name__ == "__main__":
    main()
