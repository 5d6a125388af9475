"""The doctor's Hessian probe: the critical-point test and the spectrum, within a time budget.

:func:`probe_hessian` runs :func:`unstuck.diagnose.critical_point` (is the model at a saddle
point, a minimum, or not at a critical point?) and, at a critical point,
:func:`unstuck.diagnose.spectrum` (the eigenvalue density by stochastic Lanczos quadrature) on one
batch, with the model in eval mode. Both cost Hessian-vector products (HVPs): one forward pass,
one backward pass with ``create_graph=True`` and one more backward pass each (Pearlmutter 1994),
so on a recurrent network a probe can cost many times the training it diagnoses. Hence:

- **a budget**: one HVP is timed first (the loss and its gradient graph, ``t_setup``, then one
  product, ``t_hvp``); a Lanczos run of ``m`` steps is then estimated to cost
  ``2 t_setup + 1.25 m t_hvp`` (the gradient graph, the escape-direction losses, and each step's
  product with its re-orthogonalisation), a spectrum of ``s`` steps ``t_setup + s t_step``
  with ``t_step`` the larger of ``1.25 t_hvp`` and the time per step the critical-point probe took.
  The spectrum is dropped before the critical-point probe is shortened below its 80 steps, and a
  probe that cannot afford :data:`MIN_STEPS` steps is skipped with a note that says how long one
  HVP takes. Without a budget the sizes are the full ones (80 Lanczos steps, 40 spectrum steps).
- **second derivatives everywhere**: attention runs on the math kernel of
  :func:`torch.nn.functional.scaled_dot_product_attention` (the fused CPU and GPU kernels have no
  double backward), and on a GPU cuDNN is off for recurrent layers (cuDNN's RNN backward has no
  derivative and refuses eval mode). On the CPU, ``nn.RNN``, ``nn.GRU`` and ``nn.LSTM`` have exact
  HVPs as they are.
- **no exceptions**: whatever goes wrong becomes :attr:`HessianProbe.note`, one sentence that
  names the kind of problem (an operation without a second derivative, a non-finite loss, ...).
- **the model as found**: every module's train/eval flag, the parameters, buffers and ``.grad``
  tensors are put back, bit for bit.

Reference: B. A. Pearlmutter (1994), "Fast exact multiplication by the Hessian"; B. Ghorbani,
S. Krishnan, Y. Xiao (2019), "An Investigation into Neural Net Optimization via Hessian
Eigenvalue Density".

Example::

    >>> import torch
    >>> from torch import nn
    >>> model = nn.Sequential(nn.Linear(2, 2, bias=False), nn.Linear(2, 1, bias=False))
    >>> for p in model.parameters():  # zero weights: a saddle point of a linear network
    ...     _ = nn.init.zeros_(p)
    >>> x, y = torch.eye(2), torch.ones(2, 1)
    >>> found = probe_hessian(model, nn.functional.mse_loss, (x, y), budget_s=60)
    >>> found.critical.verdict, found.spectrum is not None, found.note
    ('saddle point', True, None)
"""

from __future__ import annotations

import contextlib
import math
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from unstuck.diagnose.critical import CriticalPoint, critical_point
from unstuck.diagnose.hessian import Spectrum, spectrum
from unstuck.diagnose.krylov import HessianOperator

__all__ = ["MAX_ITER", "MIN_STEPS", "SPECTRUM_STEPS", "HessianProbe", "describe", "probe_hessian"]

MAX_ITER = 80
"""Lanczos steps of the critical-point probe without a budget (fewer when it converges)."""

SPECTRUM_STEPS = 40
"""Lanczos steps of the spectrum without a budget (capped at the number of parameters)."""

MIN_STEPS = 10
"""The fewest Lanczos steps worth running (capped at the number of parameters)."""

MARGIN = 1.25
"""Estimated cost of one Lanczos step over the measured HVP time (re-orthogonalisation)."""

_now = time.perf_counter


@dataclass(frozen=True)
class HessianProbe:
    """What :func:`probe_hessian` found.

    Attributes:
        critical: the second-order test (``None`` when skipped or failed).
        spectrum: the eigenvalue density (``None`` when skipped, failed, or not at a critical
            point: ``critical.verdict == "not a critical point"``).
        hvps: the Hessian-vector products computed, the timing one included.
        seconds: the wall-clock time of the whole probe.
        note: one sentence saying why the probe, or a part of it, did not run or was shortened
            (``None`` when everything that applies ran at full size).
    """

    critical: CriticalPoint | None
    spectrum: Spectrum | None
    hvps: int
    seconds: float
    note: str | None


