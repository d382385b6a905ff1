"""Motion tab: load an AMASS clip (or observed joints), play it, add joint noise, denoise it with
the prior, export."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import viser
import viser.uplot as uplot

from prior.data import Clip, JointTrack, clip_arrays, load_motion, save_clip
from prior.errors import InputError
from prior.files import asset_path
from prior.metrics import mpjpe_mm
from prior.motion import (
    DenoiseOptions,
    DenoiseResult,
    add_joint_noise,
    denoise_motion,
    root_from_joints,
)
from prior.progress import Progress
from prior.rotations import axis_angle_to_matrix, matrix_to_wxyz_np

from ..body_handle import BodyHandle
from ..rig import NUM_BONES, RigPose
from ..uploads import MAX_CLIP_BYTES, upload_error, uploaded_to_file
from ..worker import JobContext
from .base import Panel

if TYPE_CHECKING:
    from ..session import ClientSession

EXAMPLE_CLIP = "gesture_clip.npz"
ORIGINAL_COLOR = (196, 160, 120)
DENOISED_COLOR = (110, 195, 140)
NOISY_COLOR = (225, 70, 60)
SLOT_M = 1.0
SLOTS = {"original": -SLOT_M, "noisy": 0.0, "denoised": SLOT_M}  # x of each, side by side
SPEEDS = ("0.25x", "0.5x", "1x", "2x")


def z_up_to_y_up(root_orient: np.ndarray) -> bool:
    """Whether a clip's root orientations stand the body up along +Z (AMASS world) rather than +Y."""
    up = axis_angle_to_matrix(torch.as_tensor(root_orient, dtype=torch.float32))[:, :, 1].mean(0).numpy()
    return bool(up[2] > up[1])


