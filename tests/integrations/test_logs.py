"""Reading training logs: each format read back from files written here (by the real Monitor,
Lightning and SummaryWriter where they are cheap), key guessing, named keys, format forcing,
every error message, NaN kept, and the doctor's verdict on what was read."""

from __future__ import annotations

import doctest
import json
import math
import os
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from unstuck.diagnose import Monitor
from unstuck.integrations import log_formats, logs
from unstuck.integrations.logs import LogReadError, guess_key, locate, read_log


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def csv_text(header: str, rows: list[list[object]]) -> str:
    return "\n".join([header, *(",".join(str(v) for v in row) for row in rows)]) + "\n"


OVERFIT_TRAIN = [2.3, 0.9, 0.3, 0.08, 0.02, 0.01]
OVERFIT_VAL = [2.3, 1.0, 0.7, 0.9, 1.2, 1.5]


def overfitting_csv(path: Path) -> Path:
    rows = [[e, t, v, 0.5 + e / 20] for e, (t, v) in enumerate(zip(OVERFIT_TRAIN, OVERFIT_VAL))]
    return write(path, csv_text("epoch,train_loss,val_loss,acc", rows))


# ----------------------------------------------------------------------------- the Monitor's JSONL
def monitored_run(path: Path, lr: float, steps: int = 30) -> list[dict]:
    """A tiny regression trained with SGD under a Monitor; its records written to ``path``."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
    x = torch.randn(32, 4)
    y = x.sum(dim=1, keepdim=True)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    with Monitor(model, optimizer) as monitor:
        for _ in range(steps):
            optimizer.zero_grad()
            loss = nn.functional.mse_loss(model(x), y)
            loss.backward()
            monitor.observe(loss)
            optimizer.step()
        monitor.to_jsonl(path)
        return monitor.history


def test_monitor_jsonl_records_become_the_monitor_history(tmp_path: Path) -> None:
    history = monitored_run(tmp_path / "run.jsonl", lr=0.05)
    log = read_log(tmp_path / "run.jsonl")
    assert log.format == "jsonl" and log.keys["train"] == "loss" and log.noun == "key"
    assert log.train_loss == pytest.approx([r["loss"] for r in history])
    assert log.train_steps == list(range(30))
    assert log.monitor is not None and len(log.monitor) == 30
    assert log.monitor[5]["layers"].keys() == history[5]["layers"].keys()
    assert "Monitor records: 30" in log.describe()
    diagnosis = log.diagnose()
    assert diagnosis.history is not None and len(diagnosis.history) == 30
    assert not any("no Monitor history" in note for note in diagnosis.notes)
    assert diagnosis.title == f"unstuck doctor: {tmp_path / 'run.jsonl'}"


def test_monitor_jsonl_of_a_diverging_run_keeps_nan_and_is_not_healthy(tmp_path: Path) -> None:
    monitored_run(tmp_path / "run.jsonl", lr=3.0)
    assert '"NaN"' in (tmp_path / "run.jsonl").read_text() or "Infinity" in (
        tmp_path / "run.jsonl").read_text()
    log = read_log(tmp_path / "run.jsonl")
    assert any(not math.isfinite(v) for v in log.train_loss)
    diagnosis = log.diagnose()
    assert not diagnosis.healthy
    assert diagnosis.codes[0] in ("nonfinite", "divergence")


def test_plain_json_lines_are_read_without_a_monitor(tmp_path: Path) -> None:
    lines = [json.dumps({"iteration": i, "train/loss": 1 / (i + 1), "note": "x"}) for i in range(5)]
    lines.insert(3, json.dumps({"iteration": 2, "val/loss": 0.6}))
    path = write(tmp_path / "log.json", "\n".join(lines))  # .json holding lines: JSON Lines
    log = read_log(path)
    assert (log.format, log.monitor) == ("jsonl", None)
    assert log.keys == {"train": "train/loss", "val": "val/loss", "test": None}
    assert log.train_steps == [0, 1, 2, 3, 4] and log.val_steps == [2]
    assert log.diagnose().val_steps == [2]


# ----------------------------------------------------------------------------- CSV
def test_csv_per_epoch_losses_guessed_and_diagnosed(tmp_path: Path) -> None:
    log = read_log(overfitting_csv(tmp_path / "losses.csv"))
    assert log.format == "csv" and log.noun == "column"
    assert log.keys == {"train": "train_loss", "val": "val_loss", "test": None}
    assert log.guessed == {"train", "val"}
    assert log.train_loss == OVERFIT_TRAIN and log.val_loss == OVERFIT_VAL
    assert log.train_steps == list(range(6)) and log.val_steps == list(range(6))
    assert log.test_loss is None and log.test_steps is None
    described = log.describe()
    assert "column 'train_loss' (6 values, steps 0-5; guessed)" in described
    assert "test loss:" in described and "test_key=" in described
    assert log.describe(command_line=True).count("--test-key") == 1
    diagnosis = log.diagnose()
    assert diagnosis.codes == ["overfitting"]
    assert diagnosis.val_steps == list(range(6))
    assert log.diagnose(title="mine").title == "mine"


def test_csv_without_step_column_tab_separated_with_test_loss(tmp_path: Path) -> None:
    text = "Loss/train\tLoss/val\tLoss/test\n2.0\t2.1\t\n1.0\t1.2\t\n0.5\t0.8\t1.9\n"
    log = read_log(write(tmp_path / "l.tsv", text))
    assert log.keys == {"train": "Loss/train", "val": "Loss/val", "test": "Loss/test"}
    assert log.train_steps == [0, 1, 2] and log.test_steps == [2] and log.test_loss == [1.9]


def test_nonfinite_values_are_kept_and_are_a_finding(tmp_path: Path) -> None:
    rows = [[0, 1.0], [1, 0.8], [2, "inf"], [3, "nan"], [4, "NaN"], [5, "-Infinity"]]
    log = read_log(write(tmp_path / "nan.csv", csv_text("step,loss", rows)))
    assert log.train_loss[:2] == [1.0, 0.8] and log.train_loss[2] == math.inf
    assert math.isnan(log.train_loss[3]) and math.isnan(log.train_loss[4])
    assert log.train_loss[5] == -math.inf
    assert log.diagnose().codes[0] == "nonfinite"


def test_a_diverging_csv_is_not_healthy(tmp_path: Path) -> None:
    rows = [[s, 1.0 * 1.4**s] for s in range(30)]
    log = read_log(write(tmp_path / "up.csv", csv_text("step,loss", rows)))
    diagnosis = log.diagnose()
    assert not diagnosis.healthy and "divergence" in diagnosis.codes


def test_val_steps_placed_on_the_training_curve(tmp_path: Path) -> None:
    rows = [[10 * (i + 1), 2.0 / (i + 1), ""] for i in range(10)]
    rows.insert(5, [50, "", 0.9])
    rows.append([100, "", 0.5])
    log = read_log(write(tmp_path / "s.csv", csv_text("global_step,train_loss,val_loss", rows)))
    assert log.train_steps == [10 * (i + 1) for i in range(10)]
    assert log.val_steps == [50, 100]
    assert log.diagnose().val_steps == [4, 9]  # the indices of steps 50 and 100


# ----------------------------------------------------------------------------- Lightning
def test_lightning_metrics_csv_from_a_real_trainer(tmp_path: Path) -> None:
    import lightning.pytorch as lightning  # a test dependency: never skipped
    from lightning.pytorch.loggers import CSVLogger

    class Tiny(lightning.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Linear(4, 1)

        def training_step(self, batch, _index):
            x, y = batch
            loss = nn.functional.mse_loss(self.net(x), y)
            self.log("train_loss", loss, on_step=True, on_epoch=True)
            return loss

        def validation_step(self, batch, _index):
            x, y = batch
            self.log("val_loss", nn.functional.mse_loss(self.net(x), y))

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    torch.manual_seed(0)
    x = torch.randn(64, 4)
    data = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x, x.sum(dim=1, keepdim=True)), batch_size=16)
    trainer = lightning.Trainer(
        max_epochs=3, logger=CSVLogger(tmp_path), log_every_n_steps=1, accelerator="cpu",
        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
    )
    trainer.fit(Tiny(), data, data)
    version = tmp_path / "lightning_logs" / "version_0"
    for path in (version / "metrics.csv", version, tmp_path / "lightning_logs", tmp_path):
        log = read_log(path)
        assert log.path == version / "metrics.csv" and log.format == "lightning"
        assert log.keys == {"train": "train_loss_step", "val": "val_loss", "test": None}
    assert log.train_steps == list(range(12))  # 4 batches x 3 epochs, one value per step
    assert len(log.val_loss) == 3 and log.val_steps == [3, 7, 11]
    assert log.train_loss[-1] < log.train_loss[0]
    assert read_log(version, train_key="train_loss_epoch").train_steps == [3, 7, 11]
    assert log.diagnose().val_steps == [3, 7, 11]


def test_lightning_directory_picks_the_latest_version(tmp_path: Path) -> None:
    for n, loss in ((2, 0.2), (10, 0.1), (9, 0.3)):
        write(tmp_path / f"version_{n}" / "metrics.csv",
              csv_text("epoch,step,train_loss", [[0, 0, loss]]))
    assert read_log(tmp_path).path == tmp_path / "version_10" / "metrics.csv"
    assert read_log(tmp_path).train_loss == [0.1]


# ----------------------------------------------------------------------------- Hugging Face
def trainer_state(steps: int, *, nan_at: int | None = None) -> dict:
    """A trainer_state.json as the Trainer writes it: loss every 5 steps, eval every 10, and the
    end-of-training summary (train_loss is the run's average)."""
    history: list[dict] = []
    for step in range(5, steps + 1, 5):
        loss = math.nan if step == nan_at else 2.0 / step
        history.append({"epoch": step / 20, "grad_norm": 1.5, "learning_rate": 5e-5,
                        "loss": loss, "step": step})
        if step % 10 == 0:
            history.append({"epoch": step / 20, "eval_loss": 3.0 / step, "eval_runtime": 0.1,
                            "eval_samples_per_second": 100.0, "step": step})
    history.append({"epoch": steps / 20, "step": steps, "total_flos": 1.0, "train_loss": 0.123,
                    "train_runtime": 9.0, "train_samples_per_second": 50.0})
    return {"best_metric": None, "epoch": steps / 20, "global_step": steps,
            "log_history": history, "max_steps": steps, "logging_steps": 5}


def test_huggingface_trainer_state(tmp_path: Path) -> None:
    state = trainer_state(40)
    state["log_history"].append({"epoch": 2.0, "step": 40, "test_loss": 0.5,
                                 "test_runtime": 0.2})
    path = write(tmp_path / "trainer_state.json", json.dumps(state, indent=2))
    log = read_log(path)
    assert log.format == "huggingface"
    assert log.keys == {"train": "loss", "val": "eval_loss", "test": "test_loss"}
    assert log.train_steps == [5, 10, 15, 20, 25, 30, 35, 40]
    assert 0.123 not in log.train_loss  # the end-of-training average is not a point
    assert log.val_steps == [10, 20, 30, 40] and log.test_loss == [0.5]
    assert log.diagnose().val_steps == [1, 3, 5, 7]


def test_huggingface_output_dir_picks_the_latest_checkpoint_and_keeps_nan(tmp_path: Path) -> None:
    for steps in (5, 10, 40):  # checkpoint-40 sorts before checkpoint-5 as text
        write(tmp_path / f"checkpoint-{steps}" / "trainer_state.json",
              json.dumps(trainer_state(steps, nan_at=35)))
    log = read_log(tmp_path)
    assert log.path == tmp_path / "checkpoint-40" / "trainer_state.json"
    assert math.isnan(log.train_loss[6]) and "NaN" in log.path.read_text()
    assert log.diagnose().codes[0] == "nonfinite"
    write(tmp_path / "trainer_state.json", json.dumps(trainer_state(20)))
    assert read_log(tmp_path).path == tmp_path / "trainer_state.json"  # the output_dir's own


# ----------------------------------------------------------------------------- TensorBoard
def tensorboard_run(directory: Path, losses: list[float]) -> None:
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(directory))
    for step, loss in enumerate(losses):
        writer.add_scalar("train/loss", loss, step)
        writer.add_scalar("lr", 0.1, step)
        if step % 3 == 2:
            writer.add_scalar("val/loss", loss * 1.1, step)
    writer.add_scalar("test/loss", 0.9, len(losses) - 1)
    writer.close()


