"""Tests of ``unstuck.grad``: global norm, clipping and non-finite gradients.

The reference is ``torch.nn.utils`` (``get_total_norm``, ``clip_grad_norm_``,
``clip_grad_value_``): on dense gradients the results must be equal bit for bit, since both
bucket by device and dtype the same way and run the same ``_foreach`` kernels.
"""

from __future__ import annotations

import copy
import doctest
import functools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import unstuck.grad
from unstuck.grad import clip_by_global_norm_, clip_by_value_, global_norm, nonfinite_grads

NORM_TYPES = (1.0, 2.0, 3.0, math.inf)
INF, NAN = math.inf, math.nan


@functools.cache
def _model_with_grads(seed: int, dtype: torch.dtype) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(2, 3, kernel_size=3),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(3 * 4 * 4, 8),
        nn.Tanh(),
        nn.Linear(8, 2),
    ).to(dtype)
    inputs = torch.randn(5, 2, 6, 6, dtype=dtype)
    (model(inputs).square().sum() * 10).backward()
    return model


def make_model(seed: int, dtype: torch.dtype = torch.float32) -> nn.Module:
    """A small conv + MLP model with gradients from one backward pass on random data.

    Deterministic in ``seed``: every call returns a fresh copy with equal weights and equal
    gradients (the backward pass runs once per seed and dtype).
    """
    source = _model_with_grads(seed, dtype)
    model = copy.deepcopy(source)  # deepcopy does not copy .grad
    for param, source_param in zip(model.parameters(), source.parameters()):
        param.grad = source_param.grad.clone()
    return model


def make_mixed_dtype_params(seed: int) -> list[torch.Tensor]:
    """Parameters in float32, float64, bfloat16 and float16, with random gradients."""
    gen = torch.Generator().manual_seed(seed)
    dtypes = (torch.float32, torch.float64, torch.bfloat16, torch.float16, torch.float32)
    shapes = ((), (7,), (5, 3), (4, 3, 3, 3), (11,))
    params = []
    for dtype, shape in zip(dtypes, shapes):
        p = torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype).requires_grad_()
        p.grad = (3 * torch.randn(shape, generator=gen, dtype=torch.float64)).to(dtype)
        params.append(p)
    return params


def clone_with_grads(params: list[torch.Tensor]) -> list[torch.Tensor]:
    """Independent copies of ``params`` whose ``grad`` are copies too."""
    copies = []
    for p in params:
        q = p.detach().clone().requires_grad_()
        q.grad = None if p.grad is None else p.grad.clone()
        copies.append(q)
    return copies


def grads_of(params) -> list[torch.Tensor]:
    return [p.grad for p in params if p.grad is not None]


def assert_grads_equal(actual, expected) -> None:
    for a, e in zip(actual, expected, strict=True):
        assert (a.grad is None) == (e.grad is None)
        if a.grad is not None:
            assert torch.equal(a.grad, e.grad)


# --------------------------------------------------------------------------------------------
# global_norm
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("norm_type", NORM_TYPES)
def test_global_norm_equals_torch(dtype, norm_type):
    model = make_model(0, dtype)
    params = list(model.parameters())
    expected = torch.nn.utils.get_total_norm(grads_of(params), norm_type)
    before = [p.grad.clone() for p in params]

    norm = global_norm(params, norm_type)

    assert norm.dim() == 0 and norm.dtype == dtype
    assert torch.equal(norm, expected)
    assert torch.equal(global_norm(model, norm_type), expected)  # a module works too
    assert torch.equal(global_norm(model.named_parameters(), norm_type), expected)
    assert all(torch.equal(p.grad, b) for p, b in zip(params, before))  # modifies nothing


@pytest.mark.parametrize("norm_type", NORM_TYPES)
def test_global_norm_mixed_dtypes_equals_torch(norm_type):
    # Seed 5: stacking the per-bucket norms in order of first appearance instead of torch's
    # bucket order changes the last bit here, so this checks the order too.
    params = make_mixed_dtype_params(5)
    expected = torch.nn.utils.get_total_norm(grads_of(params), norm_type)
    norm = global_norm(params, norm_type)
    assert norm.dtype == torch.float64  # the per-tensor norms promote
    assert torch.equal(norm, expected)


