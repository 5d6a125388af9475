"""Time a training step of the digits MLP with and without :class:`unstuck.diagnose.Monitor`.

Digits MLP (64-64-10) from ``unstuck.lab.tasks``, batch 64, Adam (unstuck's and torch.optim's),
one CPU thread. A step is ``zero_grad; forward; backward; [observe]; step``; the table gives the
mean time per step over many steps after a warm-up (the mean, not the median: the monitor reduces
its buffered copies every few dozen steps, and that cost must count; the final ``flush()`` is
included), the best of three interleaved runs, and the overhead relative to the plain step. The
last column is the one-off cost of reading the history afterwards (building the per-tensor
records), per record. Times are this process's CPU time (``time.process_time``), so other work on
a shared machine disturbs them less than wall-clock time would; on a quiet machine the two agree.

Usage: .venv/bin/python benchmarks/monitor_overhead.py [--steps N]
"""

from __future__ import annotations

import argparse
import time

import torch

import unstuck
from unstuck.diagnose.monitor import Monitor
from unstuck.lab.tasks import digits_mlp


def time_steps(
    make_opt, every: int | None, steps: int, warmup: int = 200, lr_every: int = 10
) -> tuple[float, float]:
    """Mean seconds per training step and per record read from the history afterwards
    (``every=None``: no monitor; ``lr_every``: the monitor's ``effective_lr_every``)."""
    task = digits_mlp()
    model = task.make_model(0)
    opt = make_opt(model.parameters())
    monitor = (
        Monitor(model, opt, every=every, history=steps + warmup, effective_lr_every=lr_every)
        if every
        else None
    )
    x_all, y_all = task.train.inputs, task.train.targets
    n = x_all.shape[0] // 64
    batches = [(x_all[64 * j : 64 * j + 64], y_all[64 * j : 64 * j + 64]) for j in range(n)]

    def run(count: int, offset: int) -> None:
        for i in range(offset, offset + count):
            x, y = batches[i % n]
            opt.zero_grad()
            loss = task.loss(model(x), y)
            loss.backward()
            if monitor is not None:
                monitor.observe(loss)
            opt.step()

    run(warmup, 0)
    start = time.process_time()
    run(steps, warmup)
    if monitor is not None:
        monitor.flush()
    elapsed = time.process_time() - start
    if monitor is None:
        return elapsed / steps, 0.0
    start = time.process_time()
    records = len(monitor.history)
    read = time.process_time() - start
    assert records == (steps + warmup + every - 1) // every
    monitor.close()
    return elapsed / steps, read / records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    optimizers = {
        "unstuck.Adam": lambda p: unstuck.Adam(p, lr=1e-3),
        "torch.optim.Adam": lambda p: torch.optim.Adam(p, lr=1e-3),
    }
    configurations = {  # label: (every, effective_lr_every)
        "every=1 (default)": (1, 10),
        "every=1, effective_lr_every=1": (1, 1),
        "every=10": (10, 10),
    }
    print(f"{'optimizer':<18} {'monitor':<31} {'ms/step':>8} {'overhead':>9} {'read/record':>12}")
    for name, make in optimizers.items():
        # interleave the runs so that drift in the machine's speed hits all of them alike
        base: list[float] = []
        results: dict[str, list[tuple[float, float]]] = {label: [] for label in configurations}
        for _ in range(3):
            base.append(time_steps(make, None, args.steps)[0])
            for label, (every, lr_every) in configurations.items():
                results[label].append(time_steps(make, every, args.steps, lr_every=lr_every))
        b = min(base)
        print(f"{name:<18} {'none':<31} {b * 1e3:8.3f}")
        for label, runs in results.items():
            t = min(step for step, _ in runs)
            read = min(r for _, r in runs)
            print(
                f"{name:<18} {label:<31} {t * 1e3:8.3f} {(t / b - 1) * 100:8.1f}% "
                f"{read * 1e6:9.1f} us"
            )


if __name__ == "__main__":
    main()