def test_tensorboard_event_files(tmp_path: Path) -> None:
    losses = [1.0, 0.8, 0.6, float("nan"), 0.5, 0.45]
    tensorboard_run(tmp_path / "runs" / "first", losses)
    log = read_log(tmp_path / "runs" / "first")
    assert (log.format, log.noun) == ("tensorboard", "tag")
    assert log.keys == {"train": "train/loss", "val": "val/loss", "test": "test/loss"}
    assert log.train_steps == list(range(6)) and log.val_steps == [2, 5]
    assert log.train_loss[:3] == pytest.approx(losses[:3]) and math.isnan(log.train_loss[3])
    assert log.test_loss == pytest.approx([0.9])
    (event,) = (tmp_path / "runs" / "first").iterdir()
    assert read_log(event).train_loss[:3] == pytest.approx(losses[:3])  # one event file
    time.sleep(0.05)  # a later modification time for the second run
    tensorboard_run(tmp_path / "runs" / "second", [3.0, 2.0])
    assert read_log(tmp_path / "runs").path == tmp_path / "runs" / "second"  # the latest run
    assert read_log(tmp_path / "runs", "tensorboard").train_loss == [3.0, 2.0]


def test_tensorboard_missing_is_one_line_naming_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "events.out.tfevents.1.host", "")
    monkeypatch.setitem(sys.modules, "tensorboard.backend.event_processing.event_accumulator",
                        None)
    with pytest.raises(LogReadError) as error:
        read_log(tmp_path)
    message = str(error.value)
    assert "\n" not in message and str(tmp_path) in message
    assert "pip install 'unstuck[tensorboard]'" in message


