"""create_optimizer / create_scheduler: weight-decay groups by name rules, text forms, errors."""

from __future__ import annotations

import copy
import doctest
import subprocess
import sys

import pytest
import torch
from torch import nn

import unstuck
import unstuck.factory
from unstuck.schedules import Scheduler, cosine, linear_with_warmup, parse, warmup


class ScaleNorm(nn.Module):
    """A custom normalisation layer with a 2-D gain: recognised by its class name only."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.g = nn.Parameter(torch.ones(1, width))

    def forward(self, x):
        return self.g * x / x.norm(dim=-1, keepdim=True).clamp_min(1e-6)


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 6)
        self.proj = nn.Linear(6, 8)
        self.ln = nn.LayerNorm(8)
        self.conv = nn.Conv1d(8, 8, 1)
        self.bn = nn.BatchNorm1d(8)
        self.gain = ScaleNorm(8)
        self.final_norm_gain = nn.Parameter(torch.ones(1, 8))
        self.head = nn.Linear(8, 3, bias=False)
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, tokens):
        x = self.ln(self.proj(self.embed(tokens)))  # (B, L, 8)
        x = self.bn(self.conv(x.transpose(1, 2))).mean(dim=2)  # (B, 8)
        return self.head(self.gain(x) * self.final_norm_gain) * self.scale


# By hand. timm (param_groups_weight_decay): no decay when ndim <= 1 or the name ends in
# ".bias". Hugging Face (get_parameter_names(model, [LayerNorm]) and "bias" not in name): no
# decay on LayerNorm parameters and biases. Both decay embeddings, Linear and conv weights.
# Our default is their union plus normalisation layers by type (BatchNorm, ScaleNorm) and
# names containing "norm" (final_norm_gain, 2-D).
DECAY = ["embed.weight", "proj.weight", "conv.weight", "head.weight"]
NO_DECAY = ["final_norm_gain", "scale", "proj.bias", "ln.weight", "ln.bias", "conv.bias",
            "bn.weight", "bn.bias", "gain.g"]  # in named_parameters' order: own ones first
TIMM_NO_DECAY = {"proj.bias", "ln.weight", "ln.bias", "conv.bias", "bn.weight", "bn.bias",
                 "scale"}
HF_NO_DECAY = {"proj.bias", "ln.weight", "ln.bias", "conv.bias"}


def make_net(seed: int = 0) -> Net:
    torch.manual_seed(seed)
    return Net()


def names_of(model: nn.Module, params) -> list[str]:
    by_id = {id(p): n for n, p in model.named_parameters()}
    return [by_id[id(p)] for p in params]


def group_names(model, optimizer) -> list[tuple[list[str], float]]:
    return [(names_of(model, g["params"]), g["weight_decay"]) for g in optimizer.param_groups]


def test_default_rules_split_decay_and_no_decay():
    model = make_net()
    opt = unstuck.create_optimizer(model, "adamw(lr=1e-3)", weight_decay=0.05)
    assert isinstance(opt, unstuck.AdamW)
    assert group_names(model, opt) == [(DECAY, 0.05), (NO_DECAY, 0.0)]
    # everything timm and Hugging Face leave undecayed is undecayed here too
    assert set(NO_DECAY) >= TIMM_NO_DECAY | HF_NO_DECAY
    assert not set(DECAY) & (TIMM_NO_DECAY | HF_NO_DECAY)


def test_norm_layers_by_type_need_a_module():
    model = make_net()
    # from (name, parameter) pairs the ScaleNorm's 2-D gain is not known to be a norm's
    opt = unstuck.create_optimizer(model.named_parameters(), "adamw", weight_decay=0.05)
    assert group_names(model, opt)[0][0] == [*DECAY[:3], "gain.g", "head.weight"]
    # a dict of named parameters works the same
    opt = unstuck.create_optimizer(dict(model.named_parameters()), "adamw", weight_decay=0.05)
    assert "gain.g" in group_names(model, opt)[0][0]


def test_no_decay_patterns_replace_the_default_rules():
    model = make_net()
    opt = unstuck.create_optimizer(model, "adamw", weight_decay=0.1, no_decay=("bias",))
    decay, no_decay = group_names(model, opt)
    assert no_decay == (["proj.bias", "ln.bias", "conv.bias", "bn.bias"], 0.0)
    assert "ln.weight" in decay[0] and "scale" in decay[0]  # 1-D, yet decayed: rules replaced

    opt = unstuck.create_optimizer(model, "adamw", weight_decay=0.1, no_decay=("*.bias", "ln.*"))
    assert group_names(model, opt)[1][0] == ["proj.bias", "ln.weight", "ln.bias", "conv.bias",
                                             "bn.bias"]
    # one string is one pattern; matching ignores case
    opt = unstuck.create_optimizer(model, "adamw", weight_decay=0.1, no_decay="EMBED")
    assert group_names(model, opt)[1][0] == ["embed.weight"]
    # None: decay everywhere (one group)
    opt = unstuck.create_optimizer(model, "adamw", weight_decay=0.1, no_decay=None)
    assert group_names(model, opt) == [([n for n, _ in model.named_parameters()], 0.1)]


def test_case_insensitive_names_as_in_bert():
    class Bert(nn.Module):
        def __init__(self):
            super().__init__()
            self.dense = nn.Linear(4, 4)
            self.LayerNorm = nn.LayerNorm(4)

    model = Bert()
    opt = unstuck.create_optimizer(model, "adamw", weight_decay=0.01, no_decay=("bias", "norm"))
    assert group_names(model, opt) == [
        (["dense.weight"], 0.01), (["dense.bias", "LayerNorm.weight", "LayerNorm.bias"], 0.0)
    ]


def test_frozen_parameters_left_out_and_empty_groups_dropped():
    model = make_net()
    model.embed.weight.requires_grad_(False)
    for p in model.bn.parameters():
        p.requires_grad_(False)
    opt = unstuck.create_optimizer(model, "sgd", weight_decay=0.1)
    assert group_names(model, opt) == [(DECAY[1:], 0.1), (NO_DECAY[:6] + NO_DECAY[8:], 0.0)]

    only_weights = nn.Sequential(nn.Linear(3, 3, bias=False), nn.Linear(3, 2, bias=False))
    opt = unstuck.create_optimizer(only_weights, "sgd", weight_decay=0.1)
    assert len(opt.param_groups) == 1 and opt.param_groups[0]["weight_decay"] == 0.1


def test_tied_weights_appear_once():
    model = nn.Sequential(nn.Embedding(5, 3), nn.Linear(3, 5, bias=False))
    model[1].weight = model[0].weight
    pairs = [*model.named_parameters(), ("again", model[0].weight)]
    opt = unstuck.create_optimizer(pairs, "sgd", weight_decay=0.1)
    assert [len(g["params"]) for g in opt.param_groups] == [1]


def test_zero_weight_decay_gives_one_group():
    model = make_net()
    for spec, kwargs in (("adam", {}), ("adamw", {"weight_decay": 0.0}), ("torch.rprop", {})):
        opt = unstuck.create_optimizer(model, spec, **kwargs)
        assert len(opt.param_groups) == 1
        assert len(opt.param_groups[0]["params"]) == len(DECAY) + len(NO_DECAY)
    # AdamW's own default (0.01) is a weight decay: split
    opt = unstuck.create_optimizer(model, "adamw")
    assert [g["weight_decay"] for g in opt.param_groups] == [0.01, 0.0]


def _train(model, optimizer, steps=4):
    torch.manual_seed(1)
    for _ in range(steps):
        tokens = torch.randint(0, 10, (5, 7))
        target = torch.randn(5, 3)
        loss = nn.functional.mse_loss(model(tokens), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


@pytest.mark.parametrize(
    ("spec", "cls", "kwargs"),
    [
        ("adamw(lr=1e-2)", unstuck.AdamW, {"lr": 1e-2}),
        ("ranger(lr=1e-2)", unstuck.Ranger, {"lr": 1e-2}),
        ("momentum(lr=0.05)", unstuck.SGD, {"lr": 0.05, "momentum": 0.9}),
        ("torch.sgd(lr=0.05, momentum=0.5)", torch.optim.SGD, {"lr": 0.05, "momentum": 0.5}),
    ],
)
def test_matches_an_optimizer_built_by_hand(spec, cls, kwargs):
    model = make_net()
    twin = copy.deepcopy(model)
    named = dict(twin.named_parameters())
    by_hand = cls(
        [{"params": [named[n] for n in DECAY]},
         {"params": [named[n] for n in NO_DECAY], "weight_decay": 0.0}],
        weight_decay=0.1, **kwargs,
    )
    made = unstuck.create_optimizer(model, spec, weight_decay=0.1)
    assert type(made) is cls
    _train(model, made)
    _train(twin, by_hand)
    for (name, p), q in zip(model.named_parameters(), twin.parameters()):
        assert torch.equal(p, q), name
    assert any(not torch.equal(p, q) for p, q in zip(model.parameters(), make_net().parameters()))


def test_text_keywords_and_overrides():
    model = make_net()
    opt = unstuck.create_optimizer(model, "sgd(lr=0.1, momentum=0.5, nesterov=True)")
    group = opt.param_groups[0]
    assert (group["lr"], group["momentum"], group["nesterov"]) == (0.1, 0.5, True)
    # explicit keywords override the text; the name's fixed options can be overridden too
    opt = unstuck.create_optimizer(model, "sgd(lr=0.1, momentum=0.5)", lr=0.3, momentum=0.8)
    assert (opt.param_groups[0]["lr"], opt.param_groups[0]["momentum"]) == (0.3, 0.8)
    opt = unstuck.create_optimizer(model, "momentum", momentum=0.7)
    assert opt.param_groups[0]["momentum"] == 0.7
    # the text's weight decay is the decay group's when weight_decay is not given
    opt = unstuck.create_optimizer(model, "adamw(weight_decay=0.2)")
    assert [g["weight_decay"] for g in opt.param_groups] == [0.2, 0.0]
    opt = unstuck.create_optimizer(model, "adamw(weight_decay=0.2)", weight_decay=0.3)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.3, 0.0]
    # tuples in the text
    opt = unstuck.create_optimizer(model, "ranger(betas=(0.9, 0.99), k=5)", lr=2e-3)
    assert opt.param_groups[0]["betas"] == (0.9, 0.99) and opt.param_groups[0]["lr"] == 2e-3


def test_torch_names_and_classes():
    model = make_net()
    opt = unstuck.create_optimizer(model, "torch.AdamW(lr=1e-3)", weight_decay=0.1)
    assert type(opt) is torch.optim.AdamW
    assert [g["weight_decay"] for g in opt.param_groups] == [0.1, 0.0]
    opt = unstuck.create_optimizer(model, torch.optim.SGD, lr=0.1, momentum=0.9,
                                   weight_decay=1e-4)
    assert type(opt) is torch.optim.SGD
    assert group_names(model, opt) == [(DECAY, 1e-4), (NO_DECAY, 0.0)]
    assert opt.param_groups[1]["momentum"] == 0.9
    opt = unstuck.create_optimizer(model, unstuck.Ranger, lr=1e-3)
    assert type(opt) is unstuck.Ranger and len(opt.param_groups) == 1  # Ranger's wd is 0


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda m: unstuck.create_optimizer(m, "rangr(lr=1e-3)"), ValueError,
         r"spec: unknown optimizer 'rangr' \(did you mean 'ranger'\?\)"),
        (lambda m: unstuck.create_optimizer(m, "sgd(momentun=0.9)"), ValueError,
         r"unknown option 'momentun' of sgd \(did you mean 'momentum'\?\)"),
        (lambda m: unstuck.create_optimizer(m, "sgd", momentun=0.9), ValueError,
         r"^momentun=0.9: unknown option 'momentun' of sgd \(did you mean 'momentum'\?\)"),
        (lambda m: unstuck.create_optimizer(m, torch.optim.SGD, momentun=0.9), ValueError,
         r"^momentun=0.9: unknown option 'momentun' of SGD \(did you mean 'momentum'\?\)"),
        (lambda m: unstuck.create_optimizer(m, "adamw", weight_decay=-0.1), ValueError,
         r"^weight_decay must be >= 0 and finite, got -0.1$"),
        (lambda m: unstuck.create_optimizer(m, "adamw", weight_decay=float("nan")), ValueError,
         r"^weight_decay must be >= 0 and finite, got nan$"),
        (lambda m: unstuck.create_optimizer(m, "torch.lbfgs", weight_decay=0.1), ValueError,
         r"^weight_decay=0.1: torch.lbfgs takes no weight_decay argument"),
        (lambda m: unstuck.create_optimizer(m, "adamw", lr=-1.0), ValueError, r"lr.*-1"),
        (lambda m: unstuck.create_optimizer(m, "sgd, adam"), ValueError, r"one optimizer"),
        (lambda m: unstuck.create_optimizer(m, "sgd", no_decay=("bias", "")), ValueError,
         r"^no_decay\[1\] must be a non-empty string, got ''$"),
        (lambda m: unstuck.create_optimizer(m.parameters(), "sgd"), TypeError,
         r"model_or_named_params\[0\] must be a \(name, tensor\) pair.*named_parameters"),
        (lambda m: unstuck.create_optimizer(m, 3), TypeError, r"^spec must be"),
    ],
)
def test_errors_name_the_argument_and_value(call, error, message):
    with pytest.raises(error, match=message):
        call(make_net())


def test_error_without_trainable_parameters():
    model = make_net().requires_grad_(False)
    with pytest.raises(ValueError, match=r"^model_or_named_params has no trainable parameters "
                                         r"\(13 parameters, none with requires_grad=True\)$"):
        unstuck.create_optimizer(model, "adamw")


def _lrs(optimizer, scheduler, steps):
    out = []
    for _ in range(steps):
        out.append(scheduler.get_last_lr())
        optimizer.step()
        scheduler.step()
    return out


def test_create_scheduler_follows_the_pure_schedule():
    model = make_net()
    opt = unstuck.create_optimizer(model, "adamw(lr=0.1)", weight_decay=0.1)
    text = "warmup(cosine(20), 5)"
    sched = unstuck.create_scheduler(opt, text)
    assert isinstance(sched, Scheduler)
    assert isinstance(sched, torch.optim.lr_scheduler.LRScheduler)
    pure = warmup(cosine(total=20), steps=5)
    assert parse(text) == pure
    got = _lrs(opt, sched, 30)
    assert got == [[0.1 * pure(t)] * 2 for t in range(30)]
    assert got[5] == [0.1, 0.1] and got[15][0] == pytest.approx(0.05)
    assert [g["lr"] for g in opt.param_groups] == [0.1 * pure(30)] * 2


def test_create_scheduler_with_a_callable_and_a_schedule():
    opt = unstuck.SGD([torch.zeros(2, requires_grad=True)], lr=0.2)
    sched = unstuck.create_scheduler(opt, lambda t: 0.5**t)
    assert _lrs(opt, sched, 4) == [[0.2], [0.1], [0.05], [0.025]]
    opt = unstuck.SGD([torch.zeros(2, requires_grad=True)], lr=0.2)
    sched = unstuck.create_scheduler(opt, cosine(total=4))
    assert [lr for [lr] in _lrs(opt, sched, 5)] == [0.2 * cosine(total=4)(t) for t in range(5)]


def test_bare_names_take_total_and_warmup_steps():
    opt = unstuck.SGD([torch.zeros(2, requires_grad=True)], lr=1.0)
    sched = unstuck.create_scheduler(opt, "cosine", total_steps=100, warmup_steps=10)
    assert sched.schedules[0] == warmup(cosine(total=90), steps=10)
    sched = unstuck.create_scheduler(opt, "cosine", total_steps=100)
    assert sched.schedules[0] == cosine(total=100)
    sched = unstuck.create_scheduler(opt, "linear_with_warmup", total_steps=100, warmup_steps=10)
    assert sched.schedules[0] == linear_with_warmup(warmup=10, total=100)
    sched = unstuck.create_scheduler(opt, "constant", warmup_steps=3)
    assert sched.schedules[0] == parse("warmup(constant(), 3)")


@pytest.mark.parametrize(
    ("spec", "kwargs", "message"),
    [
        ("cosin(10)", {}, r"spec: unknown schedule 'cosin' \(did you mean 'cosine'\?\)"),
        ("cosin", {"total_steps": 10}, r"spec: unknown schedule 'cosin' \(did you mean"),
        ("cosine(10", {}, r"unbalanced"),
        ("cosine", {}, r"^spec 'cosine' needs total_steps=\.\.\."),
        ("cosine(10)", {"total_steps": 10}, r"^total_steps=10: spec 'cosine\(10\)' gives its own"),
        ("exponential", {"total_steps": 10}, r"^total_steps=10: schedule 'exponential' has no"),
        ("cosine", {"total_steps": 10, "warmup_steps": 10}, r"total_steps must be > warmup"),
        ("cosine", {"total_steps": 0}, r"^total_steps must be an int >= 1, got 0$"),
        ("cosine", {"total_steps": 10, "warmup_steps": -1}, r"^warmup_steps must be an int >= 0"),
    ],
)
def test_create_scheduler_errors(spec, kwargs, message):
    opt = unstuck.SGD([torch.zeros(2, requires_grad=True)], lr=1.0)
    with pytest.raises(ValueError, match=message):
        unstuck.create_scheduler(opt, spec, **kwargs)


def test_lightning_like_configure_optimizers():
    class LitModel(nn.Module):  # what a LightningModule's method returns; Lightning not needed
        def __init__(self):
            super().__init__()
            self.net = make_net()

        def configure_optimizers(self):
            optimizer = unstuck.create_optimizer(self, "ranger(lr=1e-3)", weight_decay=0.01)
            scheduler = unstuck.create_scheduler(optimizer, "warmup(cosine(100), 10)")
            return {"optimizer": optimizer,
                    "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    lit = LitModel()
    config = lit.configure_optimizers()
    optimizer, scheduler = config["optimizer"], config["lr_scheduler"]["scheduler"]
    assert scheduler.optimizer is optimizer
    assert [len(g["params"]) for g in optimizer.param_groups] == [len(DECAY), len(NO_DECAY)]
    _train(lit.net, optimizer, steps=1)
    scheduler.step()  # "interval": "step": once per optimizer step, as the trainer does
    assert scheduler.get_last_lr() == pytest.approx([1e-4, 1e-4])
    state = copy.deepcopy(optimizer.state_dict())
    again = lit.configure_optimizers()["optimizer"]
    again.load_state_dict(state)  # a checkpoint restores into a freshly configured optimizer


def test_import_unstuck_does_not_import_the_lab_or_schedules():
    code = ("import sys, unstuck; "
            "print(sorted(m for m in sys.modules if m.startswith(('unstuck.lab', "
            "'unstuck.schedules', 'unstuck.textform'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_docstring_examples_run():
    result = doctest.testmod(unstuck.factory,
                             optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
