"""Development cases: GRU, LSTM and plain ReLU RNN models on generated sequence tasks (the adding
problem, the running maximum)."""

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
    prove_mismatch,
    prove_nonfinite,
    sets,
    sgd,
)
from .proving import prove_noise_floor, seeded
from .signals_data import adding, running_max

__all__ = ["Sequence"]


class Sequence(nn.Module):
    """A one-layer recurrent network (``nn.GRU``, ``nn.LSTM`` or ``nn.RNN``) and a linear head on
    its last output ``(n, out)``, or on every output ``(n, length, out)`` (``every_step``)."""

    def __init__(self, cell: type[nn.Module], hidden: int, out: int = 1, inputs: int = 2,
                 every_step: bool = False, **options: object) -> None:
        super().__init__()
        self.rnn = cell(inputs, hidden, batch_first=True, **options)
        self.head = nn.Linear(hidden, out)
        self.every_step = every_step

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        return self.head(out if self.every_step else out[:, -1])


# ---------------------------------------------------------------------------------- benign


def _adding_slow(seed: int) -> Kwargs:
    data = sets(adding, seed, 2000, 500, length=12)
    model = seeded(seed, lambda: Sequence(nn.GRU, 32))
    return kwargs(model, F.mse_loss, data, adam(1e-2), 300, 64, seed,
                  "held-out: a GRU on the adding problem")


development("gru_adding_healthy", "healthy",
         "GRU (32) on the adding problem (sum the two marked values of 12), Adam lr 1e-2, "
         "batches of 64: a plateau at the target variance for ~100 steps, then it finds the "
         "marks and the loss falls near zero.", _adding_slow,
         lambda seed: prove_learned(_adding_slow(seed),
                                    seeded(seed + 1, lambda: Sequence(nn.GRU, 96))))


def _runmax_noisy(seed: int) -> Kwargs:
    data = sets(running_max, seed, 2000, 500, length=16)
    model = seeded(seed, lambda: Sequence(nn.LSTM, 16, inputs=1, every_step=True))
    return kwargs(model, F.mse_loss, data, adam(3e-2), 300, 8, seed,
                  "held-out: an LSTM tracking the running maximum, batches of 8")


development("lstm_runmax_healthy", "healthy",
         "LSTM (16) outputting the running maximum of 16 Gaussian values at every step, Adam lr "
         "3e-2 with batches of 8: a noisy loss curve, but a healthy run.", _runmax_noisy,
         lambda seed: prove_learned(_runmax_noisy(seed), seeded(
             seed + 1, lambda: Sequence(nn.LSTM, 64, inputs=1, every_step=True))))


ADDING_NOISE = 0.3


def _adding_floor(seed: int) -> Kwargs:
    data = sets(adding, seed, 2000, 1000, length=8, noise=ADDING_NOISE)
    model = seeded(seed, lambda: Sequence(nn.GRU, 32))
    return kwargs(model, F.mse_loss, data, adam(1e-2), 300, 64, seed,
                  "held-out: a GRU on the adding problem with noisy targets")


def _adding_floor_proof(seed: int) -> Proof:
    kw = _adding_floor(seed)
    clean = sets(adding, seed, 1, 1000, length=8, noise=0.0)[1][1]
    floor = float(((kw["val_data"][1] - clean) ** 2).mean())
    return prove_noise_floor(kw, seeded(seed + 1, lambda: Sequence(nn.GRU, 96)), floor)


development("gru_adding_noise_floor", "noise_floor",
         "GRU (32) on the adding problem over 8 steps whose targets carry Gaussian noise of std "
         "0.3 (measurement noise), Adam lr 1e-2: the loss ends at the noise variance 0.09 (the "
         "val set's own noise is the floor).", _adding_floor, _adding_floor_proof)


# -------------------------------------------------------------------------- failing runs


