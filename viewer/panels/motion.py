"""Motion tab: load an AMASS clip (or observed joints), play it, add joint noise, denoise it with
the prior, export."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import viser
import viser.uplot as uplot

from prior.data import Clip, JointTrack, load_motion
from prior.errors import InputError
from prior.files import asset_path
from prior.motion import root_from_joints
from prior.motion_fit import MotionFit, Observations, fit_motion, observe_motion
from prior.progress import Progress
from prior.rotations import axis_angle_to_matrix, matrix_to_wxyz_np

from .. import exports
from ..body_handle import BodyHandle
from ..markup import literal
from ..rig import NUM_BONES, RigPose
from ..uploads import MAX_CLIP_BYTES, upload_error, uploaded_to_file
from ..widgets import SEED_RANGE, PlayButton, SkeletonOverlay, in_range
from ..worker import JobContext
from .base import Panel, ShownBody

if TYPE_CHECKING:
    from ..session import ClientSession

EXAMPLE_CLIP = "gesture_clip.npz"
ORIGINAL_COLOR = (196, 160, 120)
DENOISED_COLOR = (110, 195, 140)
NOISY_COLOR = (225, 70, 60)
SLOT_M = 1.0
SLOTS = {"original": -SLOT_M, "noisy": 0.0, "denoised": SLOT_M}  # x of each, side by side
SPEEDS = ("0.25x", "0.5x", "1x", "2x")
MAX_NOISE_M = 0.1


def z_up_to_y_up(root_orient: np.ndarray) -> bool:
    """Whether a clip's root orientations stand the body up along +Z (AMASS world) rather than +Y."""
    up = axis_angle_to_matrix(torch.as_tensor(root_orient, dtype=torch.float32))[:, :, 1].mean(0).numpy()
    return bool(up[2] > up[1])


# A tab holds about 10 KB per frame of a clip (joints, observations, fit, plot): 20 min at 30 fps
# is about 350 MB. Longer clips are for `dposer denoise` (windows, up to prior.data.MAX_FRAMES).
MAX_VIEWER_FRAMES = 36_000


