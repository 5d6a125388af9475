"""The examples in the docstrings run and print what they show."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "unstuck.diagnose.effective_lr",
    "unstuck.diagnose.hessian",
    "unstuck.diagnose.lr_finder",
    "unstuck.diagnose.monitor",
    "unstuck.files",
    "unstuck.lab.tasks",
    "unstuck.lab.tasks.base",
    "unstuck.lab.tasks.digits",
    "unstuck.lab.tasks.generated",
    "unstuck.lab.tasks.metrics",
    "unstuck.report",
    "unstuck.textform",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"{name} has no examples"
    assert result.failed == 0
