"""Files uploaded through the browser: size-checked, written to a private temporary file, and read
by the same loaders as files on disk (which treat them as data: no pickle, no code)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import viser

from prior.errors import InputError

MAX_CLIP_BYTES = 256 * 2**20
MAX_CHECKPOINT_BYTES = 512 * 2**20
MAX_BODY_MODEL_BYTES = 512 * 2**20


def save_upload(upload: viser.UploadedFile, *, max_bytes: int, suffix: str | None = None) -> Path:
    """Write an upload to a new temporary file and return its path; the caller deletes it.

    Raises ``InputError`` naming the uploaded file when it is empty or larger than ``max_bytes``.
    The temporary file keeps the upload's extension (loaders tell formats apart by it) unless
    ``suffix`` is given.
    """
    name = Path(upload.name).name or "upload"
    size = len(upload.content)
    if size == 0:
        raise InputError("the uploaded file is empty", name)
    if size > max_bytes:
        raise InputError(f"the upload is {size / 2**20:.0f} MiB, more than the {max_bytes / 2**20:.0f} MiB limit", name)
    ext = suffix if suffix is not None else Path(name).suffix
    fd, tmp = tempfile.mkstemp(prefix="dposer-view-upload-", suffix=ext)
    with os.fdopen(fd, "wb") as f:
        f.write(upload.content)
    return Path(tmp)


@contextmanager
def uploaded_to_file(upload: viser.UploadedFile, *, max_bytes: int, suffix: str | None = None) -> Iterator[Path]:
    """:func:`save_upload` as a context: yields the temporary file's path, deletes it afterwards."""
    path = save_upload(upload, max_bytes=max_bytes, suffix=suffix)
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


def upload_error(exc: InputError, upload: viser.UploadedFile) -> str:
    """The one-line error for an upload, naming the uploaded file rather than the temporary one."""
    return f"{Path(upload.name).name}: {exc.problem}"
