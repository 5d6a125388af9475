"""plots.schedule_figure: one labelled line per curve, labelled axes, log scale, warm-up shading."""

from __future__ import annotations

from pathlib import Path

import matplotlib  # a hard import on purpose: the test environment has matplotlib (Makefile)
import pytest
from matplotlib.figure import Figure

from unstuck.plots import WARMUP_GID, detect_warmup, schedule_figure

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def warmup_then_decay(peak: float, warmup: int, total: int) -> list[float]:
    """Linear warm-up to ``peak`` at step ``warmup``, then linear decay to 0 at ``total``."""
    rise = [peak * step / warmup for step in range(warmup + 1)]
    fall = [peak * (total - step) / (total - warmup) for step in range(warmup + 1, total)]
    return rise + fall


CURVES = {
    "warmup(linear, 10)": warmup_then_decay(1e-3, 10, 100),
    "constant": [5e-4] * 100,
}


def spans(figure: Figure) -> list[tuple[float, float]]:
    """The x ranges (in steps) of the shaded warm-up regions of the figure's axes."""
    (axes,) = figure.axes
    shaded = [patch for patch in axes.patches if patch.get_gid() == WARMUP_GID]
    return [(patch.get_x(), patch.get_x() + patch.get_width()) for patch in shaded]


def test_matplotlib_is_installed_for_the_tests() -> None:
    assert matplotlib.__version__


def test_one_line_per_curve_with_its_label() -> None:
    figure = schedule_figure(CURVES, base_lr=1e-3)
    assert isinstance(figure, Figure)
    (axes,) = figure.axes
    labels = [line.get_label() for line in axes.get_lines() if not line.get_label().startswith("_")]
    assert labels == list(CURVES)
    legend_texts = [text.get_text() for text in axes.get_legend().get_texts()]
    for label in CURVES:
        assert label in legend_texts


def test_lines_hold_the_data() -> None:
    figure = schedule_figure(CURVES, base_lr=1e-3)
    (axes,) = figure.axes
    line = next(line for line in axes.get_lines() if line.get_label() == "constant")
    assert list(line.get_xdata()) == list(range(100))
    assert list(line.get_ydata()) == CURVES["constant"]


def test_axes_labelled_grid_and_linear_by_default() -> None:
    figure = schedule_figure(CURVES, base_lr=1e-3)
    (axes,) = figure.axes
    assert axes.get_xlabel() == "optimizer step"
    assert axes.get_ylabel() == "learning rate"
    assert axes.get_yscale() == "linear"
    assert any(line.get_visible() for line in axes.yaxis.get_gridlines())
    assert "0.001" in axes.get_title()


def test_title_is_used_when_given() -> None:
    figure = schedule_figure(CURVES, base_lr=1e-3, title="my schedules")
    assert figure.axes[0].get_title() == "my schedules"


def test_log_scale_option() -> None:
    figure = schedule_figure(CURVES, base_lr=1e-3, log_scale=True)
    (axes,) = figure.axes
    assert axes.get_yscale() == "log"
    # the warm-up's lr of 0 at step 0 cannot be drawn on a log axis: it is left out (NaN)
    line = next(line for line in axes.get_lines() if line.get_label() == "warmup(linear, 10)")
    assert line.get_ydata()[0] != line.get_ydata()[0]


def test_warmup_detected_and_shaded_only_where_there_is_one() -> None:
    figure = schedule_figure(CURVES, base_lr=1e-3)
    assert spans(figure) == [(0, 10)]  # the constant schedule has no warm-up
    legend_texts = [text.get_text() for text in figure.axes[0].get_legend().get_texts()]
    assert any("warm-up" in text for text in legend_texts)


def test_explicit_warmup_steps_override_detection() -> None:
    warmup_steps = {"warmup(linear, 10)": 0, "constant": 30}
    figure = schedule_figure(CURVES, base_lr=1e-3, warmup_steps=warmup_steps)
    assert spans(figure) == [(0, 30)]


def test_no_warmup_no_shading() -> None:
    figure = schedule_figure({"constant": [1.0] * 10}, base_lr=1.0)
    assert spans(figure) == []
    legend_texts = [text.get_text() for text in figure.axes[0].get_legend().get_texts()]
    assert legend_texts == ["constant"]


