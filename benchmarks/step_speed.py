"""One optimizer step of every unstuck optimizer against torch.optim and peer libraries.

An optimizer step is elementwise work over every parameter, so it is bound by memory bandwidth:
its floor is (bytes that must move) / (bandwidth). This benchmark measures the machine's
bandwidth, then times one step of each implementation on the same parameters and prints, per
algorithm, a table with:

- ms/step: median over rounds of the mean time of a block of steps (a block is ``k`` steps for
  the Lookahead family, so the every-``k`` sync is counted; 2 steps otherwise), after warm-up;
  the gradients are random and fixed. The implementations of one algorithm are timed in
  interleaved rounds, each on its own copy of the parameters, so that load changes on a shared
  machine hit them alike.
- x floor: ms/step over the bandwidth floor. Float32 streams per parameter that must move:
  SGD with momentum, Adagrad, RMSprop 5 (read p, g, one state; write p, the state); Adam,
  AdamW, RAdam 7 (read p, g, m, v; write p, m, v); Ranger and Lookahead(Adam) 7 + 4/k
  (Lookahead reads and writes p and the slow weights every k steps; a row's Gradient
  Centralization mean fits in cache); LARS 7 (the trust ratio needs the norms of p and g
  before the update: a reduction pass reads them, the update pass reads them again); RangerLARS
  10 + 4/k (its norm is of the RAdam direction: a pass reads g, m, v, p and writes m, v, the
  update pass reads m, v, p and writes p).
- x best peer: ms/step over the fastest implementation of the same algorithm outside unstuck
  (torch.optim included) in this run. Hyper-parameters are the defaults with lr 1e-3
  (momentum 0.9; LARS with weight decay 1e-4, since torch-optimizer's LARS applies no trust
  ratio without it).
- state B/param: bytes of optimizer state per parameter (every tensor in ``state``, wrappers
  included, each storage once).
- first step ms: the first ``step()``, with lazy state allocation and any compilation.

Sets: A, 24.8M float32 parameters in 148 GPT-2-like tensors (d = 384, 12 blocks, 8192-token
embedding); B, 1.06M float32 parameters in 2,000 small tensors (conv kernels 3x3 and 1x1,
biases, norm weights; 8 to 24 channels).

Bandwidth: the best of three streaming kernels on 128 MiB buffers (copy, in-place scale,
in-place add; 2, 2 and 3 streams), as the optimizers' own streams are mostly read-modify-write.
Set B fits in the last-level cache, so its floor is far below what per-tensor overheads allow.

Peers run when installed (``pip install -e '.[bench]'``): pytorch-optimizer, torch-optimizer,
pytorch-ranger, heavyball (eager: its default ``torch.compile`` takes many minutes on 2,000
tensors; ``--compile-peers`` compiles it), torch-optimi. A missing one prints "not installed".

Times are the benchmark thread's CPU time on CPU (``--clock cpu``, the default there: robust to
other processes on a shared machine; ``--clock wall`` for wall-clock) and synchronized
wall-clock on GPUs. Compare rows within one run; run it twice to see the noise.

Usage:
    .venv/bin/python benchmarks/step_speed.py                      # sets A and B, 1 thread
    .venv/bin/python benchmarks/step_speed.py --set B --quick      # a fast smoke run
    .venv/bin/python benchmarks/step_speed.py --optimizers adam,ranger --threads 2
    .venv/bin/python benchmarks/step_speed.py --set A --optimizers adam,adamw --rounds 25
"""

from __future__ import annotations

import argparse
import gc
import importlib
import math
import statistics
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch.optim import Optimizer

import unstuck

Factory = Callable[[list[torch.Tensor]], Optimizer]
LR = 1e-3
MOMENTUM = 0.9
WD = 1e-4  # LARS' weight decay
RANGER_K, LOOKAHEAD_K = 6, 5


# ---------------------------------------------------------------------------------------------
# Parameter sets
# ---------------------------------------------------------------------------------------------


def set_a_shapes() -> list[tuple[int, ...]]:
    """GPT-2-like: token and position embeddings, 12 blocks of (ln, attention, ln, MLP), ln_f."""
    d, vocab, positions = 384, 8192, 1024
    shapes: list[tuple[int, ...]] = [(vocab, d), (positions, d)]
    for _ in range(12):
        shapes += [(d,), (d,), (3 * d, d), (3 * d,), (d, d), (d,),  # ln_1, attention
                   (d,), (d,), (4 * d, d), (4 * d,), (d, 4 * d), (d,)]  # ln_2, MLP
    return shapes + [(d,), (d,)]


