"""Export tab: what is on screen, as an AMASS npz, a mesh (.obj/.ply), a .viser scene, or an
animation for Blender and game engines (BVH, glTF binary, AMASS npz: ``prior.exports``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import viser

from prior.errors import InputError
from prior.exports import export_bytes

from .. import exports, recording
from ..markup import literal
from ..widgets import checked_choice, in_range
from .base import Panel, Timeline

if TYPE_CHECKING:
    from ..session import ClientSession
    from ..worker import JobContext

# kind -> download name
KINDS = {"poses": "poses.npz", "mesh": "pose.{fmt}", "scene": "scene.viser", "animation": "{name}.{fmt}",
         "screenshot": "screenshot.png", "recording": "{name}.{fmt}"}
SUFFIXES = {".npz": "poses", ".obj": "mesh", ".ply": "mesh", ".viser": "scene", ".bvh": "animation",
            ".glb": "animation", ".png": "screenshot", ".mp4": "recording", ".gif": "recording"}
MESH_FORMATS = ("obj", "ply")
ANIMATION_FORMATS = ("glb", "bvh", "npz")
RECORDING_FORMATS = ("mp4", "gif")
RENDERERS = ("browser", "offscreen")
FPS_RANGE = (1.0, 60.0)


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
            self.image_size = gui.add_dropdown(
                "Image size", recording.SIZES, initial_value=recording.SIZES[0],
                hint="Width x height (pixels) of screenshots and recordings, rendered from this view's camera")
            self.screenshot = gui.add_button("Screenshot (.png)", icon=viser.Icon.CAMERA,
                                             hint="This view as a PNG, its background transparent")
            self.recording_format = gui.add_dropdown(
                "Recording format", RECORDING_FORMATS, initial_value=RECORDING_FORMATS[0],
                hint="mp4: H.264, plays everywhere; gif: for slides and web pages (larger)")
            self.recording_fps = gui.add_number("Recording fps", initial_value=30.0, min=FPS_RANGE[0],
                                                max=FPS_RANGE[1], step=1.0,
                                                hint="Frames per second of the recording (a clip keeps its speed)")
            self.renderer = gui.add_dropdown(
                "Renderer", RENDERERS, initial_value=RENDERERS[0],
                hint="browser: this tab's WebGL, from your view, exactly what you see (slow with software WebGL); "
                     "offscreen: the server's CPU renderer, as dposer render draws it (the bodies on a checkered "
                     "floor, from the front), several times faster without a GPU")
            self.record = gui.add_button(
                "Record", icon=viser.Icon.VIDEO,
                hint="Play the Motion clip, or the Generate trajectory, frame by frame from this view and "
                     "download the video (progress and Cancel under the status line)")
            self.file_name = gui.add_text("File name", initial_value="poses.npz",
                                          hint=f"Saved in the export folder {session.app.export_dir}: .npz the poses, "
                                               ".obj / .ply the mesh, .viser the scene, .bvh / .glb the animation, "
                                               ".png a screenshot, .mp4 / .gif a recording")
            self.save = gui.add_button("Save to export folder", icon=viser.Icon.DEVICE_FLOPPY,
                                      hint="Write the file named above into the export folder (never elsewhere)")
        self.pose_download.on_click(lambda e: self.download(e.client, "poses"))
        self.mesh_download.on_click(lambda e: self.download(e.client, "mesh"))
        self.scene_download.on_click(lambda e: self.download(e.client, "scene"))
        self.animation_download.on_click(lambda e: self.download(e.client, "animation"))
        self.screenshot.on_click(lambda e: self.download(e.client, "screenshot"))
        self.record.on_click(lambda e: self.download(e.client, "recording"))
        self.save.on_click(lambda e: self.save_file(self.file_name.value, e.client))

    def on_show(self) -> None:
        shown = self.session.shown_bodies()
        names = ", ".join(literal(b.name) for b in shown) or "nothing"
        playback = self.playback()
        plays = ("nothing to record (open a clip in Motion or run Generate)" if playback is None
                 else f"{playback.what}, {playback.frames} frames at {playback.fps:g} fps")
        self.what.content = f"**On screen:** {names}  \n**Record plays:** {plays}"

    def playback(self) -> Timeline | None:
        stage = self.session.stage_panel
        return None if stage is None else stage.playback()

    def export_bytes(self, kind: str, *, mesh_format: str | None = None, client: viser.ClientHandle | None = None,
                     ctx: JobContext | None = None) -> bytes:
        """The content of an export (``poses``, ``mesh``, ``scene`` or ``animation`` with
        ``mesh_format`` its format) of the bodies on screen, or a ``screenshot`` / ``recording``
        (``mesh_format``: mp4 or gif) rendered by ``client``'s tab. Runs the body model or waits on
        the browser: call it on the worker (``ctx``: the job's). Raises ``InputError`` when there is
        nothing to export."""
        if kind in ("screenshot", "recording"):
            return self.rendered(kind, mesh_format, client, ctx)
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

    def rendered(self, kind: str, fmt: str | None, client: viser.ClientHandle | None, ctx: JobContext | None) -> bytes:
        if client is None or ctx is None:
            raise InputError("a screenshot or recording is rendered by the browser tab that asks for it")
        width, height = recording.parse_size(self.image_size.value)
        if kind == "screenshot":
            return recording.screenshot(client, width, height)
        playback = self.playback()
        if playback is None:
            raise InputError("nothing to record: open a clip in Motion, or run Generate for a trajectory")
        fps = in_range(self.recording_fps.value, *FPS_RANGE)
        suffix = "." + (fmt or RECORDING_FORMATS[0])
        if self.renderer.value == "offscreen":
            return recording.record_offscreen(ctx, self.session.app.resources.body, playback, width=width,
                                              height=height, fps=fps, suffix=suffix)
        return recording.record(ctx, client, self.session.pacer, playback, width=width, height=height, fps=fps,
                                suffix=suffix)

    def download(self, client: viser.ClientHandle | None, kind: str) -> None:
        """Build an export on the worker and send it to the browser tab that asked."""
        if client is None:
            return
        if kind == "animation":
            fmt = self.animation_format.value if self.animation_format.value in ANIMATION_FORMATS else "glb"
            stage = self.session.stage_panel
            name = KINDS[kind].format(name="clip" if stage is not None and stage.shown_motion() else "poses", fmt=fmt)
        elif kind == "recording":
            fmt = checked_choice(self.session, self.recording_format, reset_to=RECORDING_FORMATS[0])
            if fmt is None or checked_choice(self.session, self.renderer, reset_to=RENDERERS[0]) is None:
                return
            playback = self.playback()
            name = KINDS[kind].format(name="recording" if playback is None else playback.what.split()[-1], fmt=fmt)
        else:
            fmt = self.mesh_format.value if self.mesh_format.value in MESH_FORMATS else MESH_FORMATS[0]
            name = KINDS[kind].format(fmt=fmt)

        def on_done(data: bytes) -> None:
            client.send_file_download(name, data, save_immediately=True)
            self.session.mark(f"download_{kind}")

        def run(ctx: JobContext) -> bytes:
            return self.export_bytes(kind, mesh_format=fmt, client=client, ctx=ctx)

        self.session.submit(kind if kind == "recording" else f"export-{kind}", run, on_done=on_done, needs_prior=False)

    def save_file(self, name: str, client: viser.ClientHandle | None = None) -> None:
        """Write an export named ``name`` into the app's export folder on the worker, atomically;
        the suffix picks what (a name with folders in it is refused: see :func:`exports.export_path`)."""
        folder = self.session.app.export_dir
        try:
            kind = SUFFIXES[exports.export_path(folder, name, tuple(SUFFIXES)).suffix.lower()]
        except InputError as exc:
            self.session.notify("Cannot save", str(exc), error=True)
            return

        def run(ctx) -> Path:
            data = self.export_bytes(kind, mesh_format=Path(name).suffix[1:].lower(), client=client, ctx=ctx)
            return exports.save_export(folder, name, data, tuple(SUFFIXES))

        self.session.submit("recording" if kind == "recording" else "export-save", run,
                            on_done=lambda p: self.session.notify("Saved", literal(str(p))), needs_prior=False)


__all__ = ["ExportPanel"]
