"""unstuck in Jupyter: the inline HTML views (Diagnosis, Monitor, compare results), the progress
bar in a notebook kernel, and examples/stuck_training.ipynb executed by a real kernel."""

from __future__ import annotations

import doctest
import io
import json
import re
import sys
import types
from pathlib import Path

import pytest
import torch
from torch import nn

import unstuck.cli.progress as progress
import unstuck.doctor.report as doctor_report
from unstuck.cli.progress import ProgressBar, in_jupyter
from unstuck.diagnose import Monitor
from unstuck.diagnose import summary_html as summary_module
from unstuck.diagnose.summary_html import summary_html
from unstuck.doctor.verdicts import TITLES, Diagnosis, Verdict
from unstuck.report import escape

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "stuck_training.ipynb"


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _no_page(html: str) -> None:
    for tag in ("<!DOCTYPE", "<html", "<head", "<body", "<title"):
        assert tag.lower() not in html.lower(), tag


def _diagnosis(title: str = "SGD <lr 3>") -> Diagnosis:
    verdict = Verdict(
        code="lr_too_large", title=TITLES["lr_too_large"], confidence=0.9,
        message="the training loss made no progress (from 2.3 to 40)",
        evidence={"loss_start": 2.3, "loss_end": 40.0, "median_update_ratio": 0.18},
        fixes=("Lower the learning rate.",),
        trials=({"fix": "lr x0.3", "score_before": 42.0, "score_after": 0.2, "diverged": False,
                 "helped": True, "train_loss_after": 0.1, "val_loss_after": 0.2},),
    )
    losses = [2.3, 5.0, 30.0, 12.0, 41.0, 38.0, 40.0, 39.0]
    return Diagnosis([verdict], train_loss=losses, val_loss=[2.3, 20.0, 40.0], title=title)


# -- Diagnosis ------------------------------------------------------------------------------------


@pytest.mark.skipif(not _has("matplotlib"), reason="needs matplotlib")
def test_diagnosis_repr_html_is_the_report_as_a_fragment_with_figures():
    d = _diagnosis()
    html = d._repr_html_()
    _no_page(html)
    assert html.startswith('<div class="unstuck-report">') and html.rstrip().endswith("</div>")
    assert TITLES["lr_too_large"] in html and "<code>lr_too_large</code>" in html
    assert "<th>evidence</th>" in html and "<td>median_update_ratio</td><td>0.18</td>" in html
    assert "<th>loss after</th>" in html and "<td>lr x0.3</td>" in html  # the fixes tried
    assert '<img alt="Loss curves' in html and 'src="data:image/png;base64,' in html
    assert "SGD &lt;lr 3&gt;" in html and "<lr 3>" not in html  # the title is escaped
    assert "body {" not in html  # no page-wide CSS that would restyle the notebook
    # the page itself is unchanged
    page = d.to_html()
    assert page.startswith("<!DOCTYPE html>") and "<html" in page


def test_diagnosis_repr_html_without_matplotlib_is_the_text_form(monkeypatch):
    monkeypatch.setattr(doctor_report, "_has_matplotlib", lambda: False)
    d = _diagnosis()
    html = d._repr_html_()
    _no_page(html)
    assert html.startswith("<pre>") and "<img" not in html
    assert "[lr_too_large]" in html and "tried lr x0.3" in html
    assert html == f"<pre>{escape(str(d))}</pre>\n"  # the text form, escaped ("->")


def test_diagnosis_pretty_text_is_the_text_form_not_the_dataclass_repr():
    pretty = pytest.importorskip("IPython.lib.pretty")
    d = _diagnosis()
    d.history = [{"step": i, "loss": 1.0} for i in range(50)]
    assert pretty.pretty(d) == str(d)
    assert "history" not in pretty.pretty(d)


# -- Monitor --------------------------------------------------------------------------------------


