"""File safety in one place: checked reading, atomic writing, and the files the package ships.

Reading: a user's file is size-checked before it is opened, ``.npz`` archives are read with
``allow_pickle=False`` and a limit on what they unpack to, numbers beyond what real data holds are
refused (:class:`Bound`), and every problem is one :class:`prior.errors.InputError` line,
``"<file>: <problem>"``.

Writing: results go to a temporary file beside the target that replaces it only once complete,
so a crash or a bad input never leaves a half-written file.

Shipped files: ``assets/`` and ``checkpoints/`` are the packages ``prior.assets`` and
``prior.checkpoints`` once installed (see pyproject's ``package-dir``); from a source checkout
on ``PYTHONPATH`` they are the folders beside ``prior/``.
"""

from __future__ import annotations

import math
import os
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
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


def user_path(path: str | os.PathLike) -> Path:
    """``path`` with a leading ``~`` or ``~user`` expanded (a shell leaves ``--out=~/x.npz`` as typed);
    an unknown user is an :class:`InputError` (``Path.expanduser`` raises RuntimeError)."""
    try:
        return Path(path).expanduser()
    except RuntimeError:
        raise InputError("no such user", path) from None


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


def real_numbers(dtype: np.dtype) -> bool:
    """Whether ``dtype`` holds real numbers (floats, integers): not booleans, complex numbers,
    timedelta64 / datetime64, strings or objects. By ``dtype.kind``, not ``np.issubdtype``:
    ``np.timedelta64`` is a subtype of ``np.signedinteger`` and complex of ``np.number``."""
    return dtype.kind in "fiu"


@dataclass(frozen=True)
class Bound:
    """The largest magnitude a kind of number reaches in real data, with a wide margin. Beyond it a
    file is corrupt or forged: 1e20 is finite, but overflows the solvers into NaN that would then be
    blamed on the prior, so it is refused when the file is read, naming the array."""

    limit: float
    what: str
    """The kind, plural: ``"axis-angles"``."""
    unit: str = ""

    def check(self, value: np.ndarray, what: str, path: str | Path | None) -> None:
        """Refuse ``value`` (``what`` of file ``path``, as the error names it: ``"'pose_body'"``) if a
        magnitude exceeds :attr:`limit`; NaN passes."""
        over = np.abs(value) > self.limit  # NaN compares False
        if over.any():
            big = float(np.abs(value[over]).max())
            raise InputError(f"{what} holds values up to {big:.3g} ({self.what} must be within "
                             f"±{self.limit:g}{self.unit})", path)


# Real poses stay far inside these: AMASS axis-angles reach 6.3 rad (train split), a whole-body
# set's root 9.5 rad (unwrapped turns); a capture volume is metres; betas and expressions are a
# few units; keypoints are pixels of a photo (at most 100,000 wide, see the CLI's --image-size).
ANGLES = Bound(100.0, "axis-angles", " rad")
METRES = Bound(1e4, "positions", " m")
COEFFICIENTS = Bound(1e3, "shape and expression coefficients")
PIXELS = Bound(1e6, "pixel coordinates", " px")


def checked_floats(
    value: np.ndarray, key: str, path: Path, width: int | None, *, bound: Bound, frames: int | None = None,
    what: str | None = None,
) -> np.ndarray:
    """``value`` (the array ``key`` of file ``path``) as float32 ``(T, width)``; ``(T, width // 3, 3)``
    is flattened; no frames, the wrong frame count, NaN/Inf, values beyond float32's range or
    beyond ``bound`` are an :class:`InputError`, and so are dtypes that are not real numbers
    (booleans, complex numbers, timedelta64 / datetime64, strings, objects).

    ``width=None`` accepts any width; ``what`` replaces ``"(T, width)"`` in the shape error.
    """
    expected = f"(T, {width if width is not None else 'E'})" if what is None else what
    if not real_numbers(value.dtype):
        raise InputError(f"{key!r} has dtype {value.dtype}, expected numbers (real floats or integers)", path)
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
    with np.errstate(over="ignore"):
        out = value.astype(np.float32)
    if not np.isfinite(out).all():
        big = float(np.abs(value).max())
        raise InputError(f"{key!r} has values up to {big:.3g}, which do not fit float32 (at most 3.4e+38)", path)
    bound.check(out, repr(key), path)
    return out


# Frame rates a file may declare: mocap runs at 30-360 fps; 1e-300 or 1e300 would make any
# duration or resampling meaningless (or enormous).
MIN_FRAME_RATE = 1.0
MAX_FRAME_RATE = 1000.0
# An .npz's central directory: ~100 bytes a member, so 1 MiB is ~10,000 members (real files have
# a few dozen); zipfile builds an object of ~600 bytes for each before anything else is checked.
MAX_NPZ_DIRECTORY_BYTES = 2**20


