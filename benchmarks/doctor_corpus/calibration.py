"""The calibration part: MLPs and linear models on tabular data (thresholds may be tuned here).

Data come from scikit-learn's generators and the shipped digits set (:mod:`.tabular`). This
module holds the benign cases (healthy runs and runs at the noise floor) and the cases about what
a model can fit and how it generalises; :mod:`.calibration_dynamics` (imported at the end) holds
the cases about the optimiser's steps and the initialisation.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from unstuck.doctor.scenarios.fitting import mlp

from .base import Case, Proof, register
from .proving import fit, prove_better, prove_healthy, prove_noise_floor, seeded, tolerance
from .tabular import (
    blobs,
    circles,
    classification,
    digits,
    flip_labels,
    friedman,
    linear_noisy,
    moons,
    regression,
    split,
)

__all__ = ["calibration_case", "kwargs", "mlp"]

Kwargs = dict[str, Any]


def kwargs(model: nn.Module, criterion: Callable, data: list, optimizer: Callable, steps: int,
           batch_size: int | None, seed: int, **more: Any) -> Kwargs:
    """Keyword arguments of ``examine``: ``data`` is ``[train]``, ``[train, val]`` or
    ``[train, val, test]``."""
    pieces = dict(zip(("train_data", "val_data", "test_data"), data))
    return dict(model=model, criterion=criterion, optimizer=optimizer, steps=steps,
                batch_size=batch_size, seed=seed, **pieces, **more)


def calibration_case(name: str, truth: str, description: str, build: Callable[[int], Kwargs],
                     proof: Callable[[int], Proof]) -> Case:
    """Register a calibration case (its family is the first word of ``name``)."""
    return register(Case(name, name.split("_")[0], truth, "calibration", build, proof,
                         description))


def adam(lr: float) -> Callable:
    """A factory of Adam at ``lr``."""
    return lambda params: torch.optim.Adam(params, lr=lr)


def sgd(lr: float, momentum: float = 0.0) -> Callable:
    """A factory of SGD at ``lr``."""
    return lambda params: torch.optim.SGD(params, lr=lr, momentum=momentum)


# ----------------------------------------------------------------------------- healthy


def _moons_healthy(seed: int) -> Kwargs:
    data = split(moons(900, seed), 500, 200, 200)
    return kwargs(seeded(seed, lambda: mlp(2, 32, 32, 2)), F.cross_entropy, data, adam(1e-2),
                  300, 32, seed)


def _digits_healthy(seed: int) -> Kwargs:
    data = split(digits(seed), 1000, 400, 397)
    return kwargs(seeded(seed, lambda: mlp(64, 64, 10)), F.cross_entropy, data, adam(3e-3),
                  300, 64, seed)


def _classification_healthy(seed: int) -> Kwargs:
    data = split(classification(1200, seed, separation=2.0, clusters=1), 800, 200, 200)
    return kwargs(seeded(seed, lambda: nn.Linear(20, 2)), F.cross_entropy, data, sgd(0.5),
                  200, 64, seed)


def _friedman_healthy(seed: int) -> Kwargs:
    data = split(friedman(1200, seed), 800, 200, 200)
    return kwargs(seeded(seed, lambda: mlp(5, 64, 64, 1, act=nn.Tanh)), F.mse_loss, data,
                  adam(3e-3), 300, 32, seed)


def _blobs_converged(seed: int) -> Kwargs:
    data = split(blobs(800, seed, centers=4, spread=0.6), 400, 200, 200)
    return kwargs(seeded(seed, lambda: mlp(2, 32, 4)), F.cross_entropy, data, adam(1e-2),
                  200, 32, seed)


def _moons_noisy(seed: int) -> Kwargs:
    data = split(moons(900, seed), 500, 200, 200)
    return kwargs(seeded(seed, lambda: mlp(2, 32, 32, 2)), F.cross_entropy, data,
                  sgd(0.03, 0.9), 400, 4, seed)


def _digits_slow(seed: int) -> Kwargs:
    data = split(digits(seed), 1000, 400, 397)
    return kwargs(seeded(seed, lambda: nn.Linear(64, 10)), F.cross_entropy, data, sgd(0.3), 300,
                  64, seed)


def _regression_converged(seed: int) -> Kwargs:
    data = split(regression(800, seed), 400, 200, 200)
    return kwargs(seeded(seed, lambda: nn.Linear(10, 1)), F.mse_loss, data, sgd(0.05), 200, 32,
                  seed)


def _healthy(build: Callable[[int], Kwargs], bigger: Callable[[Kwargs], nn.Module]):
    def proof(seed: int) -> Proof:
        run = build(seed)
        return prove_healthy(run, seeded(seed + 1, lambda: bigger(run)))

    return proof


calibration_case(
    "mlp_moons_healthy", "healthy",
    "MLP 2-32-32-2 on two moons, Adam lr 1e-2, batches of 32: trains well.",
    _moons_healthy, _healthy(_moons_healthy, lambda _: mlp(2, 128, 128, 2)))
calibration_case(
    "mlp_digits_healthy", "healthy",
    "MLP 64-64-10 on the digits, Adam lr 3e-3, batches of 64: trains well.",
    _digits_healthy, _healthy(_digits_healthy, lambda _: mlp(64, 256, 256, 10)))
calibration_case(
    "linear_classification_healthy", "healthy",
    "Logistic regression on a linearly separable-ish make_classification, SGD lr 0.5.",
    _classification_healthy, _healthy(_classification_healthy, lambda _: mlp(20, 64, 2)))
calibration_case(
    "mlp_friedman_healthy", "healthy",
    "Tanh MLP 5-64-64-1 regression on Friedman #1 (no noise), Adam lr 3e-3, batches of 32.",
    _friedman_healthy, _healthy(_friedman_healthy, lambda _: mlp(5, 256, 256, 1, act=nn.Tanh)))
calibration_case(
    "mlp_blobs-converged_healthy", "healthy",
    "MLP 2-32-4 on four separated blobs, Adam lr 1e-2: converges to a near-zero loss.",
    _blobs_converged, _healthy(_blobs_converged, lambda _: mlp(2, 128, 128, 4)))
calibration_case(
    "mlp_moons-noisy_healthy", "healthy",
    "MLP 2-32-32-2 on two moons, SGD lr 0.03 momentum 0.9 on batches of 4: noisy but fine.",
    _moons_noisy, _healthy(_moons_noisy, lambda _: mlp(2, 128, 128, 2)))
calibration_case(
    "linear_digits-slow_healthy", "healthy",
    "Softmax regression on the digits, SGD lr 0.3 (near the best lr): still falling slowly.",
    _digits_slow, _healthy(_digits_slow, lambda _: mlp(64, 64, 10)))
calibration_case(
    "linear_regression-converged_healthy", "healthy",
    "Linear regression on noiseless make_regression, SGD lr 0.05: converges to ~0 loss.",
    _regression_converged, _healthy(_regression_converged, lambda _: mlp(10, 64, 1)))


# ----------------------------------------------------------------------------- noise floor

_FLIPPED = 0.2
_FLIPPED_FLOOR = -(_FLIPPED * math.log(_FLIPPED) + (1 - _FLIPPED) * math.log(1 - _FLIPPED))


def _blobs_flipped(seed: int) -> Kwargs:
    inputs, labels = blobs(1400, seed, centers=2, spread=0.5)
    data = split((inputs, flip_labels(labels, _FLIPPED, seed)), 600, 400, 400)
    return kwargs(seeded(seed, lambda: mlp(2, 16, 2)), F.cross_entropy, data, adam(1e-2), 300,
                  32, seed)


def _regression_noisy(seed: int) -> Kwargs:
    data = split(linear_noisy(1400, seed, floor=0.3), 600, 400, 400)
    return kwargs(seeded(seed, lambda: nn.Linear(10, 1)), F.mse_loss, data, sgd(0.05), 200, 32,
                  seed)


calibration_case(
    "mlp_blobs-flipped_noise_floor", "noise_floor",
    f"MLP 2-16-2 on two separated blobs with {_FLIPPED:.0%} of the labels flipped, Adam lr 1e-2:"
    f" the loss stops at the Bayes loss {_FLIPPED_FLOOR:.3f}.",
    _blobs_flipped,
    lambda seed: prove_noise_floor(_blobs_flipped(seed), seeded(seed + 1, lambda: mlp(
        2, 256, 256, 2)), _FLIPPED_FLOOR))
calibration_case(
    "linear_regression-noisy_noise_floor", "noise_floor",
    "Linear regression on a linear target with noise of variance 0.3, SGD lr 0.05: the MSE "
    "stops at 0.3.",
    _regression_noisy,
    lambda seed: prove_noise_floor(_regression_noisy(seed), seeded(seed + 1, lambda: mlp(
        10, 128, 128, 1)), 0.3))


# ----------------------------------------------------------------------------- generalisation


def _moons_overfitting(seed: int, train: int = 30) -> Kwargs:
    data = split(moons(train + 400, seed, noise=0.3), train, 200, 200)
    return kwargs(seeded(seed, lambda: mlp(2, 256, 256, 2)), F.cross_entropy, data, adam(1e-2),
                  300, None, seed)


def _digits_overfitting(seed: int, train: int = 50) -> Kwargs:
    pieces = split(digits(seed), 400, 400, 997)
    data = [(pieces[2][0][:train], pieces[2][1][:train]), pieces[0], pieces[1]]
    return kwargs(seeded(seed, lambda: mlp(64, 256, 256, 10)), F.cross_entropy, data,
                  adam(1e-3), 200, None, seed)


def _more_data(build: Callable[..., Kwargs], train: int) -> Callable[[int], Proof]:
    def proof(seed: int) -> Proof:
        run = fit(build(seed))
        more = fit(build(seed, train=train))
        tol = tolerance(run)
        holds = (run.val_loss_end > run.train_loss_end + 4 * tol
                 and more.val_loss_end < run.val_loss_end - 2 * tol)
        return Proof(holds, f"train {run.train_loss_end:.3g} val {run.val_loss_end:.3g}; with "
                     f"{train} examples val {more.val_loss_end:.3g}",
                     {"train": run.train_loss_end, "val": run.val_loss_end,
                      "more_data_val": more.val_loss_end})

    return proof


calibration_case(
    "mlp_moons_overfitting", "overfitting",
    "MLP 2-256-256-2 on 30 noisy two-moons examples, Adam lr 1e-2, full batch: memorises them.",
    _moons_overfitting, _more_data(_moons_overfitting, 600))
calibration_case(
    "mlp_digits_overfitting", "overfitting",
    "MLP 64-256-256-10 on 50 digits, Adam lr 1e-3, full batch: memorises them.",
    _digits_overfitting, _more_data(_digits_overfitting, 997))


def _classification_shifted(seed: int, shift: float = 3.0) -> Kwargs:
    data = split(classification(1000, seed, clusters=1, separation=1.5), 600, 200, 200)
    test = (data[2][0] + shift, data[2][1])
    return kwargs(seeded(seed, lambda: mlp(20, 64, 2)), F.cross_entropy,
                  [data[0], data[1], test], adam(3e-3), 200, 32, seed)


def _mismatch_proof(seed: int) -> Proof:
    run = fit(_classification_shifted(seed))
    same = fit(_classification_shifted(seed, shift=0.0))
    tol = tolerance(run)
    holds = (run.test_loss_end > run.val_loss_end + 4 * tol
             and abs(run.val_loss_end - run.train_loss_end) <= 2 * tol
             and same.test_loss_end <= same.val_loss_end + 2 * tol)
    return Proof(holds, f"train {run.train_loss_end:.3g} val {run.val_loss_end:.3g} test "
                 f"{run.test_loss_end:.3g}; unshifted test {same.test_loss_end:.3g}",
                 {"val": run.val_loss_end, "test": run.test_loss_end,
                  "unshifted_test": same.test_loss_end})


calibration_case(
    "mlp_classification_mismatch", "mismatch",
    "MLP 20-64-2 on make_classification; the test inputs are shifted by 3 std, val is not.",
    _classification_shifted, _mismatch_proof)


# ----------------------------------------------------------------------------- capacity


def _circles_linear(seed: int) -> Kwargs:
    data = split(circles(900, seed), 500, 200, 200)
    return kwargs(seeded(seed, lambda: nn.Linear(2, 2)), F.cross_entropy, data, adam(5e-2), 200,
                  32, seed)


def _digits_bottleneck(seed: int) -> Kwargs:
    data = split(digits(seed), 1000, 400, 397)
    return kwargs(seeded(seed, lambda: mlp(64, 2, 10, act=nn.Tanh)), F.cross_entropy, data,
                  adam(1e-2), 300, 64, seed)


def _bias_proof(build: Callable[[int], Kwargs], bigger: Callable[[], nn.Module]):
    """Model bias: a bigger model trains far better, no lr in a sweep saves the small one."""

    def proof(seed: int) -> Proof:
        run = build(seed)
        sweep = {scale: fit(run, lr_scale=scale) for scale in (0.3, 1, 3)}
        small = min(f.train_loss_end for f in sweep.values())
        big = fit(run, model=seeded(seed + 1, bigger))
        holds = big.train_loss_end < 0.5 * small and small > 4 * tolerance(sweep[1])
        return Proof(holds, f"best train loss of an lr sweep {small:.3g}, bigger model "
                     f"{big.train_loss_end:.3g}", {"small": small, "bigger": big.train_loss_end})

    return proof


calibration_case(
    "linear_circles_model_bias", "model_bias",
    "Logistic regression on two concentric circles, Adam lr 5e-2: no line separates them.",
    _circles_linear, _bias_proof(_circles_linear, lambda: mlp(2, 32, 2)))
calibration_case(
    "mlp_digits-bottleneck_model_bias", "model_bias",
    "Tanh MLP 64-2-10 on the digits (a 2-unit bottleneck), Adam lr 1e-2: too small a model.",
    _digits_bottleneck, _bias_proof(_digits_bottleneck, lambda: mlp(64, 64, 10, act=nn.Tanh)))


def _moons_deep_sigmoid(seed: int) -> Kwargs:
    data = split(moons(700, seed, noise=0.1), 300, 200, 200)
    return kwargs(seeded(seed, lambda: mlp(2, *[32] * 7, 2, act=nn.Sigmoid)), F.cross_entropy,
                  data, sgd(0.5), 150, None, seed)


calibration_case(
    "mlp_moons_optimization_failure", "optimization_failure",
    "Plain sigmoid MLP with 7 hidden layers of 32 on two moons, full-batch SGD lr 0.5: stuck "
    "near ln 2 while one hidden layer learns with the same optimizer.",
    _moons_deep_sigmoid,
    lambda seed: prove_better(_moons_deep_sigmoid(seed), "one hidden layer",
                              "a shallower model trains better",
                              model=seeded(seed + 1, lambda: mlp(2, 32, 2, act=nn.Sigmoid))))
