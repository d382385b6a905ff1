"""Motion tab: load an AMASS clip (or observed joints), play it, add joint noise, denoise it with
the prior, export."""

from __future__ import annotations

import dataclasses
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import viser
import viser.uplot as uplot

from prior.data import MAX_POSE_SET, Clip, JointTrack, is_pose_set, load_motion
from prior.errors import InputError
from prior.exports.skeleton import display_turn, is_z_up
from prior.files import asset_path
from prior.motion import DenoiseOptions, root_from_joints
from prior.motion_fit import MotionFit, Observations, fit_motion, observe_motion
from prior.progress import Progress
from prior.render import render_frames
from prior.rotations import matrix_to_wxyz_np

from .. import exports
from ..body_handle import BodyHandle
from ..markup import literal
from ..rig import NUM_BONES, RigPose
from ..uploads import MAX_CLIP_BYTES, upload_error, uploaded_to_file
from ..widgets import SEED_RANGE, PlayButton, SkeletonOverlay, checked_choice, in_range
from ..worker import JobContext
from .base import Panel, ShownBody, Timeline

if TYPE_CHECKING:
    from ..session import ClientSession

EXAMPLE_CLIP = "gesture_clip.npz"
# The example is 240 frames of AMASS HumanEva "Gestures_3", cut by DPoser's HumanEva.py (which
# keeps the frames as they are and drops the rate): HumanEva's motion capture, as AMASS has it,
# runs at 120 Hz.
EXAMPLE_FPS = 120.0
ORIGINAL_COLOR = (196, 160, 120)
DENOISED_COLOR = (110, 195, 140)
NOISY_COLOR = (225, 70, 60)
MARKER_COLOR = "#555555"
SLOT_M = 1.0
SLOTS = {"original": -SLOT_M, "noisy": 0.0, "denoised": SLOT_M}  # x of each, side by side
SPEEDS = ("0.25x", "0.5x", "1x", "2x")
LAYOUTS = ("side by side", "overlaid")
BODIES = ("original", "denoised")  # the bodies one can select (the noisy joints are points)
METHODS = ("ours", "paper")  # DenoiseOptions() or DenoiseOptions.paper(): README, "Faithful to DPoser"
BACKGROUND_OPACITY = 0.35  # overlaid, the bodies not selected: the others show through them
MAX_NOISE_M = 0.1
MARKER_STEPS = 300  # during playback the plot's frame marker moves in steps of 1/300 of the clip (about a pixel)
# What makes the poses of a file frames of a motion rather than a set of poses.
def length_text(frames: int, fps: float, *, assumed: bool = False) -> str:
    """``"240 frames at 120 fps, 2.00 s"``: a clip lasts its frames over its rate (each frame is
    on screen for 1/fps: 2 frames at 30 fps last 0.07 s), as a video player counts it; an
    ``assumed`` rate (the file has none) is said to be."""
    seconds = frames / fps
    duration = f"{seconds:.2f} s" if seconds < 10 else f"{seconds:.1f} s"
    note = " (assumed: the file has no frame rate)" if assumed else ""
    return f"{frames} frame{'' if frames == 1 else 's'} at {fps:g} fps{note}, {duration}"


def read_motion(path: Path) -> Clip | JointTrack:
    """A motion file as :func:`prior.data.load_motion` reads it; the shipped example, which has no
    frame rate in it, at its known one (:data:`EXAMPLE_FPS`)."""
    motion = load_motion(path, max_frames=MAX_VIEWER_FRAMES)
    if isinstance(motion, Clip) and motion.fps_assumed and path.resolve() == asset_path(EXAMPLE_CLIP).resolve():
        motion = dataclasses.replace(motion, fps=EXAMPLE_FPS, fps_assumed=False)
    return motion


def error_summary(errors_mm: dict[str, np.ndarray], *, truth: bool) -> str:
    """The error plot in words (means over the frames): ``"noisy 60 mm → denoised 11 mm (MPJPE
    vs the clean clip)"``; without ground truth, the fit's distance to the observed joints."""
    mean = {k: float(np.nanmean(v)) for k, v in errors_mm.items() if np.isfinite(v).any()}
    if not truth:
        if "denoised" not in mean:
            return ""
        return f"fit **{mean['denoised']:.0f} mm** from the observed joints (mean over the seen ones; no ground truth)"
    parts = [f"{k} **{mean[k]:.0f} mm**" for k in ("noisy", "denoised") if k in mean]
    return " → ".join(parts) + " (MPJPE vs the clean clip, mean over frames)" if parts else ""


