"""The text form: parse(repr(s)) == s, positional/keyword arguments, errors with a caret."""

from __future__ import annotations

import importlib
import inspect
import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import unstuck.schedules as F
from unstuck.schedules import (
    Schedule,
    ScheduleSyntaxError,
    constant,
    cosine,
    cosine_restarts,
    exponential,
    inverse_sqrt,
    join,
    multistep,
    noam,
    one_cycle,
    parse,
    scale,
    step_decay,
    warmup,
    warmup_stable_decay,
)

# --------------------------------------------------------------------------------------------
# random schedules

steps = st.integers(min_value=1, max_value=10**6)
small = st.integers(min_value=0, max_value=10**4)
ratio = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
positive = st.floats(min_value=1e-12, max_value=1e6, allow_nan=False, allow_infinity=False)
gamma = st.floats(min_value=1e-6, max_value=2.0, allow_nan=False)


@st.composite
def warmup_total(draw):
    total = draw(steps)
    return draw(st.integers(min_value=0, max_value=total)), total


@st.composite
def one_cycles(draw):
    total = draw(st.integers(min_value=2, max_value=10**6))
    pct = draw(st.floats(min_value=1.0 / total, max_value=0.999, exclude_min=True))
    if not pct * total > 1:
        pct = 0.5 if 0.5 * total > 1 else 0.9
    return one_cycle(total, pct, draw(positive), draw(positive))


leaves = st.one_of(
    st.just(constant()),
    st.builds(step_decay, steps, gamma),
    st.builds(multistep, st.lists(small, max_size=5).map(sorted), gamma),
    st.builds(exponential, gamma, st.integers(1, 100), st.booleans()),
    st.builds(F.inverse_time, st.floats(0.0, 10.0), st.integers(1, 100), st.booleans()),
    st.builds(F.polynomial, steps, positive, ratio),
    st.builds(F.linear, steps, ratio, ratio),
    st.builds(cosine, steps, ratio),
    st.builds(cosine_restarts, steps, st.integers(1, 4), ratio),
    st.builds(noam, st.integers(1, 4096), steps),
    one_cycles(),
    st.builds(warmup_stable_decay, small, small, small, ratio,
              st.sampled_from(["linear", "cosine", "sqrt"])),
    warmup_total().map(lambda wt: F.linear_with_warmup(*wt)),
    st.builds(lambda wt, c: F.cosine_with_warmup(*wt, num_cycles=c), warmup_total(), positive),
    st.builds(F.constant_with_warmup, small),
    st.builds(inverse_sqrt, steps, st.one_of(st.none(), steps)),
)


def _joins(children):
    @st.composite
    def build(draw):
        schedules = draw(st.lists(children, min_size=1, max_size=3))
        bounds = draw(st.lists(steps, min_size=len(schedules) - 1,
                               max_size=len(schedules) - 1, unique=True))
        return join(schedules, sorted(bounds))

    return build()


schedules = st.recursive(
    leaves,
    lambda children: st.one_of(
        st.builds(warmup, children, small, ratio),
        st.builds(scale, children, positive),
        _joins(children),
    ),
    max_leaves=6,
)


@settings(max_examples=300)
@given(schedules)
def test_round_trip(schedule):
    text = repr(schedule)
    again = parse(text)
    assert again == schedule
    assert repr(again) == text
    assert hash(again) == hash(schedule)
    assert pickle.loads(pickle.dumps(schedule)) == schedule
    for t in (0, 1, 17, 1000, 123457):
        assert again(t) == schedule(t)


EXAMPLES = [
    constant(), step_decay(10), multistep([5, 9]), exponential(0.9), F.inverse_time(0.1),
    F.polynomial(20), F.linear(20), cosine(20), cosine_restarts(5), noam(16, 4), one_cycle(20),
    warmup_stable_decay(2, 3, 4), warmup(cosine(10), 3), join([constant(), cosine(5)], [3]),
    scale(constant(), 0.5), F.linear_with_warmup(2, 20), F.cosine_with_warmup(2, 20),
    F.constant_with_warmup(2), inverse_sqrt(2),
]


def text_value(value) -> str:
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(map(text_value, value)) + "]"
    return f"'{value}'" if isinstance(value, str) else repr(value)


def test_every_schedule_by_position_and_by_name():
    assert {type(s).__name__ for s in EXAMPLES} == set(F.SCHEDULES)
    for s in EXAMPLES:
        name = type(s).__name__
        params = inspect.signature(type(s)).parameters  # the schedule's own argument names
        values = [getattr(s, p) for p in params]
        by_position = f"{name}({', '.join(map(text_value, values))})"
        by_name = f"{name}({', '.join(f'{p}={text_value(v)}' for p, v in zip(params, values))})"
        assert parse(by_position) == s, by_position
        assert parse(by_name) == s, by_name


# --------------------------------------------------------------------------------------------
# the text form


