"""``examine``: a short monitored training of a model, a simpler reference, a Hessian probe, and
the diagnosis of it all.

The guide tells model bias from an optimisation failure by training a simpler model that is
easy to optimise: :func:`reference_model` builds one for ``nn.Sequential`` MLPs (see there).
Where the training loss stays large on a plateau, :func:`examine` probes the Hessian at the final
point (:func:`unstuck.diagnose.critical_point`) to tell a saddle point from a minimum.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from unstuck.doctor.curves import finite
from unstuck.doctor.diagnose import diagnose
from unstuck.doctor.loss_rules import is_large, is_plateau, reference_does_better
from unstuck.doctor.verdicts import Diagnosis

__all__ = ["examine", "reference_model"]

_PROBE_SAMPLES = 2048
"""The Hessian probe uses at most this many training examples (one batch)."""
_NONFINITE_STOP = 3
"""Training stops after this many consecutive non-finite losses (nothing more to learn)."""


def reference_model(model: nn.Module) -> nn.Module | None:
    """A shallower model of the same input and output sizes, for an ``nn.Sequential`` MLP.

    The modules of ``model`` must be ``nn.Linear`` layers, parameter-free modules (activations,
    ``Dropout``, ``Flatten``) in any order. With ``k`` Linear layers:

    - ``k >= 3`` (two or more hidden layers): one hidden layer as wide as the model's first,
      with the model's first activation (``Linear(in, h1), act, Linear(h1, out)``);
    - ``k == 2`` (one hidden layer): a linear model ``Linear(in, out)`` (linear/logistic
      regression, the lectures' "other models that are easier to optimise");
    - otherwise (a linear model, or not an MLP: convolutions, normalisation, embeddings):
      ``None``; pass your own reference to :func:`examine`.

    Leading parameter-free modules (``Flatten``) are kept. The new model is on the first
    Linear's device and dtype, freshly initialised from the global random state (seed it).

    Example:
        >>> mlp = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh(),
        ...                     nn.Linear(8, 2))
        >>> reference_model(mlp)
        Sequential(
          (0): Linear(in_features=4, out_features=8, bias=True)
          (1): Tanh()
          (2): Linear(in_features=8, out_features=2, bias=True)
        )
    """
    if not isinstance(model, nn.Sequential):
        return None
    modules = list(model)
    linears = [m for m in modules if isinstance(m, nn.Linear)]
    for m in modules:
        if not isinstance(m, nn.Linear) and any(True for _ in m.parameters()):
            return None
    if len(linears) < 2:
        return None
    first, last = linears[0], linears[-1]
    lead = []
    for m in modules:
        if isinstance(m, nn.Linear):
            break
        lead.append(m)
    factory = {"device": first.weight.device, "dtype": first.weight.dtype}
    if len(linears) == 2:
        layers = [nn.Linear(first.in_features, last.out_features, bias=last.bias is not None,
                            **factory)]
    else:
        start = modules.index(first)
        act = next((m for m in modules[start + 1 :] if not isinstance(m, (nn.Linear, nn.Dropout))),
                   None)
        try:
            activation = type(act)() if act is not None else nn.ReLU()
        except TypeError:
            activation = nn.ReLU()
        layers = [
            nn.Linear(first.in_features, first.out_features, bias=first.bias is not None,
                      **factory),
            activation,
            nn.Linear(first.out_features, last.out_features, bias=last.bias is not None,
                      **factory),
        ]
    return nn.Sequential(*lead, *layers)


def _is_pair(data: Any) -> bool:
    return isinstance(data, (tuple, list)) and len(data) == 2 and all(
        isinstance(t, Tensor) for t in data
    ) and data[0].shape[:1] == data[1].shape[:1]


def _batches(name: str, data: Any, batch_size: int | None, seed: int) -> Iterator[tuple[Any, Any]]:
    """Endless training batches: shuffled mini-batches of a pair, or the iterable, cycled."""
    if _is_pair(data):
        inputs, targets = data
        n = inputs.shape[0]
        if n == 0:
            raise ValueError(f"{name} must hold at least one example, got 0")
        if batch_size is None or batch_size >= n:
            while True:
                yield inputs, targets
        generator = torch.Generator().manual_seed(seed)
        while True:
            order = torch.randperm(n, generator=generator)
            for start in range(0, n - batch_size + 1, batch_size):
                index = order[start : start + batch_size].to(inputs.device)
                yield inputs[index], targets[index]
    if not isinstance(data, Iterable):
        raise TypeError(
            f"{name} must be an (inputs, targets) pair of tensors or an iterable of such "
            f"batches, got {type(data).__name__}"
        )
    while True:
        empty = True
        for batch in data:
            if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
                raise TypeError(
                    f"{name} must yield (inputs, targets) pairs, got {type(batch).__name__}"
                )
            empty = False
            yield batch[0], batch[1]
        if empty:
            raise ValueError(f"{name} yielded no batch")


def _evaluate(model: nn.Module, criterion: Callable, data: Any) -> float:
    """The mean loss on ``data`` (a pair, or an iterable of batches weighted by size), eval mode."""
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            if _is_pair(data):
                return float(criterion(model(data[0]), data[1]))
            total, count = 0.0, 0
            for inputs, targets in data:
                n = len(targets) if hasattr(targets, "__len__") else 1
                total += float(criterion(model(inputs), targets)) * n
                count += n
            return total / count if count else math.nan
    finally:
        model.train(was)


def _make_optimizer(optimizer: Any, model: nn.Module) -> Optimizer:
    """The optimizer for ``model``: default Adam, a factory's, or a given one checked."""
    if optimizer is None:
        from unstuck.optim import Adam

        return Adam(model.parameters(), lr=1e-3)
    if isinstance(optimizer, Optimizer):
        mine = {id(p) for p in model.parameters()}
        theirs = [p for group in optimizer.param_groups for p in group["params"]]
        if not theirs or any(id(p) not in mine for p in theirs):
            raise ValueError(
                "optimizer must be bound to the model's parameters (or be a callable params -> "
                "Optimizer), got one holding other tensors"
            )
        return optimizer
    if callable(optimizer):
        made = optimizer(model.parameters())
        if not isinstance(made, Optimizer):
            raise TypeError(
                f"optimizer(params) must return a torch.optim.Optimizer, got {type(made).__name__}"
            )
        return made
    raise TypeError(
        "optimizer must be None, a torch.optim.Optimizer or a callable params -> Optimizer, got "
        f"{type(optimizer).__name__}"
    )


