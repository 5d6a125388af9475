"""Development cases: attention over the features of a scikit-learn shipped table (the wine
recognition set): every feature becomes a token, one ``nn.MultiheadAttention`` layer mixes them."""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

from .families_common import Kwargs, adam, development, generator, kwargs, prove_lr_too_small, split
from .proving import seeded

__all__ = ["FeatureAttention"]


class FeatureAttention(nn.Module):
    """Each of ``features`` inputs becomes a token (a learned feature embedding plus the value
    times a learned vector), one ``nn.MultiheadAttention`` layer with a residual, a mean over the
    tokens and a linear head."""

    def __init__(self, features: int = 13, width: int = 16, heads: int = 2, out: int = 3
                 ) -> None:
        super().__init__()
        self.feature = nn.Parameter(0.1 * torch.randn(features, width))
        self.value = nn.Parameter(torch.randn(features, width) / width**0.5)
        self.attention = nn.MultiheadAttention(width, heads, batch_first=True)
        self.head = nn.Linear(width, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.feature + x.unsqueeze(2) * self.value
        mixed, _ = self.attention(tokens, tokens, tokens, need_weights=False)
        return self.head((tokens + mixed).mean(1))


@functools.lru_cache(maxsize=1)
def _wine() -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_wine

    bunch = load_wine()
    x = torch.as_tensor(bunch.data, dtype=torch.float32)
    return (x - x.mean(0)) / x.std(0), torch.as_tensor(bunch.target, dtype=torch.int64)


def wine(seed: int) -> list:
    """The 178 wines shipped with scikit-learn (13 standardised features, 3 cultivars),
    shuffled by ``seed``: ``[train (118), val (60)]``."""
    x, y = _wine()
    order = torch.randperm(len(y), generator=generator(seed, 19))
    return split((x[order], y[order]), 118, 60)


def _wine_crawl(seed: int) -> Kwargs:
    model = seeded(seed, FeatureAttention)
    return kwargs(model, F.cross_entropy, wine(seed), adam(1e-4), 200, 16, seed,
                  "held-out: attention over the wine features at Adam lr 1e-4")


development("attention_wine_lr_too_small", "lr_too_small",
         "Attention over the 13 standardised features of scikit-learn's wine set (each feature "
         "a token, one MultiheadAttention layer, mean pooling), Adam lr 1e-4, batches of 16: "
         "the loss falls, far too slowly.", _wine_crawl,
         lambda seed: prove_lr_too_small(_wine_crawl, seed))
