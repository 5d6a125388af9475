"""Reference models (references.py): a simpler one and a bigger one for any model."""

from __future__ import annotations

import torch
from torch import nn

from unstuck.doctor.references import (
    MAX_FEATURES,
    capacity_reference,
    reference_model,
    shallow_reference,
)


def x(n: int = 8, *shape: int) -> torch.Tensor:
    return torch.randn(n, *shape, generator=torch.Generator().manual_seed(0))


def refs(model: nn.Module, inputs: torch.Tensor):
    torch.manual_seed(0)
    with torch.no_grad():
        out = model(inputs)
    return out, shallow_reference(model, inputs, out), capacity_reference(model, inputs, out)


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


def test_shallow_reference_representability_of_mlps():
    bottleneck = nn.Sequential(nn.Linear(20, 2), nn.ReLU(), nn.Linear(2, 10))
    out, ref, _ = refs(bottleneck, x(8, 20))
    assert ref.kind == "linear model" and ref.representable is False  # rank 2 < 10 outputs
    assert ref.model(x(8, 20)).shape == out.shape
    wide = nn.Sequential(nn.Linear(20, 32), nn.ReLU(), nn.Linear(32, 10))
    assert refs(wide, x(8, 20))[1].representable is True
    exact = nn.Sequential(nn.Linear(20, 10), nn.ReLU(), nn.Linear(10, 10))  # width min(in, out)
    assert refs(exact, x(8, 20))[1].representable is True
    # two hidden layers: the reference is one hidden layer of 16, which a 4-wide layer caps
    narrow = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4), nn.ReLU(),
                           nn.Linear(4, 10))
    ref = refs(narrow, x(8, 8))[1]
    assert ref.kind == "MLP with one hidden layer" and ref.representable is False
    deep = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(),
                         nn.Linear(16, 10))
    assert refs(deep, x(8, 8))[1].representable is True


def test_shallow_reference_for_a_cnn_is_a_linear_model_on_the_flattened_input():
    cnn = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5))
    inputs = x(8, 1, 8, 8)
    out, ref, big = refs(cnn, inputs)
    assert ref.kind == "linear model on the flattened input" and ref.representable is None
    linears = [m for m in ref.model.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(64, 5)]
    assert ref.model(inputs).shape == out.shape
    assert big.representable is False and big.kind.startswith("MLP 256-256")
    assert big.model(inputs).shape == out.shape


def test_generic_references_keep_a_sequence_output_shape():
    class Seq(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn, self.head = nn.GRU(3, 4, batch_first=True), nn.Linear(4, 2)

        def forward(self, inputs):
            return self.head(self.rnn(inputs)[0])

    inputs = x(8, 5, 3)
    out, ref, big = refs(Seq(), inputs)
    assert out.shape == (8, 5, 2)
    assert ref.model(inputs).shape == out.shape and big.model(inputs).shape == out.shape


def test_generic_references_one_hot_token_inputs():
    class Bag(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed, self.head = nn.Embedding(7, 4), nn.Linear(4, 3)

        def forward(self, tokens):
            return self.head(self.embed(tokens).mean(1))

    tokens = torch.tensor([[0, 1, 6], [2, 3, 3], [5, 4, 1], [6, 6, 0]])
    out, ref, big = refs(Bag(), tokens)
    assert ref.kind == "linear model on the one-hot flattened input"
    linear = next(m for m in ref.model.modules() if isinstance(m, nn.Linear))
    assert linear.in_features == 3 * 7  # 3 positions, vocabulary 7 (the largest id + 1)
    assert ref.model(tokens).shape == out.shape and big.model(tokens).shape == out.shape
    assert torch.isfinite(ref.model(tokens)).all()


def test_no_generic_reference_for_linear_models_or_too_wide_inputs():
    linear = nn.Linear(4, 2)
    inputs = x(8, 4)
    assert shallow_reference(linear, inputs, linear(inputs)) is None
    only = nn.Sequential(nn.Linear(4, 2))
    assert shallow_reference(only, inputs, only(inputs)) is None
    wide = x(2, MAX_FEATURES + 1)

    class Head(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(1))

        def forward(self, inputs):
            return inputs[:, :3] * self.w

    model = Head()
    assert shallow_reference(model, wide, model(wide)) is None
    assert capacity_reference(model, wide, model(wide)) is None


def test_capacity_reference_for_an_mlp_is_4x_wider_and_trains():
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(6, 8), nn.Tanh(), nn.Dropout(0.0),
                        nn.Linear(8, 5), nn.Tanh(), nn.Linear(5, 3))
    inputs = x(16, 2, 3)
    out, _, big = refs(mlp, inputs)
    assert big.kind == "the MLP 4x wider" and big.representable is False
    linears = [m for m in big.model if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(6, 32), (32, 20), (20, 3)]
    assert [type(m) for m in big.model] == [type(m) for m in mlp]
    target = torch.zeros_like(out)
    opt = torch.optim.SGD(big.model.parameters(), lr=0.1)
    first = None
    for _ in range(5):
        opt.zero_grad()
        loss = nn.functional.mse_loss(big.model(inputs), target)
        loss.backward()
        opt.step()
        first = first if first is not None else loss.item()
    assert loss.item() < first


def test_references_follow_the_models_dtype():
    mlp = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)).double()
    inputs = x(8, 4).double()
    _, ref, big = refs(mlp, inputs)
    assert all(p.dtype == torch.float64 for p in ref.model.parameters())
    assert all(p.dtype == torch.float64 for p in big.model.parameters())
    cnn = nn.Sequential(nn.Conv1d(1, 2, 3), nn.Flatten(), nn.Linear(8, 2)).double()
    inputs = x(8, 1, 6).double()
    _, ref, big = refs(cnn, inputs)
    assert ref.model(inputs).dtype == torch.float64 and big.model(inputs).dtype == torch.float64
