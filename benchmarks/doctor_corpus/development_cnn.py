"""Development cases: small convolutional networks on the 8x8 digits and on generated images."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .base import Proof
from .families_common import (
    Kwargs,
    adam,
    development,
    digits,
    generator,
    kwargs,
    prove_exploding,
    prove_learned,
    prove_lr_too_large,
    prove_lr_too_small,
    prove_mismatch,
    prove_model_bias,
    prove_nonfinite,
    prove_overfitting,
    sets,
    sgd,
    split,
)
from .families_data import bars, blobs, shapes
from .proving import fit, prove_noise_floor, seeded

__all__ = ["cnn", "deep_sigmoid_cnn"]


def cnn(c1: int = 8, c2: int = 16, out: int = 10, size: int = 8, bn: bool = False
        ) -> nn.Sequential:
    """``conv 3x3 (c1), [BN], ReLU, maxpool 2, conv 3x3 (c2), [BN], ReLU, maxpool 2, linear``."""
    layers: list[nn.Module] = []
    for cin, cout in ((1, c1), (c1, c2)):
        layers.append(nn.Conv2d(cin, cout, 3, padding=1))
        if bn:
            layers.append(nn.BatchNorm2d(cout))
        layers += [nn.ReLU(), nn.MaxPool2d(2)]
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(c2 * (size // 4) ** 2, out))


def deep_sigmoid_cnn(depth: int = 5, width: int = 8, out: int = 10, size: int = 8
                     ) -> nn.Sequential:
    """``depth`` plain 3x3 convolutions (``width`` channels, no pooling) with sigmoids, a linear
    head."""
    layers: list[nn.Module] = []
    for i in range(depth):
        layers += [nn.Conv2d(1 if i == 0 else width, width, 3, padding=1), nn.Sigmoid()]
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(width * size * size, out))


def _digits_split(seed: int, train: int = 1000) -> list:
    """``[train, val, test]`` of the digits: val and test are the same whatever ``train``."""
    val, test, rest = split(digits(seed), 300, 300, train)
    return [rest, val, test]


def _shift(images: torch.Tensor, pixels: int) -> torch.Tensor:
    """The images moved ``pixels`` to the right (zeros come in on the left)."""
    return F.pad(images, (pixels, 0))[..., : images.shape[-1]]


# ---------------------------------------------------------------------------------- benign


def _digits_healthy(seed: int) -> Kwargs:
    return kwargs(seeded(seed, cnn), F.cross_entropy, _digits_split(seed), adam(2e-2), 200, 64,
                  seed, "development: a CNN on the digits")


development("cnn_digits_healthy", "healthy",
         "CNN (8, 16 channels) on the 8x8 digits (1000 train), Adam lr 2e-2, batch 64: trains "
         "well.", _digits_healthy,
         lambda seed: prove_learned(_digits_healthy(seed), seeded(seed + 1, lambda: cnn(32, 64))))


def _shapes_noisy(seed: int) -> Kwargs:
    data = sets(shapes, seed, 3000, 500, 500, noise=0.2)
    return kwargs(seeded(seed, lambda: cnn(8, 16, 4, 10, bn=True)), F.cross_entropy, data,
                  sgd(0.01, 0.9), 250, 8, seed, "development: a BatchNorm CNN, batches of 8")


development("cnn_shapes_healthy", "healthy",
         "CNN with BatchNorm on 4 noisy generated shapes (3000 train, 10x10), SGD lr 0.01 "
         "momentum 0.9 with batches of 8: a noisy but healthy loss curve.", _shapes_noisy,
         lambda seed: prove_learned(_shapes_noisy(seed),
                                    seeded(seed + 1, lambda: cnn(32, 64, 4, 10, bn=True))))


def _bars_floor(seed: int) -> Kwargs:
    data = sets(bars, seed, 2000, 500, 500, target_noise=0.5)
    return kwargs(seeded(seed, lambda: cnn(8, 16, 1)), F.mse_loss, data, adam(3e-3), 300, 64,
                  seed, "development: a CNN regressing a bar's position with noisy targets")


development("cnn_bars_noise_floor", "noise_floor",
         "CNN regressing the column of a bar (2000 train images) whose targets carry Gaussian "
         "noise of std 0.5: the loss ends at the noise variance 0.25.", _bars_floor,
         lambda seed: prove_noise_floor(_bars_floor(seed),
                                        seeded(seed + 1, lambda: cnn(32, 64, 1)), 0.25))


def _bars_outliers(seed: int, outliers: bool = True) -> Kwargs:
    train, val = sets(bars, seed, 1000, 500, target_noise=0.1)
    targets = train[1].clone()
    if outliers:
        targets[torch.randperm(1000, generator=generator(seed, 11))[:4]] *= 1000.0
    return kwargs(seeded(seed, lambda: cnn(8, 16, 1)), F.mse_loss, [(train[0], targets), val],
                  sgd(3e-3, 0.9), 200, 32, seed, "development: 4 regression targets off by 1000x")


development("cnn_bars_exploding_gradients", "exploding_gradients",
         "CNN regressing a bar's column where 4 of 1000 training targets are off by a factor "
         "1000 (a unit error), SGD lr 3e-3 momentum 0.9, batches of 32: the batches holding them "
         "give gradient spikes of 100x that knock the weights.", _bars_outliers,
         lambda seed: prove_exploding(_bars_outliers, lambda s: _bars_outliers(s, False), seed,
                                      "without the 4 outliers"))


# --------------------------------------------------------------------------- learning rate


def _digits_slow(seed: int) -> Kwargs:
    return kwargs(seeded(seed, cnn), F.cross_entropy, _digits_split(seed), sgd(0.03), 200, 64,
                  seed, "development: a CNN with SGD at lr 0.03")


development("cnn_digits_lr_too_small", "lr_too_small",
         "CNN on the digits with plain SGD at lr 0.03: the loss creeps down from ln 10.",
         _digits_slow, lambda seed: prove_lr_too_small(_digits_slow, seed))


def _digits_fast(seed: int) -> Kwargs:
    return kwargs(seeded(seed, cnn), F.cross_entropy, _digits_split(seed), sgd(15.0), 200, 64,
                  seed, "development: a CNN with SGD at lr 15")


development("cnn_digits_lr_too_large", "lr_too_large",
         "CNN on the digits with plain SGD at lr 15 (~50x the best): the loss bounces around "
         "its start.", _digits_fast, lambda seed: prove_lr_too_large(_digits_fast, seed))


# ------------------------------------------------------------------------ fit / generalise


def _digits_tiny(seed: int, train: int = 40) -> Kwargs:
    return kwargs(seeded(seed, lambda: cnn(32, 64)), F.cross_entropy,
                  _digits_split(seed, train), adam(1e-2), 300, None if train <= 40 else 64, seed,
                  "development: a big CNN on 40 digits")


development("cnn_digits_overfitting", "overfitting",
         "CNN (32, 64 channels) on 40 training digits, full batch, Adam lr 1e-2: memorises "
         "them, the val loss stays large.", _digits_tiny,
         lambda seed: prove_overfitting(_digits_tiny, lambda s: _digits_tiny(s, 1000), seed,
                                        "1000 training digits (batches of 64)"))


def _digits_shifted(seed: int, shift_train: bool = False) -> Kwargs:
    train, val, test = _digits_split(seed)
    test = (_shift(test[0], 2), test[1])
    if shift_train:
        train = (_shift(train[0], 2), train[1])
    return kwargs(seeded(seed, cnn), F.cross_entropy, [train, val, test], adam(1e-2), 200, 64,
                  seed, "development: test digits moved 2 pixels")


development("cnn_digits_mismatch", "mismatch",
         "CNN on the digits; the test digits are moved 2 pixels to the right, val comes from "
         "the training distribution.", _digits_shifted,
         lambda seed: prove_mismatch(_digits_shifted, lambda s: _digits_shifted(s, True), seed,
                                     "trained on moved digits"))


def _one_channel() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(1, 1, 3, padding=1), nn.Tanh(), nn.MaxPool2d(8), nn.Flatten(),
                         nn.Linear(1, 10))


def _digits_bias(seed: int) -> Kwargs:
    return kwargs(seeded(seed, _one_channel), F.cross_entropy, _digits_split(seed, 500),
                  adam(1e-2), 300, 64, seed, "development: a one-channel CNN")


development("cnn_digits_model_bias", "model_bias",
         "A one-channel CNN with a global max-pool (3x3 conv, tanh, one number per image, "
         "linear) on 500 digits, Adam lr 1e-2: too small, the training loss stays near 2 at "
         "any lr.", _digits_bias,
         lambda seed: prove_model_bias(_digits_bias, lambda s: seeded(s + 1, cnn), seed))


# ---------------------------------------------------------------- optimisation and units


def _digits_deep(seed: int) -> Kwargs:
    return kwargs(seeded(seed, deep_sigmoid_cnn), F.cross_entropy, _digits_split(seed, 500),
                  sgd(0.5), 200, 64, seed, "development: a deep sigmoid CNN with SGD",
                  reference=seeded(seed, lambda: nn.Sequential(nn.Flatten(), nn.Linear(64, 10))))


def _xavier_deep(seed: int) -> nn.Module:
    model = seeded(seed, deep_sigmoid_cnn)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for module in model:
            if isinstance(module, nn.Conv2d):
                nn.init.xavier_normal_(module.weight, gain=4.0)
                nn.init.zeros_(module.bias)
    return model


def _deep_proof(seed: int) -> Proof:
    kw = _digits_deep(seed)
    run = fit(kw)
    ref = fit(kw, model=kw["reference"])
    able = fit(kw, model=_xavier_deep(seed), optimizer=adam(3e-3))
    stuck = run.train_loss_end >= 0.9 * run.first_loss
    holds = stuck and ref.train_loss_end < 0.5 * run.train_loss_end and (
        able.train_loss_end < 0.5 * run.train_loss_end)
    return Proof(holds, f"run {run.first_loss:.3g} -> {run.train_loss_end:.3g}; the linear "
                 f"reference (same SGD) {ref.train_loss_end:.3g}; the same architecture "
                 f"(Xavier gain 4, Adam 3e-3) {able.train_loss_end:.3g}",
                 {"run": run.train_loss_end, "reference": ref.train_loss_end,
                  "same_architecture": able.train_loss_end})


development("cnn_digits_optimization_failure", "optimization_failure",
         "Five plain 3x3 sigmoid convolutions with SGD lr 0.5 on 500 digits stay at ln 10 while "
         "a linear reference with the same SGD learns; the architecture can learn (another "
         "initialisation and Adam train it).", _digits_deep, _deep_proof)


def _blobs_dead(seed: int, bias: float | None = -3.0) -> Kwargs:
    model = seeded(seed, lambda: cnn(8, 16, 4))
    if bias is not None:
        with torch.no_grad():
            for module in model:
                if isinstance(module, nn.Conv2d):
                    module.bias.fill_(bias)
    data = sets(blobs, seed, 500, 250, 250)
    return kwargs(model, F.cross_entropy, data, adam(3e-3), 150, 64, seed,
                  "development: a ReLU CNN with conv biases at -3")


def _dead_fraction(model: nn.Module, inputs: torch.Tensor) -> float:
    """The fraction of the ReLU outputs (unit and position) that are zero on every input."""
    dead, total = 0, 0
    with torch.no_grad():
        x = inputs
        for module in model:
            x = module(x)
            if isinstance(module, nn.ReLU):
                alive = (x > 0).any(dim=0)
                dead += int((~alive).sum())
                total += alive.numel()
    return dead / total


def _dead_proof(seed: int) -> Proof:
    kw = _blobs_dead(seed)
    run = fit(kw)
    dead = _dead_fraction(run.model.eval(), kw["train_data"][0])
    good = fit(_blobs_dead(seed, None))
    holds = dead > 0.9 and run.train_loss_end > 0.9 * math.log(4) and (
        good.train_loss_end < 0.3 * good.first_loss)
    return Proof(holds, f"{dead:.0%} of the ReLU outputs are zero on every training image after "
                 f"training, loss {run.train_loss_end:.3g} (ln 4 = {math.log(4):.3g}); with the "
                 f"default biases {good.first_loss:.3g} -> {good.train_loss_end:.3g}",
                 {"dead": dead, "run": run.train_loss_end, "default": good.train_loss_end})


development("cnn_blobs_dead_units", "dead_units",
         "ReLU CNN on 500 generated blob images (which quadrant), conv biases initialised at -3: "
         "every ReLU is off on every image, nothing below the head learns.", _blobs_dead,
         _dead_proof)


def _shapes_symmetric(seed: int, constant: bool = True) -> Kwargs:
    model = seeded(seed, lambda: cnn(8, 16, 4, 10))
    if constant:
        with torch.no_grad():
            for module in model:
                if isinstance(module, (nn.Conv2d, nn.Linear)):
                    module.weight.fill_(0.1)
                    module.bias.zero_()
    data = sets(shapes, seed, 500, 250, 250)
    return kwargs(model, F.cross_entropy, data, adam(3e-3), 200, 64, seed,
                  "development: a CNN whose weights all start at 0.1")


def _symmetric_proof(seed: int) -> Proof:
    kw = _shapes_symmetric(seed)
    run = fit(kw)
    convs = [m for m in run.model if isinstance(m, nn.Conv2d)]
    spread = max(float((w - w[:1]).abs().max() / w.abs().max())
                 for w in (m.weight.detach() for m in convs))
    good = fit(_shapes_symmetric(seed, False))
    holds = spread < 1e-4 and good.score < 0.5 * run.score
    return Proof(holds, f"the filters of each conv layer stay identical (relative spread "
                 f"{spread:.2g}); score {run.score:.3g} vs {good.score:.3g} with the default "
                 f"random init", {"spread": spread, "run": run.score, "default": good.score})


development("cnn_shapes_symmetric_init", "symmetric_init",
         "CNN on 500 generated shapes whose weights all start at 0.1 (biases 0): every channel "
         "of a layer computes and learns the same thing, a one-channel network in effect.",
         _shapes_symmetric, _symmetric_proof)


# ----------------------------------------------------------------------------- numbers


def _digits_nan(seed: int, corrupt: bool = True) -> Kwargs:
    train, val, test = _digits_split(seed)
    images, labels = train[0].clone(), train[1]
    if corrupt:
        images[137, 0, 3, 4] = math.nan
    else:
        keep = torch.arange(len(labels)) != 137
        images, labels = images[keep], labels[keep]
    return kwargs(seeded(seed, cnn), F.cross_entropy, [(images, labels), val, test],
                  adam(1e-2), 200, 64, seed, "development: a NaN pixel in one digit")


development("cnn_digits_nonfinite", "nonfinite",
         "CNN on the digits where one training image has a NaN pixel: the first batch holding it "
         "makes the loss and every weight NaN.", _digits_nan,
         lambda seed: prove_nonfinite(_digits_nan, lambda s: _digits_nan(s, False), seed,
                                      "without the corrupt image"))
