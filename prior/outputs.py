"""Checks before a result is written: that its path can be written, and that its numbers are finite.

Both raise :class:`prior.errors.InputError`, so the CLI prints one line and exits 2 with nothing
written. :func:`check_writable` runs before any work (a run of minutes should not end in "cannot
write"); :func:`refuse_non_finite` runs on the arrays about to be saved.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from .errors import InputError
from .files import temp_beside, temp_name_bytes


def check_writable(path: str | os.PathLike, flag: str) -> Path:
    """``path`` (given as ``flag``) if a file can be created there; else an :class:`InputError` naming it.

    Refused: an existing folder, a parent that is a file, a name (or the temporary file's name, see
    :func:`prior.files.temp_beside`) over the folder's name limit, and a folder where nothing can be
    created (tried for real, with a temporary entry that is removed at once: permission bits do not
    stop root, a read-only mount does). Missing folders are fine: writing creates them. Any other
    ``OSError`` on the way (a path too long, ``/proc``) is refused as well.
    """
    path = Path(path)
    try:
        if path.is_dir():
            raise InputError(f"{flag} is a folder, expected a file name", path)
        ancestor = path.absolute().parent
        while not ancestor.exists() and ancestor != ancestor.parent:
            ancestor = ancestor.parent
        if not ancestor.is_dir():
            raise InputError(f"{flag} cannot be written: {ancestor} is not a folder", path)
        _check_name_lengths(path, ancestor, flag)
        if ancestor == path.absolute().parent:
            fd, probe = temp_beside(path.absolute())
            os.close(fd)
            os.unlink(probe)
        else:
            os.rmdir(tempfile.mkdtemp(dir=ancestor, prefix=".dposer.", suffix=".probe"))
    except OSError as e:
        raise InputError(f"{flag} cannot be written ({e.strerror or e})", path) from None
    return path


def _check_name_lengths(path: Path, ancestor: Path, flag: str) -> None:
    """Refuse a folder still to be created, or the temporary file, whose name is over ``ancestor``'s
    limit: a missing folder hides the limit from ``stat``, so the write would fail only at the end."""
    most = os.pathconf(ancestor, "PC_NAME_MAX")
    for folder in path.absolute().parent.relative_to(ancestor).parts:
        if len(os.fsencode(folder)) > most:
            raise InputError(f"{flag} cannot be written: a folder name of {len(os.fsencode(folder))} bytes is "
                             f"over the limit of {most}", path)
    if temp_name_bytes(path) > most:
        raise InputError(f"{flag} cannot be written: the file name is {temp_name_bytes(path)} bytes with the "
                         f"temporary file's suffix, over the folder's limit of {most}", path)


def check_distinct(**paths: str | os.PathLike | None) -> None:
    """Refuse two output flags (``{"--out": path, ...}``) that name the same file."""
    seen: dict[Path, str] = {}
    for flag, path in paths.items():
        if path is None:
            continue
        key = Path(path).absolute()
        if key in seen:
            raise InputError(f"{seen[key]} and {flag} name the same file", path)
        seen[key] = flag


def count_non_finite(value: np.ndarray, axis: int = 0) -> tuple[int, int]:
    """``(bad, total)``: how many of the ``total`` items along ``axis`` hold NaN or Inf."""
    value = np.asarray(value)
    if value.ndim == 0:
        return (int(not np.isfinite(value)) if value.dtype.kind in "fc" else 0), 1
    total = value.shape[axis]
    if value.dtype.kind not in "fc" or value.size == 0:
        return 0, total
    others = tuple(i for i in range(value.ndim) if i != axis % value.ndim)
    return int((~np.isfinite(value).all(axis=others)).sum()), total


def refuse_non_finite(
    arrays: Mapping[str, np.ndarray], *, unit: str, source: str = "the prior",
    hint: str = "the checkpoint may be broken", path: str | os.PathLike | None = None,
    axes: Mapping[str, int] | None = None,
) -> None:
    """Raise :class:`InputError` if any float array of ``arrays`` holds NaN or Inf (nothing is then written).

    The message counts the bad ``unit`` (items along the first axis, or ``axes[key]``): ``"the
    prior produced NaN/Inf for 3 of 16 samples ('pose_body'); the checkpoint may be broken;
    nothing was written"``; ``path`` names the file to blame (a checkpoint).
    """
    for key, value in arrays.items():
        bad, total = count_non_finite(value, (axes or {}).get(key, 0))
        if bad:
            raise InputError(f"{source} produced NaN/Inf for {bad} of {total} {unit} ({key!r}); {hint}; "
                             "nothing was written", path)


__all__ = ["check_distinct", "check_writable", "count_non_finite", "refuse_non_finite"]