def test_global_norm_known_values():
    w = torch.zeros(2, requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    w.grad, b.grad = torch.tensor([3.0, 0.0]), torch.tensor([-4.0])
    assert global_norm([w, b]).item() == pytest.approx(5.0)
    assert global_norm([w, b], norm_type=1.0).item() == pytest.approx(7.0)
    assert global_norm([w, b], norm_type=INF).item() == 4.0
    assert global_norm([w, b], norm_type="inf").item() == 4.0


def test_global_norm_skips_params_without_grad_and_handles_empty_input():
    with_grad = torch.ones(3, requires_grad=True)
    with_grad.grad = torch.full((3,), 2.0)
    without_grad = torch.ones(5, requires_grad=True)
    assert torch.equal(global_norm([with_grad, without_grad]), global_norm([with_grad]))
    assert torch.equal(global_norm([]), torch.tensor(0.0))
    assert torch.equal(global_norm([without_grad]), torch.tensor(0.0))
    assert torch.equal(global_norm(iter([])), torch.tensor(0.0))


def test_global_norm_of_single_tensor():
    p = torch.zeros(4, requires_grad=True)
    p.grad = torch.tensor([1.0, -2.0, 2.0, 0.0])
    assert torch.equal(global_norm(p), torch.nn.utils.get_total_norm([p.grad]))
    assert global_norm(p).item() == pytest.approx(3.0)


def test_parameter_listed_twice_counts_once():
    p = torch.zeros(2, requires_grad=True)
    p.grad = torch.tensor([3.0, 4.0])
    assert torch.equal(global_norm([p, p]), global_norm([p]))
    clip_by_global_norm_([p, p], max_norm=1.0)
    assert torch.allclose(p.grad, torch.tensor([0.6, 0.8]))  # scaled once, not twice


@pytest.mark.parametrize("norm_type", NORM_TYPES)
def test_zero_element_grad_counts_as_zero(norm_type):
    empty = torch.zeros(0, 3, requires_grad=True)
    empty.grad = torch.zeros(0, 3)
    p = torch.zeros(2, requires_grad=True)
    p.grad = torch.tensor([3.0, -4.0])
    assert torch.equal(global_norm([empty, p], norm_type), global_norm([p], norm_type))
    assert nonfinite_grads([("empty", empty), ("p", p)]) == []


@pytest.mark.parametrize("norm_type", NORM_TYPES)
def test_complex_grads_have_torch_norms(norm_type):
    gen = torch.Generator().manual_seed(2)
    params = []
    for dtype, shape in ((torch.complex64, (4, 3)), (torch.float32, (5,)), (torch.complex64, (2,))):
        p = torch.zeros(shape, dtype=dtype, requires_grad=True)
        p.grad = torch.randn(shape, generator=gen, dtype=dtype)
        params.append(p)
    expected = torch.nn.utils.get_total_norm(grads_of(params), norm_type)
    assert torch.equal(global_norm(params, norm_type), expected)
    assert expected.dtype == torch.float32  # |z| is real


# --------------------------------------------------------------------------------------------
# clip_by_global_norm_
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("norm_type", NORM_TYPES)
@pytest.mark.parametrize("max_norm", [0.01, 1.0, 1e6])
def test_clip_by_global_norm_equals_torch(dtype, norm_type, max_norm):
    model, reference = make_model(3, dtype), make_model(3, dtype)

    total = clip_by_global_norm_(model.parameters(), max_norm, norm_type)
    expected = torch.nn.utils.clip_grad_norm_(reference.parameters(), max_norm, norm_type)

    assert torch.equal(total, expected)
    assert_grads_equal(list(model.parameters()), list(reference.parameters()))


@pytest.mark.parametrize("norm_type", NORM_TYPES)
def test_clip_by_global_norm_mixed_dtypes_equals_torch(norm_type):
    params = make_mixed_dtype_params(5)  # the seed where bucket order matters (see above)
    reference = clone_with_grads(params)
    total = clip_by_global_norm_(params, 0.5, norm_type)
    expected = torch.nn.utils.clip_grad_norm_(reference, 0.5, norm_type)
    assert torch.equal(total, expected)
    assert_grads_equal(params, reference)


def test_clip_by_global_norm_returns_the_norm_before_clipping():
    model = make_model(1)
    before = global_norm(model)
    max_norm = before.item() / 10

    total = clip_by_global_norm_(model, max_norm)

    assert torch.equal(total, before)
    assert global_norm(model).item() == pytest.approx(max_norm, rel=1e-5)


def test_clip_by_global_norm_leaves_small_grads_unchanged():
    model = make_model(2, torch.float64)
    before = [p.grad.clone() for p in model.parameters()]
    max_norm = global_norm(model).item() + 1.0
    total = clip_by_global_norm_(model, max_norm)
    assert 0 < total.item() < max_norm
    assert all(torch.equal(p.grad, b) for p, b in zip(model.parameters(), before))


def test_clip_by_global_norm_skips_params_without_grad():
    with_grad = torch.zeros(2, requires_grad=True)
    with_grad.grad = torch.tensor([3.0, 4.0])
    without_grad = torch.zeros(3, requires_grad=True)
    total = clip_by_global_norm_([without_grad, with_grad], max_norm=1.0)
    assert total.item() == pytest.approx(5.0)
    assert without_grad.grad is None
    assert torch.allclose(with_grad.grad, torch.tensor([0.6, 0.8]))
    assert torch.equal(clip_by_global_norm_([without_grad], 1.0), torch.tensor(0.0))


def test_clip_by_global_norm_complex_equals_torch():
    gen = torch.Generator().manual_seed(7)
    params = [torch.zeros(4, dtype=torch.complex64, requires_grad=True) for _ in range(2)]
    for p in params:
        p.grad = 5 * torch.randn(4, generator=gen, dtype=torch.complex64)
    reference = clone_with_grads(params)
    assert torch.equal(
        clip_by_global_norm_(params, 1.0), torch.nn.utils.clip_grad_norm_(reference, 1.0)
    )
    assert_grads_equal(params, reference)


def test_error_if_nonfinite_names_the_parameters_and_leaves_grads():
    model = make_model(0)
    model[0].bias.grad[1] = NAN
    model[3].weight.grad[0, 0] = -INF
    before = [p.grad.clone() for p in model.parameters()]

    with pytest.raises(RuntimeError, match="non-finite") as info:
        clip_by_global_norm_(model, 1.0, error_if_nonfinite=True)

    message = str(info.value)
    assert "'0.bias'" in message and "'3.weight'" in message
    assert "'0.weight'" not in message and "'5.weight'" not in message
    for p, b in zip(model.parameters(), before):
        assert torch.allclose(p.grad, b, equal_nan=True)


def test_error_if_nonfinite_names_unnamed_params_by_position():
    a, b = torch.zeros(2, requires_grad=True), torch.zeros(2, requires_grad=True)
    a.grad, b.grad = torch.ones(2), torch.tensor([1.0, INF])
    with pytest.raises(RuntimeError, match=r"'params\[1\]'"):
        clip_by_global_norm_([a, b], 1.0, error_if_nonfinite=True)


def test_error_if_nonfinite_reports_overflow_when_every_grad_is_finite():
    p = torch.zeros(2, dtype=torch.float16, requires_grad=True)
    p.grad = torch.tensor([60000.0, 60000.0], dtype=torch.float16)  # squares overflow fp16
    assert nonfinite_grads([("p", p)]) == []
    with pytest.raises(RuntimeError, match="overflow"):
        clip_by_global_norm_([p], 1.0, error_if_nonfinite=True)


def test_nonfinite_norm_without_the_flag_scales_like_torch():
    params = [torch.zeros(3, requires_grad=True) for _ in range(2)]
    params[0].grad = torch.tensor([1.0, NAN, 2.0])
    params[1].grad = torch.tensor([1.0, 2.0, 3.0])
    reference = clone_with_grads(params)
    total = clip_by_global_norm_(params, 1.0)
    expected = torch.nn.utils.clip_grad_norm_(reference, 1.0)
    assert total.isnan() and expected.isnan()
    for p, r in zip(params, reference):
        assert torch.allclose(p.grad, r.grad, equal_nan=True)


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(
    shapes=st.lists(
        st.lists(st.integers(min_value=0, max_value=6), min_size=0, max_size=3).map(tuple),
        min_size=1,
        max_size=6,
    ),
    max_norm=st.floats(min_value=1e-3, max_value=1e3),
    norm_type=st.sampled_from([1.0, 2.0, 3.0, INF]),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    scale=st.floats(min_value=1e-3, max_value=1e3),
    seed=st.integers(min_value=0, max_value=2**16),
)
def test_clip_by_global_norm_property(shapes, max_norm, norm_type, dtype, scale, seed):
    gen = torch.Generator().manual_seed(seed)
    params = []
    for shape in shapes:
        p = torch.zeros(shape, dtype=dtype, requires_grad=True)
        p.grad = scale * torch.randn(shape, generator=gen, dtype=dtype)
        params.append(p)
    reference = clone_with_grads(params)
    if norm_type == INF and any(p.numel() == 0 for p in params):
        expected = None  # torch refuses the inf-norm of a zero-element tensor
    else:
        expected = torch.nn.utils.clip_grad_norm_(reference, max_norm, norm_type)

    total = clip_by_global_norm_(params, max_norm, norm_type)

    if expected is not None:
        assert torch.equal(total, expected)
        assert_grads_equal(params, reference)
    after = global_norm(params, norm_type).item()
    tolerance = 1e-5 if dtype == torch.float32 else 1e-12
    assert after <= min(max_norm, total.item()) * (1 + tolerance)


# --------------------------------------------------------------------------------------------
# clip_by_value_
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("clip_value", [1e-3, 0.1, 1e6])
def test_clip_by_value_equals_torch(dtype, clip_value):
    model, reference = make_model(1, dtype), make_model(1, dtype)
    result = clip_by_value_(model.parameters(), clip_value)
    torch.nn.utils.clip_grad_value_(reference.parameters(), clip_value)
    assert result is None
    assert_grads_equal(list(model.parameters()), list(reference.parameters()))
    assert all(p.grad.abs().max() <= clip_value for p in model.parameters())


def test_clip_by_value_mixed_dtypes_equals_torch():
    params = make_mixed_dtype_params(10)
    reference = clone_with_grads(params)
    clip_by_value_(params, 0.7)
    torch.nn.utils.clip_grad_value_(reference, 0.7)
    assert_grads_equal(params, reference)


def test_clip_by_value_known_values_and_skips_missing_grads():
    w = torch.zeros(3, requires_grad=True)
    w.grad = torch.tensor([-2.0, 0.5, 3.0])
    without_grad = torch.zeros(2, requires_grad=True)
    clip_by_value_([w, without_grad], clip_value=1.0)
    assert torch.equal(w.grad, torch.tensor([-1.0, 0.5, 1.0]))
    assert without_grad.grad is None


def test_clip_by_value_refuses_complex_by_name():
    z = torch.zeros(2, dtype=torch.complex64, requires_grad=True)
    z.grad = torch.tensor([3 + 4j, 1j], dtype=torch.complex64)
    r = torch.zeros(2, requires_grad=True)
    r.grad = torch.tensor([5.0, -5.0])
    with pytest.raises(TypeError, match="'z'"):
        clip_by_value_([("r", r), ("z", z)], 1.0)
    assert torch.equal(r.grad, torch.tensor([5.0, -5.0]))  # nothing was clipped


# --------------------------------------------------------------------------------------------
# nonfinite_grads
# --------------------------------------------------------------------------------------------


def test_nonfinite_grads_of_a_module():
    model = make_model(3)
    assert nonfinite_grads(model) == []
    model[5].bias.grad[0] = NAN
    model[0].weight.grad[0, 0, 1, 1] = INF
    model[3].bias.grad[2] = -INF
    before = [p.grad.clone() for p in model.parameters()]

    assert nonfinite_grads(model) == ["0.weight", "3.bias", "5.bias"]  # in parameter order
    for p, b in zip(model.parameters(), before):
        assert torch.allclose(p.grad, b, equal_nan=True)  # grads untouched


def test_nonfinite_grads_of_named_params_and_mappings():
    named = []
    for name, value in (("a", 1.0), ("b", NAN), ("c", INF), ("d", -INF), ("e", 2.0)):
        p = torch.zeros(4, requires_grad=True)
        p.grad = torch.ones(4)
        p.grad[3] = value
        named.append((name, p))
    no_grad = ("f", torch.zeros(2, requires_grad=True))
    assert nonfinite_grads(named + [no_grad]) == ["b", "c", "d"]
    assert nonfinite_grads(iter(named)) == ["b", "c", "d"]
    assert nonfinite_grads(dict(named)) == ["b", "c", "d"]
    assert nonfinite_grads([p for _, p in named]) == ["params[1]", "params[2]", "params[3]"]


def test_nonfinite_grads_mixed_dtypes_and_large_finite_values():
    params = make_mixed_dtype_params(12)
    assert nonfinite_grads(params) == []
    params[2].grad[0, 0] = NAN  # bfloat16
    params[3].grad.fill_(60000.0)  # float16: huge but finite
    params[4].grad[5] = INF
    assert nonfinite_grads(params) == ["params[2]", "params[4]"]


def test_nonfinite_grads_of_nothing():
    assert nonfinite_grads([]) == []
    assert nonfinite_grads(nn.Linear(2, 2)) == []  # no backward yet: no grads


# --------------------------------------------------------------------------------------------
# Sparse gradients
# --------------------------------------------------------------------------------------------


def make_sparse_embedding() -> nn.Embedding:
    """An embedding whose sparse gradient has duplicate (uncoalesced) indices."""
    torch.manual_seed(13)
    embedding = nn.Embedding(10, 3, sparse=True)
    (embedding(torch.tensor([1, 1, 4, 7, 1])) * torch.randn(5, 3) * 4).sum().backward()
    assert embedding.weight.grad.is_sparse and not embedding.weight.grad.is_coalesced()
    return embedding


@pytest.mark.parametrize("norm_type", NORM_TYPES)
def test_sparse_grad_norm_is_the_dense_norm(norm_type):
    embedding = make_sparse_embedding()
    dense = embedding.weight.grad.to_dense()
    expected = torch.linalg.vector_norm(dense, norm_type)
    assert torch.allclose(global_norm(embedding, norm_type), expected)
    assert not embedding.weight.grad.is_coalesced()  # global_norm modified nothing


def test_clip_by_global_norm_sparse_equals_dense():
    embedding = make_sparse_embedding()
    linear = nn.Linear(3, 2)
    linear(torch.ones(1, 3)).sum().backward()
    dense_twin = [embedding.weight.grad.to_dense(), linear.weight.grad.clone()]
    params = [embedding.weight, linear.weight]

    total = clip_by_global_norm_(params, max_norm=0.5)

    expected_total = torch.linalg.vector_norm(torch.cat([g.flatten() for g in dense_twin]))
    assert torch.allclose(total, expected_total)
    factor = 0.5 / (expected_total + 1e-6)
    assert torch.allclose(embedding.weight.grad.to_dense(), dense_twin[0] * factor)
    assert torch.allclose(linear.weight.grad, dense_twin[1] * factor)


def test_clip_by_value_sparse_clamps_the_summed_entries():
    embedding = make_sparse_embedding()
    expected = embedding.weight.grad.to_dense().clamp(-1.0, 1.0)
    clip_by_value_(embedding, 1.0)
    assert embedding.weight.grad.is_sparse
    assert torch.equal(embedding.weight.grad.to_dense(), expected)


def test_nonfinite_grads_sparse():
    embedding = make_sparse_embedding()
    assert nonfinite_grads(embedding) == []
    embedding.weight.grad = embedding.weight.grad.coalesce()
    embedding.weight.grad.values()[0, 0] = NAN
    assert nonfinite_grads(embedding) == ["weight"]


@pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta")
def test_unsupported_sparse_layout_names_the_parameter():
    p = torch.eye(3).to_sparse_csr().requires_grad_()
    p.grad = torch.eye(3).to_sparse_csr()
    for call in (
        lambda: global_norm([("csr", p)]),
        lambda: clip_by_global_norm_([("csr", p)], 1.0),
        lambda: clip_by_value_([("csr", p)], 1.0),
        lambda: nonfinite_grads([("csr", p)]),
    ):
        with pytest.raises(TypeError, match="'csr'.*sparse_csr"):
            call()


# --------------------------------------------------------------------------------------------
# Arguments
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("max_norm", [0, 0.0, -1.0, NAN])
def test_bad_max_norm_raises_value_error_naming_it(max_norm):
    model = make_model(2)
    with pytest.raises(ValueError, match="max_norm must be > 0"):
        clip_by_global_norm_(model, max_norm)


@pytest.mark.parametrize("clip_value", [0, -0.5, NAN])
def test_bad_clip_value_raises_value_error_naming_it(clip_value):
    model = make_model(3)
    with pytest.raises(ValueError, match="clip_value must be > 0"):
        clip_by_value_(model, clip_value)


@pytest.mark.parametrize("norm_type", [0, 0.0, -1.0, -INF, NAN])
def test_bad_norm_type_raises_value_error_naming_it(norm_type):
    model = make_model(0)
    with pytest.raises(ValueError, match="norm_type must be > 0"):
        global_norm(model, norm_type)
    with pytest.raises(ValueError, match="norm_type must be > 0"):
        clip_by_global_norm_(model, 1.0, norm_type)


def test_non_numbers_raise_type_error_naming_the_argument():
    model = make_model(1)
    with pytest.raises(TypeError, match="max_norm"):
        clip_by_global_norm_(model, "big")
    with pytest.raises(TypeError, match="clip_value"):
        clip_by_value_(model, None)
    with pytest.raises(TypeError, match="norm_type"):
        global_norm(model, True)
    with pytest.raises(TypeError, match="params"):
        global_norm([1.0, 2.0])


def test_tensor_hyper_parameters_are_accepted():
    model, reference = make_model(2), make_model(2)
    total = clip_by_global_norm_(model, torch.tensor(0.1))
    assert torch.equal(total, torch.nn.utils.clip_grad_norm_(reference.parameters(), 0.1))
    assert_grads_equal(list(model.parameters()), list(reference.parameters()))


def test_docstring_examples_run():
    result = doctest.testmod(unstuck.grad, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 4
    assert result.failed == 0
