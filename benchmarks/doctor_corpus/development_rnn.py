"""Development cases: GRU, LSTM and plain RNN models on generated sequences."""

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
    kwargs,
    prove_exploding,
    prove_learned,
    prove_lr_too_small,
    prove_model_bias,
    sets,
    sgd,
)
from .families_data import majority, parity, recall, sine, sums
from .proving import fit, prove_noise_floor, seeded

__all__ = ["Recurrent"]


class Recurrent(nn.Module):
    """A one-layer recurrent network (``nn.GRU``, ``nn.LSTM`` or ``nn.RNN``) with a linear head
    on its last output (``every_step=False``) or on every output (classes on dim 1)."""

    def __init__(self, cell: type[nn.Module], hidden: int, out: int, inputs: int = 1,
                 every_step: bool = False, **options: object) -> None:
        super().__init__()
        self.rnn = cell(inputs, hidden, batch_first=True, **options)
        self.head = nn.Linear(hidden, out)
        self.every_step = every_step

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        if self.every_step:
            return self.head(out).transpose(1, 2)
        return self.head(out[:, -1])


# ---------------------------------------------------------------------------------- benign


def _parity_healthy(seed: int) -> Kwargs:
    data = sets(parity, seed, 2000, 500, length=12)
    model = seeded(seed, lambda: Recurrent(nn.GRU, 32, 2, every_step=True))
    return kwargs(model, F.cross_entropy, data, adam(1e-2), 300, 64, seed,
                  "development: a GRU learning the running parity")


development("rnn_parity_healthy", "healthy",
         "GRU (32) tagging the running parity of 12 random bits, Adam lr 1e-2: learns it "
         "perfectly, the loss ends near zero.", _parity_healthy,
         lambda seed: prove_learned(_parity_healthy(seed), seeded(
             seed + 1, lambda: Recurrent(nn.GRU, 128, 2, every_step=True))))


def _sine_slow(seed: int) -> Kwargs:
    data = sets(sine, seed, 2000, 500, length=20)
    model = seeded(seed, lambda: Recurrent(nn.LSTM, 32, 1))
    return kwargs(model, F.mse_loss, data, adam(1e-2), 300, 32, seed,
                  "development: an LSTM forecasting sines")


development("rnn_sine_healthy", "healthy",
         "LSTM (32) forecasting the next value of clean sines of random frequency, Adam lr 1e-2, "
         "batches of 32: still falling at the end, slowly, but the lr is right.", _sine_slow,
         lambda seed: prove_learned(_sine_slow(seed),
                                    seeded(seed + 1, lambda: Recurrent(nn.LSTM, 128, 1))))


def _majority_noisy(seed: int) -> Kwargs:
    data = sets(majority, seed, 2000, 500, length=11)
    model = seeded(seed, lambda: Recurrent(nn.LSTM, 16, 2))
    return kwargs(model, F.cross_entropy, data, adam(3e-2), 250, 8, seed,
                  "development: an LSTM classifier, batches of 8")


development("rnn_majority_healthy", "healthy",
         "LSTM (16) telling whether +1s or -1s are the majority of 11, Adam lr 3e-2 with batches "
         "of 8: a noisy loss curve, but a healthy run.", _majority_noisy,
         lambda seed: prove_learned(_majority_noisy(seed), seeded(
             seed + 1, lambda: Recurrent(nn.LSTM, 64, 2))))


def _sums_floor(seed: int) -> Kwargs:
    data = sets(sums, seed, 2000, 1000, length=20, last=3, noise=1.0)
    model = seeded(seed, lambda: Recurrent(nn.GRU, 32, 1))
    return kwargs(model, F.mse_loss, data, adam(1e-2), 300, 64, seed,
                  "development: a GRU summing with noisy targets")


def _sums_floor_proof(seed: int) -> Proof:
    kw = _sums_floor(seed)
    inputs, targets = kw["val_data"]
    floor = float(((targets - inputs[:, -3:, 0].sum(1, keepdim=True) / math.sqrt(3)) ** 2).mean())
    return prove_noise_floor(kw, seeded(seed + 1, lambda: Recurrent(nn.GRU, 128, 1)), floor)


development("rnn_sums_noise_floor", "noise_floor",
         "GRU (32) regressing the sum of the last 3 of 20 values, targets with Gaussian noise of "
         "std 1 (as large as the signal), Adam lr 1e-2: the loss ends at the noise variance "
         "(1; the val set's own noise is the floor).", _sums_floor, _sums_floor_proof)


