"""Pure schedules: each against its closed form, against torch's scheduler run step by step,
against Hugging Face's formulas (written here), and on bad input."""

from __future__ import annotations

import math
import pickle
import warnings

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch.optim import lr_scheduler as L

from unstuck.schedules import (
    SCHEDULES,
    Schedule,
    constant,
    constant_with_warmup,
    cosine,
    cosine_restarts,
    cosine_with_warmup,
    exponential,
    inverse_sqrt,
    inverse_time,
    join,
    linear,
    linear_with_warmup,
    multistep,
    noam,
    one_cycle,
    polynomial,
    scale,
    step_decay,
    warmup,
    warmup_stable_decay,
)

STEPS = 3000
BASE = 0.1
RTOL = 1e-12  # the bound


def torch_lrs(make, steps: int = STEPS, base: float = BASE) -> list[float]:
    """``group["lr"]`` before each of ``steps`` optimizer steps under torch's scheduler."""
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=base)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scheduler = make(opt)
        lrs = []
        for _ in range(steps):
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            scheduler.step()
    return lrs


def worst_relative(schedule: Schedule, reference: list[float], base: float = BASE) -> float:
    """The largest ``|ours - reference| / |reference|``; where the reference is 0, ours must be."""
    worst = 0.0
    for t, ref in enumerate(reference):
        ours = schedule(t) * base
        if ref == 0.0:
            assert ours == 0.0, (t, ours)
        else:
            worst = max(worst, abs(ours - ref) / abs(ref))
    return worst


# --------------------------------------------------------------------------------------------
# torch parity, step by step (the recursive, "chainable" form torch uses in training)

TORCH_CASES = {
    "StepLR": (step_decay(step_size=30, gamma=0.5), lambda o: L.StepLR(o, 30, gamma=0.5)),
    "StepLR-default": (step_decay(step_size=700), lambda o: L.StepLR(o, 700)),
    "MultiStepLR": (
        multistep(milestones=[10, 100, 100, 2000], gamma=0.3),
        lambda o: L.MultiStepLR(o, [10, 100, 100, 2000], gamma=0.3),
    ),
    "ExponentialLR": (exponential(gamma=0.999), lambda o: L.ExponentialLR(o, gamma=0.999)),
    "CosineAnnealingLR": (
        cosine(total=STEPS - 1, final=0.01),
        lambda o: L.CosineAnnealingLR(o, T_max=STEPS - 1, eta_min=0.01 * BASE),
    ),
    "CosineAnnealingLR-to-0": (
        cosine(total=STEPS - 1), lambda o: L.CosineAnnealingLR(o, T_max=STEPS - 1)
    ),
    "CosineAnnealingWarmRestarts": (
        cosine_restarts(t0=70), lambda o: L.CosineAnnealingWarmRestarts(o, T_0=70)
    ),
    "CosineAnnealingWarmRestarts-mult": (
        cosine_restarts(t0=100, t_mult=2, final=0.05),
        lambda o: L.CosineAnnealingWarmRestarts(o, T_0=100, T_mult=2, eta_min=0.05 * BASE),
    ),
    "LinearLR-up": (
        linear(total=STEPS - 1, start=0.25, end=1.0),
        lambda o: L.LinearLR(o, start_factor=0.25, end_factor=1.0, total_iters=STEPS - 1),
    ),
    "LinearLR-down": (
        linear(total=1000, start=1.0, end=0.1),
        lambda o: L.LinearLR(o, start_factor=1.0, end_factor=0.1, total_iters=1000),
    ),
    "PolynomialLR": (
        polynomial(total=STEPS - 1, power=2.0),
        lambda o: L.PolynomialLR(o, total_iters=STEPS - 1, power=2.0),
    ),
    "PolynomialLR-past-end": (
        polynomial(total=1000), lambda o: L.PolynomialLR(o, total_iters=1000)
    ),
    "OneCycleLR": (
        one_cycle(total=STEPS),
        lambda o: L.OneCycleLR(o, max_lr=BASE, total_steps=STEPS, cycle_momentum=False),
    ),
    "OneCycleLR-args": (
        one_cycle(total=STEPS, pct_start=0.25, div_factor=10.0, final_div_factor=100.0),
        lambda o: L.OneCycleLR(
            o, max_lr=BASE, total_steps=STEPS, pct_start=0.25, div_factor=10.0,
            final_div_factor=100.0, cycle_momentum=False,
        ),
    ),
}


