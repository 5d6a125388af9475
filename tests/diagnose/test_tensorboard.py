"""Monitor -> TensorBoard: the event files hold the records' values at their steps."""

import sys

import numpy as np
import pytest
import torch
from torch import nn

from unstuck.diagnose import Monitor
from unstuck.diagnose.tensorboard import TensorBoardLog, scalars

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import (  # noqa: E402
    EventAccumulator,
)
from torch.utils.tensorboard import SummaryWriter  # noqa: E402


def train(monitor, model, opt, steps):
    torch.manual_seed(0)
    x, y = torch.randn(16, 4), torch.randint(0, 3, (16,))
    for _ in range(steps):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        monitor.observe(loss)
        opt.step()


def model_and_opt():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))
    return model, torch.optim.Adam(model.parameters(), lr=0.01)


def events(logdir):
    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0, "histograms": 0})
    acc.Reload()
    return acc


def test_scalars_equal_the_records_and_histograms_at_their_steps(tmp_path):
    model, opt = model_and_opt()
    monitor = Monitor(model, opt, every=2, tensorboard=tmp_path, histograms_every=4,
                      effective_lr_every=2)
    train(monitor, model, opt, 9)
    history = monitor.history
    monitor.close()  # flushes: the last record (step 8) is written too
    acc = events(tmp_path)
    tags = set(acc.Tags()["scalars"])
    expected: dict[str, dict[int, float]] = {}
    for record in history:
        for tag, value in scalars(record).items():
            expected.setdefault(tag, {})[record["step"]] = value
    assert {"unstuck/loss", "unstuck/grad_norm", "unstuck/update_ratio",
            "unstuck/update_cosine", "unstuck/effective_lr/median", "unstuck/lr/0",
            "unstuck/update_ratio/0.weight", "unstuck/update_cosine/2.bias",
            "unstuck/grad_norm/0.weight"} <= tags
    assert tags == set(expected)
    for tag, by_step in expected.items():
        got = {e.step: e.value for e in acc.Scalars(tag)}
        assert got == {step: pytest.approx(np.float32(v)) for step, v in by_step.items()}, tag
    assert sorted(s.step for s in acc.Scalars("unstuck/loss")) == [0, 2, 4, 6, 8]
    # reading the history completed the last record (one step after it): written at close
    assert 8 in {e.step for e in acc.Scalars("unstuck/update_ratio")}
    histograms = set(acc.Tags()["histograms"])
    assert histograms == {f"unstuck/{kind}/{name}" for kind in ("weights", "grads")
                          for name in monitor.names}
    for tag in histograms:
        assert [h.step for h in acc.Histograms(tag)] == [0, 4, 8]
    weight = acc.Histograms("unstuck/weights/0.weight")[0].histogram_value
    assert weight.num == model[0].weight.numel()


def test_a_writer_passed_in_stays_open_and_is_flushed_by_close(tmp_path):
    model, opt = model_and_opt()
    writer = SummaryWriter(log_dir=str(tmp_path))
    with Monitor(model, opt, tensorboard=writer, histograms_every=None) as monitor:
        train(monitor, model, opt, 3)
    acc = events(tmp_path)  # close() flushed the writer
    assert [e.step for e in acc.Scalars("unstuck/loss")] == [0, 1, 2]
    assert acc.Tags()["histograms"] == []
    writer.add_scalar("mine", 1.0, 0)  # still open
    writer.close()


def test_records_are_written_as_they_are_reduced(tmp_path, monkeypatch):
    from unstuck.diagnose import flat_rows

    monkeypatch.setattr(flat_rows, "MAX_ROWS", 2)
    model, opt = model_and_opt()
    writer = SummaryWriter(log_dir=str(tmp_path))
    monitor = Monitor(model, opt, tensorboard=writer, histograms_every=None)
    train(monitor, model, opt, 6)
    writer.flush()
    steps = [e.step for e in events(tmp_path).Scalars("unstuck/loss")]
    assert steps and steps == list(range(len(steps))) and len(steps) < 6
    monitor.close()
    assert [e.step for e in events(tmp_path).Scalars("unstuck/loss")] == list(range(6))
    writer.close()


def test_missing_tensorboard_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    model, opt = model_and_opt()
    with pytest.raises(ImportError, match=r"pip install 'unstuck\[tensorboard\]'"):
        Monitor(model, opt, tensorboard=tmp_path)
    with pytest.raises(ImportError, match="tensorboard"):
        TensorBoardLog(tmp_path, ["w"])


def test_bad_histograms_every(tmp_path):
    model, opt = model_and_opt()
    with pytest.raises(ValueError, match="histograms_every must be"):
        Monitor(model, opt, tensorboard=tmp_path, histograms_every=0)
