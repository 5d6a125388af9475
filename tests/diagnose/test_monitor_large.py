"""Monitor on a "large" layout (one segment per row at a time, rows swapped instead of copied)
gives the records of the batched path, up to rounding."""

import math

import pytest
import torch
from torch import nn

from unstuck.diagnose import flat_rows
from unstuck.diagnose.monitor import Monitor


def run(every, monkeypatch, large, max_rows):
    monkeypatch.setattr(flat_rows, "LARGE_LAYOUT", 1 if large else 2**40)
    monkeypatch.setattr(flat_rows, "MAX_ROWS", max_rows)
    torch.manual_seed(0)
    model = nn.Sequential(*[nn.Linear(6, 6) for _ in range(6)])  # 12 tensors: more than 8
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(16, 6, generator=g), torch.randn(16, 6, generator=g)
    with Monitor(model, opt, every=every, effective_lr_every=1) as monitor:
        for _ in range(9):
            opt.zero_grad()
            loss = nn.functional.mse_loss(model(x), y)
            loss.backward()
            monitor.observe(loss)
            opt.step()
        return monitor.history


def close(a, b):
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(close(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-7) or (math.isnan(a) and math.isnan(b))
    return a == b


@pytest.mark.parametrize("every", [1, 2, 3])
@pytest.mark.parametrize("max_rows", [1, 64])
def test_large_layout_path_matches_the_batched_path(every, max_rows, monkeypatch):
    reference = run(every, monkeypatch, large=False, max_rows=64)
    got = run(every, monkeypatch, large=True, max_rows=max_rows)
    assert [r["step"] for r in got] == list(range(0, 9, every))
    assert got[1]["update_cosine"] is not None and got[0]["effective_lr"] is not None
    assert close(got, reference)


def scripted(monkeypatch, large):
    monkeypatch.setattr(flat_rows, "LARGE_LAYOUT", 1 if large else 2**40)
    a, b, c = (nn.Parameter(torch.ones(4)) for _ in range(3))
    model = nn.ParameterList([a, b, c])
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    inf, nan = math.inf, math.nan
    script = [  # a, b, c: NaN, Inf, a norm that overflows on finite values (not named)
        ([1.0] * 4, [1.0] * 4, [1.0] * 4),
        ([nan, 1.0, 1.0, 1.0], [inf] * 4, [1e30] * 4),
        ([1.0] * 4, [1.0] * 4, [3e38] * 4),
        ([1.0] * 4, [1.0] * 4, [1.0] * 4),
    ]
    with Monitor(model, opt) as monitor:
        for grads in script:
            opt.zero_grad()
            for p, g in zip((a, b, c), grads, strict=True):
                p.grad = torch.tensor(g)
            monitor.observe(1.0)
            opt.step()
        return monitor.history, monitor.first_nonfinite


def test_large_layout_names_nonfinite_gradients_like_the_batched_path(monkeypatch):
    history, first = scripted(monkeypatch, large=True)
    assert [r["nonfinite_grads"] for r in history] == [[], ["0", "1"], [], []]
    assert first == {"0": 1, "1": 1}
    assert history[2]["layers"]["2"]["grad_norm"] == math.inf  # overflow, finite values
    reference, _ = scripted(monkeypatch, large=False)
    assert repr(history) == repr(reference)


@pytest.mark.parametrize("make", [
    lambda: torch.rand(100_001),
    lambda: -torch.rand(300_000) ** 8,
    lambda: torch.zeros(70_000),
    lambda: torch.randint(0, 3, (80_000,)).float(),
    lambda: torch.rand(70_000, dtype=torch.float64),
    lambda: torch.cat([torch.full((40_000,), math.inf), torch.rand(40_000)]),
    lambda: torch.cat([torch.rand(40_000), torch.tensor([math.nan]), torch.rand(40_000)]),
])
def test_lower_median_is_torch_median(make):
    from unstuck.diagnose.moments import lower_median

    torch.manual_seed(0)
    x = make()
    got, want = lower_median(x), x.median()
    assert (got.isnan() and want.isnan()) or got.item() == want.item()
