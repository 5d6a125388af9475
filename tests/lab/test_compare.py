"""unstuck.lab.compare end to end: the folder, resume, refusal, divergence, tuning, processes."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from unstuck.lab import compare as cmp
from unstuck.lab import tasks, training
from unstuck.lab.compare_runner import read_results


def tiny_task(name: str = "tiny", description: str = "tiny regression") -> tasks.Task:
    """A fast task (deep-linear on 200 rows) under any name and description."""
    base = tasks.deep_linear(n=200)
    return tasks.Task(**{**base.__dict__, "name": name, "description": description,
                         "epochs": 2, "batch_size": 40})


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> cmp.CompareResults:
    """digits-mlp, sgd and adam, one seed, two epochs, written to a folder."""
    folder = tmp_path_factory.mktemp("compare") / "out"
    return cmp.compare("digits-mlp", "sgd, adam", seeds=[0], epochs=2, out_dir=folder)


def count_training(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Patch the training loop to record the label of every run it trains."""
    calls: list[str] = []
    real = training.train

    def counting(*args, **kwargs):
        calls.append(kwargs.get("label", ""))
        return real(*args, **kwargs)

    monkeypatch.setattr(training, "train", counting)
    return calls


def test_folder_holds_results_and_reports(small: cmp.CompareResults) -> None:
    folder = small.out_dir
    assert folder is not None
    names = {"results.json", "report.md", "report.html", "curves.png", "lr_curves.png"}
    assert names <= {p.name for p in folder.iterdir()}
    assert {p.name for p in small.files} == names
    for name in ("curves.png", "lr_curves.png"):
        assert (folder / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_results_json_holds_every_curve_and_number(small: cmp.CompareResults) -> None:
    data = read_results(small.out_dir / "results.json")
    assert data["format"] == "unstuck-compare/1"
    config = data["config"]
    assert config["task"] == "digits-mlp" and config["optimizers"] == ["sgd", "adam"]
    assert config["lrs"] == {"sgd": tasks.DIGITS_LRS["sgd"], "adam": tasks.DIGITS_LRS["adam"]}
    assert config["schedule"] == cmp.DEFAULT_SCHEDULE
    runs = data["finished"]
    assert sorted(runs) == ["run adam seed=0", "run sgd seed=0"]
    run = runs["run sgd seed=0"]
    steps = 2 * math.ceil(1078 / 32)
    assert len(run["step_loss"]) == len(run["lr_curve"]) == steps
    assert run["eval_epochs"] == [0, 1, 2]
    for key in ("train_loss", "val_loss", "test_loss", "train_metric", "val_metric",
                "test_metric"):
        assert len(run["curves"][key]) == 3
    assert run["monitor"]["history"]  # the first seed is monitored for the doctor
    assert [row["optimizer"] for row in data["summary"]] in (["sgd", "adam"], ["adam", "sgd"])
    assert data["summary"][0]["rank"] == 1


def test_warmup_cosine_lr_curve(small: cmp.CompareResults) -> None:
    run = small.runs_of("adam")[0]
    lr, steps = run.lr_curve, len(run.lr_curve)
    warmup = round(0.05 * steps)
    assert lr[0] == 0.0 and max(lr) == pytest.approx(run.lr)
    assert lr[warmup] == pytest.approx(run.lr)
    assert lr[-1] < 0.01 * run.lr


def test_same_start_and_batches_for_every_optimizer(small: cmp.CompareResults) -> None:
    sgd, adam = small.runs_of("sgd")[0], small.runs_of("adam")[0]
    assert sgd.curves["val_loss"][0] == adam.curves["val_loss"][0]  # same initial weights
    assert sgd.step_loss[0] == adam.step_loss[0]  # same first batch (lr 0 at step 0)
    assert sgd.step_loss[1] == adam.step_loss[1]  # warm-up: lr 0 at step 0 changes nothing


def test_runs_are_deterministic(small: cmp.CompareResults) -> None:
    again = cmp.compare("digits-mlp", "adam", seeds=[0], epochs=2)
    assert again.runs[0].step_loss == small.runs_of("adam")[0].step_loss
    assert again.runs[0].curves == small.runs_of("adam")[0].curves
    assert again.out_dir is None and again.files == []


def test_reports_hold_table_figures_and_doctor(small: cmp.CompareResults) -> None:
    markdown = (small.out_dir / "report.md").read_text()
    assert "| # | optimizer | lr | val accuracy | test accuracy |" in markdown
    assert "| sgd |" in markdown and "| adam |" in markdown
    assert "![Learning curves](curves.png)" in markdown
    assert "## The doctor" in markdown
    html = (small.out_dir / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 2
    assert "<table>" in html and "<td>adam</td>" in html
    assert 'src="http' not in html and "<link" not in html  # self-contained


def test_summary_ranks_and_formats(small: cmp.CompareResults) -> None:
    from unstuck.lab.compare_report import text_table

    rows = small.summary
    assert [row.rank for row in rows] == [1, 2]
    assert rows[0].val_metric[0] >= rows[1].val_metric[0]
    assert all(row.diverged == 0 and row.seeds == 1 for row in rows)
    text = text_table(rows, "accuracy", 0.1).splitlines()
    assert text[0].split()[:3] == ["#", "optimizer", "lr"]
    assert "%" in text[1] and len(text) == 3


def test_resume_reads_finished_runs_back(
    small: cmp.CompareResults, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = count_training(monkeypatch)
    again = cmp.compare("digits-mlp", "sgd, adam", seeds=[0], epochs=2, out_dir=small.out_dir)
    assert calls == []
    assert again.runs[0].step_loss == small.runs[0].step_loss

    path = small.out_dir / "results.json"
    data = json.loads(path.read_text())
    del data["finished"]["run adam seed=0"]  # as if interrupted before the last run
    path.write_text(json.dumps(data))
    events: list[cmp.CompareProgress] = []
    cmp.compare("digits-mlp", "sgd, adam", seeds=[0], epochs=2, out_dir=small.out_dir,
                progress=events.append)
    assert calls == ["adam"]
    assert [e.resumed for e in events if e.finished] == [True, False]
    assert events[-1].done == events[-1].total == 4
    assert "run adam seed=0" in json.loads(path.read_text())["finished"]


def test_a_different_configuration_is_refused(tmp_path: Path) -> None:
    task = tiny_task()
    cmp.compare(task, "sgd", seeds=[0], epochs=1, out_dir=tmp_path, report=False)
    before = (tmp_path / "results.json").read_bytes()
    with pytest.raises(cmp.CompareFolderError, match=r"epochs: 1 there, 2 now.*overwrite"):
        cmp.compare(task, "sgd", seeds=[0], epochs=2, out_dir=tmp_path, report=False)
    with pytest.raises(cmp.CompareFolderError, match="optimizers"):
        cmp.compare(task, "sgd, adam", seeds=[0], epochs=1, out_dir=tmp_path, report=False)
    assert (tmp_path / "results.json").read_bytes() == before  # not clobbered
    replaced = cmp.compare(task, "adam", seeds=[0], epochs=1, out_dir=tmp_path, overwrite=True,
                           report=False)
    assert read_results(tmp_path / "results.json")["config"] == replaced.config


def test_a_folder_with_reports_but_no_results_is_refused(tmp_path: Path) -> None:
    (tmp_path / "report.md").write_text("someone's report")
    with pytest.raises(cmp.CompareFolderError, match="report.md"):
        cmp.compare(tiny_task(), "sgd", seeds=[0], epochs=1, out_dir=tmp_path)
    (tmp_path / "results.json").write_text("{not json")
    with pytest.raises(cmp.CompareFolderError, match="cannot be read"):
        cmp.compare(tiny_task(), "sgd", seeds=[0], epochs=1, out_dir=tmp_path)
    (tmp_path / "other.txt").write_text("x")
    file = tmp_path / "other.txt"
    with pytest.raises(cmp.CompareFolderError, match="not a directory"):
        cmp.compare(tiny_task(), "sgd", seeds=[0], epochs=1, out_dir=file)


def test_divergence_stops_the_run_and_is_reported(tmp_path: Path) -> None:
    results = cmp.compare(tiny_task(), "sgd(lr=1e6), adam", seeds=[0, 1], epochs=2,
                          schedule=None, out_dir=tmp_path)
    bad = results.runs_of("sgd(lr=1000000.0)")
    assert all(run.diverged for run in bad)
    assert all(len(run.step_loss) < 2 * run.steps_per_epoch for run in bad)  # stopped early
    assert not math.isfinite(bad[0].step_loss[-1])
    rows = {row.optimizer: row for row in results.summary}
    assert rows["sgd(lr=1000000.0)"].diverged == 2 and rows["sgd(lr=1000000.0)"].rank == 2
    assert math.isnan(rows["sgd(lr=1000000.0)"].val_loss[0])
    assert "| 2/2 |" in (tmp_path / "report.md").read_text()
    data = json.loads((tmp_path / "results.json").read_text())  # standard JSON
    assert data["finished"]["run sgd(lr=1000000.0) seed=0"]["diverged_step"] is not None


def test_names_are_escaped_in_the_html_report(tmp_path: Path) -> None:
    task = tiny_task("tiny-esc", 'a <script>alert("x")</script> & co')
    cmp.compare(task, "sgd", seeds=[0], epochs=1, out_dir=tmp_path)
    html = (tmp_path / "report.html").read_text()
    assert "<script>" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; co" in html


def test_tune_lr_picks_from_the_grid(tmp_path: Path) -> None:
    results = cmp.compare(tiny_task(), "sgd", seeds=[0], epochs=1, tune_lr=True,
                          out_dir=tmp_path, report=False)
    tuning = results.tuning["sgd"]
    base = tasks.DEEP_LINEAR_LRS["sgd"]
    assert tuning["grid"] == [float(f"{base * f:.3g}") for f in cmp.TUNE_FACTORS]
    finite = [s for s in tuning["scores"] if math.isfinite(s)]
    assert tuning["scores"][tuning["grid"].index(tuning["chosen"])] == min(finite)
    assert results.runs[0].lr == tuning["chosen"]
    assert read_results(tmp_path / "results.json")["tuning"]["sgd"]["chosen"] == tuning["chosen"]


def test_processes_give_the_same_runs(tmp_path: Path) -> None:
    events: list[cmp.CompareProgress] = []
    here = cmp.compare("deep-linear", "sgd, adam", seeds=[0], epochs=1)
    there = cmp.compare("deep-linear", "sgd, adam", seeds=[0], epochs=1, jobs=2,
                        progress=events.append, out_dir=tmp_path, report=False)
    for a, b in zip(here.runs, there.runs, strict=True):
        assert a.step_loss == b.step_loss and a.curves == b.curves
    assert torch.get_num_threads() >= 1
    assert events[-1].done == events[-1].total == 2
    assert sum(e.finished for e in events) == 2


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"seeds": []}, "seeds"),
        ({"seeds": [0, 0]}, "seeds"),
        ({"epochs": 0}, "epochs"),
        ({"batch_size": -1}, "batch_size"),
        ({"jobs": 0}, "jobs"),
        ({"optimizers": "sgd, nope"}, "nope"),
        ({"optimizers": "sgd(lr=-1)"}, "lr"),
        ({"optimizers": []}, "optimizers"),
        ({"schedule": "cosine({total})"}, "placeholders"),
        ({"schedule": "cosine("}, "cosine"),
        ({"task": "no-such-task"}, "task"),
    ],
)
def test_bad_arguments_are_named(kwargs: dict, match: str) -> None:
    arguments = {"task": tiny_task(), "optimizers": "sgd", "seeds": [0], "epochs": 1, **kwargs}
    with pytest.raises(ValueError, match=match):
        cmp.compare(**arguments)


