"""Capturing ``sys.stdout`` and ``sys.stderr`` as text series while still printing
them: each stream is replaced by a tee that writes through to the original and hands
every complete line to the run. A carriage return (a progress bar redrawing its line)
replaces the line so far, so only the line's final state is logged.
"""

import io
import re
import sys
import threading
from typing import Any, Callable, List, Optional, TextIO

LineSink = Callable[[str, str], None]
_SEPARATORS = re.compile("(\r|\n)")


class Tee(io.TextIOBase):
    """A text stream that writes to ``original`` and passes complete lines to
    ``sink(name, line)``."""

    def __init__(self, original: TextIO, name: str, sink: LineSink) -> None:
        super().__init__()
        self.original = original
        self.name_ = name
        self._sink = sink
        self._partial: List[str] = []
        self._carriage = False
        self._lock = threading.Lock()
        self.active = True

    # What code expects of sys.stdout.

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.original, "encoding", "utf-8")

    @property
    def errors(self) -> Optional[str]:  # type: ignore[override]
        return getattr(self.original, "errors", None)

    def fileno(self) -> int:
        return self.original.fileno()

    def isatty(self) -> bool:
        return self.original.isatty()

    def writable(self) -> bool:
        return True

    def flush(self) -> None:
        self.original.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.original, name)

    def write(self, text: str) -> int:
        written = self.original.write(text)
        if self.active and text:
            try:
                self._feed(text)
            except Exception:  # capturing must never break printing
                pass
        return written if written is not None else len(text)

    def _feed(self, text: str) -> None:
        lines = []
        with self._lock:
            for piece in _SEPARATORS.split(text):
                if piece == "\n":
                    lines.append("".join(self._partial))
                    self._partial = []
                    self._carriage = False
                elif piece == "\r":
                    self._carriage = True
                elif piece:
                    if self._carriage:  # a redraw of the line: forget what it showed
                        self._partial = []
                        self._carriage = False
                    self._partial.append(piece)
        for line in lines:
            self._sink(self.name_, line)

    def flush_partial(self) -> None:
        """Hands over an unfinished last line (at the end of the run)."""
        with self._lock:
            line = "".join(self._partial)
            self._partial = []
        if line:
            self._sink(self.name_, line)


class ConsoleCapture:
    """Installs tees on ``sys.stdout`` and ``sys.stderr``; ``stop`` removes them (if
    nobody replaced them since) and flushes unfinished lines."""

    def __init__(self, sink: LineSink) -> None:
        self._sink = sink
        self._tees: List[Tee] = []

    def start(self) -> None:
        for name in ("stdout", "stderr"):
            original = getattr(sys, name)
            if original is None:
                continue
            tee = Tee(original, name, self._sink)
            setattr(sys, name, tee)
            self._tees.append(tee)

    def stop(self) -> None:
        for tee in self._tees:
            tee.active = False
            tee.flush_partial()
            if getattr(sys, tee.name_) is tee:
                setattr(sys, tee.name_, tee.original)
        self._tees = []
