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


# -- every built-in task ---------------------------------------------------------------------------

ALL_TASKS = ("digits-mlp", "digits-cnn", "deep-linear")


@pytest.fixture(scope="module", params=ALL_TASKS)
def any_task(request: pytest.FixtureRequest) -> tasks.Task:
    return tasks.get_task(request.param)


def test_digits_read_from_the_package_file_equal_load_digits() -> None:
    from sklearn.datasets import load_digits

    inputs, targets = tasks._load_digits()
    digits = load_digits()
    assert torch.equal(inputs, torch.as_tensor(digits.data, dtype=torch.float32) / 16.0)
    assert torch.equal(targets, torch.as_tensor(digits.target, dtype=torch.int64))


def test_every_task_is_registered_with_its_name(any_task: tasks.Task) -> None:
    assert any_task.name in tasks.TASKS
    assert any_task.epochs >= 1 and any_task.batch_size >= 1
    assert any_task.target_loss is not None and any_task.target_loss > 0
    assert {"sgd", "adam", "lars"} <= set(any_task.default_lrs)


def test_every_task_split_is_fixed_and_disjoint(any_task: tasks.Task) -> None:
    again = tasks.get_task(any_task.name)
    splits = (any_task.train, any_task.val, any_task.test)
    for a, b in zip(splits, (again.train, again.val, again.test)):
        assert torch.equal(a.inputs, b.inputs) and torch.equal(a.targets, b.targets)
    if any_task.name.startswith("digits"):
        return  # the digits hold repeated images: covered by the multiset test above
    rows = [set(map(tuple, split.inputs.tolist())) for split in splits]
    assert sum(map(len, rows)) == len(set.union(*rows))  # no example in two splits


def test_every_task_model_is_seeded_and_fits_the_data(any_task: tasks.Task) -> None:
    a, b, c = any_task.make_model(3), any_task.make_model(3), any_task.make_model(4)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    assert not all(torch.equal(p, q) for p, q in zip(a.parameters(), c.parameters(), strict=True))
    loss, metric = any_task.evaluate(a, any_task.val)
    assert loss > 0 and isinstance(metric, float)
    out = a(any_task.train.inputs[:4])
    assert any_task.loss(out, any_task.train.targets[:4]).ndim == 0


def test_digits_cnn_shares_the_digits_mlp_splits() -> None:
    mlp, cnn = tasks.digits_mlp(), tasks.digits_cnn()
    assert torch.equal(mlp.test.inputs, cnn.test.inputs)
    assert any(isinstance(m, torch.nn.Conv2d) for m in cnn.make_model(0).modules())


def test_deep_linear_is_ill_conditioned_and_starts_near_zero() -> None:
    task = tasks.deep_linear()
    x = task.train.inputs
    eigenvalues = torch.linalg.eigvalsh(x.T @ x / len(x))
    assert 5e3 < (eigenvalues.max() / eigenvalues.min()).item() < 2e4  # condition number 1e4
    variances = x.var(dim=0)
    assert variances[0] / variances[-1] > 5e3  # axis-aligned: one scale per input coordinate
    rotated = tasks.deep_linear(rotate=True, condition=100.0).train.inputs.var(dim=0)
    assert rotated.max() / rotated.min() < 10
    model = task.make_model(0)
    assert len(list(model.parameters())) == 4
    with torch.no_grad():
        assert model(x).abs().mean() < 0.1 * task.train.targets.abs().mean()  # near the saddle
    # the least-squares fit reaches the noise floor (0.01): the metric is about 0.99 there
    solution = torch.linalg.lstsq(x, task.train.targets).solution
    fitted = task.val.inputs @ solution
    assert task.loss(fitted, task.val.targets).item() < 0.015
    assert tasks.r_squared(fitted, task.val.targets) > 0.98


def test_r_squared() -> None:
    targets = torch.tensor([[1.0], [2.0], [3.0]])
    assert tasks.r_squared(targets, targets) == 1.0
    assert tasks.r_squared(torch.full((3, 1), 2.0), targets) == 0.0
    with pytest.raises(ValueError, match="two"):
        tasks.r_squared(targets[:1], targets[:1])


def test_register_task_adds_replaces_and_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tasks, "TASKS", dict(tasks.TASKS))
    tasks.register_task("my-task", lambda: tasks.deep_linear(n=100))
    assert tasks.get_task("my-task").name == "deep-linear"
    with pytest.raises(ValueError, match="already registered"):
        tasks.register_task("my-task", tasks.digits_mlp)
    tasks.register_task("my-task", tasks.digits_mlp, replace=True)
    assert tasks.TASKS["my-task"] is tasks.digits_mlp
    with pytest.raises(ValueError, match="name"):
        tasks.register_task("bad name!", tasks.digits_mlp)
    with pytest.raises(TypeError, match="factory"):
        tasks.register_task("other", "not callable")  # type: ignore[arg-type]
    tasks.register_task("broken", lambda: 42)  # type: ignore[arg-type,return-value]
    with pytest.raises(TypeError, match="must return a Task"):
        tasks.get_task("broken")


@pytest.mark.parametrize(
    ("field", "value"), [("epochs", 0), ("batch_size", 1.5), ("target_loss", float("nan"))]
)
def test_task_checks_its_defaults(field: str, value: float) -> None:
    base = tasks.deep_linear(n=50)
    with pytest.raises(ValueError, match=field):
        tasks.Task(**{**base.__dict__, field: value})


def test_task_checks_default_lrs() -> None:
    base = tasks.deep_linear(n=50)
    with pytest.raises(ValueError, match="default_lrs"):
        tasks.Task(**{**base.__dict__, "default_lrs": {"sgd": -1.0}})
