"""A tiny progress bar for long CLI runs (stderr; redrawn only on a terminal)."""

from __future__ import annotations

import sys
import time


class Bar:
    def __init__(self, label: str, stream=None, width: int = 30):
        self.label, self.width = label, width
        self.stream = stream or sys.stderr
        self.total, self.done = 0, 0
        self.started = time.monotonic()
        self._drawn = 0.0
        self.tty = self.stream.isatty()

    def start(self, total: int) -> None:
        self.total, self.done, self.started = total, 0, time.monotonic()
        self._draw(force=True)

    def advance(self, n: int) -> None:
        self.done += n
        self._draw()

    def _line(self) -> str:
        total = max(self.total, self.done, 1)
        filled = int(self.width * self.done / total)
        rate = self.done / max(time.monotonic() - self.started, 1e-6)
        return f"{self.label} [{'#' * filled}{'.' * (self.width - filled)}] {self.done}/{total} objects {rate:.0f}/s"

    def _draw(self, force: bool = False) -> None:
        now = time.monotonic()
        if self.tty and (force or now - self._drawn >= 0.1):
            self.stream.write("\r" + self._line())
            self.stream.flush()
            self._drawn = now

    def finish(self) -> None:
        if self.total or self.done:
            self.stream.write(("\r" if self.tty else "") + self._line() + "\n")
            self.stream.flush()
