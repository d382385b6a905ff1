"""The shown bodies as a ``.viser`` scene file for viser's offline player.

viser serialises the *server-wide* scene; this app draws each tab in its own client scene. So the
tab's current bodies are re-drawn as plain meshes into a private, throw-away server on a free
local port, whose serializer then writes the file.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
import viser

if TYPE_CHECKING:
    from .session import ClientSession


def shown_bodies(session: ClientSession) -> list[tuple[str, np.ndarray, tuple[float, float, float], tuple[int, int, int]]]:
    """``(name, pose_body (63,), position, colour)`` of the bodies the tab shows now."""
    panels = session.panels
    y = session.ground_y
    if session.stage == "samples" and panels["generate"].poses is not None:
        poses = panels["generate"].poses
        return [(f"sample_{k}", p, (b.position[0], y, 0.0), (150, 175, 205))
                for k, (p, b) in enumerate(zip(poses, panels["generate"].bodies))]
    out = [("pose", session.pose, (0.0, y, 0.0), (196, 160, 120))]
    hyps = panels["complete"].hypotheses
    if hyps is not None and panels["complete"].ghosts:
        out += [(f"hypothesis_{k}", p, (0.0, y, 0.0), (110, 150, 235)) for k, p in enumerate(hyps)]
    return out


def scene_recording(session: ClientSession) -> bytes:
    """A ``.viser`` file (bytes) holding the tab's shown poses as meshes on a ground grid."""
    body = session.app.resources.body
    bodies = shown_bodies(session)
    poses = torch.as_tensor(np.stack([b[1] for b in bodies]), dtype=torch.float32)
    with torch.inference_mode():
        hands = body.hand_mean[None] if body.has_hands else None
        verts = body.forward(poses, hand_pose=hands).vertices.numpy()
    faces = body.faces.numpy()
    server = viser.ViserServer(host="127.0.0.1", port=0, verbose=False)
    try:
        server.scene.set_up_direction("+y")
        server.scene.add_grid("/ground", width=20.0, height=20.0, plane="xz", cell_size=0.25)
        for (name, _, position, color), v in zip(bodies, verts):
            opacity = 0.35 if name.startswith("hypothesis") else None
            server.scene.add_mesh_simple(f"/{name}", v.astype(np.float32), faces, color=color, opacity=opacity,
                                         position=position)
        return server.get_scene_serializer().serialize()
    finally:
        server.stop()