def set_b_shapes() -> list[tuple[int, ...]]:
    """400 small conv blocks: a 3x3 kernel, its bias, a norm's weight and bias, a 1x1 kernel."""
    shapes: list[tuple[int, ...]] = []
    for i in range(400):
        c = (8, 12, 16, 24)[i % 4]
        shapes += [(c, c, 3, 3), (c,), (c,), (c,), (c, c, 1, 1)]
    return shapes


SETS = {
    "A": ("24.8M parameters in 148 GPT-2-like tensors", set_a_shapes),
    "B": ("1.06M parameters in 2,000 small conv/bias/norm tensors", set_b_shapes),
}


@dataclass
class ParameterSet:
    """Initial values and fixed gradients; every implementation starts from a copy."""

    name: str
    values: list[torch.Tensor]
    grads: list[torch.Tensor]

    @property
    def numel(self) -> int:
        return sum(v.numel() for v in self.values)

    def fresh(self) -> list[torch.Tensor]:
        params = [v.clone().requires_grad_() for v in self.values]
        for p, g in zip(params, self.grads, strict=True):
            p.grad = g.clone()
        return params


def make_set(name: str, device: torch.device) -> ParameterSet:
    gen = torch.Generator().manual_seed(0)
    shapes = SETS[name][1]()
    values = [torch.randn(s, generator=gen).mul_(0.02).to(device) for s in shapes]
    grads = [torch.randn(s, generator=gen).mul_(1e-3).to(device) for s in shapes]
    return ParameterSet(name, values, grads)


# ---------------------------------------------------------------------------------------------
# Clock and bandwidth
# ---------------------------------------------------------------------------------------------