def _same_recipe(optimizer: Any, used: Optimizer) -> Callable[[Any], Optimizer]:
    """A factory that builds the optimizer ``used`` again (same class and hyper-parameters)."""
    if callable(optimizer) and not isinstance(optimizer, Optimizer):
        return optimizer
    cls = type(used)
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self", "params"}
    options = {k: v for k, v in used.param_groups[0].items() if k in accepted}
    return lambda params: cls(params, **options)


def _train(model, criterion, batches, optimizer, steps, monitor=None, every=None, evals=()):
    """Train ``steps`` steps; returns the losses and the evaluations ``{name: (steps, losses)}``."""
    losses: list[float] = []
    curves: dict[str, tuple[list[int], list[float]]] = {name: ([], []) for name, _ in evals}
    bad = 0
    model.train()
    for step in range(steps):
        inputs, targets = next(batches)
        optimizer.zero_grad()
        loss = criterion(model(inputs), targets)
        loss.backward()
        if monitor is not None:
            monitor.observe(loss)
        optimizer.step()
        value = float(loss.detach())
        losses.append(value)
        if every and (step % every == 0 or step == steps - 1):
            for name, data in evals:
                curves[name][0].append(step)
                curves[name][1].append(_evaluate(model, criterion, data))
        bad = bad + 1 if not math.isfinite(value) else 0
        if bad >= _NONFINITE_STOP:
            break
    return losses, curves


