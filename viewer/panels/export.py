"""Export tab: the current pose(s) as an AMASS npz, the posed mesh as .obj/.ply, the scene as .viser."""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import trimesh
import viser

from prior.data import Clip, clip_arrays, save_clip
from prior.errors import InputError
from prior.files import atomic_write

from .base import Panel

if TYPE_CHECKING:
    from ..session import ClientSession

WHAT = ("current pose", "generated samples", "completion hypotheses")


def poses_to_npz_bytes(pose_body: np.ndarray) -> bytes:
    """``pose_body: (N, 63)`` as an AMASS SMPL-X stageii npz (N frames, zero root, 30 fps assumed)."""
    buf = io.BytesIO()
    np.savez(buf, **clip_arrays(poses_clip(pose_body)))
    return buf.getvalue()


def poses_clip(pose_body: np.ndarray) -> Clip:
    pose_body = np.asarray(pose_body, np.float32).reshape(-1, 63)
    return Clip(pose_body=pose_body, root_orient=np.zeros((len(pose_body), 3), np.float32))


def posed_mesh(session: ClientSession, pose_body: np.ndarray) -> trimesh.Trimesh:
    """The full-resolution posed mesh (the body model's own skinning, pose correctives included)."""
    body = session.app.resources.body
    with torch.inference_mode():
        hands = body.hand_mean[None] if body.has_hands else None
        verts = body.forward(torch.as_tensor(pose_body, dtype=torch.float32)[None], hand_pose=hands).vertices[0]
    verts = verts.numpy() - np.array([0.0, session.rig.floor_y, 0.0])
    return trimesh.Trimesh(verts, body.faces.numpy(), process=False)


class ExportPanel(Panel):
    name = "export"

    def __init__(self, session: ClientSession, tab: viser.GuiTabHandle) -> None:
        super().__init__(session)
        gui = session.gui
        with tab:
            self.what = gui.add_dropdown("Poses", WHAT, initial_value=WHAT[0])
            self.pose_download = gui.add_button("Download poses (.npz)", icon=viser.Icon.DOWNLOAD)
            self.mesh_format = gui.add_dropdown("Mesh format", ("obj", "ply"), initial_value="obj")
            self.mesh_download = gui.add_button("Download mesh", icon=viser.Icon.DOWNLOAD,
                                                hint="The current pose's mesh, feet on y = 0, metres, Y up")
            self.scene_download = gui.add_button("Download scene (.viser)", icon=viser.Icon.DOWNLOAD,
                                                 hint="A recording of the shown bodies for viser's offline player")
            self.path = gui.add_text("Save to path", initial_value="poses.npz",
                                     hint=".npz saves the poses; .obj / .ply the mesh")
            self.save = gui.add_button("Save", icon=viser.Icon.DEVICE_FLOPPY)
        self.pose_download.on_click(lambda e: self._download(e.client, "poses"))
        self.mesh_download.on_click(lambda e: self._download(e.client, "mesh"))
        self.scene_download.on_click(lambda e: self._download(e.client, "scene"))
        self.save.on_click(lambda _: self.save_to_path(Path(self.path.value).expanduser()))

    def selected_poses(self) -> np.ndarray | None:
        """``(N, 63)`` the poses chosen in the dropdown, or None when there are none."""
        panels = self.session.panels
        if self.what.value == "generated samples":
            traj = panels["generate"].trajectory
            return None if traj is None else traj[-1]
        if self.what.value == "completion hypotheses":
            return panels["complete"].hypotheses
        return self.session.pose[None]

    def export_bytes(self, kind: str) -> tuple[str, bytes] | None:
        """``(file name, content)`` of an export (``poses``, ``mesh`` or ``scene``)."""
        if kind == "poses":
            poses = self.selected_poses()
            if poses is None:
                self.session.notify("Nothing to export", f"There are no {self.what.value} yet.")
                return None
            return "poses.npz", poses_to_npz_bytes(poses)
        if kind == "mesh":
            fmt = str(self.mesh_format.value)
            return f"pose.{fmt}", posed_mesh(self.session, self.session.pose).export(file_type=fmt)
        from ..scene_export import scene_recording

        return "scene.viser", scene_recording(self.session)

    def _download(self, client: viser.ClientHandle | None, kind: str) -> None:
        out = self.export_bytes(kind)
        if out is not None and client is not None:
            client.send_file_download(*out, save_immediately=True)
            self.session.mark(f"download_{kind}")

    def save_to_path(self, path: Path) -> None:
        """Save poses (.npz) or the mesh (.obj/.ply) to ``path``, atomically."""
        try:
            if path.suffix == ".npz":
                poses = self.selected_poses()
                if poses is None:
                    raise InputError(f"there are no {self.what.value} to save", path)
                save_clip(poses_clip(poses), path)
            elif path.suffix in (".obj", ".ply"):
                data = posed_mesh(self.session, self.session.pose).export(file_type=path.suffix[1:])
                with atomic_write(path) as f:
                    f.write(data.encode() if isinstance(data, str) else data)
            else:
                raise InputError("expected a .npz, .obj or .ply file name", path)
        except InputError as exc:
            self.session.notify("Cannot save", str(exc), error=True)
            return
        except OSError as exc:
            self.session.notify("Cannot save", f"{path}: {exc.strerror or exc}", error=True)
            return
        self.session.notify("Saved", str(path))


__all__ = ["ExportPanel", "poses_to_npz_bytes", "posed_mesh"]
