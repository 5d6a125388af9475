"""A dependency-free progress bar for long commands, drawn on standard error.

On a terminal the bar redraws one line in place (``\\r``); when standard error is not a terminal
(CI logs, pipes) it prints a plain line at most every 10% instead, so logs stay readable. In a
Jupyter notebook (:func:`in_jupyter`: an IPython kernel is running and the bar draws on its
standard output or error, which are not terminals) it redraws one output of the cell through an
IPython display handle, at most every :attr:`ProgressBar.notebook_interval` seconds, instead of
carriage returns that a notebook cell would show as a flood of lines; without IPython's display
machinery it falls back to the plain lines.

Example::

    with ProgressBar(total=30, label="compare") as bar:
        for run in runs:
            do(run)
            bar.advance(note=f"{run.name} done")
"""

from __future__ import annotations

import math
import sys
import time
from typing import Any, TextIO

__all__ = ["ProgressBar", "in_jupyter"]


def in_jupyter(stream: Any) -> bool:
    """True when a Jupyter (IPython) kernel runs this process and ``stream`` is its standard
    output or error, not a terminal: a notebook cell shows what is written there."""
    if "ipykernel" not in sys.modules or stream not in (sys.stdout, sys.stderr):
        return False
    return not bool(getattr(stream, "isatty", lambda: False)())


def _display_handle(text: str) -> Any:
    """A new output of the running cell showing ``text``, as an IPython display handle (its
    ``update(obj, raw=True)`` redraws it); None when IPython is missing or runs no shell."""
    try:
        from IPython.core.interactiveshell import InteractiveShell
        from IPython.display import display
    except ImportError:
        return None
    if not InteractiveShell.initialized():  # display() would print the dict instead
        return None
    return display({"text/plain": text}, raw=True, display_id=True)


class ProgressBar:
    """``[#####.....] 15/30  50%  0:42 elapsed, ~0:42 left  note``.

    Args:
        total: the number of units of work (>= 1).
        label: printed before the bar.
        stream: where to draw (standard error by default).
        width: characters of the bar itself.
        enabled: False draws nothing (``--quiet``).
    """

    notebook_interval: float = 0.2
    """In a notebook, seconds between redraws (the last unit is always drawn)."""

    def __init__(
        self,
        total: int,
        label: str = "",
        *,
        stream: TextIO | None = None,
        width: int = 24,
        enabled: bool = True,
    ) -> None:
        if total < 1:
            raise ValueError(f"total must be >= 1, got {total}")
        self.total = total
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.enabled = enabled
        self.done = 0
        self._start = time.monotonic()
        self._interactive = bool(getattr(self.stream, "isatty", lambda: False)())
        self._notebook = in_jupyter(self.stream)
        self._handle: Any = None  # the notebook output, made at the first draw
        self._drawn = ("", -math.inf)  # the notebook output's text and when it was drawn
        self._note = ""  # the latest note (a throttled redraw is caught up by close)
        self._last_decile = -1

    def advance(self, steps: int = 1, *, note: str = "") -> None:
        """Mark ``steps`` more units done and redraw (``note`` is shown after the bar)."""
        self.done = min(self.done + steps, self.total)
        if not self.enabled:
            return
        decile = 10 * self.done // self.total
        if self._notebook and self._draw_in_notebook(note):
            return
        if self._interactive:
            self.stream.write("\r" + self.line(note) + "\x1b[K")
            self.stream.flush()
        elif decile > self._last_decile or self.done == self.total:
            self._last_decile = decile
            self.stream.write(self.line(note) + "\n")
            self.stream.flush()

    def _draw_in_notebook(self, note: str, *, force: bool = False) -> bool:
        """Redraw the cell's output, at most every ``notebook_interval`` seconds unless the work
        is done or ``force``; False when there is no IPython display to draw on."""
        self._note = note
        now = time.monotonic()
        if self._handle is not None and not force and self.done < self.total and (
                now - self._drawn[1] < self.notebook_interval):
            return True
        text = self.line(note)
        if self._handle is None:
            self._handle = _display_handle(text)
            if self._handle is None:
                self._notebook = False  # no IPython display: plain lines from now on
                return False
        elif text != self._drawn[0]:
            self._handle.update({"text/plain": text}, raw=True)
        self._drawn = (text, now)
        return True

    def line(self, note: str = "") -> str:
        """The bar as text, without a line ending."""
        filled = self.width * self.done // self.total
        elapsed = time.monotonic() - self._start
        text = (
            f"{self.label + ' ' if self.label else ''}[{'#' * filled}{'.' * (self.width - filled)}]"
            f" {self.done}/{self.total} {100 * self.done // self.total:3d}%  "
            f"{_clock(elapsed)} elapsed"
        )
        if 0 < self.done < self.total:
            text += f", ~{_clock(elapsed * (self.total - self.done) / self.done)} left"
        return f"{text}  {note}" if note else text

    def close(self) -> None:
        """End the line on a terminal; in a notebook, draw the latest state if a redraw was
        skipped."""
        if self.enabled and self._notebook and self._handle is not None:
            self._draw_in_notebook(self._note, force=True)
        if self.enabled and self._interactive:
            self.stream.write("\n")
            self.stream.flush()

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()


def _clock(seconds: float) -> str:
    """``m:ss`` (or ``h:mm:ss``) of a duration in seconds."""
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
