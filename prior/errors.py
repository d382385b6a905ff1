"""User-facing errors: one line that names the file and what is wrong with it."""

from __future__ import annotations

from pathlib import Path


class InputError(ValueError):
    """A file or argument the user gave cannot be used.

    The message is a single line, ``"<file>: <problem>"`` when a file is involved,
    so the CLI can print it as-is and the viewer can show it as a notification.
    """

    def __init__(self, problem: str, path: str | Path | None = None) -> None:
        self.path = None if path is None else str(path)
        self.problem = " ".join(str(problem).split())
        super().__init__(self.problem if self.path is None else f"{self.path}: {self.problem}")


class Cancelled(RuntimeError):
    """Raised inside a task when its cancel flag was set; callers treat it as a normal stop."""
