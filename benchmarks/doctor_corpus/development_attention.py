"""Development cases: a single ``nn.MultiheadAttention`` layer with mean pooling counting a token,
and small pre-LN / post-LN ``nn.TransformerEncoder`` models on the histogram task (how often each
token occurs)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

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
    prove_nonfinite,
    prove_overfitting,
    sets,
)
from .proving import fit, prove_noise_floor, seeded
from .signals_data import histogram, token_count

__all__ = ["AttentionPool", "HistogramTransformer"]


class AttentionPool(nn.Module):
    """Token and learned position embeddings, one ``nn.MultiheadAttention`` self-attention layer
    with a residual, a mean over the places and a small ReLU head: ``(n, out)``."""

    def __init__(self, width: int = 16, heads: int = 2, out: int = 5, vocabulary: int = 8,
                 length: int = 12, hidden: int = 32) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocabulary, width)
        self.position = nn.Parameter(0.1 * torch.randn(length, width))
        self.attention = nn.MultiheadAttention(width, heads, batch_first=True)
        self.head = nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, out))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens) + self.position
        mixed, _ = self.attention(x, x, x, need_weights=False)
        return self.head((x + mixed).mean(1))


class HistogramTransformer(nn.Module):
    """Token and learned position embeddings, an ``nn.TransformerEncoder`` (pre-LN with
    ``norm_first``, else post-LN; no dropout) and a linear head: logits ``(n, length, length)``
    transposed for ``F.cross_entropy`` (one class per count)."""

    def __init__(self, norm_first: bool, width: int = 32, layers: int = 2, heads: int = 4,
                 vocabulary: int = 6, length: int = 10) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocabulary, width)
        self.position = nn.Parameter(0.1 * torch.randn(length, width))
        layer = nn.TransformerEncoderLayer(width, heads, 2 * width, dropout=0.0,
                                           batch_first=True, norm_first=norm_first)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width) if norm_first else nn.Identity()
        self.head = nn.Linear(width, length)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(self.embed(tokens) + self.position)
        return self.head(self.norm(hidden)).transpose(1, 2)


def cosine(steps: int) -> Callable[[torch.optim.Optimizer], Any]:
    """A scheduler factory: cosine decay of the lr to zero over ``steps`` steps."""
    return lambda optimizer: torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)


def warmup(steps: int) -> Callable[[torch.optim.Optimizer], Any]:
    """A scheduler factory: the lr grows linearly from 1% to 100% over ``steps`` steps."""
    return lambda optimizer: torch.optim.lr_scheduler.LinearLR(
        optimizer, start_factor=0.01, end_factor=1.0, total_iters=steps)


# ---------------------------------------------------------------------- counting a token


def _count_healthy(seed: int) -> Kwargs:
    model = seeded(seed, AttentionPool)
    return kwargs(model, F.cross_entropy, sets(token_count, seed, 3000, 500), adam(1e-2), 300,
                  64, seed, "held-out: one attention layer counting a token, cosine schedule",
                  scheduler=cosine(300))


development("attention_count_healthy", "healthy",
         "One MultiheadAttention layer (width 16, 2 heads) with mean pooling and a ReLU head "
         "counting token 0 in 12 tokens of 8 kinds (0-4+), Adam lr 1e-2 with a cosine decay "
         "(scheduler=), batches of 64: trains well.", _count_healthy,
         lambda seed: prove_learned(_count_healthy(seed), seeded(
             seed + 1, lambda: AttentionPool(width=48, heads=4, hidden=96))))


FLIP = 0.4
_KEEP = 1 - FLIP + FLIP / 5
COUNT_FLOOR = -(_KEEP * math.log(_KEEP) + 4 * (FLIP / 5) * math.log(FLIP / 5))
"""The cross-entropy of a label replaced by a uniform random class (of 5) with probability
``FLIP``: the best possible when the count itself is known."""


def _count_floor(seed: int) -> Kwargs:
    model = seeded(seed, AttentionPool)
    return kwargs(model, F.cross_entropy, sets(token_count, seed, 4000, 1000, flip=FLIP),
                  adam(1e-2), 300, 64, seed, "held-out: counting a token, 40% labels random")


development("attention_count_noise_floor", "noise_floor",
         "The attention counter on 4000 sequences of which 40% carry a uniformly random label "
         "(annotators guessing): the loss ends at the entropy of that noise, 1.07 nats.",
         _count_floor,
         lambda seed: prove_noise_floor(_count_floor(seed), seeded(
             seed + 1, lambda: AttentionPool(width=48, heads=4, hidden=96)), COUNT_FLOOR))


def _count_few(seed: int, train: int = 20) -> Kwargs:
    model = seeded(seed, lambda: AttentionPool(width=48, heads=4, hidden=96))
    return kwargs(model, F.cross_entropy, sets(token_count, seed, train, 500), adam(1e-2), 250,
                  None if train <= 20 else 64, seed,
                  "held-out: a wide attention counter on 20 sequences")


development("attention_count_overfitting", "overfitting",
         "A wide attention counter (width 48, 4 heads, head 96) on 20 training sequences, full "
         "batch, Adam lr 1e-2: memorises them, the val loss stays large.", _count_few,
         lambda seed: prove_overfitting(_count_few, lambda s: _count_few(s, 3000), seed,
                                        "3000 training sequences (batches of 64)"))


def mape(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute percentage error written out by hand: ``|prediction - target| / target``.
    A count of zero divides by zero: the loss is ``inf``, its gradient NaN."""
    return ((prediction.squeeze(1) - target) / target).abs().mean()


