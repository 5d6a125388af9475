"""Scheduler (a pure schedule driving an optimizer) and ReduceLROnPlateau with warm-up: closed
forms, parity with torch's LambdaLR / ReduceLROnPlateau, exact resume, GradScaler, trainers."""

from __future__ import annotations

import io
import math
import warnings

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch.optim import lr_scheduler as torch_sched

import unstuck
from unstuck.schedules.scheduler import ReduceLROnPlateau, Scheduler

ORDER_WARNING = "Detected call of `lr_scheduler.step()` before `optimizer.step()`"


def halving(t: int) -> float:
    return 0.5 ** (t // 10)


def cosine(t: int, total: int = 200) -> float:
    return 0.5 * (1.0 + math.cos(math.pi * min(t, total) / total))


def warm_cosine(t: int) -> float:
    return (t + 1) / 20 if t < 20 else cosine(t - 20, 280)


def two_groups(lrs: tuple[float, float] = (0.1, 0.03)) -> list[dict]:
    gen = torch.Generator().manual_seed(0)
    return [
        {"params": [torch.nn.Parameter(torch.randn(3, generator=gen))], "lr": lrs[0]},
        {"params": [torch.nn.Parameter(torch.randn(2, generator=gen))], "lr": lrs[1]},
    ]


def quiet_steps(sched: torch_sched.LRScheduler, n: int) -> list[list[float]]:
    """Step a scheduler ``n`` times without optimizer steps (torch's order warning silenced);
    the lrs after each."""
    out = []
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*lr_scheduler.step.*")
        for _ in range(n):
            sched.step()
            out.append(list(sched.get_last_lr()))
    return out


def order_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if ORDER_WARNING in str(w.message)]


# --------------------------------------------------------------------------------- Scheduler


def test_group_lrs_are_base_lr_times_schedule_exactly() -> None:
    opt = torch.optim.SGD(two_groups((0.1, 0.03)))
    sched = Scheduler(opt, warm_cosine)
    assert [g["lr"] for g in opt.param_groups] == [0.1 * warm_cosine(0), 0.03 * warm_cosine(0)]
    for t in range(1, 301):
        (lrs,) = quiet_steps(sched, 1)
        expected = [0.1 * warm_cosine(t), 0.03 * warm_cosine(t)]
        assert lrs == expected
        assert [g["lr"] for g in opt.param_groups] == expected
        assert sched.last_epoch == t
    assert [g["initial_lr"] for g in opt.param_groups] == [0.1, 0.03]


def test_one_schedule_per_group() -> None:
    opt = torch.optim.SGD(two_groups((0.2, 0.05)))
    sched = Scheduler(opt, [halving, cosine])
    for t, lrs in enumerate(quiet_steps(sched, 50), start=1):
        assert lrs == [0.2 * halving(t), 0.05 * cosine(t)]


@pytest.mark.parametrize("schedule", [halving, cosine, warm_cosine], ids=lambda f: f.__name__)
def test_equals_torch_lambda_lr_bit_for_bit(schedule) -> None:
    ours_opt = torch.optim.SGD(two_groups((0.1, 0.03)))
    torch_opt = torch.optim.SGD(two_groups((0.1, 0.03)))
    ours = Scheduler(ours_opt, schedule)
    reference = torch_sched.LambdaLR(torch_opt, schedule)
    assert ours.get_last_lr() == reference.get_last_lr()
    assert quiet_steps(ours, 400) == quiet_steps(reference, 400)


def test_deprecated_epoch_argument_jumps_as_lambda_lr() -> None:
    ours = Scheduler(torch.optim.SGD(two_groups()), halving)
    reference = torch_sched.LambdaLR(torch.optim.SGD(two_groups()), halving)
    for sched in (ours, reference):
        with pytest.warns(UserWarning, match="epoch parameter"), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*lr_scheduler.step.*")
            sched.step(25)
    assert ours.last_epoch == reference.last_epoch == 25
    assert ours.get_last_lr() == reference.get_last_lr() == [0.1 * 0.25, 0.03 * 0.25]


def test_tensor_lr_is_updated_in_place() -> None:
    lr = torch.tensor(0.1, dtype=torch.float64)
    p = torch.nn.Parameter(torch.zeros(2))
    opt = torch.optim.Adam([p], lr=lr)
    sched = Scheduler(opt, halving)
    quiet_steps(sched, 10)
    assert opt.param_groups[0]["lr"] is lr
    assert lr.item() == 0.1 * 0.5
    assert sched.get_last_lr()[0] is not lr  # a copy, as torch's