# ----------------------------------------------------------------------------- keys and formats
@pytest.mark.parametrize(
    ("names", "role", "expected"),
    [
        (["epoch", "step", "train_loss_epoch", "train_loss_step", "val_loss"], "train",
         "train_loss_step"),
        (["epoch", "step", "train_loss_epoch", "train_loss_step", "val_loss"], "val", "val_loss"),
        (["loss", "eval_loss", "eval_runtime", "grad_norm"], "train", "loss"),
        (["val_loss_step", "val_loss_epoch"], "val", "val_loss_epoch"),
        (["trainLoss", "validLoss", "testLoss"], "val", "validLoss"),
        (["train_kl_loss", "train_loss", "best_val_loss", "val_loss"], "train", "train_loss"),
        (["best_val_loss", "validation_loss"], "val", "validation_loss"),
        (["loss_scale", "training_loss"], "train", "training_loss"),
        (["Loss/train", "Loss/test"], "test", "Loss/test"),
        (["unstuck/grad_norm", "unstuck/loss", "unstuck/lr/0"], "train", "unstuck/loss"),
        (["dev_loss"], "train", None),
        (["epoch", "acc"], "train", None),
        (["train_loss"], "test", None),
    ],
)
def test_guess_key(names: list[str], role: str, expected: str | None) -> None:
    assert guess_key(names, role) == expected


