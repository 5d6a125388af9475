"""warmup_stable_decay against Hugging Face's get_wsd_schedule, step for step, zeros included.

The reference is the learning rate that ``transformers``' own ``LambdaLR`` sets on an optimizer
(``get_last_lr()`` after each ``scheduler.step()``), not a transcription of its formula.
"""

from __future__ import annotations

import itertools
import warnings

import pytest
import torch

from unstuck.schedules import warmup_stable_decay

transformers = pytest.importorskip("transformers")

SHAPES = {"linear": "linear", "cosine": "cosine", "sqrt": "1-sqrt"}  # unstuck -> Hugging Face
GRID = list(itertools.product([0, 1, 3], [0, 1, 4], [0, 1, 2, 5]))  # (warmup, stable, decay)


def hf_lrs(warmup: int, stable: int, decay: int, *, shape: str, final: float,
           steps: int) -> list[float]:
    """The lr of ``get_wsd_schedule`` at steps 0 .. steps-1 (base lr 1.0)."""
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=1.0)
    scheduler = transformers.get_wsd_schedule(
        optimizer, num_warmup_steps=warmup, num_decay_steps=decay, num_stable_steps=stable,
        warmup_type="linear", decay_type=SHAPES[shape], min_lr_ratio=final,
    )
    lrs = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's "scheduler.step() before optimizer.step()"
        for _ in range(steps):
            lrs.append(scheduler.get_last_lr()[0])
            optimizer.step()
            scheduler.step()
    return lrs


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize(("warmup", "stable", "decay"), GRID)
def test_equals_hugging_face_at_every_step(warmup, stable, decay, shape):
    steps = warmup + stable + decay + 3  # past the end, where both hold the final value
    expected = hf_lrs(warmup, stable, decay, shape=shape, final=0.0, steps=steps)
    s = warmup_stable_decay(warmup, stable, decay, shape=shape)
    ours = [s(t) for t in range(steps)]
    assert ours == pytest.approx(expected, rel=1e-12, abs=1e-15), (warmup, stable, decay, shape)


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize(("warmup", "stable", "decay"), GRID)
def test_equals_hugging_face_after_warmup_with_a_final_value(warmup, stable, decay, shape):
    # Hugging Face's warm-up starts at min_lr_ratio, unstuck's at 0 (documented): the rest agrees.
    steps = warmup + stable + decay + 3
    expected = hf_lrs(warmup, stable, decay, shape=shape, final=0.1, steps=steps)
    s = warmup_stable_decay(warmup, stable, decay, final=0.1, shape=shape)
    ours = [s(t) for t in range(steps)]
    assert ours[warmup:] == pytest.approx(expected[warmup:], rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("shape", list(SHAPES))
def test_no_decay_drops_to_final_at_the_boundary(shape):
    s = warmup_stable_decay(warmup=2, stable=3, decay=0, final=0.25, shape=shape)
    assert [s(t) for t in range(7)] == [0.0, 0.5, 1.0, 1.0, 1.0, 0.25, 0.25]
    assert s(4.5) == 1.0 and s(5.0) == 0.25
