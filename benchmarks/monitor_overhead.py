"""Time a training step with and without :class:`unstuck.diagnose.Monitor`, against targets.

Two models, one CPU thread (``torch.set_num_threads(1)``), unstuck's Adam (lr 1e-3):

- ``mlp``: the digits MLP (64-64-10, 4.8 thousand parameters) of ``unstuck.lab.tasks``, batch 64:
  a step of a few hundred microseconds, where the monitor's fixed costs per torch call show;
- ``transformer``: a 6-layer pre-norm Transformer language model (d_model 256, 4 heads, feed-
  forward 1024, vocabulary 1000, learned positions; 5.3 million parameters in 78 tensors) on
  generated tokens, batch 16 of 64 tokens: a step of about a second on one thread, where the
  monitor's passes over memory show.

A step is ``zero_grad; forward; backward; [observe]; step``. Every configuration (no monitor,
``every=1``, ``every=10``; default ``effective_lr_every=10``) trains its own copy of the model,
and they run interleaved in blocks of steps, repeat after repeat (the order rotating), so that
the machine's drifts in speed hit all of them alike. A block is long enough to hold the monitor's
periodic work (its reductions of buffered copies, the effective-lr records) in the same proportion
every time. The table gives, per model and ``every``, the median over the repeats of the time per
step (this process's CPU time, ``time.process_time``) without and with the monitor, and the
median over the repeats of the overhead (with / without - 1 within one repeat), against its
target. Overheads this small drown in the noise of a shared machine, so the table also gives the
monitor's own time, measured directly: the median over the repeats of the time spent inside
``observe()`` (where all its work happens: copies, reductions, read-backs; the post-step hook
only counts) relative to the rest of the step, both on the wall clock of the same block. A target
is met when both are within it.

Usage: .venv/bin/python benchmarks/monitor_overhead.py [-q] [--quick] [--models mlp,transformer]
       [--repeats R]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

import unstuck
from unstuck.diagnose.monitor import Monitor
from unstuck.lab.tasks import digits_mlp

TARGETS = {("mlp", 1): 20.0, ("mlp", 10): 5.0, ("transformer", 1): 5.0, ("transformer", 10): 5.0}
"""Largest overhead (%) allowed per (model, every)."""

EVERY = (1, 10)


class LanguageModel(nn.Module):
    """A pre-norm Transformer decoder-only language model (causal self-attention).

    Example:
        >>> model = LanguageModel(vocab=50, d_model=16, heads=2, layers=1, seq=8)
        >>> model(torch.zeros(2, 8, dtype=torch.long)).shape
        torch.Size([2, 8, 50])
    """

    def __init__(self, vocab: int = 1000, d_model: int = 256, heads: int = 4, layers: int = 6,
                 seq: int = 64) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, d_model)
        self.position = nn.Parameter(torch.randn(seq, d_model) * 0.02)
        layer = nn.TransformerEncoderLayer(d_model, heads, 4 * d_model, dropout=0.0,
                                           batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab)
        self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(seq))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        n = tokens.shape[1]
        h = self.embed(tokens) + self.position[:n]
        h = self.blocks(h, mask=self.mask[:n, :n], is_causal=True)
        return self.head(self.norm(h))


@dataclass
class Workload:
    """A model factory, its batches and its loss."""

    name: str
    make_model: Any
    batches: list[tuple[torch.Tensor, torch.Tensor]]
    loss: Any
    block: int  # steps per turn


def mlp_workload(block: int) -> Workload:
    task = digits_mlp()
    x, y = task.train.inputs, task.train.targets
    batches = [(x[j : j + 64], y[j : j + 64]) for j in range(0, x.shape[0] - 63, 64)]
    return Workload("mlp", lambda: task.make_model(0), batches, task.loss, block)


def transformer_workload(block: int, vocab: int = 1000, seq: int = 64, batch: int = 16) -> Workload:
    g = torch.Generator().manual_seed(0)
    tokens = [torch.randint(0, vocab, (batch, seq + 1), generator=g) for _ in range(4)]
    batches = [(t[:, :-1], t[:, 1:]) for t in tokens]

    def make() -> nn.Module:
        torch.manual_seed(0)
        return LanguageModel(vocab=vocab, seq=seq)

    def loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                           targets.reshape(-1))

    return Workload("transformer", make, batches, loss, block)


class Run:
    """One configuration of one workload: a model, its optimizer, maybe a monitor."""

    def __init__(self, work: Workload, every: int | None) -> None:
        self.work = work
        self.model = work.make_model()
        self.opt = unstuck.Adam(self.model.parameters(), lr=1e-3)
        self.monitor = None if every is None else Monitor(self.model, self.opt, every=every,
                                                          history=100_000)
        self.i = 0
        self.share = 0.0  # time inside observe() / time outside it, in the last steps()

    def steps(self, count: int) -> float:
        """Run ``count`` steps; returns the CPU seconds per step."""
        batches, loss_fn, clock = self.work.batches, self.work.loss, time.perf_counter
        observing = 0.0
        start, wall = time.process_time(), clock()
        for _ in range(count):
            x, y = batches[self.i % len(batches)]
            self.i += 1
            self.opt.zero_grad()
            loss = loss_fn(self.model(x), y)
            loss.backward()
            if self.monitor is not None:
                t = clock()
                self.monitor.observe(loss)
                observing += clock() - t
            self.opt.step()
        wall = clock() - wall
        self.share = observing / (wall - observing)
        return (time.process_time() - start) / count


def measure(work: Workload, repeats: int, warmup: int, log: Any) -> list[dict[str, Any]]:
    """Rows of the table for one workload."""
    configs: list[int | None] = [None, *EVERY]
    runs = {every: Run(work, every) for every in configs}
    for run in runs.values():
        run.steps(warmup)
    times: dict[int | None, list[float]] = {every: [] for every in configs}
    inside: dict[int | None, list[float]] = {every: [] for every in configs}
    for r in range(repeats):
        order = configs[r % len(configs):] + configs[: r % len(configs)]
        for every in order:
            times[every].append(runs[every].steps(work.block))
            inside[every].append(runs[every].share)
        log(f"  {work.name} repeat {r + 1}/{repeats}: "
            + ", ".join(f"{e}: {times[e][-1] * 1e3:.3f} ms" for e in configs))
    for run in runs.values():
        if run.monitor is not None:
            assert run.monitor.history, "the monitor recorded nothing"
            run.monitor.close()
    params = sum(p.numel() for p in runs[None].model.parameters())
    rows = []
    for every in EVERY:
        ratios = [w / b - 1 for w, b in zip(times[every], times[None], strict=True)]
        overhead = statistics.median(ratios) * 100
        share = statistics.median(inside[every]) * 100
        target = TARGETS[work.name, every]
        rows.append({
            "model": work.name, "params": params, "every": every,
            "without": statistics.median(times[None]) * 1e3,
            "with": statistics.median(times[every]) * 1e3,
            "overhead": overhead, "observe": share, "target": target,
            "met": max(overhead, share) <= target,
        })
    return rows


def table(rows: Sequence[dict[str, Any]]) -> str:
    """The printed table."""
    head = (f"{'model':<12} {'params':>9} {'every':>5} {'ms/step without':>16} "
            f"{'ms/step with':>13} {'overhead':>9} {'in observe':>11} {'target':>7} {'met':>4}")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['model']:<12} {r['params']:>9} {r['every']:>5} {r['without']:>16.3f} "
            f"{r['with']:>13.3f} {r['overhead']:>8.1f}% {r['observe']:>10.1f}% "
            f"{r['target']:>6.0f}% {'yes' if r['met'] else 'no':>4}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-q", "--quiet", action="store_true", help="print the table only")
    parser.add_argument("--quick", action="store_true",
                        help="fewer repeats (a rough check in about two minutes)")
    parser.add_argument("--models", default="mlp,transformer",
                        help="comma-separated: mlp, transformer")
    parser.add_argument("--repeats", type=int, default=None, help="interleaved repeats")
    parser.add_argument("--mlp-block", type=int, default=1280,
                        help="MLP steps per turn (a multiple of 1280: whole reductions)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    def log(text: str) -> None:
        if not args.quiet:
            print(text, file=sys.stderr, flush=True)

    builders = {
        "mlp": lambda: (mlp_workload(args.mlp_block), 3 if args.quick else 9, 320),
        "transformer": lambda: (transformer_workload(10), 2 if args.quick else 5, 3),
    }
    rows: list[dict[str, Any]] = []
    for name in args.models.split(","):
        if name not in builders:
            parser.error(f"--models: unknown model {name!r} (known: {', '.join(builders)})")
        work, repeats, warmup = builders[name]()
        rows += measure(work, args.repeats or repeats, warmup, log)
    print(table(rows))
    return rows


if __name__ == "__main__":
    main()