def test_named_keys_win_over_the_guess(tmp_path: Path) -> None:
    rows = [[e, 2.0 / (e + 1), 2.5 / (e + 1), 9.0] for e in range(4)]
    path = write(tmp_path / "m.csv", csv_text("epoch,mse,holdout_mse,loss", rows))
    guessed = read_log(path)
    assert guessed.keys["train"] == "loss" and guessed.keys["val"] is None
    log = read_log(path, train_key="mse", val_key="holdout_mse")
    assert log.keys == {"train": "mse", "val": "holdout_mse", "test": None}
    assert log.guessed == frozenset() and log.val_loss == [2.5 / (e + 1) for e in range(4)]
    assert "column 'mse' (4 values, steps 0-3; named)" in log.describe()


def test_format_forced(tmp_path: Path) -> None:
    path = write(tmp_path / "log.txt", csv_text("step,loss", [[0, 1.0], [1, 0.5]]))
    with pytest.raises(LogReadError, match="cannot tell the format"):
        read_log(path)
    assert read_log(path, "csv").train_loss == [1.0, 0.5]
    both = tmp_path / "both"
    write(both / "metrics.csv", csv_text("step,loss", [[0, 1.0]]))
    write(both / "run.jsonl", json.dumps({"step": 0, "loss": 7.0}))
    assert locate(both) == (both / "metrics.csv", "lightning")
    assert read_log(both, "jsonl").train_loss == [7.0]
    with pytest.raises(ValueError, match="format must be one of"):
        read_log(path, "xml")