class MotionPanel(Panel):
    """Original, noisy (joints) and denoised clips under ``/motion``, side by side or overlaid.

    State: ``clip``; ``gt_joints / noisy_joints: (T, 22, 3)`` (clip frame, metres);
    ``denoised: (T, 63)`` once denoised; ``frame`` the frame on display; ``errors_mm`` per frame.

    A file of observed joints (a :class:`prior.data.JointTrack`) loads as ``track``: its joints are
    the noisy ones (NaN = not seen), there is no ground truth, ``clip`` holds its frame rate and
    any known root, and a root it lacks is fitted with the poses (``fitted_root``).
    """

    name = "motion"

    def __init__(self, session: ClientSession, tab: viser.GuiTabHandle) -> None:
        super().__init__(session)
        gui = session.gui
        self.clip: Clip | None = None
        self.track: JointTrack | None = None
        self.fitted_root: tuple[np.ndarray, np.ndarray | None] | None = None  # (root_orient, trans) of a track's fit
        self.gt_joints: np.ndarray | None = None
        self.noisy_joints: np.ndarray | None = None
        self.denoised: np.ndarray | None = None
        self.frame = 0
        self.errors_mm: dict[str, np.ndarray] = {}
        self.bodies: dict[str, BodyHandle] = {}  # shown now
        self._made: dict[str, BodyHandle] = {}  # made so far (hidden when not shown)
        self._poses: dict[str, RigPose] = {}
        self._noisy_nodes: list = []
        self._turn = np.eye(3)
        self._offset = np.zeros(3)
        self._play_pos = 0.0
        with tab:
            with gui.add_folder("Clip"):
                self.example = gui.add_button("Load example clip", icon=viser.Icon.MOVIE,
                                              hint="A real AMASS gesture fragment (from DPoser's demo data, MIT)")
                self.path = gui.add_text(
                    "Path", initial_value="",
                    hint="An AMASS .npz (SMPL-X or SMPL+H), a DPoser clip, or observed joints ('joints' (T, 22+, 3) m)",
                )
                self.load = gui.add_button("Load path", icon=viser.Icon.FOLDER_OPEN)
                self.upload = gui.add_upload_button("Upload clip", icon=viser.Icon.UPLOAD, mime_type=".npz")
                self.info = gui.add_markdown("*No clip loaded.*")
            with gui.add_folder("Playback"):
                self.timeline = gui.add_slider("Frame", min=0, max=1, step=1, initial_value=0, disabled=True)
                self.play = gui.add_button("Play", icon=viser.Icon.PLAYER_PLAY, disabled=True)
                self.speed = gui.add_dropdown("Speed", SPEEDS, initial_value="1x")
                self.layout = gui.add_dropdown("Layout", ("side by side", "overlaid"), initial_value="side by side")
            with gui.add_folder("Denoise"):
                self.noise = gui.add_slider("Joint noise (m)", min=0.0, max=0.1, step=0.005, initial_value=0.04)
                self.noise_seed = gui.add_number("Noise seed", initial_value=0, step=1)
                self.add_noise = gui.add_button("Add noise", disabled=True)
                self.denoise = gui.add_button("Denoise", icon=viser.Icon.WAND, disabled=True)
                self.plot = gui.add_uplot(
                    (np.zeros(2), np.zeros(2), np.zeros(2)),
                    (uplot.Series(label="frame"),
                     uplot.Series(label="noisy mm", stroke="#e1463c", width=1.5),
                     uplot.Series(label="denoised mm", stroke="#3a9d5d", width=1.5)),
                    title="Per-frame joint error (mm)", aspect=1.6, visible=False,
                )
            with gui.add_folder("Save denoised", expand_by_default=False):
                self.out_path = gui.add_text("Output path", initial_value="denoised.npz")
                self.save = gui.add_button("Save to path", icon=viser.Icon.DEVICE_FLOPPY, disabled=True)
                self.download = gui.add_button("Download", icon=viser.Icon.DOWNLOAD, disabled=True)
        self.example.on_click(lambda _: self.load_file(asset_path(EXAMPLE_CLIP)))
        self.load.on_click(lambda _: self.load_file(Path(self.path.value).expanduser()))
        self.upload.on_upload(self._on_upload)
        self.timeline.on_update(self._on_timeline)
        self.play.on_click(lambda _: self.toggle_play())
        self.layout.on_update(lambda _: session.pacer.post("motion-layout", self._place))
        self.add_noise.on_click(lambda _: self.make_noisy())
        self.denoise.on_click(lambda _: self.start_denoise())
        self.save.on_click(lambda _: self.save_to_path())
        self.download.on_click(lambda event: self.send_download(event.client))

    # -- loading ---------------------------------------------------------------------------------
    def _on_upload(self, event: viser.GuiEvent) -> None:
        upload = self.upload.value
        try:
            with uploaded_to_file(upload, max_bytes=MAX_CLIP_BYTES, suffix=".npz") as path:
                motion = load_motion(path)
        except InputError as exc:
            self.session.notify("Cannot load clip", upload_error(exc, upload), error=True)
            return
        self.set_motion(dataclasses.replace(motion, source=upload.name))

    def load_file(self, path: Path) -> None:
        """Load a clip or observed joints from a file (errors become a notification; the current
        clip stays)."""
        try:
            motion = load_motion(path)
        except InputError as exc:
            self.session.notify("Cannot load clip", str(exc), error=True)
            return
        self.set_motion(motion)

    def set_motion(self, motion: Clip | JointTrack, *, show: bool = True) -> None:
        if isinstance(motion, JointTrack):
            self.set_track(motion, show=show)
        else:
            self.set_clip(motion, show=show)

    def set_clip(self, clip: Clip, *, show: bool = True) -> None:
        """Load ``clip``: compute its joints, place it on the ground, reset noise and results; with
        ``show``, switch the scene to the motion stage."""
        session = self.session
        body = session.app.resources.body
        with torch.inference_mode():
            joints = body.joints(
                torch.as_tensor(clip.pose_body), global_orient=torch.as_tensor(clip.root_orient),
                transl=None if clip.trans is None else torch.as_tensor(clip.trans),
            )[:, :NUM_BONES].numpy()
        self._begin(clip, joints, clip.root_orient)
        self.gt_joints = joints
        self.add_noise.disabled = False
        original = session.rig.pose(clip.pose_body, root_orient=clip.root_orient, transl=clip.trans)
        session.pacer.post("motion-setup", lambda: self._setup(original, show))
        session.mark("clip_loaded")

    def set_track(self, track: JointTrack, *, show: bool = True) -> None:
        """Load observed joints: shown as points and bones, ready to be denoised (a root the file
        lacks is fitted then); no ground truth, so no noise is added and the plot shows the fit's
        distance to the observations."""
        frames = track.num_frames
        root = track.root_orient
        if root is None:  # only to find which way is up: the fit starts from its own estimate
            root = root_from_joints(self.session.app.resources.body, torch.from_numpy(track.joints)).numpy()
        known_root = track.root_orient if track.root_orient is not None else np.zeros((frames, 3), np.float32)
        clip = track.as_clip(np.zeros((frames, 63), np.float32), known_root, track.trans)  # poses: the fit's
        self._begin(clip, track.joints, root)
        self.track, self.noisy_joints = track, track.joints
        self.info.content += f"; observed joints ({100 * track.seen.mean():.0f}% seen), no ground truth"
        self.denoise.disabled = False
        self.session.pacer.post("motion-setup", lambda: self._setup_track(show))
        self.session.mark("clip_loaded")

    def _begin(self, clip: Clip, joints: np.ndarray, root_orient: np.ndarray) -> None:
        """Reset to a new clip whose joints (NaN allowed) are ``joints``: layout, info, controls."""
        session = self.session
        self.stop_play()
        session.cancel("denoise")
        self.clip, self.track, self.fitted_root = clip, None, None
        self.gt_joints = self.noisy_joints = self.denoised = None
        self.errors_mm = {}
        turn = np.array([[1.0, 0, 0], [0, 0, 1.0], [0, -1.0, 0]]) if z_up_to_y_up(root_orient) else np.eye(3)
        shown = joints @ turn.T
        margin = float(session.rig.rest_joints[:, 1].min() - session.rig.floor_y)
        center = np.nanmean(shown.reshape(-1, 3), 0)  # NaN: joints not seen
        self._turn = turn
        self._offset = np.array([-center[0], -np.nanmin(shown[..., 1]) + margin, -center[2]])
        self.frame = 0
        fps_note = " (assumed: the file has no frame rate)" if clip.fps_assumed else ""
        up_note = "; turned from Z-up to Y-up" if turn[1, 2] else ""
        name = Path(clip.source).name if clip.source else "clip"
        self.info.content = (
            f"**{name}**: {clip.num_frames} frames, {clip.fps:g} fps{fps_note}, {clip.duration_s:.1f} s{up_note}"
        )
        self.timeline.max = max(1, clip.num_frames - 1)
        self.timeline.value = 0
        self.timeline.disabled = self.play.disabled = False
        self.add_noise.disabled = self.denoise.disabled = self.save.disabled = self.download.disabled = True
        self.plot.visible = False

    def _setup_track(self, show: bool) -> None:
        self._remove_all()
        self._poses = {}
        self._setup_noisy()
        if show:
            self.session.show_stage("motion")

    def _setup(self, original: RigPose, show: bool = True) -> None:
        self._remove_all()
        self._poses = {"original": original}
        self._show_body("original", ORIGINAL_COLOR)
        self._place()
        self._draw_frame()
        if show:
            self.session.show_stage("motion")

    # -- noise and denoising ---------------------------------------------------------------------
    def make_noisy(self) -> None:
        """Add Gaussian noise (std from the slider, metres) to the clip's joints."""
        if self.gt_joints is None:
            return
        std, seed = float(self.noise.value), int(self.noise_seed.value)
        noisy = add_joint_noise(torch.as_tensor(self.gt_joints), std, seed=seed).numpy().astype(np.float32)
        self.noisy_joints = noisy
        self.denoised = None
        self.errors_mm = {"noisy": mpjpe_mm(noisy, self.gt_joints)}
        self.denoise.disabled = False
        self.save.disabled = self.download.disabled = True
        self.session.pacer.post("motion-setup", self._setup_noisy)
        self._update_plot()

    def _setup_noisy(self) -> None:
        scene = self.session.scene
        if self._noisy_nodes:
            self._noisy_nodes[0].remove()  # the frame, with its points and lines (not skinned: safe)
        self._hide_body("denoised")
        frame = scene.add_frame("/motion/noisy", show_axes=False)
        points = scene.add_point_cloud("/motion/noisy/joints", np.zeros((NUM_BONES, 3), np.float32), NOISY_COLOR,
                                       point_size=0.045, point_shape="circle")
        lines = scene.add_line_segments("/motion/noisy/bones", np.zeros((NUM_BONES - 1, 2, 3), np.float32),
                                        NOISY_COLOR, thickness=0.012)
        self._noisy_nodes = [frame, points, lines]
        self._place()
        self._draw_frame()
        self.session.frame_camera()

    def start_denoise(self) -> None:
        """Denoise the noisy joints with the prior on the worker; the result streams in."""
        if self.noisy_joints is None or self.clip is None:
            return
        clip, noisy, session, track = self.clip, self.noisy_joints.copy(), self.session, self.track
        # Observed joints without a known root: it is fitted with the poses.
        fit_root = track is not None and not track.root_known
        root = None if track is not None and track.root_orient is None else torch.as_tensor(clip.root_orient)
        trans = None if clip.trans is None else torch.as_tensor(clip.trans)
        session.mark("denoise_clicked")

        def run(ctx: JobContext) -> DenoiseResult:
            return denoise_motion(
                ctx.resources.prior, ctx.resources.body, torch.as_tensor(noisy, dtype=torch.float32),
                root_orient=root, trans=trans, betas=None if clip.betas is None else torch.as_tensor(clip.betas),
                options=DenoiseOptions(fit_root=fit_root), seed=0, callback=ctx.report, cancel=ctx.cancel,
            )

        def as_root(root_orient: torch.Tensor | None, trans: torch.Tensor | None) -> tuple | None:
            if not fit_root or root_orient is None:
                return None
            return root_orient.numpy().astype(np.float32), None if trans is None else trans.numpy().astype(np.float32)

        def on_progress(p: Progress) -> None:
            poses, fitted = p.pose_body.numpy(), as_root(p.extra.get("root_orient"), p.extra.get("trans"))
            session.pacer.post("motion-denoised", lambda: self._set_denoised(poses, fitted, final=False))

        def on_done(result: DenoiseResult) -> None:
            poses, fitted = result.pose_body.numpy().astype(np.float32), as_root(result.root_orient, result.trans)
            session.pacer.post("motion-denoised", lambda: self._set_denoised(poses, fitted, final=True))

        session.submit("denoise", run, on_progress=on_progress, on_done=on_done)

    def _set_denoised(self, pose_body: np.ndarray, fitted_root: tuple | None = None, *, final: bool) -> None:
        clip, session = self.clip, self.session
        if clip is None or pose_body.shape[0] != clip.num_frames:
            return
        self.denoised = pose_body
        if fitted_root is not None:
            self.fitted_root = fitted_root
        root_orient, trans = self.fitted_root or (clip.root_orient, clip.trans)
        pose = session.rig.pose(pose_body, root_orient=root_orient, transl=trans)
        self._poses["denoised"] = pose
        if "denoised" not in self.bodies:
            self._show_body("denoised", DENOISED_COLOR)
            self._place()
            session.frame_camera()
        if self.gt_joints is not None:
            self.errors_mm["denoised"] = mpjpe_mm(pose.positions, self.gt_joints)
        else:  # observed joints: the distance to what was seen
            assert self.noisy_joints is not None
            self.errors_mm["denoised"] = 1000 * np.nanmean(np.linalg.norm(pose.positions - self.noisy_joints, axis=-1), 1)
        self._draw_frame()
        if final:
            self.save.disabled = self.download.disabled = False
            self._update_plot()
            session.mark("denoise_done")

    def _update_plot(self) -> None:
        if self.clip is None or not self.errors_mm:
            return
        frames = np.arange(self.clip.num_frames, dtype=np.float64)
        missing = np.full(self.clip.num_frames, np.nan)
        self.plot.data = (frames, self.errors_mm.get("noisy", missing), self.errors_mm.get("denoised", missing))
        self.plot.visible = True

    # -- playback ----------------------------------------------------------------------------------
    def _on_timeline(self, event: viser.GuiEvent) -> None:
        # Ignore the app's own updates during playback and the browser echoing them back.
        if event.client is None or int(self.timeline.value) == self.frame:
            return
        self.stop_play()
        self.show_frame(int(self.timeline.value))

    def show_frame(self, frame: int) -> None:
        self.frame = frame
        self._play_pos = float(frame)
        self.session.pacer.post("motion-frame", self._draw_frame)

    def toggle_play(self) -> None:
        if self.session.pacer.animating("motion-play"):
            self.stop_play()
            return
        if self.clip is None:
            return
        self.play.label, self.play.icon = "Pause", viser.Icon.PLAYER_PAUSE
        self._play_pos = float(self.frame)

        def tick(dt: float) -> None:
            clip = self.clip
            if clip is None:
                return
            speed = float(self.speed.value.rstrip("x"))
            self._play_pos = (self._play_pos + dt * clip.fps * speed) % clip.num_frames
            self.frame = int(self._play_pos)
            self._draw_frame()
            self.timeline.value = self.frame

        self.session.pacer.animate("motion-play", tick)

    def stop_play(self) -> None:
        self.session.pacer.animate("motion-play", None)
        self.play.label, self.play.icon = "Play", viser.Icon.PLAYER_PLAY

    @property
    def playing(self) -> bool:
        return self.session.pacer.animating("motion-play")

    def _draw_frame(self) -> None:
        """Pose every motion body at ``self.frame`` (display thread)."""
        f = self.frame
        for key, body in self.bodies.items():
            pose = self._poses.get(key)
            if pose is not None and f < len(pose):
                body.set_pose(pose.row(f))
        if self.noisy_joints is not None and self._noisy_nodes:
            joints = self.noisy_joints[f].astype(np.float32)
            parents = np.asarray(self.session.rig.parents[1:NUM_BONES])
            seen = np.isfinite(joints).all(-1)  # observed joints may miss some (NaN)
            bones = seen[1:] & seen[parents]
            _, points, lines = self._noisy_nodes
            points.visible, lines.visible = bool(seen.any()), bool(bones.any())
            if seen.any():
                points.points = joints[seen]
            if bones.any():
                lines.points = np.stack([joints[parents[bones]], joints[1:][bones]], 1)

    def _place(self) -> None:
        """Put the clips side by side (original, noisy, denoised) or on top of each other."""
        overlaid = self.layout.value == "overlaid"
        wxyz = matrix_to_wxyz_np(self._turn)
        nodes = dict(self.bodies)
        for key, body in nodes.items():
            x = 0.0 if overlaid else SLOTS[key]
            body.position = self._offset + np.array([x, 0.0, 0.0])
            body.wxyz = wxyz
            if key == "original":
                body.set_opacity(0.45 if overlaid and len(nodes) > 1 else None)
        if self._noisy_nodes:
            frame = self._noisy_nodes[0]
            frame.position = self._offset + np.array([0.0, 0.0, 0.0])
            frame.wxyz = wxyz

    def _show_body(self, key: str, color: tuple[int, int, int]) -> None:
        """Show the body ``key`` (made once, then reused: see BodyHandle.set_rig)."""
        body = self._made.get(key)
        if body is None:
            body = self._made[key] = BodyHandle(self.session.scene, f"/motion/{key}", self.session.rig, color=color)
        body.visible = True
        self.bodies[key] = body

    def _hide_body(self, key: str) -> None:
        body = self.bodies.pop(key, None)
        if body is not None:
            body.visible = False

    def _remove_all(self) -> None:
        for key in list(self.bodies):
            self._hide_body(key)
        if self._noisy_nodes:
            self._noisy_nodes[0].remove()
        self._noisy_nodes = []

    # -- export ------------------------------------------------------------------------------------
    def denoised_clip(self) -> Clip | None:
        if self.clip is None or self.denoised is None:
            return None
        root_orient, trans = self.fitted_root or (self.clip.root_orient, self.clip.trans)
        return dataclasses.replace(self.clip, pose_body=self.denoised.astype(np.float32), root_orient=root_orient,
                                   trans=trans)

    def save_to_path(self) -> None:
        clip = self.denoised_clip()
        if clip is None:
            return
        try:
            path = save_clip(clip, Path(self.out_path.value).expanduser())
        except InputError as exc:
            self.session.notify("Cannot save", str(exc), error=True)
            return
        self.session.notify("Saved", f"Denoised clip written to {path}")

    def send_download(self, client: viser.ClientHandle | None) -> None:
        clip = self.denoised_clip()
        if clip is None or client is None:
            return
        buf = io.BytesIO()
        np.savez(buf, **clip_arrays(clip))
        name = Path(self.out_path.value).name or "denoised.npz"
        client.send_file_download(name, buf.getvalue(), save_immediately=True)
        self.session.mark("motion_download")

    # -- panel -------------------------------------------------------------------------------------
    def rebuild(self) -> None:
        self._remove_all()
        for body in self._made.values():  # redrawn in place, hidden until shown again
            body.set_rig(self.session.rig)
        if self.track is not None:
            denoised, fitted = self.denoised, self.fitted_root
            self.set_track(self.track, show=self.session.stage == "motion")
            if denoised is not None:
                self.session.pacer.post("motion-denoised", lambda: self._set_denoised(denoised, fitted, final=True))
        elif self.clip is not None:
            clip, noisy, denoised = self.clip, self.noisy_joints, self.denoised
            self.set_clip(clip, show=self.session.stage == "motion")
            if noisy is not None:
                self.noisy_joints = noisy
                self.errors_mm = {"noisy": mpjpe_mm(noisy, self.gt_joints)}
                self.denoise.disabled = False
                self.session.pacer.post("motion-noisy", self._setup_noisy)
            if denoised is not None:
                self.session.pacer.post("motion-denoised", lambda: self._set_denoised(denoised, final=True))

    def x_range(self) -> tuple[float, float]:
        xs = [SLOTS[key] for key in self.bodies] + ([SLOTS["noisy"]] if self._noisy_nodes else [])
        if self.layout.value == "overlaid" or not xs:
            return (0.0, 0.0)
        return (min(xs), max(xs))