# -------------------------------------------------------------------------- failing runs


def _sine_crawl(seed: int) -> Kwargs:
    data = sets(sine, seed, 2000, 500, length=20)
    model = seeded(seed, lambda: Recurrent(nn.LSTM, 32, 1))
    return kwargs(model, F.mse_loss, data, sgd(0.01), 300, 32, seed,
                  "development: an LSTM with SGD at lr 0.01")


development("rnn_sine_lr_too_small", "lr_too_small",
         "LSTM (32) forecasting sines with plain SGD at lr 0.01: the loss falls, far too slowly.",
         _sine_crawl, lambda seed: prove_lr_too_small(_sine_crawl, seed))


def _recall_small(seed: int) -> Kwargs:
    data = sets(recall, seed, 2000, 500, length=10, first=6)
    model = seeded(seed, lambda: Recurrent(nn.GRU, 2, 6))
    return kwargs(model, F.mse_loss, data, adam(3e-2), 300, 64, seed,
                  "development: a 2-unit GRU recalling 6 values")


development("rnn_recall_model_bias", "model_bias",
         "A 2-unit GRU asked to recall the first 6 of 10 values at the end, Adam lr 3e-2: two "
         "numbers of state cannot hold six, the training loss stays near 4/6 of the variance.",
         _recall_small,
         lambda seed: prove_model_bias(
             _recall_small, lambda s: seeded(s + 1, lambda: Recurrent(nn.GRU, 64, 6)), seed))


def _irnn(hidden: int = 32, scale: float = 1.02) -> Recurrent:
    """A ReLU RNN started at ``scale`` times the identity recurrence (zero biases): long memory,
    and gradients that explode as soon as the recurrence grows past 1."""
    model = Recurrent(nn.RNN, hidden, 1, nonlinearity="relu")
    with torch.no_grad():
        model.rnn.weight_hh_l0.copy_(scale * torch.eye(hidden))
        model.rnn.bias_hh_l0.zero_()
        model.rnn.bias_ih_l0.zero_()
    return model


def _long_sums(seed: int, clip: float | None = None) -> Kwargs:
    data = sets(sums, seed, 1000, 500, length=50, last=8)
    more = {} if clip is None else {"clip_grad_norm": clip}
    return kwargs(seeded(seed, _irnn), F.mse_loss, data, sgd(1.5e-3, 0.9), 300, 32, seed,
                  "development: a ReLU RNN over 50 steps without clipping", **more)


development("rnn_longsums_exploding_gradients", "exploding_gradients",
         "ReLU RNN started at 1.02 x the identity recurrence, over sequences of 50 (sum of the "
         "last 8), SGD lr 1.5e-3 momentum 0.9 without clipping: the gradient norm spikes by 100x "
         "and more.",
         _long_sums,
         lambda seed: prove_exploding(_long_sums, lambda s: _long_sums(s, 1.0), seed,
                                      "with the gradient norm clipped at 1"))


def _parity_zero(seed: int, zero: bool = True) -> Kwargs:
    data = sets(parity, seed, 2000, 500, length=12)
    model = seeded(seed, lambda: Recurrent(nn.GRU, 32, 2, every_step=True))
    if zero:
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.zero_()
    return kwargs(model, F.cross_entropy, data, adam(1e-2), 200, 64, seed,
                  "development: a GRU with every weight initialised to zero")


def _zero_proof(seed: int) -> Proof:
    run = fit(_parity_zero(seed))
    weight = run.model.rnn.weight_hh_l0.detach().view(3, 32, 32)
    spread = float((weight - weight[:, :1]).abs().max())
    good = fit(_parity_zero(seed, False))
    holds = spread == 0.0 and run.train_loss_end > 0.95 * math.log(2) and (
        good.score < 0.3 * run.score)
    return Proof(holds, f"the hidden units stay identical (spread {spread:.2g}), loss "
                 f"{run.train_loss_end:.3g} (ln 2 = {math.log(2):.3g}); with the default init: "
                 f"score {good.score:.3g}", {"spread": spread, "run": run.score,
                                             "default": good.score})


development("rnn_parity_symmetric_init", "symmetric_init",
         "GRU tagging the running parity with every weight and bias initialised to zero: all "
         "hidden units are the same (zero) and get the same (zero) gradient; only the output "
         "bias learns.", _parity_zero, _zero_proof)
