"""``unstuck doctor``: diagnose a training from its log files, or run a built-in scenario; print
the verdicts, write the HTML report."""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path

from unstuck.cli.common import EXIT_FAILURE, EXIT_OK, UsageError, check_output, positive_float
from unstuck.integrations.log_formats import FORMATS

__all__ = ["add_parser", "default_report_name", "run"]

OPTIMIZER_FAMILIES = ("adam", "radam", "adagrad", "rmsprop", "none")
"""The optimizer families ``unstuck.doctor.diagnose`` knows (``optimizer_family=``)."""

DESCRIPTION = """\
The doctor reads a training run the way the classic guide "my network does not train" does:
training loss large -> model bias or optimisation failure (told apart by a simpler reference
model), or the noise floor of the data (a bigger model does no better); stuck with a large
gradient -> oscillation across a valley; stuck with a small gradient -> the Hessian decides
(saddle point, local minimum); training loss small but held-out loss large -> overfitting or
mismatch (told apart by a train-dev split); and what a per-step monitor and a few checks see:
non-finite values, divergence, a learning rate too large or too small (confirmed by short runs at
other learning rates), exploding gradients, an adaptive step blowing up, a missing warm-up,
symmetric or dead units, layers that need different step sizes.

With PATH, this command reads the logs your training already wrote and diagnoses them: a
Monitor's JSON Lines (Monitor.to_jsonl: the step rules run too), a CSV of per-step or per-epoch
losses, Lightning's metrics.csv (or its version_N/ directory), Hugging Face's trainer_state.json
(or a checkpoint-N/ or output directory: the latest checkpoint), or a TensorBoard log directory
(needs pip install 'unstuck[tensorboard]'). The format is told from the path (--format forces
one); the training, validation and test loss columns are guessed from their names (--train-key,
--val-key, --test-key name them) and printed, then the verdicts, and the HTML report is written.
In Python: unstuck.integrations.logs.read_log(PATH).diagnose().

Without PATH, it runs a built-in scenario: a small real training (seconds, CPU) that exhibits one
failure, prints the verdicts with their evidence and fixes, and writes a self-contained HTML
report. In Python: unstuck.doctor.diagnose(train_loss, val_loss, test_loss, ...) for your own
curves, unstuck.doctor.examine(model, criterion, train_data, ...) for your own model.
Scenarios need scikit-learn (pip install 'unstuck[demo]'); the report needs matplotlib
('unstuck[plot]').
"""

