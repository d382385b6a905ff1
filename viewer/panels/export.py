"""Export tab: what is on screen, as an AMASS npz, a mesh (.obj/.ply), a .viser scene, or an
animation for Blender and game engines (BVH, glTF binary, AMASS npz: ``prior.exports``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import viser

from prior.errors import InputError
from prior.exports import export_bytes

from .. import exports
from ..markup import literal
from .base import Panel

if TYPE_CHECKING:
    from ..session import ClientSession

# kind -> download name
KINDS = {"poses": "poses.npz", "mesh": "pose.{fmt}", "scene": "scene.viser", "animation": "{name}.{fmt}"}
SUFFIXES = {".npz": "poses", ".obj": "mesh", ".ply": "mesh", ".viser": "scene", ".bvh": "animation",
            ".glb": "animation"}
MESH_FORMATS = ("obj", "ply")
ANIMATION_FORMATS = ("glb", "bvh", "npz")


class ExportPanel(Panel):
    """Exports the bodies shown by the panel whose stage is on screen (its ``shown_bodies``): the
    current pose (with Complete's hypotheses, or Inspect's x_t and x0_hat, when shown), the
    generated samples, or the Motion tab's bodies at the current frame. The mesh is the first of
    them (the pose, the first sample, the original clip)."""

    name = "export"
    label = "Export"
    icon = "download"

    def __init__(self, session: ClientSession, container: viser.GuiFolderHandle) -> None:
        super().__init__(session, container)
        gui = session.gui
        with container:
            self.what = gui.add_markdown("")
            self.pose_download = gui.add_button("Download poses (.npz)", icon=viser.Icon.DOWNLOAD,
                                                hint="Every body on screen, one frame each (AMASS SMPL-X layout)")
            self.mesh_format = gui.add_dropdown("Mesh format", MESH_FORMATS, initial_value=MESH_FORMATS[0],
                                                hint="OBJ or PLY, for Download mesh")
            self.mesh_download = gui.add_button("Download mesh", icon=viser.Icon.DOWNLOAD,
                                                hint="The first body on screen as it stands there: metres, Y up")
            self.scene_download = gui.add_button("Download scene (.viser)", icon=viser.Icon.DOWNLOAD,
                                                 hint="The bodies on screen for viser's offline player")
            self.animation_format = gui.add_dropdown(
                "Animation format", ANIMATION_FORMATS, initial_value=ANIMATION_FORMATS[0],
                hint="glb: the skinned mesh and its animation (Blender, game engines); bvh: the skeleton's motion; "
                     "npz: AMASS SMPL-X (the SMPL-X Blender add-on, aitviewer)")
            self.animation_download = gui.add_button(
                "Download animation", icon=viser.Icon.MOVIE,
                hint="The clip on screen (the selected body's), or the bodies on screen side by side (glb) or "
                     "as frames (bvh, npz), Y up")
            self.file_name = gui.add_text("File name", initial_value="poses.npz",
                                          hint=f"Saved in the export folder {session.app.export_dir}: .npz the poses, "
                                               ".obj / .ply the mesh, .viser the scene, .bvh / .glb the animation")
            self.save = gui.add_button("Save to export folder", icon=viser.Icon.DEVICE_FLOPPY,
                                      hint="Write the file named above into the export folder (never elsewhere)")
        self.pose_download.on_click(lambda e: self.download(e.client, "poses"))
        self.mesh_download.on_click(lambda e: self.download(e.client, "mesh"))
        self.scene_download.on_click(lambda e: self.download(e.client, "scene"))
        self.animation_download.on_click(lambda e: self.download(e.client, "animation"))
        self.save.on_click(lambda _: self.save_file(self.file_name.value))

    def on_show(self) -> None:
        shown = self.session.shown_bodies()
        names = ", ".join(literal(b.name) for b in shown) or "nothing"
        self.what.content = f"**On screen:** {names}"

    def export_bytes(self, kind: str, *, mesh_format: str | None = None) -> bytes:
        """The content of an export (``poses``, ``mesh``, ``scene`` or ``animation`` with
        ``mesh_format`` its format) of the bodies on screen. Runs the body model: call it on the
        worker. Raises ``InputError`` when nothing is shown."""
        shown = self.session.shown_bodies()
        if not shown:
            raise InputError("there are no bodies on screen to export")
        body = self.session.app.resources.body
        if kind == "animation":
            stage = self.session.stage_panel
            clips = exports.animation_clips(body, None if stage is None else stage.shown_motion(), shown)
            try:
                return export_bytes(clips, body, "." + (mesh_format or ANIMATION_FORMATS[0]))
            except ValueError as exc:
                raise InputError(f"cannot export the animation: {exc}") from None
        if kind == "poses":
            return exports.poses_npz(shown)
        if kind == "mesh":
            return exports.mesh_file(body, shown[0], mesh_format or MESH_FORMATS[0])
        return exports.scene_recording(body, shown)

    def download(self, client: viser.ClientHandle | None, kind: str) -> None:
        """Build an export on the worker and send it to the browser tab that asked."""
        if client is None:
            return
        if kind == "animation":
            fmt = self.animation_format.value if self.animation_format.value in ANIMATION_FORMATS else "glb"
            stage = self.session.stage_panel
            name = KINDS[kind].format(name="clip" if stage is not None and stage.shown_motion() else "poses", fmt=fmt)
        else:
            fmt = self.mesh_format.value if self.mesh_format.value in MESH_FORMATS else MESH_FORMATS[0]
            name = KINDS[kind].format(fmt=fmt)

        def on_done(data: bytes) -> None:
            client.send_file_download(name, data, save_immediately=True)
            self.session.mark(f"download_{kind}")

        self.session.submit(f"export-{kind}", lambda ctx: self.export_bytes(kind, mesh_format=fmt), on_done=on_done,
                            needs_prior=False)

    def save_file(self, name: str) -> None:
        """Write an export named ``name`` into the app's export folder on the worker, atomically;
        the suffix picks what (a name with folders in it is refused: see :func:`exports.export_path`)."""
        folder = self.session.app.export_dir
        try:
            kind = SUFFIXES[exports.export_path(folder, name, tuple(SUFFIXES)).suffix.lower()]
        except InputError as exc:
            self.session.notify("Cannot save", str(exc), error=True)
            return

        def run(ctx) -> Path:
            data = self.export_bytes(kind, mesh_format=Path(name).suffix[1:].lower())
            return exports.save_export(folder, name, data, tuple(SUFFIXES))

        self.session.submit("export-save", run, on_done=lambda p: self.session.notify("Saved", literal(str(p))),
                            needs_prior=False)


__all__ = ["ExportPanel"]