@pytest.mark.parametrize("name", list(TORCH_CASES))
def test_matches_torch_scheduler_step_by_step(name):
    schedule, make = TORCH_CASES[name]
    assert worst_relative(schedule, torch_lrs(make)) <= RTOL


def test_one_cycle_phase_boundaries_match_torch():
    # small totals where pct_start * total - 1 is fractional
    for total, pct in [(10, 0.3), (7, 0.5), (13, 0.2), (100, 0.95)]:
        ref = torch_lrs(
            lambda o, total=total, pct=pct: L.OneCycleLR(
                o, max_lr=BASE, total_steps=total, pct_start=pct, cycle_momentum=False
            ),
            steps=total,
        )
        assert worst_relative(one_cycle(total=total, pct_start=pct), ref) <= RTOL


# --------------------------------------------------------------------------------------------
# closed forms


def test_closed_forms():
    for t in range(0, 500, 7):
        assert step_decay(step_size=30, gamma=0.5)(t) == 0.5 ** (t // 30)
        assert multistep(milestones=[50, 200])(t) == 0.1 ** ((t >= 50) + (t >= 200))
        assert exponential(gamma=0.99, every=10)(t) == pytest.approx(0.99 ** (t / 10), rel=RTOL)
        assert exponential(gamma=0.99, every=10, staircase=True)(t) == 0.99 ** (t // 10)
        assert inverse_time(decay_rate=0.5, every=10)(t) == pytest.approx(
            1 / (1 + 0.5 * t / 10), rel=RTOL
        )
        assert inverse_time(decay_rate=0.5, every=10, staircase=True)(t) == 1 / (
            1 + 0.5 * (t // 10)
        )
        m = min(t, 300)
        assert polynomial(total=300, power=3.0, final=0.2)(t) == pytest.approx(
            0.2 + 0.8 * (1 - m / 300) ** 3, rel=RTOL, abs=1e-15
        )
        assert linear(total=300, start=0.5, end=2.0)(t) == pytest.approx(
            0.5 + 1.5 * m / 300, rel=RTOL
        )
        assert cosine(total=300, final=0.1)(t) == pytest.approx(
            0.1 + 0.9 * (1 + math.cos(math.pi * m / 300)) / 2, rel=RTOL
        )
        tc, period = t, 40
        while tc >= period:
            tc, period = tc - period, period * 3
        assert cosine_restarts(t0=40, t_mult=3)(t) == pytest.approx(
            (1 + math.cos(math.pi * tc / period)) / 2, rel=RTOL, abs=1e-15
        )
        assert constant()(t) == 1.0
        assert scale(cosine(total=300), factor=0.3)(t) == 0.3 * cosine(total=300)(t)


def test_inverse_time_is_the_lectures_formula():
    # lr = lr0 / (1 + decay_rate * epoch)
    s = inverse_time(decay_rate=1.0)
    assert [s(e) for e in range(4)] == [1.0, 0.5, 1 / 3, 0.25]


def test_noam_peak():
    s = noam(d_model=512, warmup=4000)
    values = [s(t) for t in range(8000)]
    peak = max(range(8000), key=values.__getitem__)
    assert peak == 3999
    assert values[peak] == pytest.approx(6.9877e-4, rel=1e-4)
    assert values[peak] == pytest.approx(512**-0.5 * 4000**-0.5, rel=RTOL)
    for t in (0, 100, 3998, 4000, 7000):
        n = t + 1
        assert s(t) == pytest.approx(512**-0.5 * min(n**-0.5, n * 4000**-1.5), rel=RTOL)


@pytest.mark.parametrize("shape", ["linear", "cosine", "sqrt"])
def test_warmup_stable_decay(shape):
    s = warmup_stable_decay(warmup=10, stable=20, decay=40, final=0.1, shape=shape)
    g = {
        "linear": lambda p: 1 - p,
        "cosine": lambda p: 0.5 * (1 + math.cos(math.pi * p)),
        "sqrt": lambda p: 1 - math.sqrt(p),
    }[shape]
    for t in range(100):
        if t < 10:
            expected = t / 10
        elif t < 30:
            expected = 1.0
        else:
            expected = 0.1 + 0.9 * g(min(1.0, (t - 30) / 40))
        assert s(t) == pytest.approx(expected, rel=RTOL, abs=1e-15)
    assert s(70) == s(10**6) == pytest.approx(0.1)


# --------------------------------------------------------------------------------------------
# Hugging Face's formulas (transformers/optimization.py), written out


def hf_linear(step, warmup, total):
    if step < warmup:
        return float(step) / float(max(1, warmup))
    return max(0.0, float(total - step) / float(max(1, total - warmup)))


def hf_cosine(step, warmup, total, num_cycles=0.5):
    if step < warmup:
        return float(step) / float(max(1, warmup))
    progress = float(step - warmup) / float(max(1, total - warmup))
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * float(num_cycles) * 2.0 * progress)))


