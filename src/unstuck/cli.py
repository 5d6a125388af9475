"""The ``unstuck`` command: ``unstuck demo`` and ``unstuck schedule``; ``compare``, ``surface``,
``doctor`` later.

Each subcommand is registered by one small ``_add_<name>`` function, listed in :data:`COMMANDS`,
that adds its parser and sets ``handler`` (a ``_run_<name>`` function) and ``command_parser``.
Handlers import what they need (the lab, scikit-learn) inside their body, so building the parser
stays cheap. Handlers return the exit status: 0 ok, 1 failure, 2 usage error (raise
:class:`UsageError` for that).

This is the only module that prints: progress to stderr, results to stdout.
"""

from __future__ import annotations

import argparse
import csv
import os
import secrets
import sys
from collections.abc import Callable, Sequence
from typing import Any

from unstuck import __version__

__all__ = ["UsageError", "build_parser", "main"]

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2

DESCRIPTION = """\
unstuck: optimizers, schedules and diagnostics for PyTorch training that does not work yet.

The library (import unstuck) gives drop-in torch.optim optimizers (SGD, Adam, AdamW, RAdam,
Ranger, LARS, ...), learning-rate schedules, gradient centralization and gradient tools. This
command runs its experiments from the shell.
"""

EPILOG = "Run 'unstuck COMMAND --help' for the options of one command."


class UsageError(Exception):
    """A command-line argument is invalid; ``main`` reports it and exits with status 2."""


def _positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    """argparse type: a finite float > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def _name_list(text: str) -> list[str]:
    """argparse type: a comma-separated list of names (blanks dropped)."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"must name at least one, got {text!r}")
    return names


# --- demo -----------------------------------------------------------------------------------


def _add_demo(subparsers: argparse._SubParsersAction) -> None:
    """Register ``unstuck demo``."""
    parser = subparsers.add_parser(
        "demo",
        help="train a digits classifier with several optimizers and compare them",
        description=(
            "Train a small MLP on scikit-learn's 8x8 digits (no download) once per optimizer, "
            "from the same initial weights and batch order, and print final training loss, "
            "validation and test accuracy and time. Needs scikit-learn (pip install "
            "'unstuck[demo]')."
        ),
    )
    parser.add_argument(
        "--epochs",
        type=_positive_int,
        default=50,
        help="passes over the training data (default: 50)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of initial weights and batch order (default: 0)"
    )
    parser.add_argument(
        "--optimizers",
        type=_name_list,
        default=None,
        metavar="NAMES",
        help="comma-separated subset of SGD,Adam,AdamW,RAdam,Ranger,LARS (default: all)",
    )
    parser.add_argument(
        "--lr",
        type=_positive_float,
        default=None,
        help="use this learning rate for every optimizer (default: a tuned one for each)",
    )
    parser.add_argument(
        "--batch-size", type=_positive_int, default=64, help="mini-batch size (default: 64)"
    )
    parser.add_argument(
        "--quiet", "-q", action="store_true", help="print only the table, no progress"
    )
    parser.set_defaults(handler=_run_demo, command_parser=parser)


def _run_demo(args: argparse.Namespace) -> int:
    """Handler of ``unstuck demo``."""
    from unstuck.lab import demo

    available = demo.default_optimizers(lr=args.lr)
    if args.optimizers is None:
        chosen = available
    else:
        by_lower = {name.lower(): name for name in available}
        unknown = [name for name in args.optimizers if name.lower() not in by_lower]
        if unknown:
            raise UsageError(
                f"--optimizers: unknown {', '.join(unknown)}; choose from {', '.join(available)}"
            )
        chosen = {by_lower[n.lower()]: available[by_lower[n.lower()]] for n in args.optimizers}

    def progress(report: demo.EpochReport) -> None:
        if report.epoch == report.epochs:
            print(
                f"  {report.optimizer}: {report.epochs} epochs, "
                f"last epoch loss {report.train_loss:.4f}",
                file=sys.stderr,
            )

    try:
        from unstuck.lab.tasks import digits_mlp

        task = digits_mlp()
    except ImportError as error:
        print(f"unstuck demo: {error}", file=sys.stderr)
        return EXIT_FAILURE
    if not args.quiet:
        print(
            f"Training {task.name} ({task.description}) for {args.epochs} epochs with "
            f"{len(chosen)} optimizer(s)...",
            file=sys.stderr,
        )
    results = demo.run_demo(
        chosen,
        epochs=args.epochs,
        seed=args.seed,
        batch_size=args.batch_size,
        task=task,
        progress=None if args.quiet else progress,
    )
    print(demo.format_table(results))
    return EXIT_OK


# --- schedule -------------------------------------------------------------------------------

_SCHEDULE_NAMES = "@SCHEDULE_NAMES@"
"""Placeholder in ``unstuck schedule --help``, filled with the schedule names only when printed."""

