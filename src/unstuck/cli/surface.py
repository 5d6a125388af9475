"""``unstuck surface``: optimizers on a 2-D error surface: a table, a figure, an animation."""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any

from unstuck.cli.common import (
    EXIT_FAILURE,
    EXIT_OK,
    UsageError,
    add_figure_output,
    check_output,
    non_negative_float,
    positive_float,
    positive_int,
    write_figure,
)

__all__ = ["add_parser", "run"]

DEFAULT_OPTIMIZERS = "sgd, momentum, adagrad, rmsprop, adam"

DESCRIPTION = """\
Run optimizers from a start point for N steps on a 2-D error surface and show where they go.
Prints a table (final loss, final gradient norm, distance to the nearest known minimum, whether
the run diverged); with -o draws the paths over the surface's contours beside the loss and the
gradient norm per step; with --gif writes the paths growing as an animation. Drawing needs
matplotlib (pip install 'unstuck[plot]').

Each optimizer's learning rate is its own lr= when given, else --lr, else a documented default
per surface chosen to show the surface's lesson (unstuck.lab.trajectories.DEFAULT_LRS), or with
--tune the best of a small log grid (1e-4 .. 3) by the mean log loss gap over the run.
"""

EPILOG = """\
Optimizers (see --list): unstuck's sgd, momentum, nesterov, adagrad, rmsprop, adam, adamw,
radam, ranger, lars, rangerlars; adagrad_rms (the lecture's Adagrad: root MEAN square); and every
torch.optim optimizer as torch.NAME (torch.sgd, torch.adam, torch.lbfgs, ...). Options are
keyword arguments: "sgd(lr=0.01, momentum=0.5)", "adam(betas=(0.9, 0.99))".

The lessons, from the lecture notes:
  # gradient descent bounces between the valley walls: the gradient stays large while the loss
  # plateaus; the adaptive methods go straight to the minimum
  unstuck surface --surface valley -o valley.png
  # the lecture's Adagrad blows up after the long flat stretch; a decaying schedule fixes it
  unstuck surface --optimizers "adagrad_rms, adagrad" --steps 600 -o blowup.png
  unstuck surface --optimizers "adagrad_rms, adagrad" --steps 600 \\
      --schedule "exponential(0.99)" -o fixed.png
  # from a saddle, gradient descent stalls; momentum escapes, and so does noisy gradient descent
  unstuck surface --surface saddle --optimizers "sgd, momentum" -o saddle.png
  unstuck surface --surface saddle --optimizers sgd --start 1.5,0 --noise 0.05 -o noise.png

More:
  unstuck surface --surface rosenbrock --optimizers "sgd, adam, torch.lbfgs" --tune --steps 500
  unstuck surface --surface himmelblau --gif himmelblau.gif
  unstuck surface --surface mymodule:bowl --box=-3,3,-3,3 --start=2,-2 -o bowl.png
      (bowl(x, y): a function of torch tensors in mymodule.py in the current directory;
      write --box=... and --start=... with "=" when a value starts with a minus sign)
"""


