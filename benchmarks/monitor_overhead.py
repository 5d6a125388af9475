"""Time a training step of the digits MLP with and without :class:`unstuck.diagnose.Monitor`.

Digits MLP (64-64-10) from ``unstuck.lab.tasks``, batch 64, Adam (unstuck's and torch.optim's),
one CPU thread. A step is ``zero_grad; forward; backward; [observe]; step``. Every configuration
(no monitor, and the monitor settings below) trains its own copy of the model, and the runs are
interleaved in blocks of a few steps, round after round, so that the machine's drifts in speed
(other tenants, frequency changes) hit all of them alike; the table gives the mean time per step
over all rounds after a warm-up (the mean, not the median: the monitor reduces its buffered
copies every few dozen steps, and that cost must count; the final ``flush()`` is included) and
the overhead relative to the plain step. The last column is the one-off cost of reading the
history afterwards (building the per-tensor records), per record. Times are this process's CPU
time (``time.process_time``).

Usage: .venv/bin/python benchmarks/monitor_overhead.py [--steps N] [--block B]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import torch

import unstuck
from unstuck.diagnose.monitor import Monitor
from unstuck.lab.tasks import digits_mlp

CONFIGURATIONS: dict[str, tuple[int, int] | None] = {  # label: (every, effective_lr_every)
    "none": None,
    "every=1 (default)": (1, 10),
    "every=1, effective_lr_every=1": (1, 1),
    "every=1, effective_lr_every=100": (1, 100),
    "every=10": (10, 10),
}


class Run:
    """One configuration: a model, its optimizer, maybe a monitor, and its time so far."""

    def __init__(self, make_opt: Callable[[Any], torch.optim.Optimizer],
                 setting: tuple[int, int] | None, history: int) -> None:
        self.task = digits_mlp()
        self.model = self.task.make_model(0)
        self.opt = make_opt(self.model.parameters())
        self.monitor = None
        if setting is not None:
            every, lr_every = setting
            self.monitor = Monitor(self.model, self.opt, every=every, history=history,
                                   effective_lr_every=lr_every)
        x, y = self.task.train.inputs, self.task.train.targets
        n = x.shape[0] // 64
        self.batches = [(x[64 * j : 64 * j + 64], y[64 * j : 64 * j + 64]) for j in range(n)]
        self.i = 0
        self.seconds = 0.0

    def steps(self, count: int, timed: bool) -> None:
        start = time.process_time()
        for _ in range(count):
            x, y = self.batches[self.i % len(self.batches)]
            self.i += 1
            self.opt.zero_grad()
            loss = self.task.loss(self.model(x), y)
            loss.backward()
            if self.monitor is not None:
                self.monitor.observe(loss)
            self.opt.step()
        if timed:
            self.seconds += time.process_time() - start

    def finish(self) -> float:
        """Flush the monitor (timed); returns the seconds per record of reading the history."""
        if self.monitor is None:
            return 0.0
        start = time.process_time()
        self.monitor.flush()
        self.seconds += time.process_time() - start
        start = time.process_time()
        records = len(self.monitor.history)
        read = time.process_time() - start
        self.monitor.close()
        return read / records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4000, help="timed steps per configuration")
    parser.add_argument("--block", type=int, default=25, help="steps per turn")
    parser.add_argument("--warmup", type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(1)
    optimizers = {
        "unstuck.Adam": lambda p: unstuck.Adam(p, lr=1e-3),
        "torch.optim.Adam": lambda p: torch.optim.Adam(p, lr=1e-3),
    }
    print(f"{'optimizer':<18} {'monitor':<33} {'ms/step':>8} {'overhead':>9} {'read/record':>12}")
    for name, make in optimizers.items():
        runs = {label: Run(make, setting, args.steps + args.warmup)
                for label, setting in CONFIGURATIONS.items()}
        for run in runs.values():
            run.steps(args.warmup, timed=False)
        for _ in range(args.steps // args.block):
            for run in runs.values():
                run.steps(args.block, timed=True)
        reads = {label: run.finish() for label, run in runs.items()}
        timed = (args.steps // args.block) * args.block
        base = runs["none"].seconds / timed
        for label, run in runs.items():
            t = run.seconds / timed
            extra = "" if label == "none" else (
                f" {(t / base - 1) * 100:8.1f}% {reads[label] * 1e6:9.1f} us")
            print(f"{name:<18} {label:<33} {t * 1e3:8.3f}{extra}")


if __name__ == "__main__":
    main()
