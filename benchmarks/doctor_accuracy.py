"""How often is the doctor's top verdict right? Run ``unstuck.doctor.examine`` on the scenario
corpus (``benchmarks/doctor_corpus``: small real trainings with a known truth) and tabulate.

Per part (``calibration``: thresholds may be chosen on it; ``development``: other model families,
seen while the rules were built; ``held-out``: other model families, built apart and only
measured; see ``doctor_corpus/base.py``) it prints the confusion table truth x top verdict, the
top-verdict accuracy on failing runs, the false-alarm rate on healthy runs (truth benign, top
verdict not), the accuracy per model family, the calibration of the confidences, the seconds per
examine and the wrong runs. A run that raises is recorded with the top verdict ``CRASH``, not fatal.

Usage::

    .venv/bin/python benchmarks/doctor_accuracy.py                    # everything, seeds 0 1 2
    .venv/bin/python benchmarks/doctor_accuracy.py --part calibration -j 2 -o results.json
    .venv/bin/python benchmarks/doctor_accuracy.py --cases digits --seeds 0 --proofs
    .venv/bin/python benchmarks/doctor_accuracy.py --part held-out --only-proofs   # no doctor
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from doctor_corpus import BENIGN, CASES, PARTS, Case  # noqa: E402

from unstuck.cli.progress import ProgressBar  # noqa: E402
from unstuck.doctor.verdicts import CODES  # noqa: E402
from unstuck.files import write_text  # noqa: E402

CRASH = "CRASH"
"""The top verdict recorded for a run whose build or examine raised."""


@dataclass
class Run:
    """One examine of one case and seed."""

    case: str
    part: str
    family: str
    truth: str
    seed: int
    top: str
    confidence: float | None = None
    codes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    error: str = ""

    @property
    def right(self) -> bool:
        """The top verdict is the truth."""
        return self.top == self.truth

    @property
    def false_alarm(self) -> bool:
        """A benign run (truth healthy or noise floor) whose top verdict is not benign."""
        return self.truth in BENIGN and self.top not in BENIGN


@dataclass
class ProofRun:
    """One proof of one case and seed."""

    case: str
    seed: int
    holds: bool | None
    summary: str
    seconds: float = 0.0


def _one_thread() -> None:
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)


def examine_case(task: tuple[str, int]) -> Run:
    """Build the case ``task[0]`` for seed ``task[1]`` and examine it (errors become CRASH)."""
    from unstuck.doctor import examine

    _one_thread()
    name, seed = task
    case = CASES[name]
    run = Run(name, case.part, case.family, case.truth, seed, CRASH)
    start, cpu = time.perf_counter(), time.process_time()
    try:
        diagnosis = examine(**case.build(seed))
        run.top, run.confidence = diagnosis.top.code, float(diagnosis.top.confidence)
        run.codes = list(diagnosis.codes)
    except Exception as error:  # noqa: BLE001 - a crash is a result here
        run.error = f"{type(error).__name__}: {error}"
    run.seconds = time.perf_counter() - start
    run.cpu_seconds = time.process_time() - cpu
    return run


def prove_case(task: tuple[str, int]) -> ProofRun:
    """Run the proof of case ``task[0]`` for seed ``task[1]`` (errors are reported, not raised)."""
    _one_thread()
    name, seed = task
    proof = CASES[name].proof
    start = time.perf_counter()
    if proof is None:
        return ProofRun(name, seed, None, "no proof")
    try:
        shown = proof(seed)
        result = ProofRun(name, seed, bool(shown.holds), shown.summary)
    except Exception as error:  # noqa: BLE001
        result = ProofRun(name, seed, False, f"proof raised {type(error).__name__}: {error}")
    result.seconds = time.perf_counter() - start
    return result


def _indexed(job: tuple[Callable[[Any], Any], int, Any]) -> tuple[int, Any]:
    work, index, task = job
    return index, work(task)


def run_tasks(work: Callable[[Any], Any], tasks: Sequence[Any], jobs: int, label: str,
              quiet: bool) -> list[Any]:
    """``[work(t) for t in tasks]`` over ``jobs`` worker processes, in order, with progress."""
    results: list[Any] = [None] * len(tasks)
    with ProgressBar(max(1, len(tasks)), label, enabled=not quiet) as bar:
        if jobs <= 1:
            for i, task in enumerate(tasks):
                results[i] = work(task)
                bar.advance(note=f"{task[0]} seed {task[1]}")
        else:
            context = multiprocessing.get_context("spawn")
            with context.Pool(jobs) as pool:
                jobs_in = [(work, i, task) for i, task in enumerate(tasks)]
                for i, result in pool.imap_unordered(_indexed, jobs_in):
                    results[i] = result
                    bar.advance(note=f"{tasks[i][0]} seed {tasks[i][1]}")
    return results


# ----------------------------------------------------------------------------- tables


def markdown(headers: Sequence[str], rows: Iterable[Sequence[Any]], left: int = 1) -> str:
    """A Markdown table: the first ``left`` columns left-aligned, the others right-aligned."""
    body = [[str(cell) for cell in row] for row in rows]
    lines = ["| " + " | ".join(headers) + " |",
             "|" + "|".join("---" if i < left else "--:" for i in range(len(headers))) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines)


def _fraction(part: int, whole: int) -> str:
    return f"{part}/{whole} = {part / whole:.0%}" if whole else "-"


def confusion(runs: Sequence[Run]) -> str:
    """Truth (rows) x top verdict (columns, only those that occur), counts of runs."""
    truths = list(dict.fromkeys(sorted({r.truth for r in runs}, key=_rank)))
    tops = list(dict.fromkeys(sorted({r.top for r in runs}, key=_rank)))
    counts = Counter((r.truth, r.top) for r in runs)
    rows = [[truth] + [counts[truth, top] or "." for top in tops]
            + [_fraction(counts[truth, truth], sum(counts[truth, t] for t in tops))]
            for truth in truths]
    return markdown(["truth \\ top", *tops, "right"], rows)


def _rank(code: str) -> tuple[int, str]:
    """Verdict-rank order (the doctor's codes), unknown codes and CRASH last."""
    return (CODES.index(code), code) if code in CODES else (len(CODES), code)


def summary(runs: Sequence[Run]) -> str:
    """Accuracy, false alarms, per-family accuracy, confidence calibration and timing."""
    failing = [r for r in runs if r.truth not in BENIGN]
    benign = [r for r in runs if r.truth in BENIGN]
    lines = [
        f"- top-verdict accuracy on failing runs: "
        f"{_fraction(sum(r.right for r in failing), len(failing))}",
        f"- false alarms on healthy runs (truth benign, top not): "
        f"{_fraction(sum(r.false_alarm for r in benign), len(benign))}",
        f"- top verdict exactly the truth, all runs: "
        f"{_fraction(sum(r.right for r in runs), len(runs))}",
        f"- crashes: {sum(r.top == CRASH for r in runs)}",
    ]
    families: dict[str, list[Run]] = defaultdict(list)
    for r in runs:
        families[r.family].append(r)
    family_rows = []
    for family, mine in sorted(families.items()):
        bad = [r for r in mine if r.truth not in BENIGN]
        good = [r for r in mine if r.truth in BENIGN]
        family_rows.append([family, len(mine), _fraction(sum(r.right for r in bad), len(bad)),
                            _fraction(sum(r.false_alarm for r in good), len(good)),
                            _fraction(sum(r.right for r in mine), len(mine))])
    confidences: dict[str, list[Run]] = defaultdict(list)
    for r in runs:
        confidences["-" if r.confidence is None else f"{r.confidence:.2f}"].append(r)
    confidence_rows = [[value, len(mine), _fraction(sum(r.right for r in mine), len(mine))]
                       for value, mine in sorted(confidences.items())]
    slowest = max(runs, key=lambda r: r.cpu_seconds)
    timing = (f"seconds per examine: median {statistics.median(r.seconds for r in runs):.2f} "
              f"wall, {statistics.median(r.cpu_seconds for r in runs):.2f} CPU; max "
              f"{max(r.seconds for r in runs):.2f} wall, {slowest.cpu_seconds:.2f} CPU "
              f"({slowest.case} seed {slowest.seed})")
    return "\n".join([
        *lines, "",
        markdown(["family", "runs", "failing: right", "benign: false alarms", "exact"],
                 family_rows), "",
        markdown(["confidence", "runs", "right"], confidence_rows), "",
        timing,
    ])


def wrong_runs(runs: Sequence[Run]) -> str:
    """The runs whose top verdict is not the truth."""
    rows = [[r.case, r.seed, r.truth, r.top, ", ".join(r.codes) or r.error[:80]]
            for r in runs if not r.right]
    if not rows:
        return "every top verdict is right"
    return markdown(["case", "seed", "truth", "top", "codes"], rows, left=5)


def report(runs: Sequence[Run]) -> str:
    """Every table, per part present in ``runs``."""
    sections = []
    for part in PARTS:
        mine = [r for r in runs if r.part == part]
        if not mine:
            continue
        cases = len({r.case for r in mine})
        sections.append("\n\n".join([
            f"## {part}: {cases} cases, {len(mine)} runs",
            confusion(mine), summary(mine), "### wrong runs", wrong_runs(mine)]))
    return "\n\n".join(sections)


def proof_table(proofs: Sequence[ProofRun]) -> str:
    """Case x seed: does the proof hold, and what it measured."""
    holds = {None: "-", True: "yes", False: "NO"}
    rows = [[p.case, p.seed, holds[p.holds], f"{p.seconds:.1f}", p.summary] for p in proofs]
    total = [p for p in proofs if p.holds is not None]
    return "\n\n".join([
        markdown(["case", "seed", "holds", "s", "summary"], rows, left=5),
        f"proofs holding: {_fraction(sum(bool(p.holds) for p in total), len(total))}"])


# ----------------------------------------------------------------------------- main


def select(part: str, pattern: str | None) -> list[Case]:
    """The cases of ``part`` (or all) whose name contains ``pattern``."""
    return [c for c in CASES.values()
            if (part == "all" or c.part == part) and (not pattern or pattern in c.name)]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=[*PARTS, "all"], default="all")
    parser.add_argument("--cases", help="only cases whose name contains this")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("-j", "--jobs", type=int, default=1, help="worker processes")
    parser.add_argument("--proofs", action="store_true", help="also run every case's proof")
    parser.add_argument("--only-proofs", action="store_true",
                        help="run the proofs and not the doctor (to build cases without seeing "
                             "its verdicts)")
    parser.add_argument("-o", "--out", help="write every result as JSON here")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    cases = select(args.part, args.cases)
    if not cases:
        parser.error("no case matches")
    tasks = [(c.name, seed) for c in cases for seed in args.seeds]
    _one_thread()
    runs: list[Run] = []
    if not args.only_proofs:
        runs = run_tasks(examine_case, tasks, args.jobs, "examine", args.quiet)
        print(report(runs))
    proofs: list[ProofRun] = []
    if args.proofs or args.only_proofs:
        proofs = run_tasks(prove_case, tasks, args.jobs, "proofs", args.quiet)
        print("\n## proofs\n\n" + proof_table(proofs))
    if args.out:
        document = {"seeds": args.seeds, "runs": [asdict(r) for r in runs],
                    "proofs": [asdict(p) for p in proofs]}
        write_text(args.out, json.dumps(document, indent=1) + "\n", overwrite=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