class NpzArchive:
    """Checked, lazy access to the arrays of an ``.npz`` file (pickles refused per key); from :func:`open_npz`."""

    def __init__(self, path: Path, data: np.lib.npyio.NpzFile) -> None:
        self.path = path
        self._data = data
        self.files = tuple(data.files)
        self._members = set(data.zip.namelist())

    def __contains__(self, key: str) -> bool:
        return key in self.files

    def shape(self, key: str) -> tuple[int, ...]:
        """The shape ``key`` declares in its ``.npy`` header; the data is not read."""
        return self._header(key)[0]

    def dtype(self, key: str) -> np.dtype:
        """The dtype ``key`` declares in its ``.npy`` header; the data is not read."""
        return self._header(key)[1]

    def _header(self, key: str) -> tuple[tuple[int, ...], np.dtype]:
        """Shape and dtype from the member's ``.npy`` header, checked against the bytes the member
        holds: numpy allocates what the header declares before it reads any data."""
        if key not in self.files:
            raise InputError(f"has no {key!r}", self.path)
        name = key if key in self._members else f"{key}.npy"  # the member NpzFile reads for key
        info = self._data.zip.getinfo(name)
        try:
            with self._data.zip.open(info) as f:
                version = np.lib.format.read_magic(f)
                if version == (1, 0):
                    shape, _, dtype = np.lib.format.read_array_header_1_0(f)
                elif version == (2, 0):
                    shape, _, dtype = np.lib.format.read_array_header_2_0(f)
                else:
                    raise ValueError(f"unsupported .npy format version {version[0]}.{version[1]}")
                start = f.tell()
        except ValueError as exc:
            reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
            raise InputError(f"{key!r} is not a readable .npy array ({reason})", self.path) from None
        except (OSError, EOFError, zipfile.BadZipFile, zlib.error):
            raise InputError("not a valid .npz file (truncated or wrong format)", self.path) from None
        count = math.prod(shape)  # Python ints: no overflow
        held = info.file_size - start
        if dtype.hasobject:  # a pickle, refused by raw(): no size to check
            return shape, dtype
        if count * dtype.itemsize > held or (dtype.itemsize == 0 and count > held):
            raise InputError(
                f"{key!r} declares shape {shape} of {dtype} ({count * dtype.itemsize / 2**20:.0f} MiB) but holds "
                f"{held} bytes (truncated or forged)",
                self.path,
            )
        return shape, dtype

    def raw(self, key: str) -> np.ndarray:
        """The array ``key`` as stored (unchecked apart from pickles, a broken archive and a header
        that declares more data than the member holds)."""
        if self._header(key)[1].hasobject:
            raise InputError(f"contains pickled objects ({key!r}), which are not loaded for safety", self.path)
        try:
            return self._data[key]
        except ValueError as exc:
            if "allow_pickle" in str(exc):
                problem = f"contains pickled objects ({key!r}), which are not loaded for safety"
                raise InputError(problem, self.path) from None
            raise InputError(f"{key!r} could not be read ({exc})", self.path) from None
        except (OSError, EOFError, zipfile.BadZipFile, zlib.error):
            raise InputError("not a valid .npz file (truncated or wrong format)", self.path) from None

    def floats(
        self, key: str, width: int | None, *, bound: Bound, frames: int | None = None, what: str | None = None
    ) -> np.ndarray:
        """``key`` as float32 ``(T, width)``, checked by :func:`checked_floats` (``bound``: the
        magnitudes allowed); a frame count other than ``frames`` is refused from the header, before
        the data is read."""
        shape = self.shape(key)
        if frames is not None and len(shape) >= 2 and shape[0] != frames:
            raise InputError(f"{key!r} has {shape[0]} frames, expected {frames} like the poses", self.path)
        return checked_floats(self.raw(key), key, self.path, width, bound=bound, frames=frames, what=what)

    def text(self, key: str) -> str:
        """``key`` as one string."""
        value = self.raw(key)
        if value.dtype.kind not in "US" or value.size != 1:
            raise InputError(f"{key!r} is not a string", self.path)
        item = value.reshape(()).item()
        return item.decode("utf-8", "replace") if isinstance(item, bytes) else str(item)

    def number(self, key: str) -> float:
        """``key`` as one frame rate: a finite number from :data:`MIN_FRAME_RATE` to :data:`MAX_FRAME_RATE`."""
        shape = self.shape(key)
        if math.prod(shape) != 1:  # refused from the header: a "frame rate" of a million values is not read
            raise InputError(f"{key!r} is not a number (shape {shape}, dtype {self.dtype(key)})", self.path)
        value = self.raw(key)
        if value.size != 1 or not real_numbers(value.dtype):
            raise InputError(f"{key!r} is not a number (shape {value.shape}, dtype {value.dtype})", self.path)
        number = float(value.reshape(()))
        if not (np.isfinite(number) and MIN_FRAME_RATE <= number <= MAX_FRAME_RATE):
            raise InputError(
                f"{key!r} is {number}, expected a positive frame rate ({MIN_FRAME_RATE:g} to {MAX_FRAME_RATE:g} fps)",
                self.path,
            )
        return number


