"""``examine``: a monitored training of a copy of the model, the checks that can refute each
verdict, and the diagnosis of it all.

:func:`examine` trains like the user does (their optimizer, scheduler, clipping, batches), then
runs only the checks the run calls for (:mod:`unstuck.doctor.evidence`): a simpler and a bigger
reference model when the training loss stopped high, probes at other learning rates when the
pace or the progress is in question, dead and symmetric units, the gradient noise scale, and a
Hessian probe within a time budget at a plateau. With ``try_fixes=True`` it also runs the
mechanical fixes of each verdict on copies and reports their measured effect.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from unstuck.doctor import thresholds as T
from unstuck.doctor.curves import finite, tail
from unstuck.doctor.diagnose import diagnose
from unstuck.doctor.evidence import Evidence, RunOutcome
from unstuck.doctor.fitting_rules import overfitting
from unstuck.doctor.loss_rules import (
    is_large,
    is_plateau,
    near_zero,
    reference_does_better,
    still_falling,
)
from unstuck.doctor.references import capacity_reference, reference_model, shallow_reference
from unstuck.doctor.trials import CHECKED_BY_FIX, FIXES, Change, Recipe, batches, is_pair
from unstuck.doctor.trials import try_fixes as run_fixes
from unstuck.doctor.verdicts import BENIGN, Diagnosis

__all__ = ["examine", "reference_model"]

PROBE_SAMPLES = 2048
"""The Hessian probe and the dead-unit count use at most this many training examples (one
batch)."""
DEFAULT_STEPS = 300
"""Steps of training when ``steps`` is not given: enough to see the shape of a small run."""
PROBE_LR_HIGHER = (3.0, 10.0)
"""Learning-rate factors tried before the doctor says "raise the learning rate"."""
PROBE_LR_LOWER = (0.1, 0.3)
"""Learning-rate factors tried before it says "lower the learning rate"."""


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


def _make_scheduler(scheduler: Any, optimizer: Optimizer) -> Any:
    if scheduler is None:
        return None
    if hasattr(scheduler, "step") and hasattr(scheduler, "optimizer"):
        if scheduler.optimizer is not optimizer:
            raise ValueError("scheduler must drive the examined optimizer (or be a callable "
                             "optimizer -> scheduler)")
        return scheduler
    if callable(scheduler):
        made = scheduler(optimizer)
        if not hasattr(made, "step"):
            raise TypeError(f"scheduler(optimizer) must return an LR scheduler, got "
                            f"{type(made).__name__}")
        return made
    raise TypeError("scheduler must be None, an LR scheduler or a callable optimizer -> "
                    f"scheduler, got {type(scheduler).__name__}")


def _check_args(model: Any, steps: Any, batch_size: Any, eval_every: Any, reference: Any,
                clip_grad_norm: Any, probe_budget: Any) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
        raise ValueError(f"steps must be None or an integer >= 1, got {steps!r}")
    if batch_size is not None and (
        isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
    ):
        raise ValueError(f"batch_size must be None or an integer >= 1, got {batch_size!r}")
    if eval_every is not None and (not isinstance(eval_every, int) or eval_every < 1):
        raise ValueError(f"eval_every must be None or an integer >= 1, got {eval_every!r}")
    if not (reference is None or reference == "auto" or isinstance(reference, nn.Module)):
        raise ValueError(f"reference must be 'auto', an nn.Module or None, got {reference!r}")
    for name, value in (("clip_grad_norm", clip_grad_norm), ("probe_budget", probe_budget)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not value >= 0 or not math.isfinite(value)):
            raise ValueError(f"{name} must be None or a finite number >= 0, got {value!r}")


def _sample(train_data: Any, batch_size: int | None, seed: int) -> tuple[Any, Any]:
    """One batch of at most ``PROBE_SAMPLES`` training examples (the whole pair when small)."""
    probe = next(batches("train_data", train_data, None if is_pair(train_data) else batch_size,
                         seed))
    if is_pair(train_data) and len(probe[1]) > PROBE_SAMPLES:
        probe = (probe[0][:PROBE_SAMPLES], probe[1][:PROBE_SAMPLES])
    return probe


def _dead(model: nn.Module, inputs: Any) -> dict[str, dict[str, Any]]:
    from unstuck.diagnose.activations import dead_units

    return {n: {"units": d.units, "dead": d.dead, "share": d.share}
            for n, d in dead_units(model, inputs).items() if d.units}


def _structure(evidence: Evidence, model: nn.Module, before: nn.Module, probe: tuple[Any, Any],
               start: list) -> None:
    """Symmetric units (before and after training) and dead units (after training, and in
    ``before``, the model as initialised) into ``evidence``."""
    from unstuck.diagnose.degenerate import degenerate_weights

    evidence.degenerate_start = [dataclasses.asdict(d) for d in start]
    try:
        evidence.degenerate_end = [dataclasses.asdict(d) for d in degenerate_weights(model)]
        evidence.dead_units = _dead(model, probe[0])
        evidence.dead_units_start = _dead(before, probe[0])
    except (RuntimeError, ValueError, TypeError) as error:
        evidence.notes.append(f"the unit checks could not run: {str(error).splitlines()[0]}")


def examine(
    model: nn.Module,
    criterion: Callable[[Any, Any], Tensor],
    train_data: Any,
    val_data: Any = None,
    test_data: Any = None,
    optimizer: Optimizer | Callable[[Any], Optimizer] | None = None,
    steps: int | None = None,
    batch_size: int | None = None,
    reference: str | nn.Module | None = "auto",
    probe_hessian: bool = True,
    *,
    scheduler: Any = None,
    clip_grad_norm: float | None = None,
    step_hook: Callable[[nn.Module, int], None] | None = None,
    in_place: bool = False,
    checks: bool = True,
    try_fixes: bool = False,
    probe_budget: float | None = None,
    eval_every: int | None = None,
    seed: int = 0,
    baseline: float | None = None,
    watch_forward: bool = True,
    title: str = "unstuck doctor",
) -> Diagnosis:
    """Train a copy of ``model`` for ``steps`` steps under a Monitor, check what the run calls
    for, and diagnose it.

    The loss is ``criterion(model(inputs), targets)``. By default a copy of the model, the
    optimizer and the scheduler is trained (``in_place=True`` trains the given ones). What it
    does:

    1. trains with ``optimizer`` (default ``unstuck.Adam(lr=1e-3)``), stepping ``scheduler``
       after each step and clipping the gradient norm at ``clip_grad_norm`` (or calling
       ``step_hook(model, step)`` after backward) as the user's loop does, observing every step
       with :class:`unstuck.diagnose.Monitor` (``watch_forward`` names the first module whose
       output is NaN/Inf); stops early after 3 non-finite losses in a row;
    2. evaluates the val (train-dev) and test losses every ``eval_every`` steps (default: 20
       evaluations in all) in eval mode;
    3. with ``checks`` (default), runs the checks the run calls for, each a training of the same
       length on the same batches (:mod:`unstuck.doctor.evidence`): when the training loss
       stopped high, a simpler reference (``reference``: ``"auto"`` builds one for any model,
       :mod:`unstuck.doctor.references`; a module is used as given; None skips it) and a bigger
       model; when the loss fell steadily but slowly, runs at 3x and 10x the learning rate; when
       it made no progress, runs at 0.1x and 0.3x; when the steps show gradient spikes or an
       early rise of the loss, the same run clipped or warmed up (the verdict stands only if that
       does better: :data:`~unstuck.doctor.trials.CHECKED_BY_FIX`); always the symmetric and
       dead units (cheap);
    4. at a plateau, probes the Hessian at the final point (``probe_hessian``) within
       ``probe_budget`` seconds (default: the training's own time, at least 2 s), attention run
       with the math SDPA backend; a probe that cannot run is a note, never an error;
    5. with ``try_fixes``, runs the mechanical fixes of each verdict (:mod:`unstuck.doctor.trials`)
       on copies and puts their measured effect in the verdict (``Verdict.trials``), best first.

    Args:
        model: the model to diagnose.
        criterion: ``criterion(outputs, targets)`` -> scalar loss (mean over examples).
        train_data: an ``(inputs, targets)`` pair of tensors (mini-batches of ``batch_size``,
            reshuffled every epoch with ``seed``; the whole pair per step when ``batch_size`` is
            None), or an iterable of ``(inputs, targets)`` batches (cycled).
        val_data: held-out data of the *training* distribution (train-dev), a pair or batches.
        test_data: test/dev data (maybe another distribution), a pair or batches.
        optimizer: an Optimizer bound to ``model``, a callable ``params -> Optimizer``, or None.
        steps: optimizer steps (``>= 1``; default ``DEFAULT_STEPS``).
        batch_size: mini-batch size for a pair (``>= 1``), or None for full batch.
        reference: ``"auto"``, a model, or None (see 3.).
        probe_hessian: allow the Hessian probe (see 4.).
        scheduler: an LR scheduler driving ``optimizer``, or a callable ``optimizer ->
            scheduler`` (stepped once per step).
        clip_grad_norm: clip the global gradient norm at this value before each step.
        step_hook: ``step_hook(model, step)`` called after backward, before the step.
        in_place: train ``model`` and ``optimizer`` themselves (they end trained).
        checks: run the checks of 3. (False: the run alone, as :func:`diagnose` would see it).
        try_fixes: run each verdict's mechanical fixes and measure them (see 5.).
        probe_budget: seconds for the Hessian probe (None: the training's time, at least 2 s).
        eval_every: evaluate every this many steps (and at the last).
        seed: seed of the batch order and of the reference models' initialisation.
        baseline: the loss scale (see :func:`~unstuck.doctor.diagnose`).
        watch_forward: name the first module with a non-finite output (forward hooks).
        title: the report's title.

    Raises:
        ValueError / TypeError: an argument of the wrong kind or out of range (named).
    """
    from unstuck.diagnose import Monitor
    from unstuck.diagnose.degenerate import degenerate_weights

    _check_args(model, steps, batch_size, eval_every, reference, clip_grad_norm, probe_budget)
    steps = steps or DEFAULT_STEPS
    every = eval_every or max(1, steps // 20)
    opt = _make_optimizer(optimizer, model)
    sched = _make_scheduler(scheduler, opt)
    recipe = Recipe(model, opt, sched, criterion, train_data, batch_size, seed, steps,
                    clip_grad_norm, step_hook, val_data)
    if not in_place:
        model, opt, sched = recipe.fresh()
    evals = tuple((name, data) for name, data in (("val", val_data), ("test", test_data))
                  if data is not None)
    start = degenerate_weights(model)
    began = time.perf_counter()
    with Monitor(model, opt, watch_forward=watch_forward) as monitor:
        result = recipe.train(model, opt, sched, monitor=monitor, every=every, evals=evals)
    seconds = time.perf_counter() - began
    losses, curves = result.losses, result.curves
    val = curves["val"][1] if "val" in curves else None
    test = curves["test"][1] if "test" in curves else None
    notes = []
    if len(losses) < steps:
        notes.append(f"training stopped at step {len(losses)} of {steps}: the loss is not finite")

    def run_diagnosis(evidence: Evidence | None, critical: Any = None, density: Any = None,
                      ref_losses: list[float] | None = None) -> Diagnosis:
        return diagnose(
            losses, val_loss=val, test_loss=test, monitor=monitor,
            reference_train_loss=ref_losses, critical_point=critical, baseline=baseline,
            spectrum=density, val_steps=curves["val"][0] if "val" in curves else None,
            test_steps=curves["test"][0] if "test" in curves else None, title=title,
            evidence=evidence,
        )

    evidence = Evidence()
    values = finite(losses)
    broken = len(values) < len(losses)
    scale = baseline if baseline is not None else (values[0] if values and values[0] > 0 else 1.0)
    probe = _sample(train_data, batch_size, seed)
    if checks:
        _structure(evidence, model, recipe.fresh()[0], probe, start)
    ref_losses = None
    if checks and not broken:
        ref_losses = _references(evidence, recipe, model, probe, reference, seed, values, scale,
                                 val, notes)
        first = run_diagnosis(evidence, ref_losses=ref_losses)
        _lr_probes(evidence, recipe, first.codes, values, scale)
        for verdict in first.verdicts:
            if verdict.code in CHECKED_BY_FIX:
                change = FIXES[verdict.code](recipe, verdict.evidence)[0]
                evidence.fix_checks[verdict.code] = recipe.run(change)

    critical = density = None
    stuck = (
        probe_hessian and not broken and is_plateau(values, scale)
        and (is_large(values, scale) or reference_does_better(values, ref_losses, scale))
    )
    if stuck:
        from unstuck.doctor.probe import probe_hessian as run_probe

        budget = probe_budget if probe_budget is not None else max(2.0, seconds)
        outcome = run_probe(model, criterion, probe, budget_s=budget, seed=seed)
        critical, density = outcome.critical, outcome.spectrum
        if outcome.note:
            notes.append(outcome.note)

    diagnosis = run_diagnosis(evidence if checks else None, critical, density, ref_losses)
    diagnosis.notes[:0] = notes
    if try_fixes:
        own = RunOutcome.of("this run", losses, val[-1] if val else None)
        measured = {run.label: run for run in
                    (*evidence.lr_probes.values(), *evidence.fix_checks.values())}
        diagnosis.verdicts = [
            v if v.code in BENIGN else dataclasses.replace(
                v, trials=tuple(run_fixes(recipe, v.code, v.evidence, own, measured)))
            for v in diagnosis.verdicts
        ]
    return diagnosis


def _references(evidence: Evidence, recipe: Recipe, model: nn.Module, probe: tuple[Any, Any],
                reference: Any, seed: int, values: list[float], scale: float,
                val: list[float] | None, notes: list[str]) -> list[float] | None:
    """Train the simpler reference and the bigger model when the loss stopped high."""
    if not _stopped_high(values, scale):
        return None
    with torch.no_grad():
        was = model.training
        model.eval()
        try:
            output = model(probe[0])
        except (RuntimeError, ValueError, TypeError):
            output = None
        finally:
            model.train(was)
    ref = None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if isinstance(reference, nn.Module):
            ref_model, kind, representable = reference, "the given reference", None
        elif reference == "auto" and isinstance(output, Tensor):
            made = shallow_reference(model, probe[0], output)
            ref_model, kind, representable = (made.model, made.kind, made.representable) \
                if made else (None, None, None)
            if made is None:
                notes.append("no simpler reference: the model is already linear, or its inputs "
                             "are too wide to flatten (pass reference=a_simpler_model)")
        else:
            ref_model = kind = representable = None
        big = capacity_reference(model, probe[0], output) if isinstance(output, Tensor) else None
    if ref_model is not None:
        ref = recipe.run(Change(f"reference: {kind}", model=ref_model))
        evidence.reference, evidence.reference_kind = ref, kind
        evidence.reference_representable = representable
    if big is not None and overfitting(values, val, scale) is None:
        from unstuck.optim import Adam

        generic = not big.same_recipe
        evidence.capacity = recipe.run(Change(
            f"bigger model: {big.kind}", model=big.model,
            optimizer=(lambda p: Adam(p, lr=1e-3)) if generic else None,
        ))
    return list(ref.train_loss) if ref is not None else None


def _stopped_high(values: list[float], scale: float) -> bool:
    """The training loss stopped (not still falling) above ``NEAR_ZERO``: the guide's step-1
    question (the model or the optimisation?) is asked, whatever the loss's size."""
    return bool(values) and not near_zero(values, scale) and not still_falling(values)


def _blames_other(codes: list[str]) -> bool:
    """The preliminary verdicts already blame something other than a slow learning rate."""
    return bool(set(codes) & {"nonfinite", "divergence", "lr_too_large", "symmetric_init",
                              "dead_units", "overfitting"})


def _lr_probes(evidence: Evidence, recipe: Recipe, codes: list[str], values: list[float],
               scale: float) -> None:
    """Runs at higher learning rates when the run looks too slow or ended above ``NEAR_ZERO``
    (would a larger lr have got further?) and nothing else is blamed yet, lower ones when it made
    no progress."""
    above_zero = bool(values) and not near_zero(values, scale)
    if "lr_too_small" in codes or (above_zero and not _blames_other(codes)):
        for factor in PROBE_LR_HIGHER:
            evidence.lr_probes[factor] = recipe.run(Change(f"lr x{factor:g}", factor))
    no_progress = len(values) >= T.MIN_TREND_POINTS and not near_zero(values, scale) and (
        tail(values) >= (1 - T.NO_PROGRESS) * values[0]
    )
    if no_progress:
        for factor in PROBE_LR_LOWER:
            evidence.lr_probes[factor] = recipe.run(Change(f"lr x{factor:g}", factor))