EPILOG = """\
examples:
  unstuck doctor lightning_logs/version_0              # writes doctor_version_0.html
  unstuck doctor output/checkpoint-500                 # Hugging Face's trainer_state.json
  unstuck doctor runs/ --format tensorboard -o tb.html
  unstuck doctor losses.csv --train-key loss --val-key val_loss --baseline 2.303
  unstuck doctor run.jsonl                             # a Monitor's records: step rules too
  unstuck doctor --list
  unstuck doctor --scenario saddle_point               # writes doctor_saddle_point.html
  unstuck doctor --scenario overfitting -o report.html --force
  unstuck doctor --scenario lr_too_large --try-fixes    # runs the fixes, reports their effect
  unstuck doctor --scenario all                        # every scenario, a table (about 35 s)
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``unstuck doctor``."""
    parser = subparsers.add_parser(
        "doctor",
        help="diagnose why training fails: from its log files, or a built-in scenario",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("path", nargs="?", metavar="PATH",
                        help="a log file or directory to diagnose (see above)")
    source.add_argument("--scenario", metavar="NAME",
                        help="a scenario (see --list), or 'all' for every one and a table")
    source.add_argument("--list", action="store_true", help="list the scenarios and exit")
    parser.add_argument("--format", choices=FORMATS, default=None,
                        help="with PATH: its format (default: told from the path)")
    for role, what in (("train", "training"), ("val", "validation"), ("test", "test")):
        parser.add_argument(f"--{role}-key", metavar="NAME", default=None,
                            help=f"with PATH: the column, key or tag of the {what} loss "
                                 "(default: guessed from the names)")
    parser.add_argument("--baseline", type=positive_float, default=None, metavar="LOSS",
                        help="with PATH: the loss scale the doctor's thresholds are fractions "
                             "of (default: the first training loss; for per-epoch losses pass "
                             "e.g. ln(C) for cross-entropy over C classes)")
    parser.add_argument("--optimizer-family", choices=OPTIMIZER_FAMILIES, default=None,
                        help="with a Monitor's JSON Lines: the optimizer's family, for the "
                             "warm-up and adaptive-step rules (default: unknown)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the scenario (default: 0)")
    parser.add_argument(
        "-o", "--out", metavar="FILE", default=None,
        help="the HTML report (default: doctor_NAME.html in the current directory, NAME the "
             "scenario or the stem of PATH); with --scenario all, a directory to write every "
             "report in (default: none written)",
    )
    parser.add_argument("--try-fixes", action="store_true",
                        help="also run each verdict's fixes on copies of the run and report "
                             "their measured effect (a few more trainings)")
    parser.add_argument("--force", action="store_true", help="overwrite existing reports")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress on standard error")
    parser.set_defaults(handler=run, command_parser=parser)


def _list() -> str:
    from unstuck.doctor.scenarios import SCENARIOS

    width = max(len(n) for n in SCENARIOS)
    lines = []
    for s in SCENARIOS.values():
        first = s.description.split(": ")[0] if len(s.description) > 100 else s.description
        lines.append(f"{s.name:<{width}}  {first[:110]}")
    return "\n".join(lines)


def _write(diagnosis, path: str) -> bool:
    try:
        diagnosis.save_html(path, overwrite=True)
    except ImportError as error:
        print(f"unstuck doctor: {error}", file=sys.stderr)
        return False
    except OSError as error:
        print(f"unstuck doctor: cannot write {path}: {error}", file=sys.stderr)
        return False
    return True


def run(args: argparse.Namespace) -> int:
    """Handler of ``unstuck doctor``."""
    log_options = [option for option, value in (
        ("--format", args.format), ("--train-key", args.train_key), ("--val-key", args.val_key),
        ("--test-key", args.test_key), ("--baseline", args.baseline),
        ("--optimizer-family", args.optimizer_family)) if value is not None]
    if args.path is not None:
        return _run_log(args)
    if log_options:
        raise UsageError(f"{log_options[0]} needs a PATH (a log file or directory)")
    try:
        from unstuck.doctor.scenarios import SCENARIOS, run_scenario
    except ImportError as error:  # pragma: no cover - scikit-learn missing
        print(f"unstuck doctor: {error}", file=sys.stderr)
        return EXIT_FAILURE
    if args.list:
        print(_list())
        return EXIT_OK
    if args.scenario is None:
        raise UsageError("pass a PATH (a log file or directory), --scenario NAME (or all), or "
                         "--list")
    if args.scenario == "all":
        return _run_all(args)
    if args.scenario not in SCENARIOS:
        raise UsageError(
            f"--scenario: unknown {args.scenario!r}; choose from all, {', '.join(SCENARIOS)}"
        )
    path = args.out or f"doctor_{args.scenario}.html"
    check_output(path, args.force, figure=False)
    scenario = SCENARIOS[args.scenario]
    if not args.quiet:
        print(f"scenario {scenario.name}: {scenario.description}", file=sys.stderr)
    start = time.monotonic()
    diagnosis = run_scenario(scenario.name, args.seed, try_fixes=args.try_fixes)
    print(f"{diagnosis.title} (seed {args.seed}, {time.monotonic() - start:.1f} s)")
    print(diagnosis)
    if not _write(diagnosis, path):
        return EXIT_FAILURE
    print(f"wrote {path}", file=sys.stderr)
    return EXIT_OK


def default_report_name(path: str) -> str:
    """``doctor_<stem>.html``: the stem of a log file, the name of a directory (characters other
    than letters, digits, ``.``, ``_`` and ``-`` become ``_``)."""
    target = Path(path)
    stem = target.resolve().name if target.is_dir() else target.stem
    return f"doctor_{re.sub(r'[^A-Za-z0-9._-]', '_', stem) or 'log'}.html"


def _run_log(args: argparse.Namespace) -> int:
    """``unstuck doctor PATH``: read the log, print the keys and the verdicts, write the report."""
    from unstuck.integrations.logs import LogReadError, read_log

    if args.try_fixes:
        raise UsageError("--try-fixes needs --scenario: a log holds no training to run again")
    out = args.out or default_report_name(args.path)
    check_output(out, args.force, figure=False)
    try:
        log = read_log(args.path, args.format, train_key=args.train_key, val_key=args.val_key,
                       test_key=args.test_key)
    except LogReadError as error:
        print(f"unstuck doctor: {error}", file=sys.stderr)
        return EXIT_FAILURE
    print(log.describe(command_line=True))
    diagnosis = log.diagnose(baseline=args.baseline, optimizer_family=args.optimizer_family)
    print(f"\n{diagnosis.title}")
    print(diagnosis)
    if not _write(diagnosis, out):
        return EXIT_FAILURE
    print(f"wrote {out}", file=sys.stderr)
    return EXIT_OK


def _run_all(args: argparse.Namespace) -> int:
    from unstuck.cli.progress import ProgressBar
    from unstuck.doctor.scenarios import SCENARIOS, run_scenario
    from unstuck.report import markdown_table

    if args.out is not None and not os.path.isdir(args.out):
        raise UsageError(f"-o {args.out}: with --scenario all, must be an existing directory")
    rows, failed = [], 0
    start = time.monotonic()
    with ProgressBar(len(SCENARIOS), "doctor", enabled=not args.quiet) as bar:
        for scenario in SCENARIOS.values():
            t = time.monotonic()
            diagnosis = run_scenario(scenario.name, args.seed, try_fixes=args.try_fixes)
            seconds = time.monotonic() - t
            codes = diagnosis.codes
            ok = codes[0] == scenario.expected or (
                scenario.composite and scenario.expected in codes
            )
            failed += not ok
            rows.append([scenario.name, scenario.expected, ", ".join(codes),
                         "yes" if ok else "NO", f"{seconds:.1f}"])
            if args.out is not None:
                path = os.path.join(args.out, f"doctor_{scenario.name}.html")
                if os.path.exists(path) and not args.force:
                    print(f"unstuck doctor: {path} exists; pass --force", file=sys.stderr)
                else:
                    _write(diagnosis, path)
            bar.advance(note=scenario.name)
    print(markdown_table(["scenario", "expected", "verdicts found", "found", "seconds"], rows))
    print(f"\n{len(rows) - failed}/{len(rows)} scenarios found their verdict "
          f"(seed {args.seed}, {time.monotonic() - start:.1f} s)")
    return EXIT_OK if not failed else EXIT_FAILURE
