"""Development cases: text classifiers on generated topic-word sequences (3 topics, 300 words):
``nn.Embedding`` + ``nn.GRU`` readers and ``nn.EmbeddingBag`` bags of words."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .families_common import (
    Kwargs,
    adam,
    development,
    kwargs,
    prove_learned,
    prove_lr_too_small,
    prove_model_bias,
    sets,
    sgd,
)
from .proving import seeded
from .signals_data import first_topic, topics

__all__ = ["Bag", "Reader"]

VOCABULARY = 300


class Reader(nn.Module):
    """``nn.Embedding`` (``width``), a one-layer ``nn.GRU`` (``hidden``) and a linear head on
    its last output."""

    def __init__(self, width: int = 16, hidden: int = 32, out: int = 3,
                 vocabulary: int = VOCABULARY) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocabulary, width)
        self.rnn = nn.GRU(width, hidden, batch_first=True)
        self.head = nn.Linear(hidden, out)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(self.embed(tokens))
        return self.head(out[:, -1])


class Bag(nn.Module):
    """``nn.EmbeddingBag`` (mean of the word vectors, ``width``) and a linear head."""

    def __init__(self, width: int = 16, out: int = 3, vocabulary: int = VOCABULARY) -> None:
        super().__init__()
        self.embed = nn.EmbeddingBag(vocabulary, width, mode="mean")
        self.head = nn.Linear(width, out)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(tokens))


def _texts(seed: int, *sizes: int, **options: float) -> list:
    return sets(topics, seed, *sizes, vocabulary=VOCABULARY, **options)


# ---------------------------------------------------------------------------------- benign


def _reader_healthy(seed: int) -> Kwargs:
    model = seeded(seed, Reader)
    return kwargs(model, F.cross_entropy, _texts(seed, 3000, 500, 500), adam(3e-2), 250, 64,
                  seed, "held-out: an embedding + GRU topic classifier")


development("embedding_topics_healthy", "healthy",
         "Embedding (300 words, width 16) + GRU (32) reading 20-word texts of 3 topics (3 topic "
         "words each among shared words), Adam lr 3e-2, batches of 64: trains well, the loss "
         "ends near zero.", _reader_healthy,
         lambda seed: prove_learned(_reader_healthy(seed),
                                    seeded(seed + 1, lambda: Reader(32, 96))))


# -------------------------------------------------------------------------- failing runs


def _reader_crawl(seed: int) -> Kwargs:
    model = seeded(seed, Reader)
    return kwargs(model, F.cross_entropy, _texts(seed, 3000, 500), sgd(0.2), 250, 64, seed,
                  "held-out: an embedding + GRU reader with SGD at lr 0.2")


development("embedding_topics_lr_too_small", "lr_too_small",
         "The embedding + GRU topic reader with plain SGD at lr 0.2: the loss creeps down from "
         "ln 3, far too slowly.", _reader_crawl,
         lambda seed: prove_lr_too_small(_reader_crawl, seed))


def _bag_order(seed: int) -> Kwargs:
    model = seeded(seed, lambda: Bag(width=32))
    data = sets(first_topic, seed, 6000, 500, vocabulary=VOCABULARY, length=10)
    return kwargs(model, F.cross_entropy, data, adam(1e-2), 250, 64, seed,
                  "held-out: a bag of words on a task where word order decides")


development("embedding_order_model_bias", "model_bias",
         "EmbeddingBag (width 32, mean) and a linear head on 10-word texts holding words of two "
         "topics, "
         "the class being the topic named first, Adam lr 1e-2: a bag of words cannot see the "
         "order, the training loss stays near ln 2 at any lr; an embedding + GRU reader learns "
         "it.", _bag_order,
         lambda seed: prove_model_bias(_bag_order, lambda s: seeded(s + 1, Reader), seed))