def test_state_dict_holds_no_callable_and_resumes_exactly() -> None:
    opt = torch.optim.SGD(two_groups())
    sched = Scheduler(opt, lambda t: 0.97**t)
    quiet_steps(sched, 37)
    state = sched.state_dict()
    assert state["schedules"] == [repr(s) for s in sched.schedules]
    assert not any(callable(v) for v in state.values())
    buffer = io.BytesIO()
    torch.save({"opt": opt.state_dict(), "sched": state}, buffer)  # picklable: no lambdas
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=False)

    resumed_opt = torch.optim.SGD(two_groups())
    resumed = Scheduler(resumed_opt, lambda t: 0.97**t)
    resumed_opt.load_state_dict(saved["opt"])
    resumed.load_state_dict(saved["sched"])
    assert resumed.last_epoch == 37
    assert resumed.get_last_lr() == sched.get_last_lr()
    assert callable(resumed.schedules[0])
    assert quiet_steps(resumed, 100) == quiet_steps(sched, 100)


def test_no_order_warning_when_grad_scaler_skips_the_first_step() -> None:
    """An overflow on the first iteration makes GradScaler skip ``optimizer.step()``; torch's
    LambdaLR then warns about the call order, ours does not (and both agree on the lr)."""

    def first_iteration(make_scheduler) -> tuple[list[str], list[float], torch.Tensor]:
        p = torch.nn.Parameter(torch.ones(3))
        opt = torch.optim.SGD([p], lr=0.1)
        sched = make_scheduler(opt)
        scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            scaler.scale((p * float("inf")).sum()).backward()  # inf gradient
            scaler.step(opt)
            scaler.update()
            sched.step()
            opt.zero_grad()
        assert scaler.get_scale() == 2.0**15  # the step was skipped and the scale backed off
        return order_warnings(caught), sched.get_last_lr(), p.detach().clone()

    torch_warned, torch_lrs, torch_p = first_iteration(lambda o: torch_sched.LambdaLR(o, halving))
    our_warned, our_lrs, our_p = first_iteration(lambda o: Scheduler(o, halving))
    assert torch_warned, "torch's LambdaLR should warn here, or this test proves nothing"
    assert our_warned == []
    assert our_lrs == torch_lrs
    assert torch.equal(our_p, torch.ones(3)) and torch.equal(torch_p, torch.ones(3))


def test_grad_scaler_loop_runs_without_warnings() -> None:
    p = torch.nn.Parameter(torch.ones(4))
    opt = unstuck.Adam([p], lr=0.01)
    sched = Scheduler(opt, cosine)
    scaler = torch.amp.GradScaler("cpu")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for i in range(20):
            loss = ((p - 2.0) ** 2).sum() * (float("inf") if i in (0, 7) else 1.0)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            sched.step()
            opt.zero_grad()
    assert order_warnings(caught) == []
    assert sched.get_last_lr() == [0.01 * cosine(20)]
    assert (p.detach() > 1.0).all()


def test_overridden_optimizer_step_still_warns_as_torch() -> None:
    opt = torch.optim.SGD(two_groups())
    sched = Scheduler(opt, halving)
    opt.step = lambda closure=None: None  # replaced after the scheduler wrapped it
    with pytest.warns(UserWarning, match="overridden"):
        sched.step()


def quadratic_loop(opt: torch.optim.Optimizer, sched: Scheduler, params, steps: int) -> None:
    for _ in range(steps):
        opt.zero_grad()
        sum(((p - 2.0) ** 2).sum() for p in params).backward()
        opt.step()
        sched.step()


def test_drives_unstuck_adam() -> None:
    groups = two_groups((0.01, 0.002))
    opt = unstuck.Adam(groups)
    sched = Scheduler(opt, halving)
    params = [p for g in groups for p in g["params"]]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        quadratic_loop(opt, sched, params, 25)
    assert [g["lr"] for g in opt.param_groups] == [0.01 * halving(25), 0.002 * halving(25)]


