"""Built-in training tasks on embedded or generated data: no download, fixed splits.

A :class:`Task` bundles everything needed to train and score a model: a seeded model factory,
train/validation/test splits as tensors, a loss, a metric (always *maximised*), and the training
settings it was tuned for (epochs, batch size, the target loss of "steps to target", default
learning rates per optimizer). Tasks are built by factories registered in :data:`TASKS` under a
short name, so the CLI and the lab look them up by name; :func:`register_task` adds your own.

Built-in tasks (defaults: epochs, batch size):

- ``digits-mlp`` (40, 32): scikit-learn's 8x8 digits, MLP 64-64-10, accuracy.
- ``digits-cnn`` (15, 32): the same splits, a small conv net (two 3x3 conv + pool blocks).
- ``deep-linear`` (40, 32): generated ill-conditioned regression (input covariance with condition
  number 100, a teacher that needs the weak directions) fitted by a 4-layer linear network from a
  small initialisation (the saddle at zero); metric R^2.

Example:
    >>> task = TASKS["digits-mlp"]()
    >>> model = task.make_model(0)
    >>> loss = task.loss(model(task.train.inputs), task.train.targets)

Registering a task of your own (a factory that takes no argument and returns a Task)::

    from unstuck.lab.tasks import Split, Task, register_task

    def my_task() -> Task:
        x, y = ...                                   # tensors, loaded or generated here
        train, val, test = ...                       # three Splits, fixed (seeded) once
        return Task("my-task", "what it is", make_model=seeded_builder, train=train,
                    val=val, test=test, epochs=20, batch_size=64)

    register_task("my-task", my_task)                # now: unstuck.lab.compare.compare("my-task")

Run ``compare(..., jobs>1)`` only on tasks registered when their module is imported: the worker
processes build the task again by its name.

Modules: :mod:`~unstuck.lab.tasks.base` (:class:`Task`, :class:`Split`, the split and seeding
helpers), :mod:`~unstuck.lab.tasks.metrics` (:func:`accuracy`, :func:`r_squared`),
:mod:`~unstuck.lab.tasks.digits` (the digits tasks), :mod:`~unstuck.lab.tasks.generated`
(``deep-linear``). This package holds the registry, :data:`TASKS`, and every public name.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from unstuck.lab.tasks.base import Split, Task, fixed_splits, seeded, split_indices
from unstuck.lab.tasks.digits import DIGITS_LRS as DIGITS_LRS
from unstuck.lab.tasks.digits import _digits_cnn_model as _digits_cnn_model
from unstuck.lab.tasks.digits import _load_digits as _load_digits
from unstuck.lab.tasks.digits import digits_cnn, digits_mlp
from unstuck.lab.tasks.generated import DEEP_LINEAR_LRS as DEEP_LINEAR_LRS
from unstuck.lab.tasks.generated import deep_linear
from unstuck.lab.tasks.metrics import accuracy, r_squared

__all__ = [
    "TASKS",
    "Split",
    "Task",
    "accuracy",
    "deep_linear",
    "digits_cnn",
    "digits_mlp",
    "get_task",
    "r_squared",
    "register_task",
    "split_indices",
]


TASKS: dict[str, Callable[[], Task]] = {
    "digits-mlp": digits_mlp,
    "digits-cnn": digits_cnn,
    "deep-linear": deep_linear,
}
"""Registry of tasks: name -> factory that builds the :class:`Task` (see :func:`register_task`)."""

# The helpers' names before the tasks were split into modules, still importable from here.
_splits = fixed_splits
_seeded = seeded

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def register_task(name: str, factory: Callable[[], Task], *, replace: bool = False) -> None:
    """Add a task to :data:`TASKS` so that ``compare(name)`` and ``unstuck compare --task``
    find it.

    Args:
        name: letters, digits, ``-``, ``_`` and ``.``, starting with a letter or digit.
        factory: called with no argument, returns the :class:`Task` (build the data inside it,
            so that listing the tasks costs nothing).
        replace: allow replacing a task already registered under ``name``.

    Raises:
        ValueError: a bad name, or ``name`` taken and ``replace`` False.
        TypeError: ``factory`` is not callable.

    Example:
        >>> register_task("digits-mlp-2", lambda: digits_mlp(split_seed=2))
        >>> get_task("digits-mlp-2").name
        'digits-mlp'
        >>> del TASKS["digits-mlp-2"]  # leave the registry as it was
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(
            f"name must be letters, digits, '-', '_' or '.' (starting with a letter or digit), "
            f"got {name!r}"
        )
    if not callable(factory):
        raise TypeError(f"factory must be callable () -> Task, got {factory!r}")
    if name in TASKS and not replace:
        raise ValueError(f"name {name!r} is already registered; pass replace=True to replace it")
    TASKS[name] = factory


def get_task(name: str) -> Task:
    """Build the registered task ``name``; the error lists the known names."""
    try:
        factory = TASKS[name]
    except KeyError:
        raise ValueError(f"task must be one of {sorted(TASKS)}, got {name!r}") from None
    task = factory()
    if not isinstance(task, Task):
        raise TypeError(f"the factory of task {name!r} must return a Task, got {task!r}")
    return task
