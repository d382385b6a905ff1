"""Paths typed into the page name files on the server: they are read from one stated folder.

A page can type any text into a path box ("Load path" in Model, Motion and Fit), and with
``--host 0.0.0.0`` the page may be someone else's. So a typed path is resolved against the
viewer's read folder (``dposer-view --read-dir``, the folder it was started in by default) and
refused when it lands outside it, symlinks followed, unless the viewer was started with
``--read-anywhere``. Messages show the path in full, as resolved. Saving has its own folder
(``--export-dir``, see :func:`viewer.exports.export_path`) and never creates folders elsewhere.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from prior.errors import InputError
from prior.files import user_path

MAX_PATH_CHARS = 4096


@dataclass(frozen=True)
class ReadFolder:
    """Where typed paths may point: inside ``root`` (absolute), or anywhere when ``anywhere``."""

    root: Path
    anywhere: bool = False

    @classmethod
    def at(cls, root: str | Path | None, *, anywhere: bool = False) -> ReadFolder:
        return cls(Path(root if root is not None else os.getcwd()).expanduser().resolve(), anywhere)

    def describe(self) -> str:
        """For a path box's tooltip: where typed paths are read from."""
        if self.anywhere:
            return f"Relative paths start in {self.root}."
        return f"Paths are read in {self.root} (relative paths start there); files elsewhere are refused."

    def resolve(self, text: str) -> Path:
        """The file a typed ``text`` names: ``~`` expanded, relative to :attr:`root`, resolved.

        Raises :class:`InputError` (one line naming the path) for an unknown ``~user``, a path
        too long, or one outside the folder."""
        text = text.strip()
        if not text:
            raise InputError("no path given")
        if len(text) > MAX_PATH_CHARS or "\0" in text:
            raise InputError(f"not a usable path ({len(text)} characters)")
        path = user_path(text)
        try:
            full = (self.root / path).resolve()
        except (OSError, RuntimeError) as exc:  # a symlink loop, a name too long
            raise InputError(f"not a usable path: {exc}", text) from None
        if not self.anywhere and not full.is_relative_to(self.root):
            raise InputError(f"outside the folder the viewer reads from ({self.root}); put the file there, or "
                             "start dposer-view with --read-anywhere", full)
        return full