def test_drives_the_inner_optimizer_of_lookahead() -> None:
    groups = two_groups((0.1, 0.05))
    inner = unstuck.SGD(groups)
    opt = unstuck.Lookahead(inner, k=3, alpha=0.5)
    sched = Scheduler(opt, halving)
    params = [p for g in groups for p in g["params"]]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        quadratic_loop(opt, sched, params, 21)
    expected = [0.1 * halving(21), 0.05 * halving(21)]
    assert [g["lr"] for g in inner.param_groups] == expected
    assert sched.get_last_lr() == expected


def test_rejects_bad_arguments() -> None:
    opt = torch.optim.SGD(two_groups())
    with pytest.raises(ValueError, match=r"schedule must be one callable or one per param group"):
        Scheduler(opt, [halving])
    with pytest.raises(TypeError, match=r"schedule\[1\] must be a callable"):
        Scheduler(opt, [halving, 0.5])
    with pytest.raises(TypeError, match="optimizer must be a torch.optim.Optimizer"):
        Scheduler([torch.zeros(1)], halving)
    with pytest.raises(KeyError, match="initial_lr"):  # torch's check for a resumed scheduler
        Scheduler(torch.optim.SGD(two_groups()), halving, last_epoch=5)
    sched = Scheduler(opt, halving)
    opt.add_param_group({"params": [torch.nn.Parameter(torch.zeros(1))], "lr": 0.1})
    with pytest.raises(ValueError, match="3 param groups but the scheduler was created for 2"):
        quiet_steps(sched, 1)


# ------------------------------------------------------- trainers: Lightning, Hugging Face


def test_meets_lightnings_scheduler_contract() -> None:
    """Lightning accepts an ``LRScheduler`` whose ``optimizer`` is the one it was given (and
    otherwise needs ``state_dict``, ``load_state_dict``, ``step``); a plateau scheduler must be
    a torch ``ReduceLROnPlateau`` so that Lightning passes it the monitored metric."""
    opt = unstuck.AdamW(two_groups())
    sched = Scheduler(opt, cosine)
    assert isinstance(sched, torch_sched.LRScheduler)
    assert sched.optimizer is opt
    for name in ("state_dict", "load_state_dict", "step", "get_last_lr"):
        assert callable(getattr(sched, name))
    plateau = ReduceLROnPlateau(opt, warmup_steps=3)
    assert isinstance(plateau, torch_sched.ReduceLROnPlateau)
    assert isinstance(plateau, torch_sched.LRScheduler)
    assert plateau.optimizer is opt


