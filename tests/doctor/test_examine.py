"""examine(): the reference model, in-place training, argument checks, data forms."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from unstuck.doctor import examine, reference_model


def data(seed: int = 0, n: int = 64):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g)
    return x, x @ torch.tensor([[1.0], [-2.0], [0.5]])


def test_reference_model_is_shallower():
    deep = nn.Sequential(nn.Flatten(), nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(),
                         nn.Linear(16, 3))
    ref = reference_model(deep)
    assert [type(m) for m in ref] == [nn.Flatten, nn.Linear, nn.Tanh, nn.Linear]
    assert ref[1].in_features == 4 and ref[1].out_features == 16 and ref[3].out_features == 3
    one_hidden = reference_model(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)))
    assert [type(m) for m in one_hidden] == [nn.Linear]
    assert reference_model(nn.Sequential(nn.Linear(4, 2))) is None
    normed = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 2))
    assert reference_model(normed) is None
    assert reference_model(nn.Linear(4, 2)) is None


def test_trains_in_place_with_given_optimizer_and_batches():
    model = nn.Linear(3, 1)
    before = model.weight.detach().clone()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    x, y = data()
    batches = [(x[:32], y[:32]), (x[32:], y[32:])]
    d = examine(model, F.mse_loss, batches, val_data=batches, optimizer=opt, steps=40)
    assert not torch.equal(model.weight, before)  # trained in place
    assert len(d.train_loss) == 40 and d.train_loss[-1] < d.train_loss[0]
    assert d.val_steps[-1] == 39 and len(d.val_loss) == len(d.val_steps)
    assert d.history is not None and len(d.history) == 40


def test_errors_name_the_argument():
    x, y = data()
    model = nn.Linear(3, 1)
    with pytest.raises(ValueError, match="steps"):
        examine(model, F.mse_loss, (x, y), steps=0)
    with pytest.raises(ValueError, match="batch_size"):
        examine(model, F.mse_loss, (x, y), batch_size=0)
    with pytest.raises(ValueError, match="reference"):
        examine(model, F.mse_loss, (x, y), reference="shallow")
    with pytest.raises(ValueError, match="optimizer must be bound"):
        examine(model, F.mse_loss, (x, y), optimizer=torch.optim.SGD(nn.Linear(3, 1).parameters()))
    with pytest.raises(TypeError, match="train_data"):
        examine(model, F.mse_loss, 42, steps=2)
    with pytest.raises(TypeError, match="model"):
        examine("model", F.mse_loss, (x, y))


def test_stops_on_nonfinite_loss_and_says_so():
    x, y = data()
    x[0, 0] = float("nan")
    d = examine(nn.Linear(3, 1), F.mse_loss, (x, y), steps=50, reference=None)
    assert d.top.code == "nonfinite"
    assert len(d.train_loss) == 3
    assert any("stopped at step 3" in n for n in d.notes)
