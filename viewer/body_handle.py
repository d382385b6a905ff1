"""``BodyHandle``: one body in a viser scene, as skinned meshes that share the 22 bones.

Per frame only bone poses are sent (:func:`viewer.bones.write_bones`), never vertices. A body is
either split into one submesh per joint label (so masked joints can take another colour and a
click says which joint was hit) or drawn as one mesh (ghosts, samples).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable

import numpy as np
import viser

from .bones import BONE_TOL, queue_write, write_bones
from .contact import ContactCue
from .rig import NUM_BONES, BodyRig, RigPose, SkinPiece
from .widgets import SkeletonOverlay

Color = tuple[int, int, int]

BODY_COLOR: Color = (196, 160, 120)
MASK_COLOR: Color = (225, 75, 50)
SELECT_COLOR: Color = (90, 170, 250)
SKELETON_COLOR: Color = (40, 40, 40)


class BodyHandle:
    """A posed body under the scene node ``name`` (a frame placed at ``position``).

    Args:
        scene: the (client's) scene to draw in.
        name: scene path of the body's root frame, e.g. ``"/pose/main"``.
        rig: the body model prepared for skinning.
        split: one submesh per joint label (colourable, clickable per joint) or one mesh.
        color: body colour.
        opacity: None for opaque; below 1 for translucent ghosts.
        position, wxyz: where the body's frame sits in the scene (metres) and how it is turned
            (e.g. a Z-up AMASS clip turned to the scene's Y-up).
        labels: draw only the faces of these SMPL-X joints: their submeshes with ``split``, else
            one merged mesh (a hypothesis ghost of the completed limbs: one mesh to create and pose).
        on_click: called with the SMPL-X joint (0..21) whose submesh was clicked (split only).
        contact: draw a contact cue under the feet (:class:`viewer.contact.ContactCue`), for a
            body standing on the ground grid.
    """

    def __init__(
        self,
        scene: viser.SceneApi,
        name: str,
        rig: BodyRig,
        *,
        split: bool = False,
        color: Color = BODY_COLOR,
        opacity: float | None = None,
        position: tuple[float, float, float] = (0.0, 0.0, 0.0),
        wxyz: tuple[float, float, float, float] = (1.0, 0.0, 0.0, 0.0),
        visible: bool = True,
        labels: set[int] | None = None,
        on_click: Callable[[int], None] | None = None,
        contact: bool = False,
    ) -> None:
        self.name = name
        self._scene = scene
        self._split, self._labels, self._on_click = split, labels, on_click
        self._color = color
        self._opacity = opacity
        self._colors: dict[int, Color] = {}
        self._joint_opacity: dict[int, float] = {}
        self._root = scene.add_frame(name, show_axes=False, position=position, wxyz=wxyz, visible=visible)
        self._meshes: list[tuple[SkinPiece, viser.MeshSkinnedHandle]] = []
        self._stale: dict[str, viser.MeshSkinnedHandle] = {}  # hidden meshes of an earlier body model
        self.set_rig(rig)
        self._overlay: SkeletonOverlay | None = None
        self._overlay_parts = (False, False)  # (bones, joints) shown
        self.pose: RigPose | None = None
        self.contact = ContactCue(scene, f"{name}_contact") if contact else None

    def set_rig(self, rig: BodyRig) -> None:
        """Draw this body with ``rig`` (another body model), in place, unposed.

        Each submesh is re-added under its old name, which viser's client swaps in place; meshes
        the new body has no counterpart for are hidden, never removed: in viser 1.1.1's browser
        client, removing a skinned mesh that was updated after it was added throws during React's
        cleanup ("Cannot read properties of null (reading 'remove')") and blanks the page.
        """
        self.rig = rig
        if self._split:
            pieces: Iterable[SkinPiece] = [p for p in rig.pieces if self._labels is None or p.label in self._labels]
        else:
            pieces = (rig.whole if self._labels is None else rig.merged(self._labels),)
        rest_q = np.tile(np.array([1.0, 0.0, 0.0, 0.0]), (NUM_BONES, 1))
        old = {mesh.name: mesh for _, mesh in self._meshes} | self._stale
        self._meshes = []
        for piece in pieces:
            label = "body" if piece.label is None else rig.joint_names[piece.label]
            mesh = self._scene.add_mesh_skinned(
                f"{self.name}/{label}",
                piece.vertices,
                piece.faces,
                bone_wxyzs=rest_q[piece.bones],
                bone_positions=rig.rest_joints[piece.bones],
                skin_weights=piece.skin_weights,
                color=self._colors.get(piece.label, self._color) if piece.label is not None else self._color,
                opacity=self._piece_opacity(piece),
                flat_shading=False,
                cast_shadow=False,  # shadow maps cost most of a software-rendered frame
                receive_shadow=False,
            )
            old.pop(mesh.name, None)
            if self._on_click is not None and piece.label is not None:
                on_click, joint = self._on_click, piece.label
                mesh.on_click(lambda _event, joint=joint: on_click(joint))
            self._meshes.append((piece, mesh))
        for mesh in old.values():
            mesh.visible = False
        self._stale = old
        self._sent_q = rest_q.copy()  # the bone poses last sent: (22, 4), (22, 3)
        self._sent_p = rig.rest_joints.astype(np.float64)
        self.pose = None

    # -- pose -----------------------------------------------------------------------------
    def set_pose(self, pose: RigPose) -> int:
        """Pose the body (``pose``: one row of :meth:`BodyRig.pose`). Returns the number of bone
        poses that changed, which are sent now or, inside a display frame, at its end."""
        self.pose = pose
        q, p = pose.wxyz[0], pose.positions[0]
        turned = np.abs(self._sent_q - q).max(1) > BONE_TOL  # compared once for all submeshes
        moved = np.abs(self._sent_p - p).max(1) > BONE_TOL
        self._sent_q[turned], self._sent_p[moved] = q[turned], p[moved]
        sent = 0
        for piece, mesh in self._meshes:
            b = piece.bones
            changed = int((turned[b] | moved[b]).sum())
            if changed:
                sent += changed
                queue_write(functools.partial(write_bones, mesh, q[b], p[b], turned[b], moved[b]))
        if self._overlay is not None:
            self._overlay.update(pose.positions[0])
        if self.contact is not None and self._root.visible:
            self.contact.update(self.rig.soles(pose), self._root.position, self._root.wxyz)
        return sent

    @property
    def joints(self) -> np.ndarray | None:
        """``(22, 3)`` current joint positions in the body frame, or None before the first pose."""
        return None if self.pose is None else self.pose.positions[0]

    # -- appearance ---------------------------------------------------------------------------
    @property
    def position(self) -> np.ndarray:
        return np.asarray(self._root.position)

    @position.setter
    def position(self, value: tuple[float, float, float] | np.ndarray) -> None:
        self._root.position = np.asarray(value, dtype=np.float64)

    @property
    def wxyz(self) -> np.ndarray:
        return np.asarray(self._root.wxyz)

    @wxyz.setter
    def wxyz(self, value: tuple[float, float, float, float] | np.ndarray) -> None:
        self._root.wxyz = np.asarray(value, dtype=np.float64)

    @property
    def visible(self) -> bool:
        return self._root.visible

    @visible.setter
    def visible(self, value: bool) -> None:
        self._root.visible = value
        if self.contact is not None:
            if not value:
                self.contact.hide()
            elif self.pose is not None:
                self.contact.update(self.rig.soles(self.pose), self._root.position, self._root.wxyz)

    def set_joint_colors(self, colors: dict[int, Color]) -> None:
        """Colour the submeshes of the given SMPL-X joints; every other joint takes the body colour."""
        self._colors = dict(colors)
        for piece, mesh in self._meshes:
            want = self._colors.get(piece.label, self._color) if piece.label is not None else self._color
            if tuple(np.asarray(mesh.color).tolist()) != tuple(want):
                mesh.color = want

    def joint_color(self, joint: int) -> Color:
        """The colour joint ``joint``'s submesh is drawn in."""
        for piece, mesh in self._meshes:
            if piece.label == joint or piece.label is None:
                return tuple(int(c) for c in np.asarray(mesh.color))  # type: ignore[return-value]
        return self._color

    def set_color(self, color: Color) -> None:
        self._color = color
        self.set_joint_colors(self._colors)

    def set_opacity(self, opacity: float | None) -> None:
        self._opacity = opacity
        self._apply_opacity()

    def set_joint_opacity(self, opacity: dict[int, float]) -> None:
        """See-through submeshes of the given SMPL-X joints (split bodies); the others take the
        body's opacity."""
        self._joint_opacity = dict(opacity)
        self._apply_opacity()

    def _piece_opacity(self, piece: SkinPiece) -> float | None:
        return self._joint_opacity.get(piece.label, self._opacity) if piece.label is not None else self._opacity

    def _apply_opacity(self) -> None:
        for piece, mesh in self._meshes:
            want = self._piece_opacity(piece)
            if mesh.opacity != want:
                mesh.opacity = want

    def joint_opacity(self, joint: int) -> float | None:
        """The opacity joint ``joint``'s submesh is drawn with (None: opaque)."""
        for piece, mesh in self._meshes:
            if piece.label == joint or piece.label is None:
                return mesh.opacity
        return self._opacity

    def show_skeleton(self, skeleton: bool, joints: bool) -> None:
        """Show or hide the bones as lines and the joints as points (drawn over the mesh)."""
        want = (skeleton, joints)
        if want != self._overlay_parts:
            if self._overlay is not None:
                self._overlay.remove()
            self._overlay = None if not any(want) else SkeletonOverlay(
                self._scene, f"{self.name}/skeleton", self.rig.parents[:NUM_BONES],
                line_color=SKELETON_COLOR if skeleton else None, point_color=SELECT_COLOR if joints else None,
            )
            self._overlay_parts = want
        if self.pose is not None and self._overlay is not None:
            self._overlay.update(self.pose.positions[0])

    @property
    def joint_labels(self) -> set[int]:
        """The SMPL-X joints that own a submesh (a split body; a joint may own no faces)."""
        return {piece.label for piece, _ in self._meshes if piece.label is not None}

    @property
    def meshes(self) -> list[viser.MeshSkinnedHandle]:
        return [mesh for _, mesh in self._meshes]


class BodyPool:
    """Bodies that are hidden and reused instead of removed (see :meth:`BodyHandle.set_rig`).

    ``take(key, count, make)`` returns ``count`` bodies made by ``make(index)`` for that key
    (e.g. the set of joints a ghost shows), showing them and hiding every other body in the pool.
    """

    def __init__(self) -> None:
        self._bodies: dict[object, list[BodyHandle]] = {}

    def take(self, key: object, count: int, make: Callable[[int], BodyHandle]) -> list[BodyHandle]:
        bodies = self._bodies.setdefault(key, [])
        while len(bodies) < count:
            bodies.append(make(len(bodies)))
        for other_key, others in self._bodies.items():
            for i, body in enumerate(others):
                want = other_key == key and i < count
                if body.visible != want:
                    body.visible = want
        return bodies[:count]

    def hide(self) -> None:
        for bodies in self._bodies.values():
            for body in bodies:
                if body.visible:
                    body.visible = False

    def set_rig(self, rig: BodyRig) -> None:
        """Redraw every pooled body with another body model (in place), all hidden."""
        for bodies in self._bodies.values():
            for body in bodies:
                body.set_rig(rig)
                body.visible = False
