"""File safety in one place: checked reading, atomic writing, and the files the package ships.

Reading: a user's file is size-checked before it is opened, ``.npz`` archives are read with
``allow_pickle=False`` and a limit on what they unpack to, and every problem is one
:class:`prior.errors.InputError` line, ``"<file>: <problem>"``.

Writing: results go to a temporary file beside the target that replaces it only once complete,
so a crash or a bad input never leaves a half-written file.

Shipped files: ``assets/`` and ``checkpoints/`` are the packages ``prior.assets`` and
``prior.checkpoints`` once installed (see pyproject's ``package-dir``); from a source checkout
on ``PYTHONPATH`` they are the folders beside ``prior/``.
"""

from __future__ import annotations

import os
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import IO

import numpy as np

from .errors import InputError

DEFAULT_CHECKPOINT = "dposer_amass_default.safetensors"

# ----------------------------------------------------------------------------------------------
# Shipped files


def _shipped(package: str, folder: str, name: str) -> Path:
    try:
        return Path(str(resources.files(package).joinpath(name)))
    except ModuleNotFoundError:  # a source checkout on PYTHONPATH: no package-dir mapping
        return Path(__file__).resolve().parents[1] / folder / name


def asset_path(name: str) -> Path:
    """Path of a file shipped in ``assets/`` (package ``prior.assets`` once installed)."""
    return _shipped("prior.assets", "assets", name)


def default_checkpoint_path() -> Path:
    """The shipped default prior in ``checkpoints/`` (package ``prior.checkpoints`` once installed)."""
    return _shipped("prior.checkpoints", "checkpoints", DEFAULT_CHECKPOINT)


# ----------------------------------------------------------------------------------------------
# Reading


def checked_file(path: str | Path, *, max_bytes: int) -> Path:
    """``path`` if it is a non-empty file of at most ``max_bytes``; else :class:`InputError`."""
    path = Path(path)
    if not path.exists():
        raise InputError("no such file", path)
    if not path.is_file():
        raise InputError("not a file", path)
    size = path.stat().st_size
    if size == 0:
        raise InputError("empty file", path)
    if size > max_bytes:
        raise InputError(f"file is {size / 2**20:.0f} MiB, over the {max_bytes / 2**20:.0f} MiB limit", path)
    return path