def hf_constant(step, warmup):
    if step < warmup:
        return float(step) / float(max(1.0, warmup))
    return 1.0


def hf_inverse_sqrt(step, warmup, timescale=None):
    if timescale is None:
        timescale = warmup
    if step < warmup:
        return float(step) / float(max(1, warmup))
    shift = timescale - warmup
    return 1.0 / math.sqrt((step + shift) / timescale)


def assert_close(a: float, b: float) -> None:
    assert a == b or abs(a - b) <= RTOL * abs(b), (a, b)


@pytest.mark.parametrize("w,total", [(0, 1000), (1, 1000), (100, 2000), (500, 500)])
def test_hugging_face_linear_cosine(w, total):
    for t in range(total + 1):
        assert_close(linear_with_warmup(warmup=w, total=total)(t), hf_linear(t, w, total))
        assert_close(cosine_with_warmup(warmup=w, total=total)(t), hf_cosine(t, w, total))
        assert_close(
            cosine_with_warmup(warmup=w, total=total, num_cycles=2.0)(t),
            hf_cosine(t, w, total, 2.0),
        )


@pytest.mark.parametrize("w", [0, 1, 7, 400])
def test_hugging_face_constant(w):
    for t in range(STEPS):
        assert_close(constant_with_warmup(warmup=w)(t), hf_constant(t, w))
        assert_close(warmup(constant(), steps=w)(t), hf_constant(t, w))


@pytest.mark.parametrize("w,timescale", [(1, None), (400, None), (400, 100), (0, 50)])
def test_hugging_face_inverse_sqrt(w, timescale):
    s = inverse_sqrt(warmup=w, timescale=timescale)
    for t in range(STEPS):
        assert_close(s(t), hf_inverse_sqrt(t, w, timescale))
    if timescale is None:
        assert s(4 * w) == pytest.approx(0.5, rel=RTOL)  # 1/sqrt(step/warmup)


# --------------------------------------------------------------------------------------------
# combinators


def test_warmup_clock_starts_after_the_warmup():
    inner = cosine(total=100, final=0.2)
    s = warmup(inner, steps=10, start=0.1)
    for t in range(10):
        # linear from start (at step 0) to the inner schedule's first value (reached at step 10)
        assert s(t) == pytest.approx(0.1 + (inner(0) - 0.1) * t / 10, rel=RTOL)
    for t in range(10, 200):
        assert s(t) == inner(t - 10)
    assert s(10) == inner(0) == 1.0
    assert s(110) == s(10**9) == pytest.approx(0.2)  # holds the last value


def test_warmup_ramps_to_the_inner_first_value():
    s = warmup(scale(constant(), factor=0.5), steps=4)
    assert [s(t) for t in range(6)] == [0.0, 0.125, 0.25, 0.375, 0.5, 0.5]
    assert warmup(cosine(total=10), steps=0) (3) == cosine(total=10)(3)


def test_join_restarts_each_clock_at_its_boundary():
    a, b, c = constant(), linear(total=10), cosine(total=50)
    s = join([a, b, c], boundaries=[100, 120])
    for t in range(200):
        expected = a(t) if t < 100 else b(t - 100) if t < 120 else c(t - 120)
        assert s(t) == expected
    assert join([cosine(total=5)], boundaries=[])(3) == cosine(total=5)(3)


def test_holds_the_last_value_past_the_end():
    for s, end in [
        (polynomial(total=50, final=0.1), 50),
        (linear(total=50, start=0.2, end=0.7), 50),
        (cosine(total=50, final=0.3), 50),
        (one_cycle(total=50), 49),
        (warmup_stable_decay(warmup=5, stable=5, decay=5), 15),
        (linear_with_warmup(warmup=5, total=50), 50),
        (cosine_with_warmup(warmup=5, total=50, num_cycles=0.75), 50),
    ]:
        assert s(end + 1) == s(end + 1000) == s(end), s


