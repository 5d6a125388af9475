"""Development cases: small pre-LN and post-LN ``nn.TransformerEncoder`` models on token tasks
(reverse, sort, copy 8 tokens of 16 kinds)."""

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
    all_of,
    development,
    kwargs,
    prove_learned,
    prove_lr_too_large,
    prove_lr_too_small,
    prove_mismatch,
    prove_overfitting,
    sets,
)
from .families_data import token_task
from .proving import fit, seeded

__all__ = ["TokenTransformer", "warmup"]

VOCABULARY = 16
LENGTH = 8


class TokenTransformer(nn.Module):
    """Token and learned position embeddings, an ``nn.TransformerEncoder`` (pre-LN with
    ``norm_first``, else post-LN; no dropout) and a linear head: logits ``(n, vocabulary,
    length)`` for ``F.cross_entropy``."""

    def __init__(self, norm_first: bool, width: int = 32, layers: int = 2, heads: int = 4,
                 vocabulary: int = VOCABULARY, length: int = LENGTH) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocabulary, width)
        self.position = nn.Parameter(0.1 * torch.randn(length, width))
        layer = nn.TransformerEncoderLayer(width, heads, 2 * width, dropout=0.0,
                                           batch_first=True, norm_first=norm_first)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width) if norm_first else nn.Identity()
        self.head = nn.Linear(width, vocabulary)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(self.embed(tokens) + self.position)
        return self.head(self.norm(hidden)).transpose(1, 2)


def warmup(steps: int) -> Callable[[torch.optim.Optimizer], Any]:
    """A scheduler factory: the lr grows linearly from 1% to 100% over ``steps`` steps."""
    return lambda optimizer: torch.optim.lr_scheduler.LinearLR(
        optimizer, start_factor=0.01, end_factor=1.0, total_iters=steps)


def _tokens(seed: int, task: str, sizes: tuple[int, ...], **options: Any) -> list:
    return sets(token_task, seed, *sizes, task=task, length=LENGTH, vocabulary=VOCABULARY,
                **options)


# ---------------------------------------------------------------------------------- benign


def _reverse_healthy(seed: int) -> Kwargs:
    model = seeded(seed, lambda: TokenTransformer(norm_first=True))
    return kwargs(model, F.cross_entropy, _tokens(seed, "reverse", (2000, 500)), adam(1e-2), 150,
                  64, seed, "development: a pre-LN Transformer learning to reverse")


development("transformer_reverse_healthy", "healthy",
         "Pre-LN Transformer (2 layers, width 32) reversing 8 tokens of 16 kinds, Adam lr 1e-2, "
         "batches of 64: learns it, the loss ends near zero.", _reverse_healthy,
         lambda seed: prove_learned(_reverse_healthy(seed), seeded(
             seed + 1, lambda: TokenTransformer(norm_first=True, width=64))))


def _sort_warm(seed: int) -> Kwargs:
    model = seeded(seed, lambda: TokenTransformer(norm_first=False))
    return kwargs(model, F.cross_entropy, _tokens(seed, "sort", (2000, 500)), adam(1e-2), 200,
                  32, seed, "development: a post-LN Transformer with a linear warm-up",
                  scheduler=warmup(50))


development("transformer_sort_healthy", "healthy",
         "Post-LN Transformer sorting 8 tokens, Adam lr 1e-2 reached by a linear warm-up over "
         "50 steps (scheduler=), batches of 32: trains well.", _sort_warm,
         lambda seed: prove_learned(_sort_warm(seed), seeded(
             seed + 1, lambda: TokenTransformer(norm_first=False, width=64))))


# -------------------------------------------------------------------------- failing runs


def _reverse_cold(seed: int, warm: int = 0) -> Kwargs:
    model = seeded(seed, lambda: TokenTransformer(norm_first=False))
    more = {"scheduler": warmup(warm)} if warm else {}
    return kwargs(model, F.cross_entropy, _tokens(seed, "reverse", (2000, 500)), adam(5e-2), 250,
                  32, seed, "development: a post-LN Transformer at Adam lr 5e-2, no warm-up",
                  **more)


