"""A contact cue: a dark disc on the ground under each foot, darker the nearer the sole.

Real shadow maps cost most of a software-rendered frame (see ``viewer.session``), yet foot contact
must be judged: each sole (the lowest point of its foot, :meth:`viewer.rig.BodyRig.soles`) gets a
flat disc on the ground below it, fully dark at contact and gone :data:`FADE_M` above the ground.
Opacity moves in steps of 0.05 so a body that stands still sends nothing.
"""

from __future__ import annotations

import numpy as np
import trimesh
import viser

from prior.rotations import wxyz_to_matrix_np

FADE_M = 0.12  # a sole this high above the ground casts no cue
DARKEST = 0.55  # the cue's opacity at contact
RADIUS_M = 0.085
COLOR = (35, 35, 35)


class ContactCue:
    """The two discs of one body under the scene node ``name`` (beside the body's own node, so
    the body's turn does not tilt them); ``update`` places them from the body's soles."""

    def __init__(self, scene: viser.SceneApi, name: str) -> None:
        disc = trimesh.creation.cylinder(radius=RADIUS_M, height=0.001, sections=28)
        self._discs = [
            scene.add_mesh_simple(f"{name}/{side}", disc.vertices.astype(np.float32), disc.faces.astype(np.uint32),
                                  color=COLOR, opacity=DARKEST, wxyz=(np.cos(np.pi / 4), np.sin(np.pi / 4), 0.0, 0.0),
                                  cast_shadow=False, receive_shadow=False, visible=False)
            for side in ("left", "right")
        ]
        self._shown = [0.0, 0.0]
        self._at = np.full((2, 2), np.inf)  # the discs' (x, z) as sent
        self.enabled = True

    def update(self, soles: np.ndarray, position: np.ndarray, wxyz: np.ndarray) -> None:
        """``soles: (2, 3)`` in the body frame, which sits at ``position`` turned by ``wxyz``."""
        world = soles @ wxyz_to_matrix_np(np.asarray(wxyz, np.float64)).T + np.asarray(position, np.float64)
        for k, (disc, sole) in enumerate(zip(self._discs, world)):
            darkness = 0.0 if not self.enabled else DARKEST * float(np.clip(1.0 - sole[1] / FADE_M, 0.0, 1.0))
            darkness = round(darkness * 20) / 20
            if darkness > 0 and np.abs(self._at[k] - sole[[0, 2]]).max() > 1e-3:
                disc.position = (float(sole[0]), 0.0015, float(sole[2]))
                self._at[k] = sole[[0, 2]]
            if darkness != self._shown[k]:
                if darkness > 0:
                    disc.opacity = darkness
                disc.visible = darkness > 0
                self._shown[k] = darkness

    @property
    def opacities(self) -> list[float]:
        """The two discs' opacity as shown (0: hidden), left then right."""
        return list(self._shown)

    def hide(self) -> None:
        for k, disc in enumerate(self._discs):
            disc.visible = False
            self._shown[k] = 0.0