def _relative_mse(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return ((prediction.squeeze(1) - target) ** 2 / (1 + target)).mean()


def _count_mape(seed: int, fixed: bool = False) -> Kwargs:
    model = seeded(seed, lambda: AttentionPool(out=1))
    train, val = sets(token_count, seed, 3000, 500)
    data = [(train[0], train[1].float()), (val[0], val[1].float())]
    return kwargs(model, _relative_mse if fixed else mape, data, adam(3e-3), 200, 64, seed,
                  "held-out: a count regressed with a hand-written percentage error")


development("attention_count_nonfinite", "nonfinite",
         "The attention counter regressing the count of token 0 with a hand-written mean "
         "absolute percentage error, Adam lr 3e-3: a fifth of the sequences hold no token 0, "
         "the loss divides by zero and is inf, its gradients NaN.", _count_mape,
         lambda seed: prove_nonfinite(_count_mape, lambda s: _count_mape(s, True), seed,
                                      "a squared error divided by 1 + count"))


# ------------------------------------------------------------------- the histogram task


def _histogram(seed: int, *sizes: int) -> list:
    return sets(histogram, seed, *sizes)


def _histogram_healthy(seed: int) -> Kwargs:
    model = seeded(seed, lambda: HistogramTransformer(norm_first=True))
    return kwargs(model, F.cross_entropy, _histogram(seed, 2000, 500), adam(3e-3), 250, 32,
                  seed, "held-out: a pre-LN Transformer on the histogram task")


development("transformer_histogram_healthy", "healthy",
         "Pre-LN Transformer (2 layers, width 32) telling at each of 10 places how often its "
         "token (of 6) occurs elsewhere, Adam lr 3e-3, batches of 32: slow, still falling at the "
         "end, but the lr is right.",
         _histogram_healthy,
         lambda seed: prove_learned(_histogram_healthy(seed), seeded(
             seed + 1, lambda: HistogramTransformer(norm_first=True, width=64))))


def _histogram_cold(seed: int, warm: int = 0) -> Kwargs:
    model = seeded(seed, lambda: HistogramTransformer(norm_first=False))
    more = {"scheduler": warmup(warm)} if warm else {}
    return kwargs(model, F.cross_entropy, _histogram(seed, 2000, 500), adam(1.5e-2), 300, 32,
                  seed, "held-out: a post-LN Transformer at Adam lr 1.5e-2, no warm-up", **more)


def _marginal_entropy(labels: torch.Tensor) -> float:
    """The entropy of the labels' frequencies: the loss of a model that learned only those."""
    counts = torch.bincount(labels.flatten()).float()
    p = counts[counts > 0] / counts.sum()
    return float(-(p * p.log()).sum())


def _warmup_proof(seed: int) -> Proof:
    kw = _histogram_cold(seed)
    run, warm = fit(kw), fit(_histogram_cold(seed, 100))
    marginal = _marginal_entropy(kw["train_data"][1])
    stuck = run.train_loss_end > 0.95 * marginal
    holds = stuck and warm.score < 0.5 * run.score
    return Proof(holds, f"no warm-up: loss {run.first_loss:.3g} -> {run.train_loss_end:.3g} (the "
                 f"label frequencies alone give {marginal:.3g}); "
                 f"with a linear warm-up over 100 steps to the same lr: val {warm.score:.3g} vs "
                 f"{run.score:.3g}", {"run": run.score, "warm": warm.score,
                                      "end": run.train_loss_end})


development("transformer_histogram_needs_warmup", "needs_warmup",
         "Post-LN Transformer on the histogram task with Adam at lr 1.5e-2 from the first step, "
         "batches of 32: the loss sticks at the entropy of the label frequencies; the same lr "
         "reached by a 100-step linear warm-up trains.", _histogram_cold, _warmup_proof)
