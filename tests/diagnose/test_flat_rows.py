import math

import pytest
import torch

from unstuck.diagnose.flat_rows import Layout, segment_dots, segment_norms, segment_reduce


def _layout(sizes):
    return Layout(range(len(sizes)), sizes, torch.device("cpu"), torch.float64)


@pytest.mark.parametrize("sizes,rows", [([7, 1, 30], 5), ([3] * 20 + [11], 2)])
def test_segment_reductions_match_per_segment_torch(sizes, rows):
    # few tensors: one reduction per tensor; many (more than rows and 8): torch.segment_reduce
    torch.manual_seed(0)
    layout = _layout(sizes)
    a, b = torch.randn(rows, layout.numel, dtype=torch.float64), torch.randn(
        rows, layout.numel, dtype=torch.float64)
    bounds = layout.bounds
    expect = {
        "sum": [[a[r, s:e].sum() for s, e in bounds] for r in range(rows)],
        "amax": [[a[r, s:e].max() for s, e in bounds] for r in range(rows)],
        "amin": [[a[r, s:e].min() for s, e in bounds] for r in range(rows)],
    }
    for reduce, table in expect.items():
        assert torch.allclose(segment_reduce(a, layout, reduce), torch.tensor(table), rtol=1e-12)
    norms = [[a[r, s:e].norm() for s, e in bounds] for r in range(rows)]
    assert torch.allclose(segment_norms(a, layout), torch.tensor(norms), rtol=1e-12)
    dots = [[a[r, s:e] @ b[r, s:e] for s, e in bounds] for r in range(rows)]
    assert torch.allclose(segment_dots(a, b, layout), torch.tensor(dots), rtol=1e-12)


def test_nan_propagates_through_the_largest_and_smallest():
    layout = _layout([2, 2])
    rows = torch.tensor([[1.0, math.nan, 3.0, 4.0]], dtype=torch.float64)
    assert segment_reduce(rows, layout, "amax")[0, 0].isnan()
    assert segment_reduce(rows, layout, "amin")[0, 1] == 3.0


def test_copy_row_fills_missing_tensors_and_reports_presence():
    layout = _layout([2, 3])
    row = torch.empty(5, dtype=torch.float64)
    present = layout.copy_row(row, [torch.ones(2, dtype=torch.float64), None], fill=0.0)
    assert list(present) == [True, False]
    assert row.tolist() == [1.0, 1.0, 0.0, 0.0, 0.0]
    full = [torch.ones(2, dtype=torch.float64), torch.full((3,), 2.0, dtype=torch.float64)]
    assert layout.copy_row(row, full) is layout.all_present
    assert layout.copy_row(row, [None, full[1]])[0] is False and row[:2].isnan().all()
