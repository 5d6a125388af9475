"""Optimizer specs: the registry, the text form, building optimizers, errors that name the cause."""

from __future__ import annotations

import pytest
import torch

import unstuck
from unstuck.lab.optimizer_specs import (
    OPTIMIZERS,
    OptimizerSpec,
    OptimizerSpecError,
    parse_optimizer,
    parse_optimizers,
)

UNSTUCK_NAMES = ["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw", "radam",
                 "ranger", "lars", "rangerlars"]


def point() -> torch.Tensor:
    return torch.tensor([1.0, -2.0], requires_grad=True)


def test_registry_holds_unstuck_and_every_torch_optimizer() -> None:
    assert list(OPTIMIZERS)[: len(UNSTUCK_NAMES)] == UNSTUCK_NAMES
    torch_classes = {
        cls for cls in vars(torch.optim).values()
        if isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)
        and cls is not torch.optim.Optimizer
    }
    registered = {entry.cls for name, entry in OPTIMIZERS.items() if name.startswith("torch.")}
    assert registered == torch_classes
    assert OPTIMIZERS["torch.sgd"].cls is torch.optim.SGD
    assert all(entry.description for entry in OPTIMIZERS.values())


@pytest.mark.parametrize("name", UNSTUCK_NAMES + ["torch.sgd", "torch.adam", "torch.nadam"])
def test_every_name_builds_and_steps(name: str) -> None:
    p = point()
    opt = parse_optimizer(name).build([p], default_lr=0.01)
    assert isinstance(opt, torch.optim.Optimizer)
    assert opt.param_groups[0]["lr"] == 0.01
    p.grad = torch.ones(2)
    opt.step()
    assert torch.isfinite(p).all() and not torch.equal(p.detach(), torch.tensor([1.0, -2.0]))


def test_fixed_options_of_named_variants() -> None:
    opt = parse_optimizer("nesterov").build([point()])
    assert isinstance(opt, unstuck.SGD)
    assert opt.param_groups[0]["momentum"] == 0.9 and opt.param_groups[0]["nesterov"] is True
    # the spec's own options override the fixed ones
    assert parse_optimizer("momentum(momentum=0.5)").build([point()]).param_groups[0][
        "momentum"] == 0.5


def test_explicit_lr_wins_over_default_lr_and_class_default_is_last() -> None:
    assert parse_optimizer("sgd(lr=0.5)").build([point()], default_lr=0.1).param_groups[0][
        "lr"] == 0.5
    assert parse_optimizer("sgd").build([point()], default_lr=0.1).param_groups[0]["lr"] == 0.1
    assert parse_optimizer("adam").build([point()]).param_groups[0]["lr"] == 1e-3


def test_values_numbers_strings_constants_tuples() -> None:
    spec = parse_optimizer(
        "ADAM( lr = 1e-3, betas=[0.9, 0.99], amsgrad=True, eps=1E-8, weight_decay=0 ,)")
    assert spec.name == "adam"
    assert dict(spec.options) == {"lr": 1e-3, "betas": (0.9, 0.99), "amsgrad": True,
                                  "eps": 1e-8, "weight_decay": 0}
    assert parse_optimizer(spec.label) == spec
    assert parse_optimizer("torch.adam(betas=(0.8, 0.9))").options["betas"] == (0.8, 0.9)
    assert parse_optimizer("torch.sgd(lr=1, nesterov=False, momentum=0)").lr == 1.0


def test_list_splits_at_top_level_commas_and_keeps_order() -> None:
    specs = parse_optimizers("sgd(lr=0.01, momentum=0.5), momentum, adam(betas=(0.9, 0.99)),")
    assert [s.label for s in specs] == [
        "sgd(lr=0.01, momentum=0.5)", "momentum", "adam(betas=(0.9, 0.99))"]


def test_with_options_and_hash() -> None:
    spec = parse_optimizer("sgd(momentum=0.5)")
    tuned = spec.with_options(lr=0.1)
    assert tuned.label == "sgd(momentum=0.5, lr=0.1)" and spec.lr is None and tuned.lr == 0.1
    assert len({spec, parse_optimizer("sgd(momentum=0.5)")}) == 1


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("adamm", ["unknown optimizer 'adamm'", "did you mean 'adam'", "known:", "torch.sgd"]),
        ("sgd(lr=0.1, momentm=0.5)", ["unknown option 'momentm'", "did you mean 'momentum'"]),
        ("sgd(lr=0.1, lr=0.2)", ["'lr'", "given twice"]),
        ("sgd(0.1)", ["expected an option KEY=VALUE"]),
        ("sgd(lr=)", ["expected a value"]),
        ("sgd(lr=0.1", ["unbalanced '('"]),
        ("adam(betas=(0.9, 0.99)", ["unbalanced '('"]),
        ("sgd(lr=x)", ["expected a value"]),
        ("sgd sgd", ["expected ','"]),
        ("sgd, sgd", ["'sgd' given twice"]),
        ("", ["empty"]),
        ("sgd(lr=__import__('os'))", ["expected a value"]),
        ("sgd; rm", ["unexpected character ';'"]),
    ],
)
def test_errors_name_the_cause_and_point_at_it(text: str, words: list[str]) -> None:
    with pytest.raises(OptimizerSpecError) as error:
        parse_optimizers(text)
    message = str(error.value)
    for word in words:
        assert word in message
    assert "^" in message and isinstance(error.value, ValueError)


def test_parse_optimizer_wants_exactly_one() -> None:
    with pytest.raises(OptimizerSpecError, match="expected one optimizer, got 2"):
        parse_optimizer("sgd, adam")


def test_build_reports_a_bad_value_with_the_label() -> None:
    with pytest.raises(ValueError, match=r"sgd\(lr=-1\): lr"):
        parse_optimizer("sgd(lr=-1)").build([point()])


def test_spec_constructor_checks_name_and_options() -> None:
    with pytest.raises(ValueError, match="unknown optimizer 'sdg'"):
        OptimizerSpec("sdg")
    with pytest.raises(ValueError, match="unknown option 'beta'"):
        OptimizerSpec("adam", {"beta": 0.9})