def test_monitor_repr_html_is_a_table_of_its_summary():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(16, 3), torch.randn(16, 1)
    with Monitor(model, optimizer) as monitor:
        for _ in range(5):
            loss = nn.functional.mse_loss(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            monitor.observe(loss)
            optimizer.step()
    html = monitor._repr_html_()
    _no_page(html)
    assert "<th>statistic</th><th>value</th>" in html
    summary = monitor.summary()
    for key in summary:
        assert f"<td>{key}</td>" in html
    assert f"<td>steps</td><td>{summary['steps']}</td>" in html
    assert f"<td>last_loss</td><td>{summary['last_loss']:.4g}</td>" in html
    assert "min: " in html and "median: " in html  # grad_norm's nested dict
    assert "Monitor(4 tensors" in html


def test_summary_html_formats_and_escapes():
    html = summary_html({"steps": 0, "last_loss": None, "nonfinite_grads": {},
                         "grad_norm": {"min": 0.123456, "max": 2.0},
                         "nonfinite_forward": {"module": "<fc>", "step": 3}}, "run <1>")
    assert "<td>last_loss</td><td>-</td>" in html
    assert "<td>nonfinite_grads</td><td>none</td>" in html
    assert "<td>grad_norm</td><td>min: 0.1235, max: 2</td>" in html
    assert "module: &lt;fc&gt;, step: 3" in html and "<strong>run &lt;1&gt;</strong>" in html
    assert doctest.testmod(summary_module).failed == 0


# -- compare results ------------------------------------------------------------------------------


@pytest.mark.skipif(not _has("matplotlib"), reason="needs matplotlib")
def test_compare_results_repr_html_is_the_report_as_a_fragment():
    from unstuck.lab.compare import compare

    results = compare("digits-mlp", "sgd", seeds=[0], epochs=1)
    html = results._repr_html_()
    _no_page(html)
    assert html.startswith('<div class="unstuck-report">')
    assert "unstuck compare: digits-mlp" in html and "<h2>Ranking</h2>" in html
    assert "<td>sgd</td>" in html and "<h2>The doctor" in html
    assert html.count('src="data:image/png;base64,') == 2  # learning curves, lr curves
    pretty = pytest.importorskip("IPython.lib.pretty")
    text = pretty.pretty(results)
    assert text.startswith("unstuck compare: digits-mlp") and "sgd" in text
    assert "TrainingRun(" not in text


# -- the progress bar in a notebook ---------------------------------------------------------------


class _Handle:
    """Stands in for an IPython DisplayHandle: records what it shows."""

    def __init__(self, made: list[_Handle], text: str) -> None:
        self.shown = [text]
        made.append(self)

    def update(self, obj: dict, raw: bool = False) -> None:
        assert raw and set(obj) == {"text/plain"}
        self.shown.append(obj["text/plain"])


@pytest.fixture
def notebook(monkeypatch):
    """A pretend Jupyter kernel: detection says yes, display handles are recorded."""
    made: list[_Handle] = []
    monkeypatch.setattr(progress, "in_jupyter", lambda stream: True)
    monkeypatch.setattr(progress, "_display_handle", lambda text: _Handle(made, text))
    return made


def test_notebook_bar_redraws_one_output_and_writes_no_carriage_returns(notebook):
    stream = io.StringIO()
    with ProgressBar(total=5, label="runs", stream=stream) as bar:
        bar.notebook_interval = 0.0
        for i in range(5):
            bar.advance(note=f"run {i}")
    assert stream.getvalue() == ""
    assert len(notebook) == 1  # one output, redrawn in place
    shown = notebook[0].shown
    assert shown[0].startswith("runs [") and " 1/5 " in shown[0] and shown[0].endswith("run 0")
    assert " 5/5 100%" in shown[-1] and shown[-1].endswith("run 4")
    assert all("\r" not in text and "\n" not in text for text in shown)


def test_notebook_bar_is_throttled_but_always_shows_the_end(notebook):
    with ProgressBar(total=200, stream=io.StringIO()) as bar:
        bar.notebook_interval = 3600.0
        for _ in range(200):
            bar.advance()
    shown = notebook[0].shown
    assert len(shown) == 2  # the first unit, then the last (the rest fell in the interval)
    assert " 1/200 " in shown[0] and " 200/200 100%" in shown[1]


def test_notebook_bar_close_draws_the_state_a_throttled_redraw_skipped(notebook):
    bar = ProgressBar(total=10, stream=io.StringIO())
    bar.notebook_interval = 3600.0
    for _ in range(3):
        bar.advance(note="working")
    assert " 1/10 " in notebook[0].shown[-1]
    bar.close()
    assert " 3/10 " in notebook[0].shown[-1] and notebook[0].shown[-1].endswith("working")


def test_disabled_notebook_bar_shows_nothing(notebook):
    with ProgressBar(total=3, enabled=False) as bar:
        bar.advance(3)
    assert notebook == []


def test_notebook_without_ipython_display_prints_sparse_lines(monkeypatch):
    monkeypatch.setattr(progress, "in_jupyter", lambda stream: True)
    monkeypatch.setattr(progress, "_display_handle", lambda text: None)
    stream = io.StringIO()
    with ProgressBar(total=20, stream=stream) as bar:
        for _ in range(20):
            bar.advance()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 11 and "\r" not in stream.getvalue()


def test_no_display_handle_without_a_running_ipython_shell(capsys):
    pytest.importorskip("IPython")
    assert progress._display_handle("text") is None
    assert capsys.readouterr().out == ""


def test_in_jupyter_needs_a_kernel_and_its_non_terminal_output(monkeypatch):
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = io.StringIO()
    monkeypatch.setattr(sys, "stderr", out)
    monkeypatch.delitem(sys.modules, "ipykernel", raising=False)
    assert not in_jupyter(out)  # no kernel
    monkeypatch.setitem(sys.modules, "ipykernel", types.ModuleType("ipykernel"))
    assert in_jupyter(out)
    assert not in_jupyter(io.StringIO())  # a stream of its own: the caller's business
    tty = Tty()
    monkeypatch.setattr(sys, "stderr", tty)
    assert not in_jupyter(tty)  # a kernel attached to a terminal draws as on a terminal
    assert not ProgressBar(total=2)._notebook


# -- the example notebook -------------------------------------------------------------------------


def _code_cells(nb) -> list:
    return [cell for cell in nb.cells if cell.cell_type == "code"]


def _text(cell) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


def _html(cell) -> list[str]:
    return [o.data["text/html"] for o in cell.outputs
            if o.output_type in ("display_data", "execute_result") and "text/html" in o.data]


def test_example_notebook_is_committed_with_outputs_cleared():
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    for cell in _code_cells(nb):
        assert cell.outputs == [] and cell.execution_count is None


def _kernel(tmp_path: Path, monkeypatch) -> str:
    """A kernelspec in a temporary JUPYTER_PATH that runs this interpreter (this venv), so the
    notebook sees the same unstuck and torch as the tests; nothing is installed globally."""
    name = "unstuck-tests"
    folder = tmp_path / "jupyter" / "kernels" / name
    folder.mkdir(parents=True)
    spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": f"unstuck tests ({sys.executable})", "language": "python"}
    (folder / "kernel.json").write_text(json.dumps(spec))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    return name


def test_example_notebook_runs_from_symptom_to_a_fix_that_works(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    pytest.importorskip("sklearn")
    pytest.importorskip("matplotlib")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name=_kernel(tmp_path, monkeypatch),
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    cells = _code_cells(nb)
    assert all(o.output_type != "error" for cell in cells for o in cell.outputs)

    # the kernel ran this interpreter's unstuck
    assert re.search(r"unstuck \S+: 1200 training images", _text(cells[0]))

    # the symptom: the loss curve (a figure) and the Monitor's summary table
    symptom = next(c for c in cells if "stuck_losses, stuck_monitor = train_loop" in c.source)
    assert any("image/png" in o.get("data", {}) for o in symptom.outputs)
    monitor_cell = next(c for c in cells if c.source.strip() == "stuck_monitor")
    assert any("<th>statistic</th>" in html for html in _html(monitor_cell))

    # the verdict: the code printed, and the report inline as a fragment with its figures
    verdict_cell = next(c for c in cells if "examine(" in c.source)
    assert "verdict codes: ['lr_too_large'" in _text(verdict_cell)
    (report,) = _html(verdict_cell)
    _no_page(report)
    assert report.startswith('<div class="unstuck-report">')
    assert "<code>lr_too_large</code>" in report and TITLES["lr_too_large"] in report
    assert "<th>evidence</th>" in report and "<th>loss after</th>" in report
    assert 'src="data:image/png;base64,' in report
    plain = next(o.data["text/plain"] for o in verdict_cell.outputs if "data" in o)
    assert plain.startswith("1. [lr_too_large]")  # the text form, not the dataclass repr

    # the fix, shown to work: the fixed run ends far below the stuck one, and below its start
    final = _text(cells[-1])
    stuck = float(re.search(r"stuck run final loss: ([0-9.]+)", final).group(1))
    fixed = float(re.search(r"fixed run final loss: ([0-9.]+)", final).group(1))
    assert fixed < stuck / 10
    assert fixed < 1.0 < 2.3 < stuck  # ln(10) = 2.30 is where both runs start
    assert "the fix works" in final


def test_progress_bar_in_a_real_kernel_is_one_output_redrawn(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    source = (
        "from unstuck.cli.progress import ProgressBar\n"
        "with ProgressBar(30, 'demo') as bar:\n"
        "    for i in range(30):\n"
        "        bar.advance(note=f'item {i}')\n"
    )
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)])
    nbclient.NotebookClient(nb, timeout=120, kernel_name=_kernel(tmp_path, monkeypatch),
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    (output,) = nb.cells[0].outputs  # no stderr lines, one display redrawn in place
    assert output.output_type == "display_data"
    assert output.data["text/plain"].startswith("demo [########################] 30/30 100%")
    assert output.data["text/plain"].endswith("item 29")