def hugging_face_loop(steps: int, save_at: int | None = None):
    """forward, backward, optimizer.step(), scheduler.step(), zero_grad, with a checkpoint
    (serialised, then loaded into fresh objects) at ``save_at``."""
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(64, 8, generator=gen)
    y = x @ torch.randn(8, 1, generator=gen) + 0.1 * torch.randn(64, 1, generator=gen)

    def build():
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
        opt = unstuck.AdamW(
            [
                {"params": model[0].parameters(), "lr": 3e-3},
                {"params": model[2].parameters(), "lr": 1e-3},
            ],
            weight_decay=0.01,
        )
        return model, opt, Scheduler(opt, warm_cosine)

    model, opt, sched = build()
    lrs = []
    for step in range(steps):
        if step == save_at:
            buffer = io.BytesIO()
            torch.save(
                {"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict()},
                buffer,
            )
            buffer.seek(0)
            checkpoint = torch.load(buffer, weights_only=False)
            model, opt, sched = build()  # scheduler created before the optimizer state loads
            model.load_state_dict(checkpoint["model"])
            opt.load_state_dict(checkpoint["opt"])
            sched.load_state_dict(checkpoint["sched"])
        i = (step * 16) % 64
        loss = torch.nn.functional.mse_loss(model(x[i : i + 16]), y[i : i + 16])
        loss.backward()
        opt.step()
        sched.step()
        opt.zero_grad()
        lrs.append(sched.get_last_lr())
    return lrs, [p.detach().clone() for p in model.parameters()]


def test_hugging_face_loop_resumes_bit_identically() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        straight_lrs, straight_params = hugging_face_loop(300)
        resumed_lrs, resumed_params = hugging_face_loop(300, save_at=150)
    assert resumed_lrs == straight_lrs
    assert straight_lrs[-1] == [3e-3 * warm_cosine(300), 1e-3 * warm_cosine(300)]
    assert all(torch.equal(a, b) for a, b in zip(resumed_params, straight_params))


# ---------------------------------------------------------------------- ReduceLROnPlateau

PLATEAU_SETTINGS = [
    dict(mode="min", threshold_mode="rel", patience=2, cooldown=0),
    dict(mode="min", threshold_mode="abs", patience=1, cooldown=2, threshold=0.05),
    dict(mode="max", threshold_mode="rel", patience=0, cooldown=1, threshold=0.01),
    dict(mode="max", threshold_mode="abs", patience=3, cooldown=0, threshold=0.2, factor=0.5),
]

# Improvements, plateaus (exact repeats and changes below the threshold), worsening, recovery.
METRICS = (
    [5.0, 4.0, 3.0, 3.0, 3.0, 3.0, 2.999, 3.1, 3.2, 2.0, 1.9, 1.95, 1.95, 1.95, 1.95, 1.95]
    + [1.0, 1.0, 1.0, 0.99, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 0.4, 0.4, 0.4, 0.4, 0.4]
    + [0.3 - 0.001 * i for i in range(20)]
    + [7.0] * 30
)


def plateau_pair(warmup_steps: int, warmup_start: float = 0.1, **kwargs):
    ours_opt = torch.optim.SGD(two_groups((0.1, 0.03)))
    torch_opt = torch.optim.SGD(two_groups((0.1, 0.03)))
    kwargs.setdefault("min_lr", [1e-3, 1e-4])
    ours = ReduceLROnPlateau(
        ours_opt, warmup_steps=warmup_steps, warmup_start=warmup_start, **kwargs
    )
    reference = torch_sched.ReduceLROnPlateau(torch_opt, **kwargs)
    return ours, reference


@pytest.mark.parametrize(
    "settings", PLATEAU_SETTINGS, ids=lambda s: f"{s['mode']}-{s['threshold_mode']}"
)
@pytest.mark.parametrize("sign", [1.0, -1.0], ids=["metrics", "negated"])
def test_without_warmup_equals_torch_exactly(settings, sign) -> None:
    ours, reference = plateau_pair(0, **settings)
    reductions = 0
    for metric in METRICS:
        ours.step(sign * metric)
        reference.step(sign * metric)
        assert ours.get_last_lr() == reference.get_last_lr()
        assert [g["lr"] for g in ours.optimizer.param_groups] == reference.get_last_lr()
        reductions += ours.get_last_lr() != [0.1, 0.03]
    assert reductions > 0, "the sequence should trigger at least one reduction"


@pytest.mark.parametrize(
    "settings", PLATEAU_SETTINGS, ids=lambda s: f"{s['mode']}-{s['threshold_mode']}"
)
def test_after_warmup_equals_torch_exactly(settings) -> None:
    """The warm-up metrics are ignored (wild values here), then every lr equals torch's fed the
    post-warm-up metrics."""
    warmup = 7
    ours, reference = plateau_pair(warmup, warmup_start=0.0, **settings)
    assert ours.get_last_lr() == [0.0, 0.0]
    for k, metric in enumerate([-1e9, 1e9, 0.0, 3.0, -5.0, 1e9, -1e9], start=1):
        ours.step(metric)
        m = k / warmup
        expected = [0.1, 0.03] if k == warmup else [0.1 * m, 0.03 * m]
        assert ours.get_last_lr() == expected
    assert ours.get_last_lr() == [0.1, 0.03]  # exactly the base lrs
    assert not ours.in_warmup
    for metric in METRICS:
        ours.step(metric)
        reference.step(metric)
        assert ours.get_last_lr() == reference.get_last_lr()
        assert (ours.best, ours.num_bad_epochs, ours.cooldown_counter) == (
            reference.best,
            reference.num_bad_epochs,
            reference.cooldown_counter,
        )


@given(
    metrics=st.lists(st.sampled_from([0.5, 1.0, 1.0001, 1.5, 2.0]), min_size=1, max_size=60),
    mode=st.sampled_from(["min", "max"]),
    threshold_mode=st.sampled_from(["rel", "abs"]),
    patience=st.integers(0, 4),
    cooldown=st.integers(0, 3),
    warmup=st.integers(0, 5),
)
def test_after_warmup_equals_torch_for_any_metrics(
    metrics, mode, threshold_mode, patience, cooldown, warmup
) -> None:
    settings = dict(mode=mode, threshold_mode=threshold_mode, patience=patience, cooldown=cooldown)
    ours, reference = plateau_pair(warmup, factor=0.5, **settings)
    for _ in range(warmup):
        ours.step(123.0)
    for metric in metrics:
        ours.step(metric)
        reference.step(metric)
        assert ours.get_last_lr() == reference.get_last_lr()


def test_warmup_formula_and_start() -> None:
    opt = torch.optim.SGD(two_groups((0.2, 0.02)))
    sched = ReduceLROnPlateau(opt, warmup_steps=4, warmup_start=0.25)
    assert sched.get_last_lr() == [0.2 * 0.25, 0.02 * 0.25]
    for k in range(1, 4):
        sched.step(1.0)
        m = 0.25 + 0.75 * k / 4
        assert [g["lr"] for g in opt.param_groups] == [0.2 * m, 0.02 * m]
    sched.step(1.0)
    assert sched.get_last_lr() == [0.2, 0.02]
    assert sched.last_epoch == 4
    assert sched.best == math.inf  # warm-up metrics never reached the plateau logic


def test_warmup_start_one_changes_nothing() -> None:
    opt = torch.optim.SGD(two_groups((0.2, 0.02)))
    sched = ReduceLROnPlateau(opt, warmup_steps=3, warmup_start=1.0)
    for _ in range(3):
        sched.step(0.0)
        assert sched.get_last_lr() == [0.2, 0.02]


@pytest.mark.parametrize("split", [2, 5, 20])  # mid-warm-up, right after it, on a plateau
def test_plateau_state_dict_resumes_exactly(split) -> None:
    def build():
        opt = torch.optim.SGD(two_groups())
        return opt, ReduceLROnPlateau(opt, patience=1, cooldown=1, warmup_steps=5, min_lr=1e-3)

    opt, sched = build()
    for metric in METRICS[:split]:
        sched.step(metric)
    state = sched.state_dict()
    assert state["warmup_calls"] == min(split, 5)
    buffer = io.BytesIO()
    torch.save({"opt": opt.state_dict(), "sched": state}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=False)
    resumed_opt, resumed = build()
    resumed_opt.load_state_dict(saved["opt"])
    resumed.load_state_dict(saved["sched"])
    for metric in METRICS[split:]:
        sched.step(metric)
        resumed.step(metric)
        assert resumed.get_last_lr() == sched.get_last_lr()


def test_plateau_drives_lookahead_inner_optimizer() -> None:
    inner = unstuck.SGD(two_groups((0.1, 0.05)))
    sched = ReduceLROnPlateau(unstuck.Lookahead(inner), factor=0.5, patience=0, warmup_steps=2)
    for metric in (9.0, 9.0, 1.0, 2.0):
        sched.step(metric)
    assert [g["lr"] for g in inner.param_groups] == [0.05, 0.025]


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (dict(factor=1.5), ValueError, "factor must be < 1, got 1.5"),
        (dict(factor=1.0), ValueError, "factor must be < 1, got 1.0"),
        (dict(factor=-0.1), ValueError, "factor must be >= 0, got -0.1"),
        (dict(mode="minimum"), ValueError, "mode must be 'min' or 'max', got 'minimum'"),
        (dict(threshold_mode="relative"), ValueError, "threshold_mode must be 'rel' or 'abs'"),
        (dict(patience=-1), ValueError, "patience must be >= 0 and finite, got -1"),
        (dict(cooldown=-2), ValueError, "cooldown must be >= 0 and finite, got -2"),
        (dict(threshold=-1e-4), ValueError, "threshold must be >= 0 and finite"),
        (dict(eps=float("nan")), ValueError, "eps must be a number, got nan"),
        (dict(min_lr=-1.0), ValueError, "min_lr must be >= 0, got -1.0"),
        (dict(min_lr=[0.0]), ValueError, "min_lr must be one number or one per param group"),
        (dict(min_lr=[0.0, -1e-3]), ValueError, r"min_lr\[1\] must be >= 0, got -0.001"),
        (dict(warmup_steps=-1), ValueError, "warmup_steps must be >= 0, got -1"),
        (dict(warmup_steps=2.5), TypeError, "warmup_steps must be an int, got 2.5"),
        (dict(warmup_start=1.5), ValueError, r"warmup_start must be in \[0, 1\], got 1.5"),
        (dict(factor="0.5"), TypeError, "factor must be a number, got str '0.5'"),
    ],
)
def test_plateau_rejects_bad_arguments(kwargs, error, message) -> None:
    with pytest.raises(error, match=message):
        ReduceLROnPlateau(torch.optim.SGD(two_groups()), **kwargs)
