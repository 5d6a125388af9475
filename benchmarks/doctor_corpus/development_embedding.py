"""Development cases: bag-of-words models (``nn.EmbeddingBag``) on generated token sequences."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .families_common import (
    Kwargs,
    adam,
    development,
    kwargs,
    prove_divergence,
    prove_learned,
    prove_nonfinite,
    prove_overfitting,
    sets,
    sgd,
)
from .families_data import bag_of_words
from .proving import prove_noise_floor, seeded

__all__ = ["BagOfWords", "WordScores", "handmade_bce"]

VOCABULARY = 400


class BagOfWords(nn.Module):
    """``nn.EmbeddingBag`` (``mode``: mean or sum of the word vectors) then a linear head, or
    an MLP head with ``hidden`` units."""

    def __init__(self, width: int, out: int, hidden: int = 0, mode: str = "mean",
                 vocabulary: int = VOCABULARY) -> None:
        super().__init__()
        self.embed = nn.EmbeddingBag(vocabulary, width, mode=mode)
        self.head: nn.Module = nn.Linear(width, out) if not hidden else nn.Sequential(
            nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, out))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(tokens))


class WordScores(nn.Module):
    """A linear bag-of-words regression: one learned score per word (``nn.EmbeddingBag`` of
    width 1), summed over the sequence."""

    def __init__(self, vocabulary: int = VOCABULARY) -> None:
        super().__init__()
        self.embed = nn.EmbeddingBag(vocabulary, 1, mode="sum")

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.embed(tokens)


def handmade_bce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy written out by hand: ``-(y log p + (1 - y) log(1 - p))`` with ``p =
    sigmoid(logit)``. Once a logit passes ~17, ``p`` rounds to 1 in float32: ``log(1 - p)`` is
    ``-inf`` and ``0 * -inf`` is NaN."""
    p = torch.sigmoid(logits.squeeze(1))
    y = labels.float()
    return -(y * torch.log(p) + (1 - y) * torch.log(1 - p)).mean()


def _stable_bce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits.squeeze(1), labels.float())


def _words(seed: int, sizes: tuple[int, ...], **options: object) -> list:
    return sets(bag_of_words, seed, *sizes, vocabulary=VOCABULARY, **options)


# ---------------------------------------------------------------------------------- benign


def _words_healthy(seed: int) -> Kwargs:
    model = seeded(seed, lambda: BagOfWords(16, 2))
    return kwargs(model, F.cross_entropy, _words(seed, (4000, 500, 500)), adam(3e-2), 200, 64,
                  seed, "development: a bag-of-words classifier")


development("embedding_words_healthy", "healthy",
         "EmbeddingBag (400 words, width 16, mean) and a linear head on 4000 generated "
         "'sentiment' sequences whose cue words decide the class, Adam lr 3e-2: trains well.",
         _words_healthy,
         lambda seed: prove_learned(_words_healthy(seed),
                                    seeded(seed + 1, lambda: BagOfWords(64, 2, hidden=64))))


FLIP = 0.2
FLOOR = -(FLIP * math.log(FLIP) + (1 - FLIP) * math.log(1 - FLIP))
"""The entropy of a label flipped with probability ``FLIP``: the best cross-entropy."""


def _words_floor(seed: int) -> Kwargs:
    model = seeded(seed, lambda: BagOfWords(16, 2))
    return kwargs(model, F.cross_entropy, _words(seed, (6000, 1000), flip=FLIP), adam(1e-2),
                  250, 64, seed, "development: a bag-of-words classifier, 20% of labels flipped")


development("embedding_words_noise_floor", "noise_floor",
         "The bag-of-words classifier on 6000 sequences of which 20% have their label flipped at "
         "random: the loss ends at the entropy of the flip, 0.500 nats.", _words_floor,
         lambda seed: prove_noise_floor(
             _words_floor(seed), seeded(seed + 1, lambda: BagOfWords(64, 2, hidden=64)), FLOOR))


# -------------------------------------------------------------------------- failing runs


def _words_log0(seed: int, stable: bool = False) -> Kwargs:
    model = seeded(seed, lambda: BagOfWords(16, 1, mode="sum"))
    return kwargs(model, _stable_bce if stable else handmade_bce,
                  _words(seed, (4000, 500, 500)), adam(3e-2), 300, 64, seed,
                  "development: a hand-written binary cross-entropy")


development("embedding_words_nonfinite", "nonfinite",
         "A bag-of-words classifier (EmbeddingBag sum, one logit) trained with a hand-written "
         "binary cross-entropy, Adam lr 3e-2: once the model is confident, sigmoid rounds to 1, "
         "log(1 - p) = log 0 and the loss is NaN (after ~30-40 steps).", _words_log0,
         lambda seed: prove_nonfinite(_words_log0, lambda s: _words_log0(s, True), seed,
                                      "with F.binary_cross_entropy_with_logits"))


def _scores_divergence(seed: int) -> Kwargs:
    model = seeded(seed, WordScores)
    return kwargs(model, F.mse_loss, _words(seed, (2000, 500), regression=True), sgd(1.8), 50,
                  64, seed, "development: word scores regressed with SGD at lr 1.8")


development("embedding_scores_divergence", "divergence",
         "A score per word (EmbeddingBag of width 1, summed over 16 words) regressing a "
         "sequence's score, plain SGD at lr 1.8 (above 2 / the top curvature): every step "
         "overshoots, the loss grows geometrically (x1e8 in 50 steps).",
         _scores_divergence, lambda seed: prove_divergence(_scores_divergence, seed))


def _words_few(seed: int, train: int = 40) -> Kwargs:
    model = seeded(seed, lambda: BagOfWords(64, 2, hidden=64))
    return kwargs(model, F.cross_entropy, _words(seed, (train, 500, 500)), adam(1e-2), 200,
                  None if train <= 40 else 64, seed,
                  "development: a bag-of-words MLP on 40 sequences")


development("embedding_words_overfitting", "overfitting",
         "EmbeddingBag (width 64) and an MLP head on 40 training sequences, full batch, Adam lr "
         "1e-2: memorises them through their neutral words, the val loss stays large.",
         _words_few,
         lambda seed: prove_overfitting(_words_few, lambda s: _words_few(s, 4000), seed,
                                        "4000 training sequences (batches of 64)"))
