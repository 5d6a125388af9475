"""``unstuck compare``: many optimizers on one task, several seeds, a ranked report."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from unstuck.cli.common import EXIT_FAILURE, EXIT_OK, UsageError, positive_float, positive_int

__all__ = ["add_parser"]

DEFAULT_OUT = "unstuck-compare"

DESCRIPTION = """\
Train one task with several optimizers and seeds, side by side, and write a report.

For each seed every optimizer starts from the same initial weights and sees the same
mini-batches. Each optimizer uses its documented default learning rate for the task (or the
lr= you give it, or with --tune-lr the best of a five-point grid on the validation split),
under a linear warm-up (5% of the steps) then cosine decay. A run whose loss becomes NaN or
infinite is stopped and counted as diverged.

The output folder gets results.json (every curve and number, saved after each finished run),
report.md and report.html (self-contained): a ranked table (final validation/test metric and
loss, mean +/- std over seeds; steps to reach the task's target loss; step time; divergences),
learning curves with seed bands, the learning-rate curves, and the doctor's top verdict per
optimizer. Running the same command again RESUMES: finished runs are read back, not redone.
A folder with another comparison's results is refused unless --force.

Needs scikit-learn for the digits tasks (pip install 'unstuck[demo]') and matplotlib for the
figures (pip install 'unstuck[plot]').
"""

EPILOG = """\
Examples:
  unstuck compare                     digits-mlp, 10 optimizers, 3 seeds (about a minute)
  unstuck compare --optimizers "sgd(lr=0.1), momentum, adam, adamw(weight_decay=0.05)"
  unstuck compare --task deep-linear --tune-lr --out linear-report
  unstuck compare --task digits-cnn --seeds 0,1 --epochs 10 --jobs 2
  unstuck compare --schedule "warmup(constant(), {warmup})" --out flat-lr
  unstuck compare --list-tasks

Optimizers (--optimizers, comma-separated, each NAME or NAME(KEY=VALUE, ...)):
  sgd, momentum, nesterov, adagrad, rmsprop, adam, adamw, radam, ranger, lars, rangerlars,
  and torch.optim's as torch.NAME (torch.adam, torch.sgd, ...).

Schedule (--schedule): the text form of 'unstuck schedule --help', with placeholders filled
per run: {steps} (optimizer steps of the run), {warmup} (5% of them, at least 1) and
{decay} (steps - warmup). Default: "warmup(cosine({decay}), {warmup})"; "none" keeps the
learning rate constant.

--tune-lr: for each optimizer, train the first seed with the default lr times 0.1, 0.32, 1,
3.2 and 10 and keep the lr with the lowest final validation loss; then run all seeds with it.
"""


def _seed_list(text: str) -> list[int]:
    """argparse type: comma-separated distinct integers, e.g. ``0,1,2``."""
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be comma-separated integers such as 0,1,2, got {text!r}"
        ) from None
    if not seeds:
        raise argparse.ArgumentTypeError(f"must name at least one seed, got {text!r}")
    if len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"must not repeat a seed, got {text!r}")
    return seeds


def _default_jobs() -> int:
    """Worker processes by default: one per core, at most 4 (runs are small)."""
    return max(1, min(4, os.cpu_count() or 1))


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``unstuck compare``."""
    parser = subparsers.add_parser(
        "compare",
        help="compare optimizers on a task over several seeds; write a ranked report",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--task", default="digits-mlp", metavar="NAME",
                        help="the task (default: digits-mlp; see --list-tasks)")
    parser.add_argument("--list-tasks", action="store_true",
                        help="list the tasks with their defaults and exit")
    parser.add_argument("--optimizers", default=None, metavar="TEXT",
                        help="optimizers in the text form (default: sgd, momentum, adagrad, "
                        "rmsprop, adam, adamw, radam, ranger, lars, rangerlars)")
    parser.add_argument("--schedule", default=None, metavar="TEXT",
                        help='lr schedule (default: "warmup(cosine({decay}), {warmup})"; '
                        '"none": constant)')
    parser.add_argument("--seeds", type=_seed_list, default=[0, 1, 2], metavar="LIST",
                        help="comma-separated seeds (default: 0,1,2)")
    parser.add_argument("--epochs", type=positive_int, default=None, metavar="N",
                        help="epochs per run (default: the task's, see --list-tasks)")
    parser.add_argument("--batch-size", type=positive_int, default=None, metavar="N",
                        help="mini-batch size (default: the task's)")
    parser.add_argument("--tune-lr", action="store_true",
                        help="pick each optimizer's lr on the validation split first")
    parser.add_argument("--target-loss", type=positive_float, default=None, metavar="LOSS",
                        help="the loss of 'steps to target' (default: the task's)")
    parser.add_argument("--out", default=DEFAULT_OUT, metavar="DIR",
                        help=f"output folder, created if missing (default: {DEFAULT_OUT})")
    parser.add_argument("--jobs", "-j", type=positive_int, default=_default_jobs(), metavar="N",
                        help="worker processes (default: the number of cores, at most 4: "
                        f"{_default_jobs()} here)")
    parser.add_argument("--force", action="store_true",
                        help="replace results of a different comparison found in --out")
    parser.add_argument("--quiet", "-q", action="store_true",
                        help="no progress bar; print only the table")
    parser.set_defaults(handler=run, command_parser=parser)


def _list_tasks() -> str:
    """One line per registered task: name, defaults, description."""
    from unstuck.lab.tasks import TASKS

    lines = []
    for name, factory in TASKS.items():
        try:
            task = factory()
        except ImportError as error:
            lines.append(f"{name}: unavailable ({error})")
            continue
        target = f", target loss {task.target_loss:g}" if task.target_loss is not None else ""
        lines.append(
            f"{name}: {task.description}\n    {task.epochs} epochs, batch {task.batch_size}, "
            f"metric {task.metric_name}{target}"
        )
    return "\n".join(lines)


def _arguments(args: argparse.Namespace) -> dict[str, Any]:
    """Check the texts (optimizers, schedule, task) before any work; compare's keywords."""
    from unstuck.lab.compare import DEFAULT_OPTIMIZERS, DEFAULT_SCHEDULE, resolve_schedule
    from unstuck.lab.optimizer_specs import parse_optimizers
    from unstuck.lab.tasks import TASKS
    from unstuck.schedules import parse

    if args.task not in TASKS:
        raise UsageError(f"--task: unknown {args.task!r}; choose from {', '.join(TASKS)}")
    try:
        specs = parse_optimizers(args.optimizers or DEFAULT_OPTIMIZERS)
    except ValueError as error:
        raise UsageError(f"--optimizers: {error}") from None
    schedule = DEFAULT_SCHEDULE if args.schedule is None else args.schedule
    if schedule.strip().lower() == "none":
        schedule = None
    else:
        try:
            parse(resolve_schedule(schedule, 1000) or "")
        except ValueError as error:
            raise UsageError(f"--schedule: {error}") from None
    return {
        "task": args.task, "optimizers": specs, "schedule": schedule, "seeds": args.seeds,
        "epochs": args.epochs, "batch_size": args.batch_size, "tune_lr": args.tune_lr,
        "target_loss": args.target_loss, "out_dir": args.out, "overwrite": args.force,
        "jobs": args.jobs,
    }


def run(args: argparse.Namespace) -> int:
    """Handler of ``unstuck compare``."""
    if args.list_tasks:
        print(_list_tasks())
        return EXIT_OK
    options = _arguments(args)
    from unstuck.cli.progress import ProgressBar
    from unstuck.lab.compare import CompareFolderError, compare
    from unstuck.lab.compare_report import text_table

    bar: ProgressBar | None = None
    resumed = 0

    def progress(event: Any) -> None:
        nonlocal bar, resumed
        resumed += event.resumed
        if args.quiet:
            return
        if bar is None:
            bar = ProgressBar(event.total, label="compare")
        phase = "tuning " if event.phase == "tune" else ""
        if event.finished:
            how = "read back" if event.resumed else ("DIVERGED" if event.diverged else "done")
            note = f"{phase}{event.optimizer} seed {event.seed}: {how}"
        else:
            note = (f"{phase}{event.optimizer} seed {event.seed}: epoch {event.epoch}/"
                    f"{event.epochs}, loss {event.loss:.4f}")
        bar.advance(event.done - bar.done, note=note)

    if not args.quiet:
        print(f"unstuck compare: {args.task}, {len(options['optimizers'])} optimizers x "
              f"{len(args.seeds)} seeds, {args.jobs} job(s), results in {args.out}/",
              file=sys.stderr)
    try:
        results = compare(**options, progress=progress)
    except CompareFolderError as error:
        raise UsageError(f"--out: {error}") from None
    except ValueError as error:  # an option the optimizer's class rejects, e.g. lr=-1
        raise UsageError(str(error)) from None
    except ImportError as error:
        print(f"unstuck compare: {error}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print(f"\nunstuck compare: interrupted; finished runs are saved in {args.out}/; run "
              "the same command again to resume", file=sys.stderr)
        return 130
    finally:
        if bar is not None:
            bar.close()
    if resumed and not args.quiet:
        print(f"{resumed} finished run(s) read back from {args.out}/, not redone",
              file=sys.stderr)
    print(text_table(results.summary, results.task["metric_name"],
                     results.config["target_loss"]))
    report = os.path.join(args.out, "report.html")
    print(f"\nReport: {report} (also report.md, results.json)")
    return EXIT_OK