def plot_data(errors_mm: dict[str, np.ndarray], frames: int, frame: int) -> tuple[np.ndarray, ...]:
    """The error plot's arrays: frame numbers, noisy and denoised errors (mm; NaN where none), and
    the marker of ``frame``: the frame is listed three times, where the marker goes from below the
    plot to above it and back (a vertical line; elsewhere it runs below the plot, out of sight)."""
    at = np.insert(np.arange(frames), frame, [frame, frame])
    missing = np.full(frames, np.nan)
    marker = np.full(frames + 2, -1.0)
    marker[frame + 1] = 2.0
    return (at.astype(np.float64), *(errors_mm.get(k, missing)[at].astype(np.float64) for k in ("noisy", "denoised")),
            marker)


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

    A file that is a set of poses rather than a motion (:func:`is_pose_set`: what ``dposer
    generate`` writes) goes to the panel that opens ``"samples"`` files.
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
        self._speed = 1.0  # the Speed dropdown's, once checked
        self._overlaid = False  # the Layout dropdown's, once checked
        self._selected = "original"  # the Selected body dropdown's, once checked
        self._method = METHODS[0]  # the Method dropdown's, once checked
        self._marked: int | None = None  # the frame the plot's marker is at (None: the plot is to be redrawn)
        self._kept_upload: Path | None = None  # an uploaded pose set handed to the samples panel
        self._loaded: tuple[Clip | JointTrack, Observations, np.ndarray] | None = None  # set_motion's input
        with container:
            with gui.add_folder("Clip"):
                self.example = gui.add_button(
                    "Load example clip", icon=viser.Icon.MOVIE,
                    hint="A real AMASS gesture fragment: HumanEva 'Gestures 3', 240 frames at 120 fps "
                         "(from DPoser's demo data, MIT)")
                self.path = gui.add_text(
                    "Path", initial_value="",
                    hint="An AMASS .npz (SMPL-X or SMPL+H), a DPoser clip, or observed joints ('joints' (T, 22+, 3) "
                         "m); a set of poses (as dposer generate writes) opens with the samples. "
                         f"{session.app.read_folder.describe()}",
                )
                self.load = gui.add_button("Load path", icon=viser.Icon.FOLDER_OPEN,
                                           hint="Load the file named in Path (on the machine running the viewer)")
                self.upload = gui.add_upload_button("Upload clip", icon=viser.Icon.UPLOAD, mime_type=".npz",
                                                    hint="Load an .npz from this computer (same kinds as Path)")
                self.info = gui.add_markdown("*No clip loaded.*")
            with gui.add_folder("Playback"):
                self.timeline = gui.add_slider("Frame", min=0, max=1, step=1, initial_value=0, disabled=True,
                                               hint="The frame on display (from 0); the plot's marker follows it")
                self.play = gui.add_button("Play", icon=viser.Icon.PLAYER_PLAY, disabled=True,
                                           hint="Play the clip in a loop at its frame rate times Speed")
                self.speed = gui.add_dropdown("Speed", SPEEDS, initial_value="1x",
                                              hint="Playback speed relative to the clip's frame rate")
                self.layout = gui.add_dropdown(
                    "Layout", LAYOUTS, initial_value=LAYOUTS[0],
                    hint="Side by side: original, noisy joints, denoised left to right. Overlaid: on top of each "
                         "other, the bodies not selected see-through")
                self.selected = gui.add_dropdown(
                    "Selected body", BODIES, initial_value=BODIES[0],
                    hint="The body drawn opaque when overlaid, and the one Send frame to Edit takes "
                         "(the other one while it is not shown)")
                self.to_edit = gui.add_button(
                    "Send frame to Edit", icon=viser.Icon.HAND_FINGER, disabled=True,
                    hint="Make the selected body's pose at this frame the current pose and edit it (undo goes back)")
            with gui.add_folder("Denoise"):
                self.noise = gui.add_slider("Joint noise (m)", min=0.0, max=MAX_NOISE_M, step=0.005, initial_value=0.04,
                                            hint="Standard deviation of the Gaussian noise added to each joint "
                                                 "coordinate, metres")
                self.noise_seed = gui.add_number("Noise seed", initial_value=0, step=1,
                                                 hint="Same seed, same noise")
                self.add_noise = gui.add_button("Add noise", disabled=True,
                                                hint="Make the noisy joints from the clip's (replaces earlier noise)")
                self.method = gui.add_dropdown(
                    "Method", METHODS, initial_value=METHODS[0],
                    hint="ours: our defaults; paper: the original DPoser code's motion denoising exactly (unweighted "
                         "prior, temporal term on the mesh, start near the zero pose, its time steps). Paper is "
                         "much slower on a CPU: it poses the whole mesh every step")
                self.smooth = gui.add_checkbox(
                    "Smooth result", initial_value=False,
                    hint="Gaussian-smooth the result over time (3 frames), as the original does before it reports "
                         "errors")
                self.denoise = gui.add_button("Denoise", icon=viser.Icon.WAND, disabled=True,
                                              hint="Fit the body poses to the noisy or observed joints with the prior "
                                                   "(as dposer denoise does)")
                self.plot = gui.add_uplot(
                    plot_data({}, 2, 0),
                    (uplot.Series(label="frame"),
                     uplot.Series(label="noisy", stroke="#e1463c", width=1.5),
                     uplot.Series(label="denoised", stroke="#3a9d5d", width=1.5),
                     uplot.Series(label="shown frame", stroke=MARKER_COLOR, width=1, scale="marker")),
                    title="Per-frame joint error (mm)", aspect=1.6, visible=False,
                    scales={"x": uplot.Scale(time=False), "y": uplot.Scale(range=(0.0, 1.0)),
                            "marker": uplot.Scale(range=(0.0, 1.0))},
                    axes=(uplot.Axis(label="frame"), uplot.Axis(label="mm")),
                    legend=uplot.Legend(live=False),
                )
                self.summary = gui.add_markdown("", visible=False)
            with gui.add_folder("Save denoised", expand_by_default=False):
                self.out_name = gui.add_text("File name", initial_value="denoised.npz",
                                             hint=f"Saved in the export folder {session.app.export_dir}")
                self.save = gui.add_button("Save to export folder", icon=viser.Icon.DEVICE_FLOPPY, disabled=True,
                                           hint="Write the denoised clip (AMASS SMPL-X layout) into the export folder")
                self.download = gui.add_button("Download", icon=viser.Icon.DOWNLOAD, disabled=True,
                                               hint="Download the denoised clip (AMASS SMPL-X layout) to this computer")
        self.example.on_click(lambda _: self.load_file(asset_path(EXAMPLE_CLIP)))
        self.load.on_click(lambda _: self._load_typed())
        self.upload.on_upload(self._on_upload)
        self.timeline.on_update(self._on_timeline)
        self.player = PlayButton(self.play, session.pacer, "motion-play")
        self.play.on_click(lambda _: self.toggle_play())
        self.speed.on_update(lambda _: self._on_speed())
        self.layout.on_update(lambda _: self._on_layout())
        self.selected.on_update(lambda _: self._on_selected())
        self.method.on_update(lambda _: self._on_method())
        self.to_edit.on_click(lambda _: self.send_to_edit())
        self.add_noise.on_click(lambda _: self.make_noisy())
        self.denoise.on_click(lambda _: self.start_denoise())
        self.save.on_click(lambda _: self.save_file())
        self.download.on_click(lambda event: self.send_download(event.client))

    def uploads(self) -> list[tuple[viser.GuiUploadButtonHandle, int]]:
        return [(self.upload, MAX_CLIP_BYTES)]

    # -- loading ---------------------------------------------------------------------------------
    def _on_upload(self, event: viser.GuiEvent) -> None:
        upload = self.upload.value

        def read() -> Clip | JointTrack | Path:
            try:
                with uploaded_to_file(upload, max_bytes=MAX_CLIP_BYTES, suffix=".npz") as path:
                    if is_pose_set(path):
                        return self._keep_upload(self._pose_set(path), upload.name)
                    motion = read_motion(path)
            except InputError as exc:
                raise InputError(upload_error(exc, upload)) from None
            return dataclasses.replace(motion, source=upload.name)

        self._load(read)

    def _keep_upload(self, path: Path, name: str) -> Path:
        """Move an uploaded pose set out of its temporary file (deleted once the upload is read) into
        a folder of its own, under the upload's name, for the samples panel to read; the one kept
        before is deleted."""
        folder = Path(tempfile.mkdtemp(prefix="dposer-view-samples-"))
        stem = re.sub(r"[^\w.-]", "_", Path(name).stem).lstrip(".")[:80] or "samples"
        kept = path.replace(folder / f"{stem}.npz")
        if self._kept_upload is not None:
            shutil.rmtree(self._kept_upload.parent, ignore_errors=True)
        self._kept_upload = kept
        return kept

    def _load_typed(self) -> None:
        """Load the clip the Path box names, in the app's read folder (see :class:`viewer.paths.ReadFolder`)."""
        try:
            path = self.session.typed_path(self.path.value)
        except InputError as exc:
            self.session.notify("Cannot load clip", str(exc), error=True)
            return
        if path is not None:
            self.load_file(path)

    def load_file(self, path: Path) -> None:
        """Load a clip or observed joints from a file on the worker (errors become a notification;
        the current clip stays); a set of poses goes to the samples panel."""
        self._load(lambda: self._pose_set(path) if is_pose_set(path) else read_motion(path))

    def _load(self, read: Callable[[], Clip | JointTrack | Path]) -> None:
        """Read a motion and compute what its display needs (its joints with the clip's own shape,
        which way is up and forward) on the worker, then show it. ``read`` returns a path for a
        file of poses that is no motion (:func:`is_pose_set`)."""
        session = self.session

        def run(ctx: JobContext) -> tuple[Clip | JointTrack, Observations, np.ndarray] | Path:
            motion = read()
            if isinstance(motion, Path):
                return motion
            body = ctx.resources.body
            observations = observe_motion(body, motion)
            root = motion.root_orient
            if root is None:  # only to find which way is up: the fit starts from its own estimate
                root = root_from_joints(body, torch.from_numpy(observations.joints)).numpy()
            return motion, observations, root

        def on_done(result: tuple[Clip | JointTrack, Observations, np.ndarray] | Path) -> None:
            if isinstance(result, Path):
                session.open_file("samples", result)
            else:
                self.set_motion(*result)

        def on_error(message: str) -> None:
            session.notify("Cannot load clip", message, error=True)

        session.submit("motion-load", run, on_done=on_done, on_error=on_error, needs_prior=False)

    def keep(self) -> tuple[Clip | JointTrack, Observations, np.ndarray] | None:
        """The motion loaded (a reload shows it again from its first frame; noise and fits are redone)."""
        return self._loaded

    def restore(self, kept: object) -> None:
        self.set_motion(*kept)  # type: ignore[misc]

    def _pose_set(self, path: Path) -> Path:
        """``path``, a set of poses (:func:`is_pose_set`), for the panel that opens ``"samples"``
        files; an error when no panel does."""
        if not any("samples" in panel.file_kinds for panel in self.session.panels.values()):
            raise InputError(f"is a set of poses, not a motion (no frame rate, root or translation, at most "
                             f"{MAX_POSE_SET} poses), and no panel here opens pose sets", path)
        return path

    def set_motion(self, motion: Clip | JointTrack, observations: Observations, up_root: np.ndarray) -> None:
        """Show a loaded motion: a clip as its body (noise is added next), observed joints as points
        and bones, ready to be fitted (a root the file lacks is fitted then)."""
        session = self.session
        self._loaded = (motion, observations, up_root)
        if isinstance(motion, JointTrack):
            frames = motion.num_frames
            known_root = motion.root_orient if motion.root_orient is not None else np.zeros((frames, 3), np.float32)
            clip = motion.as_clip(np.zeros((frames, 63), np.float32), known_root, motion.trans)  # poses: the fit's
        else:
            clip = motion
        self._begin(clip, observations.joints, up_root)
        self.motion, self.gt_joints = motion, observations.gt_joints
        if isinstance(motion, JointTrack):  # the info and controls first: a loaded track is ready as it is set
            self.info.content += f"; observed joints ({100 * motion.seen.mean():.0f}% seen), no ground truth"
            self.denoise.disabled = False
            self.track, self.observations = motion, observations
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
        turn = display_turn(root_orient)
        shown = joints @ turn.T
        margin = float(session.rig.rest_joints[:, 1].min() - session.rig.floor_y)
        center = np.nanmean(shown.reshape(-1, 3), 0)  # NaN: joints not seen
        self._turn = turn
        self._offset = np.array([-center[0], -np.nanmin(shown[..., 1]) + margin, -center[2]])
        self.frame = 0
        length = length_text(clip.num_frames, clip.fps, assumed=clip.fps_assumed)
        up_note = "; shown Y-up (the file is Z-up)" if is_z_up(root_orient) else ""
        name = literal(Path(clip.source).name if clip.source else "clip")
        self.info.content = f"**{name}**: {length}{up_note}"
        self.timeline.max = max(1, clip.num_frames - 1)
        self.timeline.value = 0
        self.timeline.disabled = self.play.disabled = False
        self.add_noise.disabled = self.denoise.disabled = self.save.disabled = self.download.disabled = True
        self.to_edit.disabled = True
        self.plot.visible = self.summary.visible = False

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
        options = self.denoise_options()

        def run(ctx: JobContext) -> MotionFit:
            return fit_motion(ctx.resources.prior, ctx.resources.body, motion, observations, options=options, seed=0,
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
        """Redraw the error plot and its summary with the new ``errors_mm`` (on the display thread)."""
        self.session.pacer.post("motion-plot", self._show_errors)

    def _show_errors(self) -> None:
        clip = self.clip
        if clip is None or not self.errors_mm:
            return
        finite = [v[np.isfinite(v)] for v in self.errors_mm.values()]
        top = max((float(v.max()) for v in finite if v.size), default=0.0)
        self.plot.scales = {**self.plot.scales, "y": uplot.Scale(range=(0.0, 1.1 * top if top > 0 else 1.0))}
        self.summary.content = error_summary(self.errors_mm, truth=self.gt_joints is not None)
        self._marked = None
        self._draw_plot()
        self.plot.visible = self.summary.visible = True

    def _draw_plot(self) -> None:
        """The error plot with its marker at the frame on display (display thread). While playing,
        the marker moves in steps of about a pixel (:data:`MARKER_STEPS`): the curves go with each
        step, so a long clip's are not sent for every frame (about 300 KB/s at 30 fps, any length)."""
        clip = self.clip
        if clip is None or not self.errors_mm:
            return
        step = max(1, clip.num_frames // MARKER_STEPS) if self.playing else 1
        if self._marked is not None and abs(self.frame - self._marked) < step:
            return
        self._marked = self.frame
        self.plot.data = plot_data(self.errors_mm, clip.num_frames, self.frame)

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
            self._play_pos = (self._play_pos + dt * clip.fps * self._speed) % clip.num_frames
            self.frame = int(self._play_pos)
            self._draw_frame()
            self.timeline.value = self.frame

        self.player.start(tick)

    def stop_play(self) -> None:
        self.player.stop()
        self.session.pacer.post("motion-marker", self._draw_plot)  # the marker exactly where playback stopped

    @property
    def playing(self) -> bool:
        return self.player.playing

    def _draw_frame(self) -> None:
        """Pose every motion body at ``self.frame`` and mark it on the plot (display thread)."""
        f = self.frame
        for key, body in self.bodies.items():
            pose = self._poses.get(key)
            if pose is not None and f < len(pose):
                body.set_pose(pose.row(f))
        if self.noisy_joints is not None and self._noisy is not None:
            self._noisy[1].update(self.noisy_joints[f])  # observed joints may miss some (NaN)
        self._draw_plot()

    # -- choices -------------------------------------------------------------------------------------
    def _checked(self, handle: viser.GuiDropdownHandle, current: str) -> str:
        """A dropdown's value, or ``current`` (and a notification) when a page sent another."""
        return checked_choice(self.session, handle, reset_to=current) or current

    def _on_speed(self) -> None:
        self._speed = float(self._checked(self.speed, f"{self._speed:g}x").rstrip("x"))

    def _on_layout(self) -> None:
        self._overlaid = self._checked(self.layout, LAYOUTS[self._overlaid]) == "overlaid"
        self.session.pacer.post("motion-layout", self._place)

    def _on_method(self) -> None:
        self._method = self._checked(self.method, self._method)

    def denoise_options(self) -> DenoiseOptions:
        """What Denoise runs: our defaults or the paper's (for the noise slider's level), smoothed or not."""
        smooth = bool(self.smooth.value)
        if self._method == "paper":
            return DenoiseOptions.paper(in_range(self.noise.value, 0.0, MAX_NOISE_M) or 0.04, smooth=smooth)
        return DenoiseOptions(smooth=smooth)

    def _on_selected(self) -> None:
        self._selected = self._checked(self.selected, self._selected)
        self.session.pacer.post("motion-layout", self._place)

    def _front(self) -> str | None:
        """The selected body if it is shown, else the first one shown (a track's fit: the denoised)."""
        shown = list(self.bodies)  # drawn on the display thread: a copy
        return self._selected if self._selected in shown else next(iter(shown), None)

    def _opacity(self, key: str) -> float | None:
        """Overlaid, the bodies not selected are see-through, so that the selected body, the noisy
        joints and the other bodies all stay visible; side by side every body is opaque."""
        return BACKGROUND_OPACITY if self._overlaid and key != self._front() else None

    # -- scene -------------------------------------------------------------------------------------
    def _place(self) -> None:
        """Put the clips side by side (original, noisy, denoised) or on top of each other."""
        wxyz = matrix_to_wxyz_np(self._turn)
        for key, body in dict(self.bodies).items():
            x = 0.0 if self._overlaid else SLOTS[key]
            body.position = self._offset + np.array([x, 0.0, 0.0])
            body.wxyz = wxyz
            body.set_opacity(self._opacity(key))
        if self._noisy is not None:
            frame = self._noisy[0]
            frame.position = self._offset + np.array([0.0, 0.0, 0.0])
            frame.wxyz = wxyz

    def _show_body(self, key: str, color: tuple[int, int, int]) -> None:
        """Show the body ``key`` (made once, then reused: see BodyHandle.set_rig)."""
        body = self._made.get(key)
        if body is None:
            body = self._made[key] = BodyHandle(self.session.scene, f"/motion/{key}", self.session.rig,
                                                color=color, contact=True)
        body.visible = True
        self.bodies[key] = body
        self.to_edit.disabled = False

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

    # -- to the Edit panel ---------------------------------------------------------------------------
    def send_to_edit(self) -> None:
        """Make the selected body's pose at the frame on display the current pose (an undo step)
        and open the Edit panel."""
        clip, key, f = self.clip, self._front(), self.frame
        poses = {"original": None if clip is None else clip.pose_body, "denoised": self.denoised}.get(key)
        if poses is None or f >= len(poses):
            return
        name = Path(clip.source).name if clip.source else "the clip"
        label = f"frame {f} of {name}" + (" (denoised)" if key == "denoised" else "")
        self.session.set_pose(poses[f], label=label)
        self.session.activate("edit")

    # -- export ------------------------------------------------------------------------------------
    def shown_motion(self) -> Clip | None:
        """The selected body's motion (the clip, or its denoised fit once finished): what the Export
        panel writes as an animation."""
        if self.clip is None:
            return None
        if self._front() == "denoised" and self.fit is not None:
            return self.fit.clip
        return self.clip

    def playback(self) -> Timeline | None:
        """The clip's frames at its rate, each shown as scrubbing there shows it (for recordings)."""
        if self.clip is None:
            return None
        shown = self.shown_motion()
        return Timeline("the clip", self.clip.num_frames, self.clip.fps, self._show_recorded,
                        offscreen=lambda body, **kw: render_frames(body, shown, **kw))

    def _show_recorded(self, frame: int) -> None:
        self.player.stop()
        self.frame, self._play_pos = frame, float(frame)
        self._draw_frame()
        self.timeline.value = frame

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
        return (0.0, 0.0) if self._overlaid else (-SLOT_M, SLOT_M)

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
                wxyz=tuple(body.wxyz), color=colors[key], opacity=self._opacity(key)))
        return out
