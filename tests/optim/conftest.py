"""One intra-op thread for the optimizer tests: their tensors are tiny, and two xdist workers
share the cores. (torch's CPU fused kernels open a parallel region per tensor; with several
threads on a busy machine each region costs milliseconds, which the tests need not measure.)"""

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
