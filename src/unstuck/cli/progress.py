"""A dependency-free progress bar for long commands, drawn on standard error.

On a terminal the bar redraws one line in place (``\\r``); when standard error is not a terminal
(CI logs, pipes) it prints a plain line at most every 10% instead, so logs stay readable.

Example::

    with ProgressBar(total=30, label="compare") as bar:
        for run in runs:
            do(run)
            bar.advance(note=f"{run.name} done")
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

__all__ = ["ProgressBar"]


class ProgressBar:
    """``[#####.....] 15/30  50%  0:42 elapsed, ~0:42 left  note``.

    Args:
        total: the number of units of work (>= 1).
        label: printed before the bar.
        stream: where to draw (standard error by default).
        width: characters of the bar itself.
        enabled: False draws nothing (``--quiet``).
    """

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
        self._last_decile = -1

    def advance(self, steps: int = 1, *, note: str = "") -> None:
        """Mark ``steps`` more units done and redraw (``note`` is shown after the bar)."""
        self.done = min(self.done + steps, self.total)
        if not self.enabled:
            return
        decile = 10 * self.done // self.total
        if self._interactive:
            self.stream.write("\r" + self.line(note) + "\x1b[K")
            self.stream.flush()
        elif decile > self._last_decile or self.done == self.total:
            self._last_decile = decile
            self.stream.write(self.line(note) + "\n")
            self.stream.flush()

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
        """End the line on a terminal."""
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
