"""Figures of a comparison: curves with seed bands and divergence marks, lr curves."""

from __future__ import annotations

import io
import math

import pytest

pytest.importorskip("matplotlib")

from unstuck.plots import compare_curves_figure, compare_lr_figure  # noqa: E402


def seed_run(scale: float, diverged: bool = False, epochs: int = 5) -> dict:
    xs = list(range(epochs + 1))
    if diverged:
        xs = xs[:3]
    return {
        "epochs": xs,
        "train_loss": [2.3 * scale / (1 + x) for x in xs],
        "val_loss": [2.4 * scale / (1 + x) for x in xs],
        "val_metric": [1 - 0.9 / (1 + x) for x in xs],
        "diverged": diverged,
    }


def png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def test_curves_figure_has_three_log_panels_bands_and_a_legend() -> None:
    runs = {"adam": [seed_run(1.0), seed_run(1.2)],
            "sgd(lr=1e6)": [seed_run(1.0), seed_run(1.0, diverged=True)]}
    figure = compare_curves_figure(runs, metric_name="accuracy", title="t")
    axes = figure.axes
    assert len(axes) == 3
    assert [ax.get_yscale() for ax in axes] == ["log", "log", "log"]  # 1 - accuracy: log
    assert "1 - validation accuracy" in axes[2].get_ylabel()
    assert len(axes[0].collections) == 2  # one min..max band per optimizer
    labels = [t.get_text() for t in figure.legends[0].get_texts()]
    assert labels == ["adam", "sgd(lr=1e6) (diverged 1/2)"]
    markers = [line for line in axes[0].get_lines() if line.get_marker() == "x"]
    assert len(markers) == 1 and list(markers[0].get_xdata()) == [2]
    assert len(png(figure)) > 10_000


def test_curves_figure_linear_metric_when_not_a_fraction() -> None:
    run = seed_run(1.0)
    run["val_metric"] = [10.0 * x for x in run["epochs"]]
    figure = compare_curves_figure({"adam": [run]}, metric_name="score")
    assert figure.axes[2].get_yscale() == "linear"
    assert figure.axes[2].get_ylabel() == "validation score"
    assert not figure.axes[0].collections  # one seed: no band


def test_curves_figure_skips_non_finite_values() -> None:
    run = seed_run(1.0)
    run["train_loss"][2] = math.nan
    figure = compare_curves_figure({"a": [run, seed_run(1.0)]})
    xs = list(figure.axes[0].get_lines()[0].get_xdata())
    assert xs == [0, 1, 2, 3, 4, 5]  # epoch 2 from the other seed


def test_lr_figure_one_curve_each_in_epochs() -> None:
    curves = {"adam": [1e-3 * min(1.0, t / 10) for t in range(100)],
              "sgd": [0.1 * min(1.0, t / 10) for t in range(100)]}
    figure = compare_lr_figure(curves, steps_per_epoch=20)
    ax = figure.axes[0]
    assert ax.get_yscale() == "log" and ax.get_xlabel() == "epoch"
    lines = ax.get_lines()
    assert len(lines) == 2 and lines[0].get_xdata()[-1] == pytest.approx(99 / 20)
    assert ax.get_ylim()[0] >= 1e-3 * 1e-3 * 0.99  # not stretched to the decayed tail
    assert len(png(figure)) > 5_000


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: compare_curves_figure({}), "runs"),
        (lambda: compare_curves_figure({"a": []}), "runs"),
        (lambda: compare_lr_figure({}), "curves"),
        (lambda: compare_lr_figure({"a": [0.1]}, steps_per_epoch=0), "steps_per_epoch"),
    ],
)
def test_figures_reject_empty_input(call, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()