def _zip_directory_bytes(f: IO[bytes]) -> int | None:
    """The size of a zip's central directory as its end record declares it (what ``zipfile`` reads
    and turns into one object per member), or None when there is no end record."""
    try:
        end = zipfile._EndRecData(f)  # the very record zipfile.ZipFile will use
    except (AttributeError, OSError):  # AttributeError: a Python without the helper
        return None
    return None if end is None else int(end[zipfile._ECD_SIZE])


@contextmanager
def open_npz(path: str | Path, *, max_bytes: int, max_unpacked: int | None = None) -> Iterator[NpzArchive]:
    """An ``.npz`` archive opened safely (size-checked, no pickle), for reading checked arrays;
    every problem is an :class:`InputError` naming the file.

    ``max_bytes`` limits the file, ``max_unpacked`` (default ``max_bytes``) what its members unpack
    to; each array's ``.npy`` header must also fit its member (:meth:`NpzArchive.raw`), so nothing
    larger than these limits is ever allocated.
    """
    path = checked_file(path, max_bytes=max_bytes)
    max_unpacked = max_bytes if max_unpacked is None else max_unpacked
    with path.open("rb") as f:
        head = f.read(2)
        directory = _zip_directory_bytes(f) if head == b"PK" else None
    if head[:1] == b"\x80":
        raise InputError("is a Python pickle, which is not loaded for safety; expected an .npz archive", path)
    if directory is not None and directory > MAX_NPZ_DIRECTORY_BYTES:
        raise InputError(
            f"lists {directory / 2**20:.0f} MiB of members, over the {MAX_NPZ_DIRECTORY_BYTES / 2**20:.0f} MiB limit "
            "(an .npz holds a few dozen arrays)",
            path,
        )
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        raise InputError("not a valid .npz file (truncated or wrong format)", path) from None
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise InputError("is a single .npy array; expected an .npz archive of named arrays", path)
    with data:
        # Compressed members could expand far beyond the file size.
        # zipfile never returns more than a member's declared file_size (it stops there and checks the
        # CRC), so the declared sizes bound what can be read.
        unpacked = sum(info.file_size for info in data.zip.infolist())
        if unpacked > max_unpacked:
            raise InputError(
                f"unpacks to {unpacked / 2**20:.0f} MiB, over the {max_unpacked / 2**20:.0f} MiB limit", path)
        yield NpzArchive(path, data)


# ----------------------------------------------------------------------------------------------
# Writing


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# tempfile's names put 8 random characters between the prefix and the suffix.
_TEMP_RANDOM_CHARS = 8


def temp_name_bytes(path: Path) -> int:
    """The length in bytes of the name of :func:`temp_beside`'s files for ``path``; a folder's name
    limit (255 on most file systems) applies to it, so it is checked before any work."""
    return len(os.fsencode(f".{path.name}.")) + _TEMP_RANDOM_CHARS + len(".tmp")


def temp_beside(path: Path) -> tuple[int, str]:
    """A new empty file ``.<name>.<random>.tmp`` beside ``path``, as ``(fd, path)``: where
    :func:`atomic_write` writes before it renames (a rename within one folder is atomic)."""
    return tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")


@contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside ``path``; it replaces ``path`` only if the block succeeds.

    Missing folders are created. If the block or the write fails (an exception, Ctrl-C, or SIGTERM
    in the ``dposer`` CLI, which turns it into an exception), ``path`` is left as it was and the
    temporary file is removed. An ``OSError`` names ``path`` (a failed write names no file, a failed
    ``mkstemp`` the temporary one).
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = temp_beside(path)
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp, path)
    except OSError as e:
        if e.errno is None:
            raise
        raise OSError(e.errno, e.strerror, str(path)) from e  # the same subclass: OSError maps errno to it
    finally:
        if tmp is not None and os.path.exists(tmp):
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
    "ANGLES",
    "COEFFICIENTS",
    "DEFAULT_CHECKPOINT",
    "MAX_FRAME_RATE",
    "MAX_NPZ_DIRECTORY_BYTES",
    "METRES",
    "MIN_FRAME_RATE",
    "PIXELS",
    "Bound",
    "NpzArchive",
    "asset_path",
    "atomic_write",
    "checked_file",
    "checked_floats",
    "default_checkpoint_path",
    "open_npz",
    "real_numbers",
    "save_npz",
    "temp_beside",
    "temp_name_bytes",
    "user_path",
    "write_text_atomic",
]
