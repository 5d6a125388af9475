"""Time one optimizer step: unstuck (its three paths) against torch.optim, on the same parameters.

A quick table for unstuck's three paths: the default (fused: torch's fused kernels, see
src/unstuck/optim/fused.py), the reference chain over buckets (``fused=False``, foreach) and per
tensor (``foreach=False``). benchmarks/step_speed.py is the full benchmark (bandwidth floors,
peer libraries, 2,000 small tensors). 40 float32 tensors, 16.5M parameters (GPT-2-like
768x768 and 3072x768 matrices plus vectors), one thread, median of 15 steps after 3 warm-up
steps. Timings vary from run to run on a shared machine: compare within one run.

Usage: .venv/bin/python benchmarks/step_time.py
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch

import unstuck

SHAPES = [(768, 768)] * 12 + [(768,)] * 24 + [(3072, 768)] * 4


def _unstuck(name: str, make: Callable[..., torch.optim.Optimizer]) -> list[
    tuple[str, str, Callable[..., torch.optim.Optimizer]]
]:
    return [
        (name, "unstuck fused (default)", make),
        (name, "unstuck foreach", lambda p: make(p, fused=False)),
        (name, "unstuck per-tensor", lambda p: make(p, foreach=False)),
    ]


CASES: list[tuple[str, str, Callable[..., torch.optim.Optimizer]]] = [
    ("SGD momentum", "torch fused", lambda p: torch.optim.SGD(p, lr=1e-3, momentum=0.9,
                                                               fused=True)),
    ("SGD momentum", "torch foreach", lambda p: torch.optim.SGD(p, lr=1e-3, momentum=0.9,
                                                                 foreach=True)),
    ("SGD momentum", "torch per-tensor", lambda p: torch.optim.SGD(p, lr=1e-3, momentum=0.9,
                                                                    foreach=False)),
    *_unstuck("SGD momentum", lambda p, **o: unstuck.SGD(p, momentum=0.9, **o)),
    ("Adam", "torch fused", lambda p: torch.optim.Adam(p, fused=True)),
    ("Adam", "torch foreach", lambda p: torch.optim.Adam(p, foreach=True)),
    ("Adam", "torch per-tensor", lambda p: torch.optim.Adam(p, foreach=False)),
    *_unstuck("Adam", lambda p, **o: unstuck.Adam(p, **o)),
    ("RAdam", "torch foreach", lambda p: torch.optim.RAdam(p, foreach=True)),
    ("RAdam", "torch per-tensor", lambda p: torch.optim.RAdam(p, foreach=False)),
    *_unstuck("RAdam", lambda p, **o: unstuck.RAdam(p, **o)),
    *_unstuck("Ranger", lambda p, **o: unstuck.Ranger(p, **o)),
    *_unstuck("LARS", lambda p, **o: unstuck.LARS(p, **o)),
]


def median_step_ms(make: Callable[..., torch.optim.Optimizer]) -> float:
    gen = torch.Generator().manual_seed(0)
    params = [torch.randn(s, generator=gen).requires_grad_() for s in SHAPES]
    for p in params:
        p.grad = torch.randn(p.shape, generator=gen) * 1e-2
    opt = make(params)
    for _ in range(3):
        opt.step()
    times = []
    for _ in range(15):
        start = time.perf_counter()
        opt.step()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def main() -> None:
    torch.set_num_threads(1)
    n = sum(torch.Size(s).numel() for s in SHAPES)
    print(f"{len(SHAPES)} tensors, {n / 1e6:.1f}M float32 parameters, 1 thread, torch "
          f"{torch.__version__}")
    print(f"| {'algorithm':12} | {'implementation':23} | ms/step | vs fastest torch |")
    print(f"|{'-' * 14}|{'-' * 25}|---------|------------------|")
    results = [(alg, impl, median_step_ms(make)) for alg, impl, make in CASES]
    for alg, impl, ms in results:
        torch_times = [t for a, i, t in results if a == alg and i.startswith("torch")]
        ratio = f"{ms / min(torch_times):.2f}x" if torch_times else "(torch has none)"
        print(f"| {alg:12} | {impl:23} | {ms:7.1f} | {ratio:>16} |")


if __name__ == "__main__":
    main()
