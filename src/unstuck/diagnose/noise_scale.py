"""The gradient noise scale ``B_simple = tr(Sigma) / |G|^2`` of McCandlish et al. (2018).

For per-example gradients with mean ``G`` (the true gradient) and covariance ``Sigma``, the
gradient of a mini-batch of ``b`` examples drawn independently has

    E |G_b|^2 = |G|^2 + tr(Sigma) / b.

Measuring ``|G_b|^2`` at a small batch size ``b`` and ``|G_B|^2`` at a big one ``B`` gives two
equations and the unbiased estimates (appendix A.1 of the paper)

    |G|^2     = (B |G_B|^2 - b |G_b|^2) / (B - b),
    tr(Sigma) = (|G_b|^2 - |G_B|^2) / (1/b - 1/B),

whose ratio is the *simple noise scale* ``B_simple``: roughly the batch size beyond which a
bigger batch stops buying proportionally faster training (the critical batch size). Far below
``B_simple`` the gradient is mostly noise and the step size must be small; far above it each
extra example is wasted.

:func:`gradient_noise_scale` measures both from one batch of ``B`` examples: it splits it into
``m`` micro-batches of ``b = B // m``, takes ``|G_b|^2`` as the average of their squared gradient
norms and ``|G_B|^2`` as the squared norm of their mean (the gradient of the ``m b`` examples).
One measurement is noisy (``|G|^2`` can even come out negative); as in the paper, average the two
estimates separately over several measurements before taking the ratio:
:meth:`NoiseScale.combine`.

Reference:
    S. McCandlish, J. Kaplan, D. Amodei and the OpenAI Dota Team (2018), "An Empirical Model of
    Large-Batch Training", arXiv:1812.06162, section 2.2 and appendix A.

Example::

    >>> import torch
    >>> from torch import nn
    >>> _ = torch.manual_seed(0)
    >>> model = nn.Linear(4, 1)
    >>> x = torch.randn(256, 4)
    >>> y = x.sum(1, keepdim=True) + torch.randn(256, 1)
    >>> scale = gradient_noise_scale(model, nn.MSELoss(), x, y, micro_batches=8)
    >>> scale.batch_size, scale.micro_batch_size, scale.b_simple > 0
    (256, 32, True)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

__all__ = ["NoiseScale", "gradient_noise_scale", "simple_noise_scale"]


def simple_noise_scale(grad_sq: float, trace_sigma: float) -> float:
    """``B_simple = trace_sigma / grad_sq``, with the cases a noisy estimate produces.

    ``grad_sq <= 0`` happens when the noise hides the gradient (the unbiased estimate of
    ``|G|^2`` is a difference): the noise scale is then beyond what the batch can resolve and
    comes out ``inf`` if ``trace_sigma > 0``, ``nan`` if both are 0 (no gradient at all) or
    either is ``nan``.

    Example::

        >>> simple_noise_scale(2.0, 10.0), simple_noise_scale(-0.1, 10.0)
        (5.0, inf)
    """
    if math.isnan(grad_sq) or math.isnan(trace_sigma):
        return math.nan
    if grad_sq > 0:
        return trace_sigma / grad_sq if math.isfinite(grad_sq) else math.nan
    return math.inf if trace_sigma > 0 else math.nan


@dataclass(frozen=True)
class NoiseScale:
    """A gradient noise scale measurement, from :func:`gradient_noise_scale`.

    Attributes:
        b_simple: ``trace_sigma / grad_sq`` (see :func:`simple_noise_scale` for ``inf``/``nan``).
        grad_sq: the unbiased estimate of ``|G|^2``, the squared norm of the true gradient.
        trace_sigma: the unbiased estimate of ``tr(Sigma)``, the per-example gradient variance
            summed over parameters (``>= 0`` up to rounding).
        batch_size: ``B``, the examples used (``micro_batches * micro_batch_size``).
        micro_batch_size: ``b``.
        micro_batches: ``m``.
        measurements: how many measurements were averaged (1 unless from :meth:`combine`).
    """

    b_simple: float
    grad_sq: float
    trace_sigma: float
    batch_size: int
    micro_batch_size: int
    micro_batches: int
    measurements: int = 1

    @classmethod
    def combine(cls, scales: Sequence[NoiseScale]) -> NoiseScale:
        """Average several measurements: ``grad_sq`` and ``trace_sigma`` separately, then divide.

        The mean of unbiased estimates is unbiased, while the mean of the ratios is not (and one
        measurement with ``grad_sq`` near 0 would dominate it), so this is the paper's way.
        ``batch_size``, ``micro_batch_size`` and ``micro_batches`` keep their value when all
        measurements share it and are 0 otherwise. A ``nan`` measurement makes the result
        ``nan``.

        Example::

            >>> a = NoiseScale(10.0, 1.0, 10.0, 64, 16, 4)
            >>> b = NoiseScale(math.inf, -0.5, 20.0, 64, 16, 4)
            >>> NoiseScale.combine([a, b]).b_simple   # 15 / 0.25
            60.0
        """
        scales = list(scales)
        if not scales or not all(isinstance(s, NoiseScale) for s in scales):
            raise ValueError(
                f"scales must be a non-empty sequence of NoiseScale, got {scales!r:.200}"
            )
        weights = [s.measurements for s in scales]
        total = sum(weights)
        grad_sq = sum(w * s.grad_sq for w, s in zip(weights, scales)) / total
        trace_sigma = sum(w * s.trace_sigma for w, s in zip(weights, scales)) / total

        def shared(values: list[int]) -> int:
            return values[0] if len(set(values)) == 1 else 0

        return cls(
            simple_noise_scale(grad_sq, trace_sigma),
            grad_sq,
            trace_sigma,
            shared([s.batch_size for s in scales]),
            shared([s.micro_batch_size for s in scales]),
            shared([s.micro_batches for s in scales]),
            total,
        )


def _check_loss(loss: object) -> Tensor:
    if not isinstance(loss, Tensor) or loss.numel() != 1:
        shape = tuple(loss.shape) if isinstance(loss, Tensor) else type(loss).__name__
        raise ValueError(
            "criterion(model(inputs), targets) must return a scalar (the mean over examples), "
            f"got {shape}"
        )
    if not loss.requires_grad:
        raise ValueError(
            "criterion(model(inputs), targets) must depend on the model's trainable parameters"
        )
    return loss.reshape(())


def gradient_noise_scale(
    model: nn.Module,
    criterion: Callable[[Tensor, Tensor], Tensor],
    inputs: Tensor,
    targets: Tensor,
    *,
    micro_batches: int = 4,
) -> NoiseScale:
    """Estimate the simple gradient noise scale from one batch split into micro-batches.

    With ``B = len(inputs)``, ``m = micro_batches`` and ``b = B // m`` (the last ``B - m b``
    examples are dropped), micro-batch ``i`` has gradient ``g_i`` of ``criterion(model(x_i),
    y_i)``, and

        |G_b|^2 = (1/m) sum_i |g_i|^2,    |G_B|^2 = |(1/m) sum_i g_i|^2    (B = m b),

    which go into the unbiased estimates of the module docstring. The gradient is taken w.r.t.
    every parameter with ``requires_grad``, accumulated in float64 (parameters may live on
    several devices).

    ``criterion`` must average over examples (``reduction="mean"``, the default of torch's losses)
    so that ``g_i`` is the mean of the per-example gradients; a criterion with
    ``reduction="sum"`` or ``"none"`` is refused. The examples should be a random sample of the
    data (shuffled), as the estimates assume independent draws.

    The model runs in its current mode: in train mode the measurement includes dropout noise and
    BatchNorm normalises each micro-batch with its own statistics (as a training step at batch
    size ``b`` would). Nothing is changed: gradients come from :func:`torch.autograd.grad` (no
    ``.grad`` is written), buffers (BatchNorm running statistics) are copied back and the random
    number generators are restored. A non-finite loss or gradient gives ``nan`` results, not an
    error.

    Args:
        model: the network.
        criterion: ``criterion(model(inputs), targets)`` -> the mean loss (a scalar).
        inputs: a batch of ``B`` examples along dim 0.
        targets: their targets (``len(targets) == B``).
        micro_batches: ``m >= 2``, the number of micro-batches.

    Returns:
        A :class:`NoiseScale` (``batch_size = m b``).

    Raises:
        TypeError: ``model`` is not a module, ``inputs``/``targets`` not tensors.
        ValueError: ``micro_batches`` < 2; fewer than ``micro_batches`` examples; ``inputs`` and
            ``targets`` of different lengths; the model has no trainable parameter; the loss is
            not a scalar or does not depend on the parameters.

    Example::

        scales = [gradient_noise_scale(model, criterion, x, y) for x, y in batches]
        NoiseScale.combine(scales).b_simple
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    for name, value in (("inputs", inputs), ("targets", targets)):
        if not isinstance(value, Tensor) or value.ndim == 0:
            kind = "0-D tensor" if isinstance(value, Tensor) else type(value).__name__
            raise TypeError(f"{name} must be a tensor with examples along dim 0, got {kind}")
    if isinstance(micro_batches, bool) or not isinstance(micro_batches, int) or micro_batches < 2:
        raise ValueError(f"micro_batches must be an integer >= 2, got {micro_batches!r}")
    if len(inputs) != len(targets):
        raise ValueError(
            f"inputs and targets must hold as many examples, got {len(inputs)} and {len(targets)}"
        )
    if len(inputs) < micro_batches:
        raise ValueError(
            f"inputs must hold at least micro_batches={micro_batches} examples, got {len(inputs)}"
        )
    reduction = getattr(criterion, "reduction", "mean")
    if reduction != "mean":
        raise ValueError(
            f"criterion must average over examples (reduction='mean'), got {reduction!r}"
        )
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("model must have at least one parameter with requires_grad, got none")

    m = micro_batches
    b = len(inputs) // m
    big = m * b
    buffers = [(t, t.detach().clone()) for t in model.buffers()]
    grads_before = [p.grad for p in params]
    devices = sorted({p.device.index or 0 for p in params if p.is_cuda})
    total = [torch.zeros_like(p, dtype=torch.float64) for p in params]  # sum_i g_i
    small_sq = 0.0  # |G_b|^2 = mean_i |g_i|^2
    try:
        with torch.random.fork_rng(devices=devices):
            for i in range(m):
                part = slice(i * b, (i + 1) * b)
                loss = _check_loss(criterion(model(inputs[part]), targets[part]))
                grads = torch.autograd.grad(loss, params, allow_unused=True)
                for acc, g in zip(total, grads):
                    if g is not None:
                        g = g.detach().double()
                        acc += g
                        small_sq += float((g * g).sum()) / m
    finally:
        with torch.no_grad():
            for tensor, saved in buffers:
                tensor.copy_(saved)
        for p, grad in zip(params, grads_before):
            p.grad = grad
    big_sq = sum(float((t * t).sum()) for t in total) / m**2  # |G_B|^2 = |mean_i g_i|^2
    if not (math.isfinite(small_sq) and math.isfinite(big_sq)):
        nan = math.nan
        return NoiseScale(nan, nan, nan, big, b, m)
    grad_sq = (big * big_sq - b * small_sq) / (big - b)
    trace_sigma = (small_sq - big_sq) / (1 / b - 1 / big)
    return NoiseScale(simple_noise_scale(grad_sq, trace_sigma), grad_sq, trace_sigma, big, b, m)
