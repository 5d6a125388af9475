"""The doctor's scenario corpus (``benchmarks/doctor_corpus``) and its accuracy benchmark's tables.

No training here: the registry's consistency, the calibration cases' builds, a few steps of the
proofs' plain trainer, and the benchmark's tables on fake results.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import doctor_accuracy  # noqa: E402
from doctor_accuracy import CRASH, ProofRun, Run, proof_table, report  # noqa: E402
from doctor_corpus import BENIGN, CASES, PARTS  # noqa: E402
from doctor_corpus.proving import fit  # noqa: E402

from unstuck.doctor.verdicts import CODES  # noqa: E402

TRUTHS = {
    "nonfinite", "divergence", "lr_too_large", "adagrad_blowup", "exploding_gradients",
    "needs_warmup", "oscillation", "symmetric_init", "saddle_point", "local_minimum",
    "dead_units", "lr_too_small", "optimization_failure", "model_bias", "noise_floor",
    "layer_ratio_spread", "batch_size", "overfitting", "mismatch", "healthy",
}


def test_registry_is_consistent():
    assert CASES
    assert BENIGN <= TRUTHS
    for name, case in CASES.items():
        assert case.name == name
        assert case.truth in TRUTHS, name
        assert case.part in PARTS, name
        assert name.startswith(case.family + "_"), name
        assert name.endswith("_" + case.truth), name
        assert callable(case.build) and case.description, name


def test_truths_are_doctor_codes():
    assert {case.truth for case in CASES.values()} <= set(CODES)


def test_parts_and_calibration_families():
    calibration = [c for c in CASES.values() if c.part == "calibration"]
    assert len(calibration) >= 20
    assert {c.family for c in calibration} <= {"mlp", "linear"}
    benign = sum(c.truth in BENIGN for c in calibration)
    assert len(calibration) / 4 <= benign <= len(calibration) / 2
    assert all(c.proof is not None for c in calibration)
    corpus = BENCHMARKS / "doctor_corpus"
    expected = {"calibration"}
    expected |= {"development"} if list(corpus.glob("development_*.py")) else set()
    expected |= {"held-out"} if list(corpus.glob("heldout_*.py")) else set()
    assert {c.part for c in CASES.values()} == expected
    for case in CASES.values():
        assert case.part == "calibration" or case.family not in {"mlp", "linear"}, case.name


def test_calibration_builds_are_examine_arguments():
    for case in CASES.values():
        if case.part != "calibration":
            continue
        built = case.build(0)
        assert isinstance(built["model"], nn.Module), case.name
        assert callable(built["criterion"]) and built["train_data"] is not None, case.name
        assert 1 <= built["steps"] <= 400, case.name


def test_fit_scales_the_lr_and_flags_divergence():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(64, 3, generator=generator)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]])
    model = nn.Linear(3, 1)
    kwargs = dict(model=model, criterion=F.mse_loss, train_data=(x, y), val_data=(x, y),
                  optimizer=lambda p: torch.optim.SGD(p, lr=0.1), steps=30, batch_size=16,
                  seed=0)
    good = fit(kwargs)
    assert len(good.losses) == 30 and not good.diverged
    assert good.val_loss_end < good.first_loss
    bad = fit(kwargs, lr_scale=30.0)
    assert bad.diverged
    assert model.weight.grad is None  # the case's model is copied, never trained


def _run(case: str, truth: str, top: str, family: str = "mlp", seed: int = 0,
         confidence: float | None = 0.9) -> Run:
    return Run(case, "calibration", family, truth, seed, top, confidence, [top], 1.0, 0.5)


def test_report_tables_on_fake_results():
    runs = [
        _run("mlp_a_divergence", "divergence", "divergence"),
        _run("mlp_a_divergence", "divergence", "nonfinite", seed=1, confidence=0.6),
        _run("linear_b_healthy", "healthy", "lr_too_small", family="linear"),
        _run("linear_c_noise_floor", "noise_floor", "healthy", family="linear"),
        Run("mlp_d_overfitting", "calibration", "mlp", "overfitting", 0, CRASH,
            error="ValueError: boom"),
    ]
    text = report(runs)
    assert "## calibration: 4 cases, 5 runs" in text
    assert "| divergence | 1 | 1 | . | . | . | 1/2 = 50% |" in text
    assert "top-verdict accuracy on failing runs: 1/3 = 33%" in text
    assert "false alarms on healthy runs (truth benign, top not): 1/2 = 50%" in text
    assert "crashes: 1" in text
    assert "| linear | 2 | - | 1/2 = 50% | 0/2 = 0% |" in text
    assert "| 0.60 | 1 | 0/1 = 0% |" in text
    assert "ValueError: boom" in text
    assert "held-out" not in text
    table = proof_table([ProofRun("mlp_a_divergence", 0, True, "grows", 0.1),
                         ProofRun("mlp_a_divergence", 1, False, "no", 0.1)])
    assert "proofs holding: 1/2 = 50%" in table


def test_select_filters_by_part_and_name():
    names = {c.name for c in doctor_accuracy.select("calibration", "digits")}
    assert names and all("digits" in n and CASES[n].part == "calibration" for n in names)
    assert not doctor_accuracy.select("all", "no such case")
    crash = _run("mlp_a_divergence", "divergence", CRASH, confidence=None)
    assert not crash.right and not crash.false_alarm