class MotionPanel(Panel):
    """Original, noisy (joints) and denoised clips under ``/motion``, side by side or overlaid.

    State: ``clip``; ``gt_joints / noisy_joints: (T, 22, 3)`` (clip frame, metres);
    ``denoised: (T, 63)`` once denoised; ``frame`` the frame on display; ``errors_mm`` per frame.

    A file of observed joints (a :class:`prior.data.JointTrack`) loads as ``track``: its joints are
    the noisy ones (NaN = not seen), there is no ground truth, ``clip`` holds its frame rate and
    any known root, and a root it lacks is fitted with the poses (``fitted_root``).
    """

    name = "motion"
    label = "Motion"
    icon = "movie"
    stage = "motion"
    file_kinds = ("motion",)

    def __init__(self, session: ClientSession, container: viser.GuiFolderHandle) -> None:
        super().__init__(session, container)
        gui = session.gui
        self.clip: Clip | None = None
        self.track: JointTrack | None = None
        self.fitted_root: tuple[np.ndarray, np.ndarray | None] | None = None  # (root_orient, trans) of a track's fit
        self.motion: Clip | JointTrack | None = None  # what was loaded
        self.observations: Observations | None = None  # what Denoise fits (noisy or observed joints)
        self.fit: MotionFit | None = None  # the last finished fit
        self.gt_joints: np.ndarray | None = None
        self.denoised: np.ndarray | None = None
        self.frame = 0
        self.errors_mm: dict[str, np.ndarray] = {}
        self.bodies: dict[str, BodyHandle] = {}  # shown now
        self._made: dict[str, BodyHandle] = {}  # made so far (hidden when not shown)
        self._poses: dict[str, RigPose] = {}
        self._noisy: tuple[viser.FrameHandle, SkeletonOverlay] | None = None  # the noisy joints' frame
        self._turn = np.eye(3)
        self._offset = np.zeros(3)
        self._play_pos = 0.0
        with container:
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
                self.noise = gui.add_slider("Joint noise (m)", min=0.0, max=MAX_NOISE_M, step=0.005, initial_value=0.04)
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
                self.out_name = gui.add_text("File name", initial_value="denoised.npz",
                                             hint=f"Saved in the export folder {session.app.export_dir}")
                self.save = gui.add_button("Save to export folder", icon=viser.Icon.DEVICE_FLOPPY, disabled=True)
                self.download = gui.add_button("Download", icon=viser.Icon.DOWNLOAD, disabled=True)
        self.example.on_click(lambda _: self.load_file(asset_path(EXAMPLE_CLIP)))
        self.load.on_click(lambda _: self.load_file(Path(self.path.value).expanduser()))
        self.upload.on_upload(self._on_upload)
        self.timeline.on_update(self._on_timeline)
        self.player = PlayButton(self.play, session.pacer, "motion-play")
        self.play.on_click(lambda _: self.toggle_play())
        self.layout.on_update(lambda _: session.pacer.post("motion-layout", self._place))
        self.add_noise.on_click(lambda _: self.make_noisy())
        self.denoise.on_click(lambda _: self.start_denoise())
        self.save.on_click(lambda _: self.save_file())
        self.download.on_click(lambda event: self.send_download(event.client))

    def uploads(self) -> list[tuple[viser.GuiUploadButtonHandle, int]]:
        return [(self.upload, MAX_CLIP_BYTES)]

    # -- loading ---------------------------------------------------------------------------------
    def _on_upload(self, event: viser.GuiEvent) -> None:
        upload = self.upload.value

        def read() -> Clip | JointTrack:
            try:
                with uploaded_to_file(upload, max_bytes=MAX_CLIP_BYTES, suffix=".npz") as path:
                    motion = load_motion(path, max_frames=MAX_VIEWER_FRAMES)
            except InputError as exc:
                raise InputError(upload_error(exc, upload)) from None
            return dataclasses.replace(motion, source=upload.name)

        self._load(read)

    def load_file(self, path: Path) -> None:
        """Load a clip or observed joints from a file on the worker (errors become a notification;
        the current clip stays)."""
        self._load(lambda: load_motion(path, max_frames=MAX_VIEWER_FRAMES))

    def _load(self, read) -> None:
        """Read a motion and compute what its display needs (its joints with the clip's own shape,
        which way is up) on the worker, then show it."""
        session = self.session

        def run(ctx: JobContext) -> tuple[Clip | JointTrack, Observations, np.ndarray]:
            motion = read()
            body = ctx.resources.body
            observations = observe_motion(body, motion)
            root = motion.root_orient
            if root is None:  # only to find which way is up: the fit starts from its own estimate
                root = root_from_joints(body, torch.from_numpy(observations.joints)).numpy()
            return motion, observations, root

        def on_error(message: str) -> None:
            session.notify("Cannot load clip", message, error=True)

        session.submit("motion-load", run, on_done=lambda result: self.set_motion(*result), on_error=on_error,
                       needs_prior=False)

    def set_motion(self, motion: Clip | JointTrack, observations: Observations, up_root: np.ndarray) -> None:
        """Show a loaded motion: a clip as its body (noise is added next), observed joints as points
        and bones, ready to be fitted (a root the file lacks is fitted then)."""
        session = self.session
        if isinstance(motion, JointTrack):
            frames = motion.num_frames
            known_root = motion.root_orient if motion.root_orient is not None else np.zeros((frames, 3), np.float32)
            clip = motion.as_clip(np.zeros((frames, 63), np.float32), known_root, motion.trans)  # poses: the fit's
        else:
            clip = motion
        self._begin(clip, observations.joints, up_root)
        self.motion, self.gt_joints = motion, observations.gt_joints
        if isinstance(motion, JointTrack):
            self.track, self.observations = motion, observations
            self.info.content += f"; observed joints ({100 * motion.seen.mean():.0f}% seen), no ground truth"
            self.denoise.disabled = False
            session.pacer.post("motion-setup", self._setup_track)
        else:
            self.add_noise.disabled = False
            original = session.rig.pose(clip.pose_body, root_orient=clip.root_orient, transl=clip.trans)
            session.pacer.post("motion-setup", lambda: self._setup(original))
        session.mark("clip_loaded")

    def _begin(self, clip: Clip, joints: np.ndarray, root_orient: np.ndarray) -> None:
        """Reset to a new clip whose joints (NaN allowed) are ``joints``: layout, info, controls."""
        session = self.session
        self.stop_play()
        session.cancel("denoise")
        self.clip, self.track, self.fitted_root = clip, None, None
        self.motion = self.observations = self.fit = None
        self.gt_joints = self.denoised = None
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
        name = literal(Path(clip.source).name if clip.source else "clip")
        self.info.content = (
            f"**{name}**: {clip.num_frames} frames, {clip.fps:g} fps{fps_note}, {clip.duration_s:.1f} s{up_note}"
        )
        self.timeline.max = max(1, clip.num_frames - 1)
        self.timeline.value = 0
        self.timeline.disabled = self.play.disabled = False
        self.add_noise.disabled = self.denoise.disabled = self.save.disabled = self.download.disabled = True
        self.plot.visible = False

    def _setup_track(self) -> None:
        self._remove_all()
        self._poses = {}
        self._setup_noisy()
        self.session.frame_once()

    def _setup(self, original: RigPose) -> None:
        self._remove_all()
        self._poses = {"original": original}
        self._show_body("original", ORIGINAL_COLOR)
        self._place()
        self._draw_frame()
        self.session.frame_once()

    @property
    def noisy_joints(self) -> np.ndarray | None:
        """``(T, 22, 3)`` what Denoise fits: the noisy or observed joints (NaN = not seen)."""
        return None if self.observations is None else self.observations.joints

    # -- noise and denoising ---------------------------------------------------------------------
    def make_noisy(self) -> None:
        """Add Gaussian noise (std from the slider, metres) to the clip's joints (on the worker)."""
        motion, session = self.motion, self.session
        if not isinstance(motion, Clip):
            return
        std = in_range(self.noise.value, 0.0, MAX_NOISE_M)
        seed = in_range(self.noise_seed.value, *SEED_RANGE, integer=True)

        def on_done(observations: Observations) -> None:
            if self.motion is not motion:
                return  # another clip was loaded meanwhile
            self.observations = observations
            self.denoised = self.fit = None
            self.errors_mm = {"noisy": observations.input_errors_mm()}
            self.denoise.disabled = False
            self.save.disabled = self.download.disabled = True
            session.pacer.post("motion-setup", self._setup_noisy)
            self._update_plot()
            session.mark("noise_added")

        def run(ctx: JobContext) -> Observations:
            return observe_motion(ctx.resources.body, motion, noise_std_m=std, seed=seed)

        session.submit("motion-noise", run, on_done=on_done, needs_prior=False)

    def _setup_noisy(self) -> None:
        scene = self.session.scene
        if self._noisy is not None:
            self._noisy[0].remove()  # the frame, with its points and lines (not skinned: safe)
        self._hide_body("denoised")
        frame = scene.add_frame("/motion/noisy", show_axes=False)
        overlay = SkeletonOverlay(scene, "/motion/noisy", self.session.rig.parents[:NUM_BONES], line_color=NOISY_COLOR,
                                  point_color=NOISY_COLOR, point_size=0.045)
        self._noisy = (frame, overlay)
        self._place()
        self._draw_frame()

    def start_denoise(self) -> None:
        """Fit the motion to its observations with the prior on the worker (``prior.motion_fit``:
        the same task as ``dposer denoise``); the result streams in."""
        motion, observations, session = self.motion, self.observations, self.session
        if motion is None or observations is None:
            return
        session.mark("denoise_clicked")

        def run(ctx: JobContext) -> MotionFit:
            return fit_motion(ctx.resources.prior, ctx.resources.body, motion, observations, seed=0,
                              callback=ctx.report, cancel=ctx.cancel)

        def on_progress(p: Progress) -> None:
            poses = p.pose_body.numpy()
            root = p.extra.get("root_orient")
            trans = p.extra.get("trans")
            fitted = None if root is None else (root.numpy(), None if trans is None else trans.numpy())
            session.pacer.post("motion-denoised", lambda: self._set_denoised(poses, fitted))

        def on_done(fit: MotionFit) -> None:
            def finish() -> None:
                if self.motion is not motion:
                    return
                self.fit = fit
                fitted = (fit.clip.root_orient, fit.clip.trans) if fit.root_fitted else None
                self._set_denoised(fit.clip.pose_body, fitted)
                errors = fit.frame_errors_mm
                self.errors_mm = {"denoised": errors["fit"]} | ({"noisy": errors["input"]} if "input" in errors else {})
                self.save.disabled = self.download.disabled = False
                self._update_plot()
                session.mark("denoise_done")

            session.pacer.post("motion-denoised", finish)

        session.submit("denoise", run, on_progress=on_progress, on_done=on_done)

    def _set_denoised(self, pose_body: np.ndarray, fitted_root: tuple | None = None) -> None:
        """Draw the (streamed or final) fit: ``pose_body: (T, 63)`` and a fitted ``(root, trans)``."""
        clip, session = self.clip, self.session
        if clip is None or pose_body.shape[0] != clip.num_frames:
            return
        self.denoised = pose_body
        if fitted_root is not None:
            self.fitted_root = fitted_root
        root_orient, trans = self.fitted_root or (clip.root_orient, clip.trans)
        self._poses["denoised"] = session.rig.pose(pose_body, root_orient=root_orient, transl=trans)
        if "denoised" not in self.bodies:
            self._show_body("denoised", DENOISED_COLOR)
            self._place()
        self._draw_frame()

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
        frame = in_range(self.timeline.value, 0, self.clip.num_frames - 1 if self.clip else 0, integer=True)
        if event.client is None or frame == self.frame:
            return
        self.stop_play()
        self.show_frame(frame)

    def show_frame(self, frame: int) -> None:
        self.frame = frame
        self._play_pos = float(frame)
        self.session.pacer.post("motion-frame", self._draw_frame)

    def toggle_play(self) -> None:
        if self.player.playing:
            self.stop_play()
            return
        if self.clip is None:
            return
        self._play_pos = float(self.frame)

        def tick(dt: float) -> None:
            clip = self.clip
            if clip is None:
                return
            speed = float(self.speed.value.rstrip("x")) if self.speed.value in SPEEDS else 1.0
            self._play_pos = (self._play_pos + dt * clip.fps * speed) % clip.num_frames
            self.frame = int(self._play_pos)
            self._draw_frame()
            self.timeline.value = self.frame

        self.player.start(tick)

    def stop_play(self) -> None:
        self.player.stop()

    @property
    def playing(self) -> bool:
        return self.player.playing

    def _draw_frame(self) -> None:
        """Pose every motion body at ``self.frame`` (display thread)."""
        f = self.frame
        for key, body in self.bodies.items():
            pose = self._poses.get(key)
            if pose is not None and f < len(pose):
                body.set_pose(pose.row(f))
        if self.noisy_joints is not None and self._noisy is not None:
            self._noisy[1].update(self.noisy_joints[f])  # observed joints may miss some (NaN)

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
        if self._noisy is not None:
            frame = self._noisy[0]
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
        if self._noisy is not None:
            self._noisy[0].remove()  # the frame, with its points and lines (not skinned: safe)
        self._noisy = None

    # -- export ------------------------------------------------------------------------------------
    def denoised_clip(self) -> Clip | None:
        """The finished fit as a clip (its root and translation fitted or the input's)."""
        return None if self.fit is None else self.fit.clip

    def save_file(self) -> None:
        """Write the denoised clip into the app's export folder (named by the File name box)."""
        clip = self.denoised_clip()
        if clip is None:
            return
        try:
            data = exports.clip_npz(clip)
            path = exports.save_export(self.session.app.export_dir, self.out_name.value, data, (".npz",))
        except InputError as exc:
            self.session.notify("Cannot save", str(exc), error=True)
            return
        self.session.notify("Saved", f"Denoised clip written to {literal(str(path))}")

    def send_download(self, client: viser.ClientHandle | None) -> None:
        clip = self.denoised_clip()
        if clip is None or client is None:
            return
        try:
            data = exports.clip_npz(clip)
        except InputError as exc:
            self.session.notify("Cannot download", str(exc), error=True)
            return
        try:  # the name the browser saves it under: the File name box's when it is one Save would take
            name = exports.export_path(self.session.app.export_dir, self.out_name.value, (".npz",)).name
        except InputError:
            name = "denoised.npz"
        client.send_file_download(name, data, save_immediately=True)
        self.session.mark("motion_download")

    # -- panel -------------------------------------------------------------------------------------
    def rebuild(self) -> None:
        """After a body-model switch the clip's joints change with the body: the motion is loaded
        again (noise and fit, made with the old body, are dropped)."""
        self._remove_all()
        for body in self._made.values():  # redrawn in place, hidden until shown again
            body.set_rig(self.session.rig)
        motion = self.motion
        if motion is not None:
            self._load(lambda: motion)

    def open_file(self, kind: str, path: Path) -> None:
        self.load_file(path)

    def extent(self) -> tuple[float, float] | None:
        """The three slots (original, noisy, denoised) side by side, or one place overlaid: framed
        once for all, so the bodies that appear later are already in view."""
        if self.clip is None:
            return None
        return (0.0, 0.0) if self.layout.value == "overlaid" else (-SLOT_M, SLOT_M)

    def shown_bodies(self) -> list[ShownBody]:
        """The clip's bodies at the current frame (the original and the denoised, when shown)."""
        clip, f = self.clip, self.frame
        if clip is None:
            return []
        params = {"original": (clip.pose_body, clip.root_orient, clip.trans)}
        if self.denoised is not None:
            root, trans = self.fitted_root or (clip.root_orient, clip.trans)
            params["denoised"] = (self.denoised, root, trans)
        colors = {"original": ORIGINAL_COLOR, "denoised": DENOISED_COLOR}
        out = []
        for key, body in self.bodies.items():
            if key not in params or f >= clip.num_frames:
                continue
            pose, root, trans = params[key]
            out.append(ShownBody(
                f"{key}_frame_{f}", np.asarray(pose[f], np.float32), np.asarray(root[f], np.float32),
                None if trans is None else np.asarray(trans[f], np.float32), position=tuple(body.position),
                wxyz=tuple(body.wxyz), color=colors[key]))
        return out