def test_module_examples_run() -> None:
    for module in (logs, log_formats):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0


# ----------------------------------------------------------------------------- errors
ERRORS = [
    ("missing.csv", None, {}, "missing.csv: no such file or directory"),
    ("empty.csv", "", {}, "empty.csv: empty file"),
    ("blank.jsonl", "\n\n", {}, "blank.jsonl: empty file"),
    ("numbers.csv", "1,2\n3,4\n", {}, "holds numbers, not column names"),
    ("header.csv", "step,loss\n", {}, "no rows after the header (columns: step, loss)"),
    ("wide.csv", "step,loss\n0,1.0,7\n", {}, "line 2 has 3 cells but the header names 2"),
    ("metrics.csv", "epoch,step,acc\n0,0,0.5\n", {},
     "metrics.csv: no column looks like a training loss (columns: epoch, step, acc); "
     "name one with train_key= (--train-key)"),
    ("text.csv", "step,loss\n0,1.0\n1,oops\n", {},
     "column 'loss' (training loss): line 3: 'oops' is not a number"),
    ("named.csv", "step,loss\n0,1.0\n", {"val_key": "val"},
     "no column 'val' (columns: step, loss)"),
    ("hollow.csv", "step,loss,val_loss\n0,1.0,\n", {"val_key": "val_loss"},
     "column 'val_loss' holds no values"),
    ("bad.jsonl", '{"step": 0, "loss": 1}\n{"step": 1,\n', {}, "line 2 is not valid JSON"),
    ("list.jsonl", "[1, 2]\n", {}, "line 1 is a JSON list, not an object"),
    ("trainer_state.json", '{"log_history": [', {}, "not valid JSON (line 1, column 18"),
    ("trainer_state.json", '{"global_step": 3}', {}, "has no 'log_history' list"),
    ("trainer_state.json", '{"log_history": [{"train_loss": 1, "train_runtime": 2}]}', {},
     "log_history holds no logged step"),
    ("binary.csv", b"\xff\xfe\x00\x81", {}, "not a text file"),
]


@pytest.mark.parametrize(("name", "content", "keys", "message"), ERRORS,
                         ids=[f"{e[0]}-{i}" for i, e in enumerate(ERRORS)])
def test_errors_are_one_line_naming_the_file(
    tmp_path: Path, name: str, content: str | bytes | None, keys: dict, message: str
) -> None:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises(LogReadError) as error:
        read_log(path, **keys)
    text = str(error.value)
    assert "\n" not in text and text.startswith(f"{path}: ")
    assert message in text
    assert isinstance(error.value, ValueError) and error.value.path == str(path)


def test_directory_errors(tmp_path: Path) -> None:
    write(tmp_path / "notes.md", "nothing here")
    with pytest.raises(LogReadError, match="no training log in this directory"):
        read_log(tmp_path)
    with pytest.raises(LogReadError, match="no training log in this directory .*a huggingface"):
        read_log(tmp_path, "huggingface")
    write(tmp_path / "a.csv", csv_text("step,loss", [[0, 1.0]]))
    write(tmp_path / "b.csv", csv_text("step,loss", [[0, 1.0]]))
    with pytest.raises(LogReadError, match=r"several .csv / .tsv files \(a.csv, b.csv\)"):
        read_log(tmp_path)
    tensorboard = tmp_path / "tb"
    write(tensorboard / "events.out.tfevents.1.host", "not an event file")
    with pytest.raises(LogReadError, match="tb: the event files hold no scalar"):
        read_log(tensorboard)


def test_unreadable_file(tmp_path: Path) -> None:
    path = write(tmp_path / "secret.csv", "step,loss\n0,1\n")
    path.chmod(0)
    if os.access(path, os.R_OK):  # running as root: permissions do not apply
        pytest.skip("the file stays readable")
    with pytest.raises(LogReadError, match="secret.csv: cannot read it"):
        read_log(path)