class Clock:
    """Seconds of the benchmark thread's CPU time, or wall-clock (synchronized on GPUs)."""

    def __init__(self, kind: str, device: torch.device) -> None:
        self.kind, self.device = kind, device

    def __call__(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.thread_time() if self.kind == "cpu" else time.perf_counter()


def measure_bandwidth(clock: Clock, device: torch.device, numel: int = 1 << 25) -> dict[str, float]:
    """Bytes per second of copy, in-place scale and in-place add (medians of 7), and the best."""
    a = torch.rand(numel, device=device)
    b = torch.rand(numel, device=device)
    c = torch.empty(numel, device=device)
    kernels: dict[str, tuple[Callable[[], Any], int]] = {
        "copy": (lambda: c.copy_(a), 2),
        "scale": (lambda: a.mul_(1.0), 2),
        "add": (lambda: a.add_(b, alpha=0.0), 3),
    }
    result = {}
    for name, (kernel, streams) in kernels.items():
        kernel()
        times = []
        for _ in range(7):
            start = clock()
            kernel()
            times.append(clock() - start)
        result[name] = streams * 4 * numel / statistics.median(times)
    result["best"] = max(result.values())
    return result


# ---------------------------------------------------------------------------------------------
# Implementations
# ---------------------------------------------------------------------------------------------


@dataclass
class Implementation:
    label: str
    make: Factory
    ours: bool = False  # unstuck's rows; the others are the peers


@dataclass
class Algorithm:
    name: str
    streams: float  # float32 streams per parameter that must move per step
    block: int  # steps per timing sample
    implementations: list[Implementation]


def _peer(module: str) -> Any | None:
    try:
        return importlib.import_module(module)
    except ImportError:
        return None


def _heavyball(compile_peers: bool) -> Any | None:
    heavyball = _peer("heavyball")
    if heavyball is not None and not compile_peers:
        heavyball.utils.compile_mode = None  # eager: its compile of 2,000 tensors takes minutes
    return heavyball


def algorithms(compile_peers: bool) -> tuple[list[Algorithm], list[str]]:
    """Every algorithm with its implementations; and the peers that are not installed."""
    po, to, pr = _peer("pytorch_optimizer"), _peer("torch_optimizer"), _peer("pytorch_ranger")
    optimi, hb = _peer("optimi"), _heavyball(compile_peers)
    missing = [name for name, module in (
        ("pytorch-optimizer", po), ("torch-optimizer", to), ("pytorch-ranger", pr),
        ("heavyball", hb), ("torch-optimi", optimi)) if module is None]
    hb_mode = "compiled" if compile_peers else "eager"
    T = torch.optim

    def ours(make: Callable[..., Optimizer], **kw: Any) -> list[Implementation]:
        return [
            Implementation("unstuck fused (default)", lambda p: make(p, **kw), True),
            Implementation("unstuck reference foreach", lambda p: make(p, **kw, fused=False), True),
        ]

    def torch_paths(make: Callable[..., Optimizer], fused: bool, **kw: Any) -> list[Implementation]:
        out = [Implementation("torch.optim per-tensor", lambda p: make(p, foreach=False, **kw)),
               Implementation("torch.optim foreach", lambda p: make(p, foreach=True, **kw))]
        if fused:
            out.append(Implementation("torch.optim fused", lambda p: make(p, fused=True, **kw)))
        return out

    def when(module: Any, *impls: tuple[str, Factory]) -> list[Implementation]:
        return [Implementation(label, make) for label, make in impls] if module else []

    sgd = dict(lr=LR, momentum=MOMENTUM)
    table = [
        Algorithm("SGD momentum", 5, 2, [
            *ours(unstuck.SGD, **sgd), *torch_paths(T.SGD, True, **sgd),
            *when(optimi, ("torch-optimi SGD", lambda p: optimi.SGD(p, **sgd, torch_init=True))),
            *when(hb, (f"heavyball SGD ({hb_mode})", lambda p: hb.SGD(p, lr=LR, beta=MOMENTUM))),
        ]),
        Algorithm("Adagrad", 5, 2, [
            *ours(unstuck.Adagrad, lr=LR), *torch_paths(T.Adagrad, True, lr=LR),
        ]),
        Algorithm("RMSprop", 5, 2, [
            *ours(unstuck.RMSprop, lr=LR), *torch_paths(T.RMSprop, False, lr=LR),
        ]),
        Algorithm("Adam", 7, 2, [
            *ours(unstuck.Adam, lr=LR), *torch_paths(T.Adam, True, lr=LR),
            *when(optimi, ("torch-optimi Adam", lambda p: optimi.Adam(p, lr=LR))),
        ]),
        Algorithm("AdamW", 7, 2, [
            *ours(unstuck.AdamW, lr=LR), *torch_paths(T.AdamW, True, lr=LR),
            *when(optimi, ("torch-optimi AdamW", lambda p: optimi.AdamW(p, lr=LR))),
            *when(hb, (f"heavyball AdamW ({hb_mode})", lambda p: hb.AdamW(p, lr=LR))),
        ]),
        Algorithm("RAdam", 7, 2, [
            *ours(unstuck.RAdam, lr=LR), *torch_paths(T.RAdam, False, lr=LR),
            *when(po, ("pytorch-optimizer RAdam foreach", lambda p: po.RAdam(p, foreach=True)),
                  ("pytorch-optimizer RAdam per-tensor", lambda p: po.RAdam(p, foreach=False))),
            *when(to, ("torch-optimizer RAdam", lambda p: to.RAdam(p))),
            *when(optimi, ("torch-optimi RAdam", lambda p: optimi.RAdam(p, lr=LR))),
        ]),
        Algorithm("Ranger", 7 + 4 / RANGER_K, RANGER_K, [
            *ours(unstuck.Ranger, lr=LR),
            *when(po, ("pytorch-optimizer Ranger foreach", lambda p: po.Ranger(p, foreach=True)),
                  ("pytorch-optimizer Ranger per-tensor", lambda p: po.Ranger(p, foreach=False))),
            *when(to, ("torch-optimizer Ranger", lambda p: to.Ranger(p))),
            *when(pr, ("pytorch-ranger Ranger", lambda p: pr.Ranger(p))),
            *when(optimi, ("torch-optimi Ranger (no GC)", lambda p: optimi.Ranger(p, lr=LR))),
        ]),
        Algorithm("LARS", 7, 2, [  # weight decay > 0: torch-optimizer's LARS skips the ratio at 0
            *ours(unstuck.LARS, lr=LR, weight_decay=WD),
            *when(po, ("pytorch-optimizer LARS foreach",
                       lambda p: po.LARS(p, weight_decay=WD, foreach=True)),
                  ("pytorch-optimizer LARS per-tensor",
                   lambda p: po.LARS(p, weight_decay=WD, foreach=False))),
            *when(to, ("torch-optimizer LARS",
                       lambda p: to.LARS(p, lr=LR, momentum=MOMENTUM, weight_decay=WD))),
        ]),
        Algorithm("RangerLARS", 10 + 4 / RANGER_K, RANGER_K, [*ours(unstuck.RangerLARS, lr=LR)]),
        Algorithm("Lookahead(Adam)", 7 + 4 / LOOKAHEAD_K, LOOKAHEAD_K, [
            Implementation("unstuck Lookahead(unstuck Adam fused)",
                           lambda p: unstuck.Lookahead(unstuck.Adam(p, lr=LR)), True),
            Implementation("unstuck Lookahead(torch Adam fused)",
                           lambda p: unstuck.Lookahead(T.Adam(p, lr=LR, fused=True)), True),
            *when(po, ("pytorch-optimizer Lookahead(torch Adam foreach)",
                       lambda p: po.Lookahead(T.Adam(p, lr=LR, foreach=True)))),
            *when(to, ("torch-optimizer Lookahead(torch Adam foreach)",
                       lambda p: to.Lookahead(T.Adam(p, lr=LR, foreach=True)))),
        ]),
    ]
    return table, missing


# ---------------------------------------------------------------------------------------------
# Measurement
# ---------------------------------------------------------------------------------------------


@dataclass
class Result:
    algorithm: Algorithm
    implementation: Implementation
    ms: float = math.nan
    first_ms: float = math.nan
    state_bytes: float = math.nan
    workspace_bytes: int = 0
    note: str = ""
    error: str = ""


def _tensors(value: Any) -> Iterator[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _tensors(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _tensors(v)


def state_bytes(optimizer: Any) -> int:
    """Bytes of every tensor in the optimizer's state (and its inner optimizer's), each storage
    counted once."""
    seen: dict[int, int] = {}
    while isinstance(optimizer, Optimizer):
        for tensor in _tensors(dict(optimizer.state)):
            storage = tensor.untyped_storage()
            seen[storage.data_ptr()] = storage.nbytes()
        optimizer = getattr(optimizer, "optimizer", None)
    return sum(seen.values())


def workspace_bytes(optimizer: Any) -> int:
    """Bytes of unstuck's fused-path scratch memory (not state: never saved)."""
    optimizer = getattr(optimizer, "optimizer", optimizer)  # a wrapper's inner optimizer
    workspace = getattr(optimizer, "__dict__", {}).get("_fused_workspace")
    return workspace.nbytes if workspace is not None else 0


class Runner:
    """One implementation on its own copy of the parameters, stepping and timing itself."""

    def __init__(self, result: Result, params_set: ParameterSet, clock: Clock) -> None:
        self.result, self.params_set, self.clock = result, params_set, clock
        self.params = params_set.fresh()
        self.samples: list[float] = []
        self.opt = result.implementation.make(self.params)
        start = clock()
        self.opt.step()
        result.first_ms = 1e3 * (clock() - start)
        # An optimizer that consumes the gradients (sets p.grad to None) gets them back
        # before every step, untimed.
        self.consumes = any(p.grad is None for p in self.params)
        result.note = " [clears p.grad]" if self.consumes else ""

    def block(self, steps: int) -> float:
        """Mean seconds per step over ``steps`` consecutive steps."""
        if not self.consumes:
            start = self.clock()
            for _ in range(steps):
                self.opt.step()
            return (self.clock() - start) / steps
        total = 0.0
        for _ in range(steps):
            for p, g in zip(self.params, self.params_set.grads, strict=True):
                if p.grad is None:
                    p.grad = g.clone()
            start = self.clock()
            self.opt.step()
            total += self.clock() - start
        return total / steps

    def finish(self) -> None:
        result = self.result
        result.ms = 1e3 * statistics.median(self.samples)
        result.state_bytes = state_bytes(self.opt) / self.params_set.numel
        result.workspace_bytes = workspace_bytes(self.opt)


def run_algorithm(algorithm: Algorithm, params_set: ParameterSet, clock: Clock, warmup: int,
                  rounds: int) -> list[Result]:
    """Every implementation of the algorithm, timed in interleaved rounds (round r times one
    block of each in turn), so that a change of load on a shared machine hits all alike."""
    results = [Result(algorithm, impl) for impl in algorithm.implementations]
    runners = []
    for result in results:
        try:
            runner = Runner(result, params_set, clock)
            for _ in range(warmup):
                runner.block(algorithm.block)
            runners.append(runner)
        except Exception as error:  # a peer that fails is reported, not fatal
            result.error = f"{type(error).__name__}: {str(error).splitlines()[0][:60]}"
    for _ in range(rounds):
        for runner in list(runners):
            try:
                runner.samples.append(runner.block(algorithm.block))
            except Exception as error:
                runner.result.error = f"{type(error).__name__}: {str(error)[:60]}"
                runners.remove(runner)
    for runner in runners:
        runner.finish()
    del runners
    gc.collect()
    return results


def print_table(results: list[Result], floor_ms_per_stream: float) -> None:
    print(f"| {'algorithm':15} | {'implementation':50} | ms/step | x floor | x best peer "
          f"| state B/param | first step ms |")
    print(f"|{'-' * 17}|{'-' * 52}|--------:|--------:|------------:|--------------:|"
          f"--------------:|")
    for result in results:
        algorithm, impl = result.algorithm, result.implementation
        if result.error:
            print(f"| {algorithm.name:15} | {impl.label:50} | failed: {result.error} |")
            continue
        peers = [r.ms for r in results
                 if r.algorithm is algorithm and not r.implementation.ours and not r.error]
        floor = algorithm.streams * floor_ms_per_stream
        vs_peer = f"{result.ms / min(peers):.2f}" if peers else "no peer"
        label = impl.label + result.note
        print(f"| {algorithm.name:15} | {label:50} | {result.ms:7.2f} | "
              f"{result.ms / floor:7.2f} | {vs_peer:>11} | {result.state_bytes:13.2f} | "
              f"{result.first_ms:13.1f} |")




def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", choices=["A", "B", "both"], default="both")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (1)")
    parser.add_argument("--quick", action="store_true", help="fewer steps (a smoke run)")
    parser.add_argument("--rounds", type=int, default=7,
                        help="timed rounds per implementation (7; --quick: 3)")
    parser.add_argument("--optimizers", default="",
                        help="comma-separated algorithm names (default: all), e.g. adam,ranger")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--clock", choices=["cpu", "wall"], default=None,
                        help="cpu: thread CPU time (default on CPU); wall: wall-clock")
    parser.add_argument("--compile-peers", action="store_true",
                        help="let heavyball torch.compile its step (takes minutes)")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")  # the peers' deprecation warnings, once per step
    device = torch.device(args.device)
    clock = Clock(args.clock or ("cpu" if device.type == "cpu" else "wall"), device)
    warmup, rounds = (1, 3) if args.quick else (3, args.rounds)
    table, missing = algorithms(args.compile_peers)
    wanted = {name.strip().lower() for name in args.optimizers.split(",") if name.strip()}
    if wanted:
        unknown = wanted - {a.name.lower() for a in table}
        if unknown:
            parser.error(f"--optimizers: unknown {sorted(unknown)}; known: "
                         f"{', '.join(a.name for a in table)}")
        table = [a for a in table if a.name.lower() in wanted]
    for name in missing:
        print(f"{name}: not installed (pip install -e '.[bench]'), skipped")

    bandwidth = measure_bandwidth(clock, device)
    print(f"torch {torch.__version__}, device {device}, {args.threads} thread(s), clock "
          f"{clock.kind}; bandwidth GB/s: " + ", ".join(
              f"{k} {v / 1e9:.1f}" for k, v in bandwidth.items()))
    for set_name in ("A", "B") if args.set == "both" else (args.set,):
        params_set = make_set(set_name, device)
        ms_per_stream = 1e3 * 4 * params_set.numel / bandwidth["best"]
        print(f"\nSet {set_name}: {SETS[set_name][0]}; floor {ms_per_stream:.2f} ms per float32 "
              f"stream (Adam, 7 streams: {7 * ms_per_stream:.2f} ms)\n")
        results = []
        for algorithm in table:
            results += run_algorithm(algorithm, params_set, clock, warmup, rounds)
        print_table(results, ms_per_stream)
        scratch = max((r.workspace_bytes for r in results), default=0)
        print(f"\nunstuck's fused path keeps at most {scratch / 2**20:.1f} MiB of scratch memory "
              f"(not state, never saved; {scratch / params_set.numel:.2f} B/param)")


if __name__ == "__main__":
    main()