def examine(
    model: nn.Module,
    criterion: Callable[[Any, Any], Tensor],
    train_data: Any,
    val_data: Any = None,
    test_data: Any = None,
    optimizer: Optimizer | Callable[[Any], Optimizer] | None = None,
    steps: int = 200,
    batch_size: int | None = None,
    reference: str | nn.Module | None = "auto",
    probe_hessian: bool = True,
    *,
    eval_every: int | None = None,
    seed: int = 0,
    baseline: float | None = None,
    watch_forward: bool = True,
    title: str = "unstuck doctor",
) -> Diagnosis:
    """Train ``model`` for ``steps`` steps under a Monitor and diagnose the run.

    **The model and the optimizer are trained in place**: afterwards they hold the trained state,
    so you can look at them (or go on training). The loss is ``criterion(model(inputs),
    targets)``.

    What it does:

    1. trains with ``optimizer`` (default ``unstuck.Adam(lr=1e-3)``), observing every step with
       :class:`unstuck.diagnose.Monitor` (``watch_forward``: the first module whose output is
       NaN/Inf is named); stops early after 3 non-finite losses in a row;
    2. evaluates the val (train-dev) and test losses every ``eval_every`` steps (default: 20
       evaluations in all) in eval mode;
    3. trains a simpler reference the same way (same optimizer class and hyper-parameters, same
       batches, same steps): ``"auto"`` builds :func:`reference_model` (``nn.Sequential`` MLPs;
       none for other models), a module is trained as given, ``None`` skips it;
    4. where the training loss stays on a plateau that is large, or above the reference's,
       probes the Hessian at the final point with
       :func:`unstuck.diagnose.critical_point` (and :func:`unstuck.diagnose.spectrum` for the
       report) on one batch of at most 2048 training examples;
    5. returns :func:`unstuck.doctor.diagnose` of it all.

    Args:
        model: the model to train.
        criterion: ``criterion(outputs, targets)`` -> scalar loss.
        train_data: an ``(inputs, targets)`` pair of tensors (mini-batches of ``batch_size``,
            reshuffled every epoch with ``seed``; the whole pair per step when ``batch_size`` is
            None), or an iterable of ``(inputs, targets)`` batches (cycled).
        val_data: held-out data of the *training* distribution (train-dev), a pair or batches.
        test_data: test/dev data (maybe another distribution), a pair or batches.
        optimizer: an Optimizer bound to ``model``, a callable ``params -> Optimizer``, or None.
        steps: optimizer steps (``>= 1``).
        batch_size: mini-batch size for a pair (``>= 1``), or None for full batch.
        reference: ``"auto"``, a model, or None (see 3.).
        probe_hessian: allow the Hessian probe (see 4.).
        eval_every: evaluate every this many steps (and at the last).
        seed: seed of the batch order and of the reference model's initialisation.
        baseline: the loss scale (see :func:`~unstuck.doctor.diagnose`).
        watch_forward: name the first module with a non-finite output (forward hooks).
        title: the report's title.

    Raises:
        ValueError / TypeError: an argument of the wrong kind or out of range (named).
    """
    from unstuck.diagnose import Monitor, critical_point, spectrum

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    if batch_size is not None and (
        isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
    ):
        raise ValueError(f"batch_size must be None or an integer >= 1, got {batch_size!r}")
    if eval_every is not None and (not isinstance(eval_every, int) or eval_every < 1):
        raise ValueError(f"eval_every must be None or an integer >= 1, got {eval_every!r}")
    if not (reference is None or reference == "auto" or isinstance(reference, nn.Module)):
        raise ValueError(f"reference must be 'auto', an nn.Module or None, got {reference!r}")
    every = eval_every or max(1, steps // 20)

    opt = _make_optimizer(optimizer, model)
    recipe = _same_recipe(optimizer, opt)
    evals = [(name, data) for name, data in (("val", val_data), ("test", test_data))
             if data is not None]
    with Monitor(model, opt, watch_forward=watch_forward) as monitor:
        losses, curves = _train(model, criterion, _batches("train_data", train_data, batch_size,
                                                           seed), opt, steps, monitor, every, evals)
    notes = []
    if len(losses) < steps:
        notes.append(f"training stopped at step {len(losses)} of {steps}: the loss is not finite")

    ref_model = None
    if reference == "auto":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            ref_model = reference_model(model)
        if ref_model is None:
            notes.append("no automatic reference: the model is not an nn.Sequential MLP with a "
                         "hidden layer (pass reference=a_simpler_model)")
    elif isinstance(reference, nn.Module):
        ref_model = reference
    ref_losses = None
    if ref_model is not None:
        ref_losses, _ = _train(ref_model, criterion, _batches("train_data", train_data,
                                                              batch_size, seed),
                               recipe(ref_model.parameters()), steps)

    critical = density = None
    values = finite(losses)
    scale = baseline if baseline is not None else (values[0] if values and values[0] > 0 else 1.0)
    stuck = (
        probe_hessian and len(values) == len(losses) and is_plateau(values, scale)
        and (is_large(values, scale) or reference_does_better(values, ref_losses, scale))
    )
    if stuck:
        probe = next(_batches("train_data", train_data, None, seed))
        if _is_pair(train_data) and len(probe[1]) > _PROBE_SAMPLES:
            probe = (probe[0][:_PROBE_SAMPLES], probe[1][:_PROBE_SAMPLES])
        params = [p for p in model.parameters() if p.requires_grad]
        try:
            critical = critical_point(model, criterion, probe, k=3, max_iter=80, seed=seed)
            if critical.verdict != "not a critical point":
                was = model.training
                model.eval()
                try:
                    n = sum(p.numel() for p in params)
                    density = spectrum(lambda: criterion(model(probe[0]), probe[1]), params,
                                       steps=min(40, n), seed=seed)
                finally:
                    model.train(was)
        except (ValueError, RuntimeError) as error:
            notes.append(f"the Hessian probe failed: {error}")

    result = diagnose(
        losses,
        val_loss=curves["val"][1] if "val" in curves else None,
        test_loss=curves["test"][1] if "test" in curves else None,
        monitor=monitor,
        reference_train_loss=ref_losses,
        critical_point=critical,
        baseline=baseline,
        spectrum=density,
        val_steps=curves["val"][0] if "val" in curves else None,
        test_steps=curves["test"][0] if "test" in curves else None,
        title=title,
    )
    result.notes[:0] = notes
    return result