@pytest.mark.parametrize(
    ("curve", "expected"),
    [
        ([0.0, 0.5, 1.0, 0.9, 0.8], 2),
        ([0.0, 0.5, 1.0, 1.0, 0.5], 2),  # warm-up then a flat stable phase
        ([1.0, 0.5, 0.25], 0),
        ([1.0, 1.0, 1.0], 0),
        ([0.1, 0.2, 0.3], 2),  # the whole curve rises
        ([1.0], 0),
        ([], 0),
    ],
)
def test_detect_warmup(curve: list[float], expected: int) -> None:
    assert detect_warmup(curve) == expected


def test_saves_a_png(tmp_path: Path) -> None:
    path = tmp_path / "schedules.png"
    schedule_figure(CURVES, base_lr=1e-3, log_scale=True).savefig(path)
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    assert len(data) > 1000


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"curves": {}}, "curves"),
        ({"curves": {"empty": []}}, "empty"),
        ({"curves": CURVES, "warmup_steps": {"constant": -1}}, "warmup_steps"),
    ],
)
def test_bad_input_names_the_argument(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        schedule_figure(base_lr=1.0, **kwargs)


def _monitored_history(model, opt, scheduler=None, steps: int = 5) -> list[dict]:
    """The Monitor's history of a few steps of cross-entropy training on random data."""
    import torch

    from unstuck.diagnose import Monitor

    x, y = torch.randn(16, 4), torch.randint(0, 3, (16,))
    with Monitor(model, opt) as monitor:
        for _ in range(steps):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x), y)
            loss.backward()
            monitor.observe(loss)
            opt.step()
            if scheduler is not None:
                scheduler.step()
        return monitor.history


@pytest.mark.parametrize("adam", [True, False])
def test_monitor_figure_from_a_real_history(adam: bool) -> None:
    import torch
    from matplotlib.collections import QuadMesh

    from unstuck.plots import monitor_figure

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    opt = (torch.optim.Adam if adam else torch.optim.SGD)(model.parameters(), lr=0.01)
    history = _monitored_history(model, opt)
    figure = monitor_figure(history)
    axes = [a for a in figure.axes if a.get_label() != "<colorbar>"]
    assert len(axes) == (3 if adam else 2)
    assert axes[0].get_ylabel() == "loss, gradient norm"
    assert axes[0].get_yscale() == "log"
    assert axes[1].get_ylabel() == "parameter tensor"
    assert [t.get_text() for t in axes[1].get_yticklabels()] == list(history[0]["layers"])
    assert any(isinstance(c, QuadMesh) for c in axes[1].collections)  # the heat-map
    assert axes[-1].get_xlabel() == "step"
    if adam:
        assert axes[2].get_ylabel() == "effective lr (lr / sigma)"
        assert axes[2].collections  # the min..max band


def test_monitor_figure_shows_the_schedule_when_the_learning_rate_changes() -> None:
    import torch

    from unstuck.plots import monitor_figure

    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: (step + 1) / 5)
    history = _monitored_history(model, opt, scheduler)
    axes = [a for a in monitor_figure(history).axes if a.get_label() != "<colorbar>"]
    assert len(axes) == 3 and axes[-1].get_ylabel() == "learning rate"
    assert list(axes[-1].lines[0].get_ydata()) == pytest.approx([0.02, 0.04, 0.06, 0.08, 0.1])


def test_monitor_figure_draws_a_history_with_infinite_ratios() -> None:
    import copy

    import torch

    from unstuck.plots import monitor_figure

    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    history = copy.deepcopy(_monitored_history(model, torch.optim.SGD(model.parameters(), lr=0.1)))
    name = next(iter(history[0]["layers"]))
    history[1]["layers"][name]["update_ratio"] = float("inf")  # an overflowed step
    history[2]["grad_norm"] = float("inf")
    figure = monitor_figure(history)  # inf once broke the colour scale (LogNorm(vmax=inf))
    heat = [a for a in figure.axes if a.get_ylabel() == "parameter tensor"][0]
    assert heat.collections[0].norm.vmax < float("inf")