SCHEDULE_DESCRIPTION = """\
Evaluate one or several learning-rate schedules, written in the text form below, at
optimizer steps 0..N-1. With -o, draw them in one figure (one labelled curve each, warm-up
shaded); with --csv, print step,lr rows (one lr column per schedule) on standard output; with
neither, print a short summary of each. Drawing needs matplotlib (pip install 'unstuck[plot]').
"""

SCHEDULE_EPILOG = f"""\
The text form:
  A schedule is written as a call, NAME(ARG, ..., KEY=VALUE, ...): the same text that
  repr() of a schedule prints. Combinators such as warmup take another schedule as their
  first argument. Each schedule gives a multiplier of the base learning rate at every
  optimizer step; the learning rate drawn is BASE * multiplier(step), for steps 0..N-1.
  Quote each TEXT for your shell: it holds parentheses, commas and spaces.

Examples:
  unstuck schedule "warmup(cosine(10000), 500)" --steps 10000 --lr 1e-3
  unstuck schedule "noam(d_model=512, warmup=4000)" --steps 20000 --lr 1 --csv
  unstuck schedule "one_cycle(1000)" "step_decay(100, gamma=0.5)" --steps 1000 \\
      --lr 0.1 --log -o schedules.png

Schedules (arguments by position or by name; defaults shown):
  {_SCHEDULE_NAMES}
"""


def _schedule_signatures() -> list[str]:
    """``NAME(ARG, KEY=DEFAULT, ...)`` of every schedule the text form can call, sorted."""
    import inspect

    from unstuck.schedules import SCHEDULES

    signatures = []
    for name, schedule in sorted(SCHEDULES.items()):
        arguments = [
            parameter.name
            if parameter.default is inspect.Parameter.empty
            else f"{parameter.name}={parameter.default!r}"
            for parameter in inspect.signature(schedule).parameters.values()
        ]
        signatures.append(f"{name}({', '.join(arguments)})")
    return signatures


