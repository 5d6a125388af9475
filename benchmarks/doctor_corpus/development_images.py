"""Development cases: convolutional denoising autoencoders and CNNs with BatchNorm / GroupNorm
regressing a disc's size, on generated 12x12 images of soft discs."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import Proof
from .families_common import (
    Kwargs,
    adam,
    development,
    kwargs,
    prove_learned,
    prove_lr_too_large,
    prove_mismatch,
    sets,
    sgd,
)
from .proving import fit, seeded
from .signals_data import discs

__all__ = ["autoencoder", "size_cnn"]


def autoencoder(c1: int = 8, c2: int = 16) -> nn.Sequential:
    """``conv 3x3 (c1), ReLU, conv 3x3 stride 2 (c2), ReLU, transposed conv 2x2 stride 2 (c1),
    ReLU, conv 3x3 (1)``: 12x12 in, 12x12 out."""
    return nn.Sequential(
        nn.Conv2d(1, c1, 3, padding=1), nn.ReLU(),
        nn.Conv2d(c1, c2, 3, stride=2, padding=1), nn.ReLU(),
        nn.ConvTranspose2d(c2, c1, 2, stride=2), nn.ReLU(),
        nn.Conv2d(c1, 1, 3, padding=1))


def size_cnn(c1: int = 8, c2: int = 16, out: int = 1, norm: str = "batch"
             ) -> nn.Sequential:
    """``conv 3x3 (c1), norm, ReLU, maxpool 2, conv 3x3 (c2), norm, ReLU, global average pool,
    linear (``out``)``; ``norm`` is ``"batch"`` (BatchNorm) or ``"group"`` (GroupNorm, 4 groups)."""
    def normal(channels: int) -> nn.Module:
        return nn.BatchNorm2d(channels) if norm == "batch" else nn.GroupNorm(4, channels)

    return nn.Sequential(
        nn.Conv2d(1, c1, 3, padding=1), normal(c1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(c1, c2, 3, padding=1), normal(c2), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c2, out))


# ---------------------------------------------------------------------------------- benign


def _denoise_healthy(seed: int) -> Kwargs:
    data = sets(discs, seed, 2000, 500, noise=0.3)
    return kwargs(seeded(seed, autoencoder), F.mse_loss, data, adam(1e-2), 200, 32, seed,
                  "held-out: a convolutional denoising autoencoder")


development("autoencoder_discs_healthy", "healthy",
         "Convolutional denoising autoencoder (8, 16 channels, a stride-2 bottleneck) cleaning "
         "12x12 disc images of pixel noise std 0.3, Adam lr 1e-2, batches of 32: trains well.",
         _denoise_healthy,
         lambda seed: prove_learned(_denoise_healthy(seed),
                                    seeded(seed + 1, lambda: autoencoder(24, 48))))


# -------------------------------------------------------------------------- failing runs


def _denoise_symmetric(seed: int, constant: bool = True) -> Kwargs:
    model = seeded(seed, autoencoder)
    if constant:
        with torch.no_grad():
            for module in model:
                if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
                    module.weight.fill_(0.05)
                    module.bias.zero_()
    data = sets(discs, seed, 1000, 500, noise=0.3)
    return kwargs(model, F.mse_loss, data, adam(1e-2), 200, 32, seed,
                  "held-out: an autoencoder whose weights all start at 0.05")


def _symmetric_proof(seed: int) -> Proof:
    kw = _denoise_symmetric(seed)
    run = fit(kw)
    layers = [m for m in run.model if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    spread = 0.0
    for module in layers:
        weight = module.weight.detach()
        if isinstance(module, nn.ConvTranspose2d):
            weight = weight.transpose(0, 1)
        if weight.shape[0] > 1:
            spread = max(spread, float((weight - weight[:1]).abs().max() / weight.abs().max()))
    good = fit(_denoise_symmetric(seed, False))
    holds = spread < 1e-4 and good.score < 0.5 * run.score
    return Proof(holds, f"the channels of each layer stay identical (relative spread "
                 f"{spread:.2g}); score {run.score:.3g} vs {good.score:.3g} with the default "
                 f"random init", {"spread": spread, "run": run.score, "default": good.score})


development("autoencoder_discs_symmetric_init", "symmetric_init",
         "The denoising autoencoder with every weight set to 0.05 and biases 0, Adam lr 1e-2: "
         "every channel "
         "of a layer computes and learns the same thing, a one-channel network in effect.",
         _denoise_symmetric, _symmetric_proof)


def _size_shift(seed: int, train_bright: float = 1.0) -> Kwargs:
    train, val = sets(discs, seed, 2000, 500, target="radius", brightness=train_bright)
    test = discs(seed, 500, target="radius", brightness=3.0, salt=2)
    return kwargs(seeded(seed, size_cnn), F.mse_loss, [train, val, test],
                  adam(1e-2), 200, 32, seed, "held-out: test discs three times as bright")


development("cnn_discs_mismatch", "mismatch",
         "BatchNorm CNN regressing a disc's radius; training and val discs have brightness 1, "
         "the test discs 3 (another camera gain): train and val losses are small, the test "
         "loss large.", _size_shift,
         lambda seed: prove_mismatch(_size_shift, lambda s: _size_shift(s, 3.0), seed,
                                     "trained on discs of brightness 3"))


def _size_fast(seed: int) -> Kwargs:
    data = sets(discs, seed, 2000, 500, target="size")
    model = seeded(seed, lambda: size_cnn(out=3, norm="group"))
    return kwargs(model, F.cross_entropy, data, sgd(5.0, 0.9), 200, 32, seed,
                  "held-out: a GroupNorm CNN with SGD at lr 5")


development("cnn_discs_lr_too_large", "lr_too_large",
         "GroupNorm CNN telling small, medium and large discs apart (2000 images), SGD lr 5 "
         "momentum 0.9 (about 50x the best): the loss bounces around its start; a 30-100x "
         "smaller lr trains.", _size_fast,
         lambda seed: prove_lr_too_large(_size_fast, seed))
