r"""Reference Gradient Centralization (Yong et al. 2020, https://arxiv.org/abs/2004.01461).

.. math::
    \Phi_{GC}(g) = g - \operatorname{mean}_{\text{dims} 1..n-1}(g)

For a gradient with more than one dimension, the mean over every dimension but the first (one
mean per output channel / row) is subtracted. Gradients with at most one dimension are returned
unchanged.
"""

from __future__ import annotations

import torch


def centralize(g: torch.Tensor) -> torch.Tensor:
    """``g - g.mean(dim=(1, ..., g.dim() - 1), keepdim=True)`` if ``g.dim() > 1``, else ``g``.

    Example:
        >>> centralize(torch.tensor([[1.0, 3.0], [0.0, 4.0]])).tolist()
        [[-1.0, 1.0], [-2.0, 2.0]]
    """
    if g.dim() <= 1:
        return g.clone()
    return g - g.mean(dim=tuple(range(1, g.dim())), keepdim=True)