def checked_floats(
    value: np.ndarray, key: str, path: Path, width: int | None, *, frames: int | None = None, what: str | None = None
) -> np.ndarray:
    """``value`` (the array ``key`` of file ``path``) as float32 ``(T, width)``; ``(T, width // 3, 3)``
    is flattened; no frames, the wrong frame count or NaN/Inf are an :class:`InputError`.

    ``width=None`` accepts any width; ``what`` replaces ``"(T, width)"`` in the shape error.
    """
    expected = f"(T, {width if width is not None else 'E'})" if what is None else what
    if not (np.issubdtype(value.dtype, np.floating) or np.issubdtype(value.dtype, np.integer)):
        raise InputError(f"{key!r} has dtype {value.dtype}, expected numbers", path)
    if width is not None and value.ndim == 3 and value.shape[1:] == (width // 3, 3):
        value = value.reshape(value.shape[0], width)
    if value.ndim != 2 or (width is not None and value.shape[1] != width):
        raise InputError(f"{key!r} has shape {value.shape}, expected {expected}", path)
    if value.shape[0] == 0:
        raise InputError(f"{key!r} has no frames (shape {value.shape})", path)
    if frames is not None and value.shape[0] != frames:
        raise InputError(f"{key!r} has {value.shape[0]} frames, expected {frames} like the poses", path)
    if not np.isfinite(value).all():
        raise InputError(f"{key!r} contains NaN or Inf", path)
    return value.astype(np.float32)


class NpzArchive:
    """Checked, lazy access to the arrays of an ``.npz`` file (pickles refused per key); from :func:`open_npz`."""

    def __init__(self, path: Path, data: np.lib.npyio.NpzFile) -> None:
        self.path = path
        self._data = data
        self.files = tuple(data.files)

    def __contains__(self, key: str) -> bool:
        return key in self.files

    def raw(self, key: str) -> np.ndarray:
        """The array ``key`` as stored (unchecked apart from pickles and a broken archive)."""
        try:
            return self._data[key]
        except ValueError as exc:
            if "allow_pickle" in str(exc):
                problem = f"contains pickled objects ({key!r}), which are not loaded for safety"
                raise InputError(problem, self.path) from None
            raise InputError(f"{key!r} could not be read ({exc})", self.path) from None
        except (OSError, EOFError, zipfile.BadZipFile, zlib.error):
            raise InputError("not a valid .npz file (truncated or wrong format)", self.path) from None

    def floats(self, key: str, width: int | None, *, frames: int | None = None, what: str | None = None) -> np.ndarray:
        """``key`` as float32 ``(T, width)``, checked by :func:`checked_floats`."""
        return checked_floats(self.raw(key), key, self.path, width, frames=frames, what=what)

    def text(self, key: str) -> str:
        """``key`` as one string."""
        value = self.raw(key)
        if value.dtype.kind not in "US" or value.size != 1:
            raise InputError(f"{key!r} is not a string", self.path)
        item = value.reshape(()).item()
        return item.decode("utf-8", "replace") if isinstance(item, bytes) else str(item)

    def number(self, key: str) -> float:
        """``key`` as one positive, finite number (a frame rate)."""
        value = self.raw(key)
        if value.size != 1 or not (np.issubdtype(value.dtype, np.floating) or np.issubdtype(value.dtype, np.integer)):
            raise InputError(f"{key!r} is not a number (shape {value.shape}, dtype {value.dtype})", self.path)
        number = float(value.reshape(()))
        if not (np.isfinite(number) and number > 0):
            raise InputError(f"{key!r} is {number}, expected a positive frame rate", self.path)
        return number


@contextmanager
def open_npz(path: str | Path, *, max_bytes: int) -> Iterator[NpzArchive]:
    """An ``.npz`` archive opened safely (size-checked, no pickle), for reading checked arrays;
    every problem is an :class:`InputError` naming the file."""
    path = checked_file(path, max_bytes=max_bytes)
    with path.open("rb") as f:
        head = f.read(2)
    if head[:1] == b"\x80":
        raise InputError("is a Python pickle, which is not loaded for safety; expected an .npz archive", path)
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        raise InputError("not a valid .npz file (truncated or wrong format)", path) from None
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise InputError("is a single .npy array; expected an .npz archive of named arrays", path)
    with data:
        # Compressed members could expand far beyond the file size.
        unpacked = sum(info.file_size for info in data.zip.infolist())
        if unpacked > max_bytes:
            raise InputError(f"unpacks to {unpacked / 2**20:.0f} MiB, over the {max_bytes / 2**20:.0f} MiB limit", path)
        yield NpzArchive(path, data)


# ----------------------------------------------------------------------------------------------
# Writing


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside ``path``; it replaces ``path`` only if the block succeeds.

    Missing folders are created. If the block or the write fails, ``path`` is left as it was
    and the temporary file is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_npz(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> Path:
    """Write ``arrays`` to ``path`` (``.npz``, uncompressed) atomically."""
    with atomic_write(path) as f:
        np.savez(f, **{k: np.asarray(v) for k, v in arrays.items()})
    return Path(path)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_write(path) as f:
        f.write(text.encode("utf-8"))  # UTF-8 whatever the locale says
    return Path(path)


__all__ = [
    "DEFAULT_CHECKPOINT",
    "NpzArchive",
    "asset_path",
    "atomic_write",
    "checked_file",
    "checked_floats",
    "default_checkpoint_path",
    "open_npz",
    "save_npz",
    "write_text_atomic",
]