def probe_hessian(
    model: nn.Module,
    criterion: Callable[[Any, Any], torch.Tensor],
    batch: tuple[Any, Any],
    *,
    budget_s: float | None = None,
    seed: int = 0,
    k: int = 3,
) -> HessianProbe:
    """The critical-point test and, at a critical point, the Hessian spectrum, within a budget.

    The loss is ``criterion(model(inputs), targets)`` with ``batch = (inputs, targets)``, in eval
    mode, with respect to the trainable parameters (see the module docstring for the cost model
    and what is done so that second derivatives exist).

    Args:
        model: the model; left exactly as found (modes, parameters, buffers, ``.grad``).
        criterion: ``criterion(outputs, targets)`` -> scalar loss.
        batch: ``(inputs, targets)``.
        budget_s: seconds the probe may take (``None``: no limit, the full sizes; ``0``: skip).
            The one timed HVP is always computed when the budget is positive, so a budget below
            one HVP is overrun by that much.
        seed: seed of the Lanczos start vectors.
        k: eigenpairs at each end of the spectrum for the critical-point test (``>= 1``).

    Returns:
        A :class:`HessianProbe`; failures and skips are in its ``note``, never raised.

    Raises:
        TypeError: ``model`` is not a Module.
        ValueError: ``batch`` is not a pair, ``budget_s`` is negative or not a number, ``k`` or
            ``seed`` is not an integer (``k >= 1``).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
        raise ValueError(f"batch must be a pair (inputs, targets), got {type(batch).__name__}")
    if budget_s is not None and (
        isinstance(budget_s, bool) or not isinstance(budget_s, (int, float)) or not budget_s >= 0
    ):
        raise ValueError(f"budget_s must be None or a number of seconds >= 0, got {budget_s!r}")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    start = _now()
    run = _Run(model, criterion, batch, budget_s, seed, k, start)
    saved: _Saved | None = None
    try:
        saved = _Saved(model)
        with _second_order(model):
            model.eval()
            run.go()
    except Exception as error:  # the probe must never take the doctor down
        part = "the Hessian probe" if run.critical is None else "the Hessian spectrum"
        run.notes.append(describe(error, part))
    finally:
        if saved is not None:
            saved.restore()
    return HessianProbe(
        run.critical, run.spectrum, run.hvps, _now() - start, "; ".join(run.notes) or None
    )


class _Run:
    """One probe: timing, planning, the two Lanczos runs; fills its fields as it goes."""

    def __init__(
        self,
        model: nn.Module,
        criterion: Callable[[Any, Any], torch.Tensor],
        batch: tuple[Any, Any],
        budget: float | None,
        seed: int,
        k: int,
        start: float,
    ) -> None:
        self.model, self.criterion, self.batch = model, criterion, batch
        self.budget, self.seed, self.k, self.start = budget, seed, k, start
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.critical: CriticalPoint | None = None
        self.spectrum: Spectrum | None = None
        self.hvps = 0
        self.notes: list[str] = []

    def loss(self) -> torch.Tensor:
        return self.criterion(self.model(self.batch[0]), self.batch[1])

    def go(self) -> None:
        if not self.params:
            self.notes.append(
                "the Hessian probe could not run: the model has no trainable parameters"
            )
            return
        if self.budget is not None and self.budget <= 0:
            self.notes.append("the Hessian probe was skipped: its time budget is 0 s")
            return
        n = sum(p.numel() for p in self.params)
        minimum = min(max(MIN_STEPS, 2 * self.k), n)
        if self.budget is None:
            setup = product = 0.0
            max_iter, steps = MAX_ITER, min(SPECTRUM_STEPS, n)
        else:
            setup, product = self.time_one_hvp()
            left = self.budget - (_now() - self.start)
            max_iter = affordable(left - 2 * setup, MARGIN * product, MAX_ITER)
            if max_iter < minimum:
                self.notes.append(
                    f"the Hessian probe was skipped: one Hessian-vector product takes "
                    f"{_seconds(setup + product)}, so even {minimum} of them do not fit the "
                    f"{_seconds(self.budget)} budget"
                )
                return
        before = _now()
        self.critical = critical_point(
            self.model, self.criterion, self.batch, k=self.k, max_iter=max_iter, seed=self.seed
        )
        self.hvps += self.critical.hvps
        # the spectrum's steps cost what the critical-point probe's did, if that was more
        per_step = max(
            MARGIN * product, (_now() - before - 2 * setup) / max(self.critical.hvps, 1)
        )
        cut = max_iter < min(MAX_ITER, n) and not self.critical.converged
        if self.critical.verdict == "not a critical point":
            self.note_budget(cut, False, setup + product)
            return
        if self.budget is not None:
            left = self.budget - (_now() - self.start)
            steps = affordable(left - setup, per_step, min(SPECTRUM_STEPS, n))
            if steps < min(MIN_STEPS, n):
                self.note_budget(cut, True, setup + product)
                return
        self.spectrum = spectrum(self.loss, self.params, steps=steps, seed=self.seed)
        self.hvps += self.spectrum.hvps
        self.note_budget(cut, False, setup + product)

    def time_one_hvp(self) -> tuple[float, float]:
        """Seconds to build the gradient graph and to compute one product on it."""
        device = self.params[0].device
        t0 = _now()
        operator = HessianOperator(self.loss, self.params, name="criterion(model(inputs), targets)")
        _sync(device)
        t1 = _now()
        vector = operator.random(torch.Generator().manual_seed(self.seed))
        t2 = _now()
        operator.matvec(vector)
        _sync(device)
        t3 = _now()
        self.hvps += 1
        return t1 - t0, t3 - t2

    def note_budget(self, cut: bool, no_spectrum: bool, hvp_s: float) -> None:
        """Say what the budget shortened or dropped (nothing when nothing was)."""
        parts = []
        if cut:
            parts.append("the critical-point probe was cut short")
        if no_spectrum:
            parts.append("the spectrum was skipped")
        if parts:
            self.notes.append(
                " and ".join(parts) + f" to fit the {_seconds(self.budget or 0.0)} budget "
                f"(one Hessian-vector product takes {_seconds(hvp_s)})"
            )


def affordable(seconds: float, per_step: float, most: int) -> int:
    """How many Lanczos steps, at most ``most``, fit in ``seconds`` at ``per_step`` seconds each
    (``most`` when a step costs nothing measurable, 0 when there is no time left)."""
    if not seconds > 0:
        return 0
    if not per_step > 0:
        return most
    return int(min(most, math.floor(seconds / per_step)))


_NO_SECOND_DERIVATIVE = re.compile(r"derivative for (?:aten::)?'?([\w.]+)'? is not implemented")
_KINDS = [
    (("differentiate twice", "once_differentiable"),
     "the model uses a custom autograd function that can be differentiated only once"),
    (("non-finite loss",), "the loss is not finite (NaN or Inf) on the probe batch"),
    (("must depend on params", "does not require grad", "appears to not have been used"),
     "the loss does not depend on the trainable parameters"),
    (("must return a scalar tensor",), "the criterion does not return a scalar tensor"),
    (("out of memory",), "it ran out of memory"),
    (("can only be called in training mode",),
     "the model has a layer (cuDNN RNN) whose backward pass refuses eval mode"),
]


def describe(error: BaseException, part: str = "the Hessian probe") -> str:
    """One sentence, in plain words, for an exception raised by ``part`` of the probe."""
    prefix = f"{part} could not run: "
    text = str(error)
    found = _NO_SECOND_DERIVATIVE.search(text)
    if found:
        return prefix + f"the model uses an operation with no second derivative ({found[1]})"
    if isinstance(error, torch.OutOfMemoryError):
        return prefix + "it ran out of memory"
    lowered = text.lower()
    for needles, kind in _KINDS:
        if any(needle.lower() in lowered for needle in needles):
            return prefix + kind
    first = next((line.strip() for line in text.splitlines() if line.strip()), "").rstrip(".")
    if len(first) > 100:
        first = first[:97].rstrip() + "..."
    detail = f" ({first})" if first else ""
    return prefix + f"the model or the criterion raised {type(error).__name__}{detail}"


class _Saved:
    """Every module's mode, the parameters, the buffers and the ``.grad`` tensors of a model,
    to put back exactly (same tensors, same values)."""

    def __init__(self, model: nn.Module) -> None:
        self.modes = [(m, m.training) for m in model.modules()]
        with torch.no_grad():
            self.params = [(p, p.detach().clone()) for p in model.parameters()]
            self.buffers = [(b, b.detach().clone()) for b in model.buffers()]
            self.grads = [
                (p, p.grad, None if p.grad is None else p.grad.detach().clone())
                for p in model.parameters()
            ]

    def restore(self) -> None:
        with torch.no_grad():
            for t, value in self.params + self.buffers:
                t.copy_(value)
            for p, grad, value in self.grads:
                p.grad = grad
                if grad is not None and value is not None:
                    grad.copy_(value)
        for m, training in self.modes:
            m.training = training


@contextlib.contextmanager
def _second_order(model: nn.Module) -> Iterator[None]:
    """Kernels with a double backward: math attention; no cuDNN for recurrent layers on a GPU."""
    cudnn_rnn = any(
        isinstance(m, nn.RNNBase) and any(p.is_cuda for p in m.parameters(recurse=False))
        for m in model.modules()
    )
    enabled = torch.backends.cudnn.enabled
    with sdpa_kernel(SDPBackend.MATH):
        if cudnn_rnn:
            torch.backends.cudnn.enabled = False
        try:
            yield
        finally:
            torch.backends.cudnn.enabled = enabled


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _seconds(x: float) -> str:
    """``x`` seconds in a short form: ``0.012 s``, ``3.4 s``, ``306 s``."""
    return f"{x:.0f} s" if x >= 100 else f"{x:.2g} s"
