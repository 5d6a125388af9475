"""Built-in scenarios: one small, real, seeded training per verdict code (``healthy`` included).

Each scenario trains a small model on generated data (scikit-learn's generators, no download)
so that it exhibits exactly one failure of the guide, and returns the Diagnosis of
:func:`unstuck.doctor.examine`. ``unstuck doctor --scenario NAME`` runs one and writes its
report; ``--scenario all`` runs them all and prints the table of expected and found verdicts.

Example::

    from unstuck.doctor.scenarios import run_scenario

    diagnosis = run_scenario("saddle_point", seed=0)
    diagnosis.codes            # ['saddle_point', 'optimization_failure']
    diagnosis.save_html("saddle.html")

A *composite* scenario exhibits its failure together with another finding (e.g. the saddle point
makes the network lose to a linear reference: ``optimization_failure`` too); its expected code
is among the verdicts, not necessarily the first.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from unstuck.doctor.scenarios import dynamics, fitting, structure
from unstuck.doctor.verdicts import CODES, Diagnosis

__all__ = ["SCENARIOS", "Scenario", "run_scenario"]


@dataclass(frozen=True)
class Scenario:
    """A built-in scenario.

    Attributes:
        name: the scenario's name (the verdict code it exhibits).
        expected: the verdict code it must produce.
        description: one line: the model, the data, the optimizer and what goes wrong.
        train: ``train(seed, **options)`` -> Diagnosis, ``options`` passed on to
            :func:`~unstuck.doctor.examine` (use :func:`run_scenario`, which pins the threads).
        composite: the expected code may come after another one (see the module docstring).
    """

    name: str
    expected: str
    description: str
    train: Callable[..., Diagnosis]
    composite: bool = False


def _scenario(train: Callable[..., Diagnosis], composite: bool = False) -> Scenario:
    name = train.__name__
    doc = " ".join((train.__doc__ or "").split())
    return Scenario(name, name, doc, train, composite)


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        _scenario(dynamics.nonfinite),
        _scenario(dynamics.divergence),
        _scenario(structure.lr_too_large),
        _scenario(dynamics.adagrad_blowup),
        _scenario(dynamics.exploding_gradients),
        _scenario(fitting.needs_warmup),
        _scenario(dynamics.oscillation),
        _scenario(structure.symmetric_init),
        _scenario(dynamics.saddle_point, composite=True),
        _scenario(dynamics.local_minimum, composite=True),
        _scenario(structure.dead_units),
        _scenario(fitting.lr_too_small),
        _scenario(fitting.optimization_failure, composite=True),
        _scenario(fitting.model_bias),
        _scenario(structure.noise_floor),
        _scenario(fitting.layer_ratio_spread, composite=True),
        _scenario(fitting.overfitting),
        _scenario(fitting.mismatch),
        _scenario(fitting.healthy),
    )
}
"""Every scenario by name, in verdict-rank order; one per code of :data:`CODES`."""
assert sorted(SCENARIOS) == sorted(CODES), "one scenario per verdict code"


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """One intra-op thread and denormals flushed to zero, for the duration of a scenario.

    Tiny models run fastest (and reproducibly) on one thread; saturated sigmoids make denormal
    floats that are 10-100x slower on CPUs. Both settings are restored afterwards (the flush
    flag to torch's default, off: torch has no getter for it).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)
        torch.set_num_threads(threads)


def run_scenario(name: str, seed: int = 0, *, try_fixes: bool = False) -> Diagnosis:
    """Train the scenario ``name`` with ``seed`` and return its Diagnosis; with ``try_fixes``
    the verdicts' fixes are tried on copies and measured (``examine(try_fixes=True)``).

    Raises:
        ValueError: ``name`` is not a scenario (the error lists them).
    """
    scenario = SCENARIOS.get(name)
    if scenario is None:
        raise ValueError(f"name must be one of {list(SCENARIOS)}, got {name!r}")
    with _one_thread():
        return scenario.train(seed, try_fixes=try_fixes)
