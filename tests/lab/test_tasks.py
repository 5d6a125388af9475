"""Built-in tasks: split sizes, determinism, model shapes, the registry."""

from __future__ import annotations

import pytest
import torch

from unstuck.lab import tasks


@pytest.fixture(scope="module")
def digits() -> tasks.Task:
    return tasks.digits_mlp()


def test_digits_splits_are_60_20_20_of_1797(digits: tasks.Task) -> None:
    assert (len(digits.train), len(digits.val), len(digits.test)) == (1078, 359, 360)


def test_digits_splits_are_disjoint_and_cover_the_data(digits: tasks.Task) -> None:
    rows = torch.cat([digits.train.inputs, digits.val.inputs, digits.test.inputs])
    # Images can repeat in the data set, so compare as a multiset of rows with their labels.
    labels = torch.cat([digits.train.targets, digits.val.targets, digits.test.targets])
    inputs, targets = tasks._load_digits()
    assert labelled_rows(rows, labels) == labelled_rows(inputs, targets)


def labelled_rows(inputs: torch.Tensor, targets: torch.Tensor) -> list[tuple[float, ...]]:
    """Each example as a tuple (pixels..., label), sorted: equal lists mean equal multisets."""
    return sorted(map(tuple, torch.cat([inputs, targets[:, None].float()], dim=1).tolist()))


def test_digits_data_types_and_ranges(digits: tasks.Task) -> None:
    for split in (digits.train, digits.val, digits.test):
        assert split.inputs.dtype == torch.float32
        assert split.inputs.shape[1:] == (64,)
        assert split.targets.dtype == torch.int64
        assert split.inputs.min() >= 0.0 and split.inputs.max() <= 1.0
        assert set(split.targets.unique().tolist()) == set(range(10))


def test_digits_split_is_deterministic(digits: tasks.Task) -> None:
    again = tasks.digits_mlp()
    for a, b in ((digits.train, again.train), (digits.val, again.val), (digits.test, again.test)):
        assert torch.equal(a.inputs, b.inputs)
        assert torch.equal(a.targets, b.targets)


def test_split_seed_changes_the_split() -> None:
    a, b = tasks.split_indices(100, seed=0), tasks.split_indices(100, seed=1)
    assert not torch.equal(a[0], b[0])


def test_split_indices_partition_range() -> None:
    train, val, test = tasks.split_indices(10, fractions=(0.5, 0.3), seed=4)
    assert (len(train), len(val), len(test)) == (5, 3, 2)
    assert sorted(torch.cat([train, val, test]).tolist()) == list(range(10))


@pytest.mark.parametrize("fractions", [(0.0, 0.2), (0.6, -0.1), (0.8, 0.2), (1.2, 0.0)])
def test_split_indices_rejects_bad_fractions(fractions: tuple[float, float]) -> None:
    with pytest.raises(ValueError, match="fractions"):
        tasks.split_indices(10, fractions=fractions)


def test_model_maps_a_batch_to_ten_logits(digits: tasks.Task) -> None:
    model = digits.make_model(0)
    out = model(digits.train.inputs[:5])
    assert out.shape == (5, 10)
    assert out.dtype == torch.float32


def test_make_model_same_seed_same_weights_and_global_rng_untouched(digits: tasks.Task) -> None:
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    a, b, c = digits.make_model(7), digits.make_model(7), digits.make_model(8)
    assert torch.equal(torch.rand(3), expected_next)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)
    assert not all(
        torch.equal(pa, pc) for pa, pc in zip(a.parameters(), c.parameters(), strict=True)
    )


def test_evaluate_untrained_model_is_near_chance(digits: tasks.Task) -> None:
    model = digits.make_model(0)
    loss, acc = digits.evaluate(model, digits.val)
    assert 1.5 < loss < 3.5  # ln(10) = 2.30
    assert 0.0 <= acc < 0.4
    assert model.training  # mode restored


def test_accuracy() -> None:
    logits = torch.tensor([[2.0, 1.0], [0.0, 3.0], [5.0, -1.0]])
    assert tasks.accuracy(logits, torch.tensor([0, 1, 1])) == pytest.approx(2 / 3)
    with pytest.raises(ValueError):
        tasks.accuracy(logits[:0], torch.tensor([], dtype=torch.int64))


def test_split_rejects_mismatched_lengths() -> None:
    with pytest.raises(ValueError, match="same length"):
        tasks.Split(torch.zeros(3, 2), torch.zeros(2))


def test_registry_builds_digits_and_rejects_unknown_names() -> None:
    assert tasks.get_task("digits-mlp").name == "digits-mlp"
    with pytest.raises(ValueError, match="digits-mlp"):
        tasks.get_task("no-such-task")