def _floats(count: int, what: str) -> Any:
    def parse(text: str) -> tuple[float, ...]:
        try:
            values = tuple(float(v) for v in text.split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
        if len(values) != count or not all(map(math.isfinite, values)):
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
        return values

    return parse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``unstuck surface``."""
    parser = subparsers.add_parser(
        "surface",
        help="watch optimizers move on a 2-D error surface (valley, saddle, rosenbrock, ...)",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--surface", default="valley", metavar="NAME",
                        help="a surface (see --list) or module:function (default: valley)")
    parser.add_argument("--optimizers", default=DEFAULT_OPTIMIZERS, metavar="TEXT",
                        help=f"comma-separated optimizers with options (default: "
                             f"'{DEFAULT_OPTIMIZERS}')")
    parser.add_argument("--steps", type=positive_int, default=300, metavar="N",
                        help="optimizer steps (default: 300)")
    parser.add_argument("--start", type=_floats(2, "X,Y"), default=None, metavar="X,Y",
                        help="start point (default: the surface's)")
    parser.add_argument("--box", type=_floats(4, "X0,X1,Y0,Y1"), default=None,
                        metavar="X0,X1,Y0,Y1", help="view box (default: the surface's)")
    parser.add_argument("--lr", type=positive_float, default=None,
                        help="learning rate of every optimizer without its own lr= "
                             "(default: the documented per-surface defaults)")
    parser.add_argument("--schedule", default=None, metavar="TEXT",
                        help="a learning-rate schedule for every optimizer, e.g. "
                             "'cosine(300)' (see 'unstuck schedule --help')")
    parser.add_argument("--tune", action="store_true",
                        help="pick each optimizer's lr by a log-grid search on the surface")
    parser.add_argument("--noise", type=non_negative_float, default=0.0, metavar="SIGMA",
                        help="add Gaussian noise of this std to every gradient (default: 0)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the noise (default: 0)")
    add_figure_output(parser)
    parser.add_argument("--gif", metavar="FILE", default=None,
                        help="write an animation of the paths to FILE (.gif)")
    parser.add_argument("--frames", type=positive_int, default=40, metavar="N",
                        help="frames of the --gif animation (default: 40)")
    parser.add_argument("--title", default=None, help="title of the figure")
    parser.add_argument("--list", action="store_true",
                        help="list the surfaces and optimizers, then exit")
    parser.add_argument("--quiet", action="store_true", help="no progress on standard error")
    parser.set_defaults(handler=run, command_parser=parser)


def _listing() -> str:
    import textwrap

    from unstuck.lab.optimizer_specs import OPTIMIZERS
    from unstuck.lab.surfaces import SURFACES

    lines = ["Surfaces (or module:function, a Python function of (x, y)):"]
    for surface in SURFACES.values():
        lines.append(f"  {surface.name:14s} f(x, y) = {surface.formula}")
        lines += textwrap.wrap(surface.note, 96, initial_indent=" " * 17,
                               subsequent_indent=" " * 17)
    lines.append("")
    lines.append("Optimizers:")
    lines += [f"  {name:16s} {entry.description}" for name, entry in OPTIMIZERS.items()]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Handler of ``unstuck surface``."""
    if args.list:
        print(_listing())
        return EXIT_OK

    from unstuck.lab.optimizer_specs import parse_optimizers
    from unstuck.lab.surfaces import get_surface
    from unstuck.lab.trajectories import run_trajectory, tune_lr

    if args.output is not None:
        check_output(args.output, args.force)
    if args.gif is not None:
        check_output(args.gif.removesuffix(".gif") + ".png", True)  # the directory exists
        if not args.gif.lower().endswith(".gif"):
            raise UsageError(f"--gif {args.gif}: must end in .gif")
        if args.gif == args.output:
            raise UsageError(f"--gif {args.gif}: the same file as -o")
        import os

        if os.path.exists(args.gif) and not args.force:
            raise UsageError(f"--gif {args.gif}: file exists; pass --force to overwrite it")
    try:
        surface = get_surface(args.surface, box=args.box, start=args.start)
    except ValueError as error:
        raise UsageError(f"--surface: {error}") from None
    try:
        specs = parse_optimizers(args.optimizers)
    except ValueError as error:
        raise UsageError(f"--optimizers: {error}") from None
    if args.schedule is not None:
        from unstuck.schedules import parse

        try:
            parse(args.schedule)
        except ValueError as error:
            raise UsageError(f"--schedule: {error}") from None

    from unstuck.cli.progress import ProgressBar

    options = dict(steps=args.steps, schedule=args.schedule, noise=args.noise, seed=args.seed)
    trajectories = []
    with ProgressBar(len(specs), "surface", enabled=not args.quiet) as bar:
        for spec in specs:
            lr = args.lr
            if args.tune and spec.lr is None:
                lr, _ = tune_lr(surface, spec, **options)  # type: ignore[arg-type]
            try:
                trajectory = run_trajectory(surface, spec, lr=lr, **options)  # type: ignore[arg-type]
            except ValueError as error:
                raise UsageError(f"--optimizers: {error}") from None
            trajectories.append(trajectory)
            bar.advance(note=spec.label)

    print(_table(surface, trajectories))
    ok = True
    if args.output is not None:

        def draw() -> Any:
            from unstuck.plots import surface_figure

            return surface_figure(surface, trajectories, title=args.title)

        ok = write_figure("surface", draw, args.output)
    if args.gif is not None:
        try:
            from unstuck.plots import surface_animation

            surface_animation(surface, trajectories, args.gif, overwrite=True, title=args.title,
                              frames=args.frames)
        except (ImportError, OSError) as error:
            print(f"unstuck surface: cannot write {args.gif}: {error}", file=sys.stderr)
            ok = False
        else:
            print(f"wrote {args.gif}", file=sys.stderr)
    return EXIT_OK if ok else EXIT_FAILURE


def _table(surface: Any, trajectories: list[Any]) -> str:
    """One row per optimizer: lr, final loss, final gradient norm, distance, status."""
    header = ("optimizer", "lr", "final loss", "grad norm", "to minimum", "steps", "status")
    rows = []
    for t in trajectories:
        _, distance = surface.nearest_minimum(t.final)
        rows.append((
            t.label.split(", lr=")[0], f"{t.lr:.4g}", f"{t.loss[-1]:.4g}",
            f"{t.grad_norm[-1]:.3g}", "-" if math.isnan(distance) else f"{distance:.3g}",
            str(len(t.loss) - 1), t.status,
        ))
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    lines = [f"{surface.name}: f(x, y) = {surface.formula}; start {tuple(surface.start)}"]
    for row in (header, *rows):
        lines.append("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                               for i, (cell, w) in enumerate(zip(row, widths, strict=True))))
    return "\n".join(lines)