def _runmax_crawl(seed: int) -> Kwargs:
    data = sets(running_max, seed, 2000, 500, length=16)
    model = seeded(seed, lambda: Sequence(nn.LSTM, 32, inputs=1, every_step=True))
    return kwargs(model, F.mse_loss, data, sgd(0.02, 0.9), 300, 32, seed,
                  "held-out: an LSTM with SGD at lr 0.02")


development("lstm_runmax_lr_too_small", "lr_too_small",
         "LSTM (32) outputting the running maximum at every step with SGD lr 0.02 momentum 0.9: "
         "the loss falls, far too slowly.", _runmax_crawl,
         lambda seed: prove_lr_too_small(_runmax_crawl, seed))


def _adding_shift(seed: int, train_scale: float = 1.0) -> Kwargs:
    train, val = sets(adding, seed, 2000, 500, length=8, scale=train_scale)
    test = adding(seed, 500, 8, scale=4.0, salt=2)
    model = seeded(seed, lambda: Sequence(nn.GRU, 32))
    return kwargs(model, F.mse_loss, [train, val, test], adam(1e-2), 300, 64, seed,
                  "held-out: a GRU trained on values in [0, 1), tested on [0, 4)")


development("gru_adding_mismatch", "mismatch",
         "GRU (32) on the adding problem over 8 steps; training and val values are uniform in "
         "[0, 1), the test values in [0, 4) (a sensor with another range): train and val losses "
         "are small, the test loss large.", _adding_shift,
         lambda seed: prove_mismatch(_adding_shift, lambda s: _adding_shift(s, 4.0), seed,
                                     "trained on values in [0, 4)"))


def _irnn(hidden: int = 32, scale: float = 1.0) -> Sequence:
    """A ReLU RNN with its recurrence started at ``scale`` times the identity (the IRNN recipe
    for the adding problem), zero biases."""
    model = Sequence(nn.RNN, hidden, nonlinearity="relu")
    with torch.no_grad():
        model.rnn.weight_hh_l0.copy_(scale * torch.eye(hidden))
        model.rnn.bias_hh_l0.zero_()
        model.rnn.bias_ih_l0.zero_()
    return model


def _adding_irnn(seed: int, clip: float | None = None) -> Kwargs:
    data = sets(adding, seed, 2000, 500, length=10)
    more = {} if clip is None else {"clip_grad_norm": clip}
    return kwargs(seeded(seed, _irnn), F.mse_loss, data, sgd(2e-2, 0.9), 300, 32, seed,
                  "held-out: an IRNN on the adding problem, no clipping", **more)


development("rnn_adding_exploding_gradients", "exploding_gradients",
         "ReLU RNN (32) with its recurrence started at the identity (the IRNN recipe) on the "
         "adding problem over 10 steps, SGD lr 2e-2 momentum 0.9 without gradient clipping: "
         "the gradient norm spikes by orders of magnitude; clipping at 1 trains.", _adding_irnn,
         lambda seed: prove_exploding(_adding_irnn, lambda s: _adding_irnn(s, 1.0), seed,
                                      "with the gradient norm clipped at 1"))




def _adding_gap(seed: int, corrupt: bool = True) -> Kwargs:
    train, val = sets(adding, seed, 2000, 500, length=8)
    inputs, targets = train[0].clone(), train[1]
    if corrupt:
        inputs[611, 3, 0] = math.nan
    else:
        keep = torch.arange(len(targets)) != 611
        inputs, targets = inputs[keep], targets[keep]
    model = seeded(seed, lambda: Sequence(nn.GRU, 32))
    return kwargs(model, F.mse_loss, [(inputs, targets), val], adam(1e-2), 200, 64, seed,
                  "held-out: a missing reading (NaN) in one training sequence")


development("gru_adding_nonfinite", "nonfinite",
         "GRU (32) on the adding problem over 8 steps where one of 2000 training sequences has "
         "a missing reading stored as NaN, Adam lr 1e-2: the first batch holding it makes the "
         "loss and every weight NaN.", _adding_gap,
         lambda seed: prove_nonfinite(_adding_gap, lambda s: _adding_gap(s, False), seed,
                                      "without the corrupt sequence"))