def test_growth_saturates_at_inf():
    assert exponential(gamma=2.0)(10) == 1024.0
    assert exponential(gamma=2.0)(5000) == math.inf
    assert step_decay(step_size=1, gamma=10.0)(400) == math.inf


def test_fractional_steps():
    assert cosine(total=10)(5.0) == cosine(total=10)(5)
    assert cosine_restarts(t0=10)(12.5) == cosine_restarts(t0=10)(2.5)


# --------------------------------------------------------------------------------------------
# values: repr, equality, hashing, pickling


def test_repr_is_the_text_form():
    assert repr(warmup(cosine(total=10000), steps=500)) == "warmup(cosine(total=10000), steps=500)"
    assert repr(noam(512, 4000)) == "noam(d_model=512, warmup=4000)"
    assert repr(multistep([30, 80], gamma=0.5)) == "multistep(milestones=[30, 80], gamma=0.5)"
    assert repr(warmup_stable_decay(1, 2, 3, shape="sqrt")) == (
        'warmup_stable_decay(warmup=1, stable=2, decay=3, shape="sqrt")'
    )
    assert repr(join([constant(), cosine(9)], [10])) == (
        "join([constant(), cosine(total=9)], boundaries=[10])"
    )
    assert repr(exponential(0.5, staircase=True)) == "exponential(gamma=0.5, staircase=True)"


def test_equality_hash_pickle():
    a = warmup(cosine(total=100, final=0), steps=10)
    b = warmup(cosine(total=100.0, final=0.0), steps=10)
    assert a == b and hash(a) == hash(b)
    assert a != warmup(cosine(total=101), steps=10)
    assert cosine(total=5) != linear(total=5)
    assert pickle.loads(pickle.dumps(a)) == a
    assert multistep([1, 2]) == multistep((1, 2))
    with pytest.raises(dataclass_frozen_error()):
        a.steps = 3  # type: ignore[misc]


def dataclass_frozen_error():
    import dataclasses

    return dataclasses.FrozenInstanceError


def test_every_schedule_is_registered():
    import unstuck.schedules as package

    names = {
        "constant", "step_decay", "multistep", "exponential", "inverse_time", "polynomial",
        "linear", "cosine", "cosine_restarts", "noam", "one_cycle", "warmup_stable_decay",
        "warmup", "join", "scale", "linear_with_warmup", "cosine_with_warmup",
        "constant_with_warmup", "inverse_sqrt",
    }
    assert set(SCHEDULES) == names
    for name in names:
        assert getattr(package, name) is SCHEDULES[name]
        assert SCHEDULES[name].__doc__ and ".. math::" in SCHEDULES[name].__doc__ or name in {
            "constant", "scale"
        }


