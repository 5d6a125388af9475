"""Fixtures shared by the doctor's tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """One intra-op thread: the models are tiny, and on a busy machine each parallel region of
    a multi-threaded kernel costs milliseconds (the Hessian probe runs thousands)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
