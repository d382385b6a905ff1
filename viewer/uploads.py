"""Files uploaded through the browser: size-limited while they arrive, written to a private
temporary file, and read by the same loaders as files on disk (which treat them as data: no
pickle, no code).

viser buffers an upload in memory until its last part arrives and only then calls the button's
``on_upload``; a size check there comes after the memory is spent. :func:`limit_uploads` checks
each transfer as it starts (its declared size) and as its parts arrive (what was really sent), so
a tab never buffers more than its button's limit plus one websocket message.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import viser
from viser import _messages

from prior.errors import InputError

MAX_CLIP_BYTES = 256 * 2**20
MAX_CHECKPOINT_BYTES = 512 * 2**20
MAX_BODY_MODEL_BYTES = 512 * 2**20


def limit_uploads(client: viser.ClientHandle, limits: list[tuple[viser.GuiUploadButtonHandle, int]],
                  on_refused: Callable[[str], None]) -> None:
    """Refuse this tab's uploads to the buttons in ``limits`` (button, max bytes) as soon as they
    are known to be too large; ``on_refused(message)`` gets a one-line error naming the file.

    The tab's in-flight uploads together are held to the largest limit (several parallel
    transfers to one button are not a way around it). Uploads to other components are refused.
    """
    by_uuid = {button._impl.uuid: max_bytes for button, max_bytes in limits}
    total_limit = max(by_uuid.values())
    states = client.gui._current_file_upload_states  # viser's buffers of this tab's transfers
    connection = client.gui._websock_interface

    def refuse(transfer_uuid: str, problem: str) -> None:
        state = states.pop(transfer_uuid, None)  # viser ignores the transfer's later parts
        if state is not None:
            on_refused(f"{Path(state['filename']).name or 'upload'}: {problem}")

    def on_start(client_id: int, message: _messages.FileTransferStartUpload) -> None:
        max_bytes = by_uuid.get(message.source_component_uuid)
        if max_bytes is None:
            refuse(message.transfer_uuid, "uploads are not accepted here")
        elif message.size_bytes > max_bytes:
            refuse(message.transfer_uuid, _too_large(message.size_bytes, max_bytes))

    def on_part(client_id: int, message: _messages.FileTransferPart) -> None:
        state = states.get(message.transfer_uuid)
        if state is None:
            return
        max_bytes = by_uuid.get(message.source_component_uuid or "", 0)
        if state["transferred_bytes"] > min(max_bytes, state["total_bytes"]):  # more than it declared
            refuse(message.transfer_uuid, _too_large(state["transferred_bytes"], min(max_bytes, state["total_bytes"])))
            return
        in_flight = sum(s["transferred_bytes"] for s in list(states.values()))
        if in_flight > total_limit:
            refuse(message.transfer_uuid, f"uploads in progress are over {total_limit / 2**20:.0f} MiB together")

    # Registered after viser's own handlers, so these run once viser has recorded the transfer.
    connection.register_handler(_messages.FileTransferStartUpload, on_start)
    connection.register_handler(_messages.FileTransferPart, on_part)


def _too_large(size: int, max_bytes: int) -> str:
    return f"the upload is {size / 2**20:.0f} MiB, more than the {max_bytes / 2**20:.0f} MiB limit"


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
        raise InputError(_too_large(size, max_bytes), name)
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
