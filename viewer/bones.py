"""Writing skinned-mesh bone poses to viser, only the bones that changed.

viser's public per-bone setters (``handle.bones[i].wxyz = ...``) validate and compare every value
on its own, about 35 us per bone; a frame of eleven bodies would spend ~20 ms in them. This module
does the comparison for all bones in one numpy call and queues the same ``SetBone*`` messages the
setters queue, keeping each bone handle's stored pose in sync. If viser's internals differ from
what is expected here (another viser version), it falls back to the public setters.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator

import numpy as np
import viser

try:  # viser 1.x internals; see module docstring
    from viser._messages import SetBoneOrientationMessage, SetBonePositionMessage
except ImportError:  # pragma: no cover - other viser versions
    SetBoneOrientationMessage = SetBonePositionMessage = None  # type: ignore[assignment,misc]

BONE_TOL = 1e-6  # bone poses closer than this to what was sent are not re-sent
_frame = threading.local()


@contextlib.contextmanager
def collect_writes() -> Iterator[list[Callable[[], object]]]:
    """Bone writes queued (:func:`queue_write`) in this thread inside the block are collected in
    the yielded list instead of sent: a display frame computes everything first, then sends all of
    its bone messages together (inside ``client.atomic()``, which must not be held while computing)."""
    outer = getattr(_frame, "writes", None)
    writes: list[Callable[[], object]] = []
    _frame.writes = writes
    try:
        yield writes
    finally:
        _frame.writes = outer


def queue_write(write: Callable[[], object]) -> None:
    """Run ``write`` now, or at the end of the enclosing :func:`collect_writes` block."""
    writes = getattr(_frame, "writes", None)
    if writes is None:
        write()
    else:
        writes.append(write)


def write_bones(
    handle: viser.MeshSkinnedHandle, wxyz: np.ndarray, positions: np.ndarray, turned: np.ndarray, moved: np.ndarray,
) -> None:
    """Send the bones of ``handle`` that changed: orientation ``wxyz: (B, 4)`` where ``turned (B,)``,
    position ``positions: (B, 3)`` (metres, mesh frame) where ``moved (B,)``. The caller knows what
    changed (a body compares its 22 bones once, against what it last sent, for all its submeshes)."""
    bones = handle.bones
    impl = getattr(bones[0], "_impl", None)
    mesh_impl = getattr(impl, "mesh_impl", None)
    queue = getattr(getattr(mesh_impl, "api", None), "_queue_scene_message", None)
    if queue is None or SetBoneOrientationMessage is None or mesh_impl.removed:
        for i in np.flatnonzero(turned):
            bones[i].wxyz = wxyz[i]
        for i in np.flatnonzero(moved):
            bones[i].position = positions[i]
        return
    name = impl.name
    for i in np.flatnonzero(turned).tolist():  # only what changed: a root bone never moves, for one
        q = wxyz[i]
        bones[i]._impl.wxyz[:] = q
        queue(SetBoneOrientationMessage(name, i, (float(q[0]), float(q[1]), float(q[2]), float(q[3]))))
    for i in np.flatnonzero(moved).tolist():
        p = positions[i]
        bones[i]._impl.position[:] = p
        queue(SetBonePositionMessage(name, i, (float(p[0]), float(p[1]), float(p[2]))))
