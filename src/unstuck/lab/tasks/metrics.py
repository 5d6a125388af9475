"""The metrics of the built-in tasks: float scores to *maximise*, computed on a whole split."""

from __future__ import annotations

import torch

__all__ = ["accuracy", "r_squared"]


def accuracy(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """Fraction of rows whose arg-max logit is the target class, in ``[0, 1]``.

    Example:
        >>> accuracy(torch.tensor([[2.0, 1.0], [0.0, 3.0]]), torch.tensor([0, 0]))
        0.5
    """
    if logits.shape[0] == 0:
        raise ValueError("accuracy needs at least one example, got 0")
    return (logits.argmax(dim=-1) == targets).float().mean().item()


def r_squared(outputs: torch.Tensor, targets: torch.Tensor) -> float:
    r"""Coefficient of determination over all outputs: :math:`R^2 = 1 - \mathrm{SSE}/\mathrm{SST}`.

    .. math:: R^2 = 1 - \frac{\sum_{ij} (\hat y_{ij} - y_{ij})^2}{\sum_{ij} (y_{ij} - \bar y_j)^2}

    with :math:`\bar y_j` the mean of output :math:`j` over the rows. 1 is a perfect fit, 0 is
    as good as predicting the mean, negative is worse; NaN when the outputs are not finite.

    Example:
        >>> r_squared(torch.tensor([[1.0], [2.0]]), torch.tensor([[1.0], [3.0]]))
        0.5
    """
    if targets.shape[0] < 2:
        raise ValueError(f"r_squared needs at least two examples, got {targets.shape[0]}")
    sse = (outputs - targets).pow(2).sum()
    sst = (targets - targets.mean(dim=0)).pow(2).sum()
    return (1.0 - sse / sst).item()
