"""``unstuck lr-find``: an LR range test on the digits task."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from unstuck.cli.common import (
    EXIT_FAILURE,
    EXIT_OK,
    UsageError,
    add_figure_output,
    check_output,
    positive_float,
    positive_int,
    write_figure,
)

__all__ = ["add_parser"]


def _lr_find_optimizers() -> dict[str, type]:
    """Lower-case name -> unstuck optimizer class, for ``unstuck lr-find --optimizer``."""
    import unstuck.optim as optim
    from unstuck.optim import ChainOptimizer

    return {
        name.lower(): value
        for name, value in vars(optim).items()
        if isinstance(value, type)
        and issubclass(value, ChainOptimizer)
        and value is not ChainOptimizer
    }


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``unstuck lr-find``."""
    parser = subparsers.add_parser(
        "lr-find",
        help="run an LR range test on the digits task and suggest a learning rate",
        description=(
            "Run a learning-rate range test on the built-in digits task (a small MLP on "
            "scikit-learn's 8x8 digits, no download): one optimizer step per mini-batch while "
            "the learning rate grows exponentially from --start-lr to --end-lr, stopping when "
            "the smoothed loss diverges. Prints the suggested learning rates (steepest descent "
            "of the smoothed loss, and fastai's valley rule); with -o, draws the curve with "
            "them marked. Needs scikit-learn (pip install 'unstuck[demo]'); drawing needs "
            "matplotlib (pip install 'unstuck[plot]')."
        ),
    )
    parser.add_argument(
        "--optimizer",
        default="adam",
        metavar="NAME",
        help="an unstuck optimizer: sgd, adam, adamw, radam, ranger, lars, ... (default: adam)",
    )
    parser.add_argument(
        "--start-lr", type=positive_float, default=1e-7, help="first learning rate (default: 1e-7)"
    )
    parser.add_argument(
        "--end-lr", type=positive_float, default=10.0, help="last learning rate (default: 10)"
    )
    parser.add_argument(
        "--steps",
        type=positive_int,
        default=100,
        metavar="N",
        help="steps of the ramp (default: 100)",
    )
    parser.add_argument(
        "--batch-size", type=positive_int, default=64, help="mini-batch size (default: 64)"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of initial weights and batch order (default: 0)"
    )
    add_figure_output(parser)
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress on standard error")
    parser.set_defaults(handler=run, command_parser=parser)


def run(args: argparse.Namespace) -> int:
    """Handler of ``unstuck lr-find``."""
    import torch

    from unstuck.diagnose.lr_finder import lr_find

    optimizers = _lr_find_optimizers()
    optimizer_class = optimizers.get(args.optimizer.lower())
    if optimizer_class is None:
        raise UsageError(
            f"--optimizer: unknown {args.optimizer!r}; choose from {', '.join(sorted(optimizers))}"
        )
    if args.steps < 2:
        raise UsageError(f"--steps must be >= 2, got {args.steps}")
    if not args.end_lr > args.start_lr:
        raise UsageError(f"--end-lr must be > --start-lr ({args.start_lr:g}), got {args.end_lr:g}")
    if args.output is not None:
        check_output(args.output, args.force)

    try:
        from unstuck.lab.tasks import digits_mlp

        task = digits_mlp()
    except ImportError as error:
        print(f"unstuck lr-find: {error}", file=sys.stderr)
        return EXIT_FAILURE
    model = task.make_model(args.seed)
    optimizer = optimizer_class(model.parameters())
    generator = torch.Generator().manual_seed(args.seed)
    inputs, targets = task.train.inputs, task.train.targets

    def batches():  # one shuffled epoch per pass; lr_find starts over when it runs out
        order = torch.randperm(len(targets), generator=generator)
        for start in range(0, len(order), args.batch_size):
            index = order[start : start + args.batch_size]
            yield inputs[index], targets[index]

    class Epochs:
        def __iter__(self):
            return batches()

    name = optimizer_class.__name__
    report_every = max(args.steps // 10, 1)

    def progress(step: int, lr: float, loss: float) -> None:
        if (step + 1) % report_every == 0:
            print(
                f"  step {step + 1}/{args.steps}: lr {lr:.2e}, smoothed loss {loss:.4f}",
                file=sys.stderr,
            )

    if not args.quiet:
        print(
            f"LR range test: {task.name} ({task.description}), {name}, {args.steps} steps "
            f"from lr {args.start_lr:g} to {args.end_lr:g}...",
            file=sys.stderr,
        )
    result = lr_find(
        model,
        optimizer,
        task.loss,
        Epochs(),
        start_lr=args.start_lr,
        end_lr=args.end_lr,
        num_steps=args.steps,
        progress=None if args.quiet else progress,
    )

    if args.output is not None:

        def draw() -> Any:
            from unstuck.plots import lr_find_figure

            return lr_find_figure(result, title=f"LR range test: {name} on {task.name}")

        if not write_figure("lr-find", draw, args.output):
            return EXIT_FAILURE

    print(_lr_find_summary(result, name, task.name))
    return EXIT_OK


def _lr_find_summary(result, optimizer: str, task: str) -> str:
    """The suggestions of an LR range test and how it ended, a few lines."""
    steps = len(result.lrs)
    if result.diverged_at is not None:
        ended = f"stopped at step {steps} (lr {result.lrs[-1]:.2e}): the loss diverged"
    else:
        ended = f"ran all {steps} steps up to lr {result.lrs[-1]:.2e}"
    lines = [f"{optimizer} on {task}: {ended}"]
    best = result.best_index
    if best is not None:
        lines.append(
            f"  lowest smoothed loss: {result.smoothed[best]:.4f} at lr {result.lrs[best]:.2e}"
        )
    for label, lr in (("steepest descent", result.suggestion), ("valley", result.valley)):
        value = f"{lr:.2e}" if lr is not None else "none (the loss never went down)"
        lines.append(f"  suggested lr ({label}): {value}")
    return "\n".join(lines)