def _warmup_proof(seed: int) -> Proof:
    run, warm = fit(_reverse_cold(seed)), fit(_reverse_cold(seed, 100))
    chance = math.log(VOCABULARY)
    stuck = run.train_loss_end > 0.9 * chance
    holds = stuck and warm.score < 0.5 * run.score
    return Proof(holds, f"no warm-up: loss {run.first_loss:.3g} -> {run.train_loss_end:.3g} "
                 f"(ln {VOCABULARY} = {chance:.3g}); with a linear warm-up over 100 steps to the "
                 f"same lr: val {warm.score:.3g} vs {run.score:.3g}",
                 {"run": run.score, "warm": warm.score, "end": run.train_loss_end})


development("transformer_reverse_needs_warmup", "needs_warmup",
         "Post-LN Transformer reversing 8 tokens with Adam at lr 5e-2 from the first step, "
         "batches of 32: the loss sticks near ln 16; the same lr reached by a 100-step linear "
         "warm-up trains.", _reverse_cold, _warmup_proof)


def _reverse_crawl(seed: int) -> Kwargs:
    model = seeded(seed, lambda: TokenTransformer(norm_first=True))
    return kwargs(model, F.cross_entropy, _tokens(seed, "reverse", (2000, 500)), adam(1e-3), 150,
                  64, seed, "development: a pre-LN Transformer at Adam lr 1e-3")


development("transformer_reverse_lr_too_small", "lr_too_small",
         "Pre-LN Transformer reversing 8 tokens with Adam at lr 1e-3 (the best is 10-30x more): "
         "the loss falls from ln 16, far too slowly.", _reverse_crawl,
         lambda seed: prove_lr_too_small(_reverse_crawl, seed))


def _reverse_hot(seed: int, warm: int = 0) -> Kwargs:
    model = seeded(seed, lambda: TokenTransformer(norm_first=True))
    more = {"scheduler": warmup(warm)} if warm else {}
    return kwargs(model, F.cross_entropy, _tokens(seed, "reverse", (2000, 500)), adam(0.3), 150,
                  64, seed, "development: a pre-LN Transformer at Adam lr 0.3", **more)


def _too_large_proof(seed: int) -> Proof:
    warm = fit(_reverse_hot(seed, 50))
    stuck = warm.train_loss_end > 0.9 * math.log(VOCABULARY)
    return all_of(prove_lr_too_large(_reverse_hot, seed),
                  Proof(stuck, f"a 50-step warm-up to the same lr does not help: loss "
                        f"{warm.train_loss_end:.3g}", {"warm": warm.train_loss_end}))


development("transformer_reverse_lr_too_large", "lr_too_large",
         "Pre-LN Transformer reversing 8 tokens with Adam at lr 0.3 (30x the best): the loss "
         "bounces around ln 16; a warm-up to that lr does not help, a 10x smaller lr trains.",
         _reverse_hot, _too_large_proof)


def _sort_tiny(seed: int, train: int = 32) -> Kwargs:
    model = seeded(seed, lambda: TokenTransformer(norm_first=True, width=64))
    return kwargs(model, F.cross_entropy, _tokens(seed, "sort", (train, 500)), adam(3e-3), 250,
                  None if train <= 32 else 64, seed,
                  "development: a Transformer sorting 32 training sequences")


development("transformer_sort_overfitting", "overfitting",
         "Pre-LN Transformer (width 64) on 32 training sequences of the sort task, full batch: "
         "memorises them, the val loss stays large.", _sort_tiny,
         lambda seed: prove_overfitting(_sort_tiny, lambda s: _sort_tiny(s, 2000), seed,
                                        "2000 training sequences (batches of 64)"))


def _copy_unseen(seed: int, all_tokens: bool = False) -> Kwargs:
    train, val = _tokens(seed, "copy", (2000, 500), high=None if all_tokens else 12)
    test = token_task(seed, 500, "copy", LENGTH, VOCABULARY, low=8, salt=2)
    model = seeded(seed, lambda: TokenTransformer(norm_first=True))
    return kwargs(model, F.cross_entropy, [train, val, test], adam(3e-3), 200, 64, seed,
                  "development: test sequences with tokens the training never shows")


development("transformer_copy_mismatch", "mismatch",
         "Pre-LN Transformer copying 8 tokens; training and val use tokens 0-11 only, the test "
         "tokens 8-15: the train and val losses are small, the test loss large.", _copy_unseen,
         lambda seed: prove_mismatch(_copy_unseen, lambda s: _copy_unseen(s, True), seed,
                                     "trained on all 16 tokens"))