# --------------------------------------------------------------------------------------------
# bad input


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda: step_decay(step_size=10, gamma=-1), "gamma must be > 0, got -1"),
        (lambda: step_decay(step_size=10, gamma=0), "gamma must be > 0, got 0"),
        (lambda: step_decay(step_size=0), "step_size must be >= 1, got 0"),
        (lambda: exponential(gamma=0.0), "gamma must be > 0, got 0.0"),
        (lambda: exponential(gamma=math.inf), "gamma must be finite, got inf"),
        (lambda: exponential(gamma=math.nan), "gamma must be finite, got nan"),
        (lambda: multistep([-1, 3]), "milestones[0] must be >= 0, got -1"),
        (lambda: multistep([5, 3]), "milestones must be in increasing order, got [5, 3]"),
        (lambda: inverse_time(decay_rate=-0.1), "decay_rate must be >= 0, got -0.1"),
        (lambda: polynomial(total=-5), "total must be >= 1, got -5"),
        (lambda: polynomial(total=5, power=0), "power must be > 0, got 0"),
        (lambda: linear(total=5, end=-1.0), "end must be >= 0, got -1.0"),
        (lambda: cosine(total=0), "total must be >= 1, got 0"),
        (lambda: cosine(total=10, final=-0.5), "final must be >= 0, got -0.5"),
        (lambda: cosine_restarts(t0=0), "t0 must be >= 1, got 0"),
        (lambda: cosine_restarts(t0=5, t_mult=0), "t_mult must be >= 1, got 0"),
        (lambda: noam(d_model=512, warmup=0), "warmup must be >= 1, got 0"),
        (lambda: one_cycle(total=100, pct_start=1.0), "pct_start must be < 1, got 1.0"),
        (lambda: one_cycle(total=3, pct_start=0.3), "pct_start must be > 1/total"),
        (lambda: one_cycle(total=100, div_factor=0), "div_factor must be > 0, got 0"),
        (lambda: warmup_stable_decay(-1, 5, 5), "warmup must be >= 0, got -1"),
        (lambda: warmup_stable_decay(1, 5, 5, shape="cos"), "shape must be one of"),
        (lambda: warmup(cosine(total=10), steps=-3), "steps must be >= 0, got -3"),
        (lambda: warmup(cosine(total=10), steps=3, start=-1), "start must be >= 0, got -1"),
        (lambda: join([], []), "schedules must hold at least one schedule"),
        (lambda: join([constant(), constant()], []), "boundaries must hold one step fewer"),
        (lambda: join([constant()] * 3, [5, 5]), "boundaries must be strictly increasing"),
        (lambda: scale(constant(), factor=-2), "factor must be >= 0, got -2"),
        (lambda: linear_with_warmup(300, 200), "warmup must be <= total (200), got 300"),
        (lambda: cosine_with_warmup(300, 200), "warmup must be <= total (200), got 300"),
        (lambda: cosine_with_warmup(10, 200, num_cycles=0), "num_cycles must be > 0, got 0"),
        (lambda: constant_with_warmup(warmup=-1), "warmup must be >= 0, got -1"),
        (lambda: inverse_sqrt(warmup=0), "warmup must be >= 1 when timescale is not given"),
        (lambda: inverse_sqrt(warmup=5, timescale=0), "timescale must be >= 1, got 0"),
    ],
)
def test_bad_arguments_name_the_argument(make, message):
    with pytest.raises(ValueError) as info:
        make()
    assert message in str(info.value)


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda: cosine(total=10.5), "total must be an integer, got float 10.5"),
        (lambda: cosine(total="10"), "total must be an integer, got str '10'"),
        (lambda: exponential(gamma=0.5, staircase=1), "staircase must be True or False"),
        (lambda: warmup(lambda t: 1.0, steps=3), "schedule must be a Schedule"),
        (lambda: join([constant(), 3], [5]), "schedules[1] must be a Schedule"),
        (lambda: multistep(30), "milestones must be a list, got int 30"),
        (lambda: step_decay(10, gamma=True), "gamma must be a number, got bool True"),
    ],
)
def test_wrong_types_name_the_argument(make, message):
    with pytest.raises(TypeError) as info:
        make()
    assert message in str(info.value)


@given(st.sampled_from(sorted(SCHEDULES)), st.integers(max_value=-1))
def test_negative_step_is_an_error(name, step):
    examples = {s.__class__.__name__: s for s in EXAMPLES}
    with pytest.raises(ValueError, match=f"step must be >= 0 and finite, got {step}"):
        examples[name](step)


def test_step_type():
    with pytest.raises(TypeError, match="step must be an integer, got str"):
        constant()("3")
    with pytest.raises(ValueError, match="step must be >= 0 and finite, got nan"):
        constant()(math.nan)
    assert cosine(total=10)(torch.tensor(5)) == cosine(total=10)(5)  # __index__


EXAMPLES = [
    constant(), step_decay(10), multistep([5, 9]), exponential(0.9), inverse_time(0.1),
    polynomial(20), linear(20), cosine(20), cosine_restarts(5), noam(16, 4), one_cycle(20),
    warmup_stable_decay(2, 3, 4), warmup(cosine(10), 3), join([constant(), cosine(5)], [3]),
    scale(constant(), 0.5), linear_with_warmup(2, 20), cosine_with_warmup(2, 20),
    constant_with_warmup(2), inverse_sqrt(2),
]


def test_values_are_finite_and_non_negative():
    for s in EXAMPLES:
        for t in range(60):
            v = s(t)
            assert isinstance(v, float) and math.isfinite(v) and v >= 0.0, (s, t, v)


@pytest.mark.parametrize("module", ["base", "decay", "combinators", "huggingface", "parse"])
def test_docstring_examples_run(module: str) -> None:
    """Every ``>>>`` example in the schedule modules' docstrings gives the output it shows."""
    import doctest
    import importlib

    import unstuck.schedules

    mod = importlib.import_module(f"unstuck.schedules.{module}")
    result = doctest.testmod(
        mod, extraglobs=vars(unstuck.schedules), optionflags=doctest.ELLIPSIS, verbose=False
    )
    assert result.failed == 0
    assert result.attempted > 0 or module == "base"
