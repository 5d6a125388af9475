"""Development cases: 1-D convolutional networks on generated signals (waveform kinds, pulse places,
denoising) and on the scikit-learn digits read row by row."""

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
    kwargs,
    prove_divergence,
    prove_learned,
    prove_lr_too_large,
    prove_model_bias,
    sets,
    sgd,
    split,
)
from .proving import fit, prove_noise_floor, seeded
from .signals_data import pulses, waveforms

__all__ = ["conv1d", "deep_sigmoid_conv1d"]


def conv1d(c1: int = 8, c2: int = 16, out: int = 4, inputs: int = 1, kernel: int = 5,
           length: int | None = None) -> nn.Sequential:
    """``conv (c1), ReLU, maxpool 2, conv (c2), ReLU``, then a global average pool and a linear
    head, or (``length`` given) a flatten and a linear head over every place."""
    layers: list[nn.Module] = [
        nn.Conv1d(inputs, c1, kernel, padding=kernel // 2), nn.ReLU(), nn.MaxPool1d(2),
        nn.Conv1d(c1, c2, kernel, padding=kernel // 2), nn.ReLU()]
    if length is None:
        layers += [nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(c2, out)]
    else:
        layers += [nn.Flatten(), nn.Linear(c2 * (length // 2), out)]
    return nn.Sequential(*layers)


def deep_sigmoid_conv1d(depth: int = 6, width: int = 8, out: int = 4) -> nn.Sequential:
    """``depth`` plain 5-tap convolutions (``width`` channels) with sigmoids, a global average
    pool and a linear head."""
    layers: list[nn.Module] = []
    for i in range(depth):
        layers += [nn.Conv1d(1 if i == 0 else width, width, 5, padding=2), nn.Sigmoid()]
    return nn.Sequential(*layers, nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(width, out))


def _waves(seed: int, train: int = 2000, **options: float) -> list:
    return sets(waveforms, seed, train, 500, **options)


# ---------------------------------------------------------------------------------- benign


def _waves_healthy(seed: int) -> Kwargs:
    return kwargs(seeded(seed, conv1d), F.cross_entropy, _waves(seed), adam(3e-2), 250, 32, seed,
                  "held-out: a 1-D CNN telling waveforms apart")


development("conv1d_waves_healthy", "healthy",
         "1-D CNN (8, 16 channels, 5 taps, global average pool) telling sine, square, sawtooth "
         "and pulse-train signals apart (2000 noisy signals of 48 samples), Adam lr 3e-2, batches "
         "of 32: trains well, the loss ends near zero.", _waves_healthy,
         lambda seed: prove_learned(_waves_healthy(seed),
                                    seeded(seed + 1, lambda: conv1d(16, 32))))


PULSE_NOISE = 0.6


def _pulses_floor(seed: int) -> Kwargs:
    data = sets(pulses, seed, 2000, 1000, target_noise=PULSE_NOISE)
    return kwargs(seeded(seed, lambda: conv1d(8, 16, 1, length=48)), F.mse_loss, data,
                  adam(3e-3), 300, 64, seed,
                  "held-out: a 1-D CNN locating a pulse, noisy targets")


def _pulses_floor_proof(seed: int) -> Proof:
    kw = _pulses_floor(seed)
    clean = sets(pulses, seed, 1, 1000, target_noise=0.0)[1][1]
    floor = float(((kw["val_data"][1] - clean) ** 2).mean())
    return prove_noise_floor(kw, seeded(seed + 1, lambda: conv1d(32, 64, 1, length=48)), floor)


development("conv1d_pulses_noise_floor", "noise_floor",
         "1-D CNN (flatten head) regressing where a Gaussian pulse sits in 48 noisy samples; the "
         "targets carry Gaussian noise of std 0.6, Adam lr 3e-3: the loss ends at the noise "
         "variance (0.36; the val set's own noise is the floor).", _pulses_floor,
         _pulses_floor_proof)


# -------------------------------------------------------------------------- failing runs


def _one_filter() -> nn.Sequential:
    return nn.Sequential(nn.Conv1d(1, 1, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool1d(1),
                         nn.Flatten(), nn.Linear(1, 4))


def _waves_bias(seed: int) -> Kwargs:
    return kwargs(seeded(seed, _one_filter), F.cross_entropy, _waves(seed, 1000), adam(1e-2),
                  300, 64, seed, "held-out: a one-filter 1-D CNN")


development("conv1d_waves_model_bias", "model_bias",
         "A one-filter 1-D CNN (3 taps, ReLU, global average: one number per signal) telling 4 "
         "waveform kinds apart, Adam lr 1e-2: too small, the training loss stays high at any "
         "lr.", _waves_bias,
         lambda seed: prove_model_bias(_waves_bias, lambda s: seeded(s + 1, conv1d), seed))


def _waves_deep(seed: int) -> Kwargs:
    return kwargs(seeded(seed, deep_sigmoid_conv1d), F.cross_entropy, _waves(seed, 1000),
                  sgd(0.5), 250, 64, seed, "held-out: a deep sigmoid 1-D CNN with SGD",
                  reference=seeded(seed, conv1d))


def _xavier_deep(seed: int) -> nn.Module:
    """The same deep sigmoid network, its convolutions Xavier-initialised with gain 4, biases 0
    (an initialisation that keeps the sigmoids' signal alive through the depth)."""
    model = seeded(seed, deep_sigmoid_conv1d)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for module in model:
            if isinstance(module, nn.Conv1d):
                nn.init.xavier_normal_(module.weight, gain=4.0)
                nn.init.zeros_(module.bias)
    return model


def _deep_proof(seed: int) -> Proof:
    kw = _waves_deep(seed)
    run = fit(kw)
    ref = fit(kw, model=kw["reference"])
    able = fit(kw, model=_xavier_deep(seed), optimizer=adam(1e-2), steps=2 * kw["steps"])
    stuck = run.train_loss_end >= 0.9 * run.first_loss
    holds = stuck and ref.train_loss_end < 0.5 * run.train_loss_end and (
        able.train_loss_end < 0.5 * run.train_loss_end)
    return Proof(holds, f"run {run.first_loss:.3g} -> {run.train_loss_end:.3g}; the 2-layer ReLU "
                 f"reference (same SGD) {ref.train_loss_end:.3g}; the same architecture "
                 f"(Xavier gain 4, Adam 1e-2, 2x the steps) {able.train_loss_end:.3g}",
                 {"run": run.train_loss_end, "reference": ref.train_loss_end,
                  "same_architecture": able.train_loss_end})


development("conv1d_waves_optimization_failure", "optimization_failure",
         "Six plain 5-tap sigmoid convolutions with a global average pool, plain SGD lr 0.5, on "
         "1000 waveforms: the loss stays at ln 4 while a 2-layer ReLU 1-D CNN with the same SGD "
         "learns; the architecture can learn (another initialisation and Adam train "
         "it).", _waves_deep, _deep_proof)


def _waves_dead(seed: int, bias: float | None = -5.0) -> Kwargs:
    model = seeded(seed, conv1d)
    if bias is not None:
        with torch.no_grad():
            for module in model:
                if isinstance(module, nn.Conv1d):
                    module.bias.fill_(bias)
    return kwargs(model, F.cross_entropy, _waves(seed, 1000), adam(3e-3), 200, 64, seed,
                  "held-out: a ReLU 1-D CNN with conv biases at -5")


def _dead_fraction(model: nn.Sequential, inputs: torch.Tensor) -> float:
    """The fraction of the ReLU outputs (channel and place) that are zero on every input."""
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
    kw = _waves_dead(seed)
    run = fit(kw)
    dead = _dead_fraction(run.model.eval(), kw["train_data"][0])
    good = fit(_waves_dead(seed, None))
    holds = dead > 0.9 and run.train_loss_end > 0.9 * math.log(4) and (
        good.train_loss_end < 0.5 * good.first_loss)
    return Proof(holds, f"{dead:.0%} of the ReLU outputs are zero on every training signal after "
                 f"training, loss {run.train_loss_end:.3g} (ln 4 = {math.log(4):.3g}); with the "
                 f"default biases {good.first_loss:.3g} -> {good.train_loss_end:.3g}",
                 {"dead": dead, "run": run.train_loss_end, "default": good.train_loss_end})


development("conv1d_waves_dead_units", "dead_units",
         "ReLU 1-D CNN on 1000 waveforms whose conv biases were set to -5 (a bad init): no "
         "signal turns a ReLU on, nothing below the head learns, the loss stays at ln 4.",
         _waves_dead, _dead_proof)


def _denoise(seed: int, n: int, salt: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    clean, _ = waveforms(seed, n, noise=0.0, salt=salt)
    noise = torch.randn(clean.shape, generator=torch.Generator().manual_seed(99 * seed + salt))
    return clean + 0.5 * noise, clean


def _filter_divergence(seed: int) -> Kwargs:
    model = seeded(seed, lambda: nn.Conv1d(1, 1, 9, padding=4))
    data = [_denoise(seed, 1000), _denoise(seed, 500, salt=1)]
    return kwargs(model, F.mse_loss, data, sgd(0.6), 40, 32, seed,
                  "held-out: a 9-tap denoising filter with SGD at lr 0.6")


development("conv1d_denoise_divergence", "divergence",
         "A learned 9-tap FIR filter (one Conv1d) denoising waveforms (noise std 0.5, mean "
         "squared error), plain SGD at lr 0.6, above 2 / the top curvature: every step "
         "overshoots, the loss grows geometrically.", _filter_divergence,
         lambda seed: prove_divergence(_filter_divergence, seed))


def _digit_rows(seed: int) -> list:
    """The digits as sequences of their 8 rows ``(n, 8, 8)``: channel ``j`` is pixel column
    ``j``, the sequence runs down the rows."""
    images, labels = digits(seed)
    rows = images.squeeze(1).transpose(1, 2).contiguous()
    train, val = split((rows, labels), 1200, 400)
    return [train, val]


def _rows_fast(seed: int) -> Kwargs:
    model = seeded(seed, lambda: conv1d(32, 32, 10, inputs=8, kernel=3))
    return kwargs(model, F.cross_entropy, _digit_rows(seed), sgd(8.0, 0.9), 200, 64, seed,
                  "held-out: a 1-D CNN over digit rows, SGD lr 8 momentum 0.9")


development("conv1d_digits_lr_too_large", "lr_too_large",
         "1-D CNN (32, 32 channels, 3 taps) reading the 8x8 digits row by row (the 8 "
         "pixels of a row as channels), SGD lr 8 momentum 0.9: the loss bounces around its "
         "start; a 30-100x smaller lr trains.", _rows_fast,
         lambda seed: prove_lr_too_large(_rows_fast, seed))