@pytest.mark.parametrize(
    "text,expected",
    [
        ("warmup(cosine(10000), 500)", warmup(cosine(total=10000), steps=500)),
        ("noam(d_model=512, warmup=4000)", noam(512, 4000)),
        ("noam(512, warmup=4000)", noam(512, 4000)),
        (
            "join([warmup(constant(), 100), cosine(900)], [100])",
            join([warmup(constant(), steps=100), cosine(total=900)], boundaries=[100]),
        ),
        ("multistep(milestones=[30, 80], gamma=0.5)", multistep([30, 80], gamma=0.5)),
        ("multistep([],)", multistep([])),
        ("multistep([30, 80,], 1e-1)", multistep([30, 80], gamma=0.1)),
        ("step_decay(1e3, gamma=.5)", step_decay(1000, gamma=0.5)),
        ("scale(constant(), 1e-3)", scale(constant(), factor=0.001)),
        ("scale(constant(), 2.5E+2)", scale(constant(), factor=250.0)),
        ("exponential(0.9, staircase=True)", exponential(0.9, staircase=True)),
        (
            "warmup_stable_decay(10, 80, 10, shape='cosine')",
            warmup_stable_decay(10, 80, 10, shape="cosine"),
        ),
        (
            'warmup_stable_decay(10, 80, 10, 0, "sqrt")',
            warmup_stable_decay(10, 80, 10, 0.0, "sqrt"),
        ),
        ("inverse_sqrt(400, timescale=None)", inverse_sqrt(400)),
        ("  cosine ( total = 10 , final = 0.5 )  ", cosine(10, 0.5)),
        ("one_cycle(1000, final_div_factor=1e5)", one_cycle(1000, final_div_factor=1e5)),
    ],
)
def test_parse(text, expected):
    assert parse(text) == expected


def caret(text: str) -> tuple[str, int, int]:
    """The message's first line, and where its caret line points (start, width)."""
    with pytest.raises(ScheduleSyntaxError) as info:
        parse(text)
    err = info.value
    assert isinstance(err, ValueError)
    lines = str(err).split("\n")
    assert lines[1] == "  " + text
    marks = lines[2][2:]
    start = len(marks) - len(marks.lstrip(" "))
    width = len(marks.strip())
    assert set(marks.strip()) == {"^"}
    assert (start, width) == (err.position, err.length)
    return lines[0], start, width


@pytest.mark.parametrize(
    "text,message,at,width",
    [
        ("warmup(cosin(100), 5)", "unknown schedule 'cosin' (did you mean 'cosine'?)", 7, 5),
        ("cosine(totl=3)", "unknown argument 'totl' of cosine(total, final) (did you mean "
                           "'total'?)", 7, 4),
        ("cosine(1, 2, 3)", "cosine(total, final) takes at most 2 arguments", 13, 1),
        ("cosine(total=1, total=2)", "argument 'total' of cosine(total, final) given twice",
         16, 5),
        ("cosine(final=0.1, 5)", "positional argument after keyword arguments", 18, 1),
        ("cosine()", "cosine(total, final) is missing the argument 'total'", 7, 1),
        ("noam(512)", "is missing the argument 'warmup'", 8, 1),
        ("cosine(100", "unbalanced '(': no ')' closes it", 6, 1),
        ("warmup(cosine(100, 5)", "unbalanced '(': no ')' closes it", 6, 1),
        ("multistep([1, 2)", "expected ',' between list items, got ')'", 15, 1),
        ("multistep([1, 2", "unbalanced '[': no ']' closes it", 10, 1),
        ("cosine(100))", "unbalanced ')': no '(' to close", 11, 1),
        ("cosine(100) junk", "unexpected 'junk' after the end of the schedule", 12, 4),
        ("cosine(100 200)", "expected ',' between the arguments of cosine(...), got '200'",
         11, 3),
        ("cosine", "expected '(' after 'cosine', got the end of the text", 6, 1),
        ("", "empty schedule text", 0, 1),
        ("0.5", "expected a schedule", 0, 3),
        ("[cosine(5)]", "expected a schedule", 0, 1),
        ("cosine(total=)", "expected a value, got ')'", 13, 1),
        ("cosine(10 * 2)", "unexpected character '*'", 10, 1),
        ("warmup_stable_decay(1, 2, 3, shape=\"cos)", "unterminated string", 35, 1),
        ("step_decay(10, gamma=-1)", "step_decay: gamma must be > 0, got -1", 21, 2),
        ("multistep([3, -1])", "multistep: milestones[1] must be >= 0, got -1", 10, 1),
        ("cosine(total=10.5)", "cosine: total must be an integer, got float 10.5", 13, 4),
        ("linear_with_warmup(300, 200)", "warmup must be <= total (200), got 300", 19, 3),
        ("warmup(5, 3)", "warmup: schedule must be a Schedule, got int 5", 7, 1),
        ("__import__('os')", "unknown schedule '__import__'", 0, 10),
        ("cosine(total=__import__)", "unknown schedule '__import__'", 13, 10),
    ],
)
def test_errors_point_at_the_bad_token(text, message, at, width):
    first, start, length = caret(text)
    assert message in first, first
    assert (start, length) == (at, width)


def test_unknown_name_lists_the_known_names():
    first, _, _ = caret("sgdr(10)")
    assert "known: constant, constant_with_warmup, cosine" in first


def test_no_eval():
    # the package's `parse` is the function; the module is unstuck.schedules.parse in sys.modules
    source = inspect.getsource(importlib.import_module("unstuck.schedules.parse"))
    assert "def parse(" in source and "class _Parser" in source
    for forbidden in ("eval(", "exec(", "literal_eval", "__import__", "getattr(", "importlib"):
        assert forbidden not in source


def test_deep_nesting_is_a_syntax_error():
    with pytest.raises(ScheduleSyntaxError, match="nested too deeply"):
        parse("scale(" * 5000 + "constant()" + ", 1)" * 5000)


def test_parse_needs_a_string():
    with pytest.raises(TypeError, match="text must be a str"):
        parse(cosine(10))  # type: ignore[arg-type]


def test_error_attributes():
    with pytest.raises(ScheduleSyntaxError) as info:
        parse("cosine(totl=3)")
    assert info.value.text == "cosine(totl=3)"
    assert (info.value.position, info.value.length) == (7, 4)
    assert "totl" in info.value.reason


def test_parsed_schedule_is_a_schedule():
    assert isinstance(parse("constant()"), Schedule)