def test_processes_need_a_registered_task() -> None:
    with pytest.raises(ValueError, match="registered"):
        cmp.compare(tiny_task("unregistered"), "sgd", seeds=[0], epochs=1, jobs=2)


def test_default_lr_falls_back() -> None:
    task = tiny_task()
    assert cmp.default_lr(task, "adam") == tasks.DEEP_LINEAR_LRS["adam"]
    assert cmp.default_lr(task, "torch.adam") == tasks.DEEP_LINEAR_LRS["adam"]
    bare = tasks.Task(**{**task.__dict__, "default_lrs": {}})
    assert cmp.default_lr(bare, "adam") == cmp.GENERAL_LRS["adam"]
    assert cmp.default_lr(bare, "torch.lbfgs") is None


def test_resolve_schedule() -> None:
    assert cmp.resolve_schedule(cmp.DEFAULT_SCHEDULE, 1000) == "warmup(cosine(950), 50)"
    assert cmp.resolve_schedule("linear({steps})", 7) == "linear(7)"
    assert cmp.resolve_schedule(None, 7) is None
    assert cmp.resolve_schedule(cmp.DEFAULT_SCHEDULE, 1) == "warmup(cosine(1), 0)"


def test_doctor_column_tells_healthy_runs_apart() -> None:
    from unstuck.lab.compare_report import SLOW_FACTOR, OptimizerSummary, doctor_cell

    def row(code: str, steps: float | None, reached: int) -> OptimizerSummary:
        pair = (0.9, 0.0)
        return OptimizerSummary(0, "x", 0.1, 3, 0, pair, pair, pair, pair, steps, reached, 0.001,
                                {"code": code})

    assert doctor_cell(row("healthy", 100, 3), 100, 0.9) == "healthy"
    assert doctor_cell(row("healthy", 100, 2), 100, 0.9).startswith("missed target (1/3")
    slow = SLOW_FACTOR * 100 + 1
    assert doctor_cell(row("healthy", slow, 3), 100, 0.9).startswith("slow (3.0x")
    assert doctor_cell(row("healthy", SLOW_FACTOR * 100, 3), 100, 0.9) == "healthy"
    assert doctor_cell(row("oscillation", slow, 2), 100, 0.9) == "oscillation"  # the doctor's own
    assert doctor_cell(row("healthy", None, 0), None, None) == "healthy"  # no target
    assert doctor_cell(row("noise_floor", None, 0), 100, 0.9).startswith("missed target (3/3")