class _ScheduleHelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Fills in the schedule names when help is printed, so building the parser stays cheap."""

    def add_text(self, text: str | None) -> None:
        if text is not None and _SCHEDULE_NAMES in text:
            try:
                names = "\n  ".join(_schedule_signatures()) or "(none found)"
            except ImportError as error:  # a broken install should not break --help
                names = f"(unavailable: {error})"
            text = text.replace(_SCHEDULE_NAMES, names)
        super().add_text(text)


def _add_schedule(subparsers: argparse._SubParsersAction) -> None:
    """Register ``unstuck schedule``."""
    parser = subparsers.add_parser(
        "schedule",
        help="draw learning-rate schedules, or print them as CSV",
        description=SCHEDULE_DESCRIPTION,
        epilog=SCHEDULE_EPILOG,
        formatter_class=_ScheduleHelpFormatter,
    )
    parser.add_argument(
        "texts", nargs="+", metavar="TEXT", help="a schedule in the text form, e.g. 'cosine(1000)'"
    )
    parser.add_argument(
        "--steps", type=_positive_int, required=True, metavar="N", help="evaluate steps 0..N-1"
    )
    parser.add_argument(
        "--lr",
        type=_positive_float,
        default=1.0,
        metavar="BASE",
        help="base learning rate the schedules multiply (default: 1, i.e. the multipliers)",
    )
    _add_figure_output(parser)
    parser.add_argument(
        "--csv", action="store_true", help="print step,lr rows as CSV on standard output"
    )
    parser.add_argument("--log", action="store_true", help="draw the learning rate on a log axis")
    parser.add_argument("--title", default=None, help="title of the figure")
    parser.set_defaults(handler=_run_schedule, command_parser=parser)


def _figure_format(path: str) -> str:
    """The image format of ``path`` from its suffix (png when it has none)."""
    suffix = os.path.splitext(path)[1].lower().lstrip(".")
    return suffix or "png"


def _check_output(path: str, force: bool) -> None:
    """Refuse an output path that cannot be written, before any work is done."""
    if os.path.isdir(path):
        raise UsageError(f"-o {path}: is a directory")
    if os.path.exists(path) and not force:
        raise UsageError(f"-o {path}: file exists; pass --force to overwrite it")
    directory = os.path.dirname(path) or "."
    if not os.path.isdir(directory):
        raise UsageError(f"-o {path}: directory {directory} does not exist")
    if _figure_format(path) not in ("png", "svg", "pdf"):
        raise UsageError(f"-o {path}: must end in .png, .svg or .pdf")


def _add_figure_output(parser: argparse.ArgumentParser) -> None:
    """The ``-o FILE`` and ``--force`` options of a command that draws a figure."""
    parser.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        default=None,
        help="write the figure to FILE (PNG; .svg and .pdf also work)",
    )
    parser.add_argument("--force", action="store_true", help="with -o, overwrite FILE if it exists")


def _write_figure(command: str, draw: Callable[[], Any], path: str) -> bool:
    """Draw a figure and save it atomically to ``path``; on failure say why on stderr."""
    try:
        figure = draw()
    except ImportError as error:  # matplotlib missing: the message says what to install
        print(f"unstuck {command}: {error}", file=sys.stderr)
        return False
    try:
        _save_atomically(figure, path)
    except OSError as error:
        print(f"unstuck {command}: cannot write {path}: {error}", file=sys.stderr)
        return False
    print(f"wrote {path}", file=sys.stderr)
    return True


def _save_atomically(figure, path: str) -> None:
    """Write ``figure`` to ``path`` via a temporary file in the same directory and a rename,
    so a reader never sees a half-written file and a failure leaves no partial one. The file
    gets the permissions of any newly created file (0o666 less the umask), unlike ``mkstemp``'s
    private 0o600."""
    directory = os.path.dirname(path) or "."
    temporary = os.path.join(directory, f".{os.path.basename(path)}.{secrets.token_hex(6)}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(descriptor, "wb") as stream:
            figure.savefig(stream, format=_figure_format(path), dpi=120)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def _run_schedule(args: argparse.Namespace) -> int:
    """Handler of ``unstuck schedule``."""
    from unstuck.schedules import ScheduleSyntaxError, parse

    if args.output is not None:
        _check_output(args.output, args.force)

    schedules = {}
    for text in args.texts:
        try:
            schedules[text] = parse(text)
        except ScheduleSyntaxError as error:
            print(f"unstuck schedule: {error}", file=sys.stderr)
            return EXIT_USAGE
        except ValueError as error:  # a well-formed call with a bad argument (gamma <= 0, ...)
            print(f"unstuck schedule: {text}: {error}", file=sys.stderr)
            return EXIT_USAGE

    curves = {
        text: [args.lr * float(schedule(step)) for step in range(args.steps)]
        for text, schedule in schedules.items()
    }

    if args.output is not None:

        def draw() -> Any:
            from unstuck.plots import schedule_figure

            return schedule_figure(curves, base_lr=args.lr, log_scale=args.log, title=args.title)

        if not _write_figure("schedule", draw, args.output):
            return EXIT_FAILURE

    if args.csv:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(["step", *curves])
        for step in range(args.steps):
            writer.writerow([step, *(repr(curve[step]) for curve in curves.values())])
    elif args.output is None:
        print(_schedule_summary(curves))
    return EXIT_OK


def _schedule_summary(curves: dict[str, list[float]]) -> str:
    """One block per schedule: lr at step 0, the largest lr and its step, the final lr."""
    lines = []
    for text, curve in curves.items():
        peak_step = max(range(len(curve)), key=curve.__getitem__)
        lines += [
            text,
            f"  step 0: {curve[0]:.6g}   max: {curve[peak_step]:.6g} at step {peak_step}   "
            f"final (step {len(curve) - 1}): {curve[-1]:.6g}",
        ]
    return "\n".join(lines)


# --- lr-find --------------------------------------------------------------------------------


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


def _add_lr_find(subparsers: argparse._SubParsersAction) -> None:
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
        "--start-lr", type=_positive_float, default=1e-7, help="first learning rate (default: 1e-7)"
    )
    parser.add_argument(
        "--end-lr", type=_positive_float, default=10.0, help="last learning rate (default: 10)"
    )
    parser.add_argument(
        "--steps",
        type=_positive_int,
        default=100,
        metavar="N",
        help="steps of the ramp (default: 100)",
    )
    parser.add_argument(
        "--batch-size", type=_positive_int, default=64, help="mini-batch size (default: 64)"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of initial weights and batch order (default: 0)"
    )
    _add_figure_output(parser)
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress on standard error")
    parser.set_defaults(handler=_run_lr_find, command_parser=parser)


def _run_lr_find(args: argparse.Namespace) -> int:
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
        _check_output(args.output, args.force)

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

        if not _write_figure("lr-find", draw, args.output):
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


# --- entry point ----------------------------------------------------------------------------

COMMANDS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (
    _add_demo,
    _add_schedule,
    _add_lr_find,
)
"""The registration functions of every subcommand, in ``--help`` order."""


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every subcommand in :data:`COMMANDS` registered."""
    parser = argparse.ArgumentParser(
        prog="unstuck",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"unstuck {__version__}")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    for add in COMMANDS:
        add(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (``sys.argv[1:]`` when None); returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, --version and argparse's usage errors
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_usage(sys.stderr)
        print("unstuck: error: a command is required (see 'unstuck --help')", file=sys.stderr)
        return EXIT_USAGE
    try:
        return handler(args)
    except UsageError as error:
        command_parser = getattr(args, "command_parser", parser)
        command_parser.print_usage(sys.stderr)
        print(f"{command_parser.prog}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("unstuck: interrupted", file=sys.stderr)
        return 130
