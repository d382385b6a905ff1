"""Fit tab: fit a body to a photo (DPoser's fourth task, ``dposer fit``): the photo as a backdrop
seen from its camera, its 2D keypoints, and the fitted body streaming in; a keypoint sequence on a
timeline."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import viser
from PIL import Image

from prior.camera import Camera
from prior.detect import MAX_IMAGE_BYTES, load_image
from prior.errors import InputError
from prior.image_fit import ImageFit, PhotoObservation, default_options, fit_photo, observe_photo
from prior.keypoints import KEYPOINT_NAMES, MAX_KEYPOINT_FILE_BYTES, load_keypoint_sequence, natural_key
from prior.progress import Progress
from prior.rotations import matrix_to_wxyz_np

from ..body_handle import BodyHandle, BodyPool
from ..markup import literal
from ..rig import BodyRig
from ..uploads import upload_error, uploaded_to_file
from ..widgets import in_range
from ..worker import JobContext
from .base import Panel, ShownBody

if TYPE_CHECKING:
    from ..session import ClientSession

FIT_COLOR = (110, 195, 140)
GHOST_COLOR = (110, 150, 235)
GHOST_OPACITY = 0.3
LEFT_COLOR, RIGHT_COLOR, MIDDLE_COLOR = (40, 120, 255), (240, 50, 50), (250, 215, 40)  # the person's left / right
PROJECTED_COLOR = (25, 25, 25)
ERROR_COLOR = (235, 40, 200)
SIDE_COLORS = np.array([LEFT_COLOR if n.startswith("left") else RIGHT_COLOR if n.startswith("right") else MIDDLE_COLOR
                        for n in KEYPOINT_NAMES], np.uint8)
PRIORS = {"DPoser": "dposer", "Gaussian": "gaussian", "None": "none"}  # dropdown label -> fit_photo's prior_name
MAX_PRIOR_WEIGHT = 4.0
MAX_HYPOTHESES = 10
MAX_FIT_FRAMES = 1000  # a sequence's frames fitted in a tab (~4 s per 30 frames on one CPU thread)
BEHIND_M = 1.0  # the photo stands this far behind the fitted pelvis
RIG_CACHE = 4  # bodies kept with a sequence's recent frames' shapes
MAX_BACKDROP_PX = 1280  # the photo is sent downscaled to this many pixels on its long side
KEYPOINT_SIZE = 0.012  # of the photo's height on its plane
STREAM_BETAS_TOL = 0.5  # a streamed shape differing less than this from the one drawn keeps it (no mesh re-sent)
PHOTO_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


@dataclass(frozen=True, eq=False)
class LoadedPhoto:
    """What the panel fits: the observation (a photo's, or a sequence's with the first frame's
    photo) and, for a sequence given a folder of photos, one photo per frame."""

    observation: PhotoObservation
    name: str
    """The photo's (or sequence's) name, as shown."""
    keypoints_name: str | None = None
    """The keypoint file's name; None: the detector's keypoints."""
    frame_photos: tuple[Path, ...] = ()

    @property
    def num_frames(self) -> int:
        return self.observation.keypoints.num_frames

    @property
    def sequence(self) -> bool:
        return self.observation.keypoints.conf.ndim == 2


@dataclass(frozen=True, eq=False)
class FitState:
    """A fit's parameters as drawn (streamed or final): ``(N, ...)`` per image or frame."""

    pose_body: np.ndarray
    root_orient: np.ndarray
    trans: np.ndarray
    betas: np.ndarray


def photo_files(folder: Path) -> tuple[Path, ...]:
    """The photos in ``folder`` in natural order (``frame_2`` before ``frame_10``); none is an error."""
    files = sorted((p for p in folder.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES and not p.name.startswith(".")),
                   key=natural_key)
    if not files:
        raise InputError(f"no photos ({', '.join(PHOTO_SUFFIXES)}) in the folder", folder)
    return tuple(files)


def read_photo(photo: Path | np.ndarray | None, keypoints: Path | None, *, name: str,
               keypoints_name: str | None = None) -> LoadedPhoto:
    """A photo (a file or pixels) and its keypoint file, or the detector's keypoints without one; a
    keypoint sequence (a folder of per-frame files, or one file of frames), with a folder of its
    frames' photos or none. ``name`` and ``keypoints_name`` (default: the file's) are shown.
    Errors are one :class:`InputError` line naming the file."""
    frames: tuple[Path, ...] = ()
    if isinstance(photo, Path) and photo.is_dir():
        frames, folder = photo_files(photo), photo
        if keypoints is None:
            raise InputError("a folder of photos needs its keypoint sequence (the detector reads one photo)", folder)
        photo = frames[0]
    if keypoints is None:
        return LoadedPhoto(observe_photo(photo, source=name), name)
    image = load_image(photo) if isinstance(photo, Path) else photo
    size = None if image is None else (int(image.shape[1]), int(image.shape[0]))
    kp = load_keypoint_sequence(keypoints, image_size=size, max_frames=MAX_FIT_FRAMES)
    if frames and len(frames) != kp.num_frames:
        raise InputError(f"{len(frames)} photos for {kp.num_frames} frames of keypoints", folder)
    if kp.num_frames == 1:
        kp = kp.frame(0)
    elif image is not None and not frames:
        raise InputError(f"{kp.num_frames} frames of keypoints for one photo: give a folder of the frames' photos "
                         "(one each) or none", photo if isinstance(photo, Path) else name)
    return LoadedPhoto(observe_photo(image, kp, source=name), name, keypoints_name or keypoints.name,
                       frames if kp.num_frames > 1 else ())


def backdrop(image: np.ndarray) -> np.ndarray:
    """The photo as it is sent to the browser: at most :data:`MAX_BACKDROP_PX` on its long side."""
    h, w = image.shape[:2]
    scale = MAX_BACKDROP_PX / max(h, w)
    if scale >= 1:
        return image
    return np.asarray(Image.fromarray(image).resize((max(1, round(w * scale)), max(1, round(h * scale)))))


class FitPanel(Panel):
    """The photo's camera, its photo and keypoints and the fitted body, under ``/fit/world``.

    The body's world is the fit's (SMPL-X's, Y up, the camera at its origin looking along -Z);
    ``/fit/world`` shifts it so the fitted body stands on the grid at the origin (``anchor``,
    fixed per photo). State: ``loaded`` (the photo or sequence), ``fit`` (the last finished
    :class:`prior.image_fit.ImageFit` for it), ``shown`` (the parameters drawn, streamed or
    final), ``frame`` (of a sequence).
    """

    name = "fit"
    label = "Fit"
    icon = "camera"
    stage = "fit"
    file_kinds = ("photo",)
    ground = False  # the grid would lie over the photo's floor

    def __init__(self, session: ClientSession, container: viser.GuiFolderHandle) -> None:
        super().__init__(session, container)
        gui = session.gui
        self.loaded: LoadedPhoto | None = None
        self.fit: ImageFit | None = None
        self.fit_seconds = 0.0
        self.shown: FitState | None = None
        self.frame = 0
        self.streamed_updates = 0
        self.anchor: np.ndarray | None = None  # where /fit/world puts the fit's origin (the camera)
        self.depth = 0.0  # of the photo's plane from its camera, metres
        self.body: BodyHandle | None = None
        self.ghosts: list[BodyHandle] = []
        self._pool = BodyPool()
        self._rigs: dict[int, BodyRig] = {}  # frame -> the body drawn with that frame's shape
        self._request: object | None = None  # the fit whose results are drawn
        self._loads = 0
        self.photo_frame = -1  # the frame whose photo the backdrop shows
        self._world = session.scene.add_frame("/fit/world", show_axes=False)
        self._camera = session.scene.add_frame("/fit/world/camera", show_axes=False)
        self._photo: viser.ImageHandle | None = None
        self._photo_shown = False  # whether the frame shown has a photo
        self.settings = ("DPoser", 1.0, 0)  # (prior, weight, hypotheses) of the fit shown
        self.keypoint_nodes: dict[str, viser.PointCloudHandle | viser.LineSegmentsHandle] = {}
        with container:
            gui.add_markdown("Fit a body to a photo: to its keypoint file, or to the keypoints the detector finds.")
            with gui.add_folder("Photo"):
                self.photo_path = gui.add_text(
                    "Photo file", initial_value="",
                    hint="An image file; for a keypoint sequence, a folder of its frames' photos (or nothing). "
                         f"{session.app.read_folder.describe()}")
                self.keypoints_path = gui.add_text(
                    "Keypoint file", initial_value="",
                    hint="Optional: the photo's keypoints (OpenPose, COCO, MMPose or MediaPipe JSON, .npz), or a "
                         "sequence's (a folder of per-frame files, or one file of frames); empty: the detector runs")
                self.load = gui.add_button("Load path", icon=viser.Icon.FOLDER_OPEN,
                                           hint="Load the photo and keypoint files named above, then fit")
                self.upload_photo = gui.add_upload_button(
                    "Upload photo", icon=viser.Icon.UPLOAD, mime_type="image/*",
                    hint="A photo from this computer: the detector finds the person's keypoints, then it fits")
                self.upload_keypoints = gui.add_upload_button(
                    "Upload keypoints", icon=viser.Icon.UPLOAD, mime_type=".json,.npz",
                    hint="A keypoint file for the photo loaded (or, alone, with its image size)")
                self.info = gui.add_markdown("*No photo loaded.*")
            with gui.add_folder("Fit"):
                self.prior = gui.add_dropdown("Prior", tuple(PRIORS), initial_value="DPoser",
                                              hint="The pose prior of the fit: DPoser's, a Gaussian of AMASS poses, "
                                                   "or none (reprojection, bend and shape terms only)")
                self.weight = gui.add_slider("Prior weight", min=0.0, max=MAX_PRIOR_WEIGHT, step=0.05,
                                             initial_value=1.0, hint="Multiplies the prior's weight at every stage")
                self.hypotheses = gui.add_slider("Hypotheses", min=0, max=MAX_HYPOTHESES, step=1, initial_value=5,
                                                 hint="Completions of the limbs no keypoint sees, shown as ghosts")
                self.refit = gui.add_button("Fit again", icon=viser.Icon.REFRESH, disabled=True,
                                            hint="Fit the loaded photo again with these settings")
                self.result = gui.add_markdown("")
            with gui.add_folder("View"):
                self.view_button = gui.add_button("View from camera", icon=viser.Icon.CAMERA, disabled=True,
                                                  hint="Look through the photo's camera: the body over the person")
                self.timeline = gui.add_slider("Frame", min=0, max=1, step=1, initial_value=0, visible=False,
                                               hint="The frame of a keypoint sequence shown (Left / Right step it)")
                self.opacity = gui.add_slider("Body opacity", min=0.1, max=1.0, step=0.05, initial_value=1.0,
                                          hint="See the photo through the fitted body")
                self.show_photo = gui.add_checkbox("Show photo", initial_value=True,
                                                   hint="The photo in the camera's frustum")
                self.show_keypoints = gui.add_checkbox("Show keypoints", initial_value=True,
                                                       hint="Seen keypoints (blue: left, red: right), the fit's "
                                                            "(dark) and their errors (pink)")
            self.edit = gui.add_button("Edit this fit", icon=viser.Icon.HAND_FINGER, disabled=True,
                                       hint="Make the fitted pose the current pose and edit it (gizmos, IK)")
        self.load.on_click(lambda _: self.load_paths(self.photo_path.value, self.keypoints_path.value))
        self.upload_photo.on_upload(lambda _: self._on_upload_photo())
        self.upload_keypoints.on_upload(lambda _: self._on_upload_keypoints())
        for control in (self.prior, self.weight, self.hypotheses):
            control.on_update(lambda _: self.start_fit())  # live: a newer fit replaces the running one
        self.refit.on_click(lambda _: self.start_fit())
        self.view_button.on_click(lambda _: session.frame_camera())
        self.timeline.on_update(self._on_timeline)
        self.opacity.on_update(lambda _: session.pacer.post("fit-style", self._style))
        self.show_photo.on_update(lambda _: session.pacer.post("fit-style", self._style))
        self.show_keypoints.on_update(lambda _: session.pacer.post("fit-style", self._style))
        self.edit.on_click(lambda _: self.edit_fit())

    def uploads(self) -> list[tuple[viser.GuiUploadButtonHandle, int]]:
        return [(self.upload_photo, MAX_IMAGE_BYTES), (self.upload_keypoints, MAX_KEYPOINT_FILE_BYTES)]

    # -- loading ---------------------------------------------------------------------------------
    def load_paths(self, photo: str, keypoints: str = "") -> None:
        """Load a photo (or a sequence's folder of photos) and/or a keypoint file from paths on the
        worker, then fit; errors become a notification and the current photo stays."""
        try:
            photo_path, keypoints_path = self.session.typed_path(photo), self.session.typed_path(keypoints)
        except InputError as exc:
            self.session.notify("Cannot load", str(exc), error=True)
            return
        if photo_path is None and keypoints_path is None:
            self.session.notify("Nothing to load", "Give a photo's path, a keypoint file's, or both.")
            return
        name = (photo_path or keypoints_path).name
        self._load(lambda: read_photo(photo_path, keypoints_path, name=name))

    def _on_upload_photo(self) -> None:
        upload = self.upload_photo.value

        def read() -> LoadedPhoto:
            try:
                with uploaded_to_file(upload, max_bytes=MAX_IMAGE_BYTES) as path:
                    image = load_image(path)
            except InputError as exc:
                raise InputError(upload_error(exc, upload)) from None
            return read_photo(image, None, name=Path(upload.name).name)

        self._load(read)

    def _on_upload_keypoints(self) -> None:
        """Keypoints for the photo on screen (a single photo's), or alone when the file gives its image size."""
        upload = self.upload_keypoints.value
        loaded = self.loaded
        photo = None if loaded is None or loaded.sequence else loaded.observation.image
        name = Path(upload.name).name

        def read() -> LoadedPhoto:
            try:
                with uploaded_to_file(upload, max_bytes=MAX_KEYPOINT_FILE_BYTES) as path:
                    return read_photo(photo, path, name=name if photo is None else loaded.name, keypoints_name=name)
            except InputError as exc:
                raise InputError(upload_error(exc, upload)) from None

        self._load(read)

    def _load(self, read) -> None:
        session = self.session

        def on_error(message: str) -> None:
            session.notify("Cannot load photo", message, error=True)

        session.submit("fit-load", lambda ctx: read(), on_done=self.set_photo, on_error=on_error, needs_prior=False)

    def set_photo(self, loaded: LoadedPhoto) -> None:
        """Show a loaded photo or sequence (once its fit starts streaming) and fit it."""
        session = self.session
        self._request = None  # what is drawn from here on is the new photo's fit
        self.loaded, self.fit, self.shown, self.anchor = loaded, None, None, None
        self._loads += 1
        self._rigs = {}
        self.frame = 0
        self.photo_frame = -1
        obs = loaded.observation
        cam = obs.camera
        seen = obs.keypoints.conf > 0
        where = "the BlazePose detector" if loaded.keypoints_name is None else literal(loaded.keypoints_name)
        if loaded.sequence:
            photos = f"{len(loaded.frame_photos)} photos" if loaded.frame_photos else "no photos"
            text = (f"**{literal(loaded.name)}**: {loaded.num_frames} frames of keypoints ({photos}), "
                    f"{cam.width}×{cam.height} px; {100 * seen.mean():.0f}% of keypoints seen")
        else:
            text = (f"**{literal(loaded.name)}**: {cam.width}×{cam.height} px, keypoints from {where}: "
                    f"{int(seen.sum())} of {len(KEYPOINT_NAMES)} seen")
        self.info.content = text
        self.timeline.visible = loaded.sequence
        self.timeline.max = max(1, loaded.num_frames - 1)
        self.timeline.value = 0
        self.refit.disabled = False
        self.edit.disabled = True
        session.pacer.post("fit-body", self._clear)
        session.mark("photo_loaded")
        self.start_fit()

    # -- fitting ---------------------------------------------------------------------------------
    def start_fit(self) -> None:
        """Fit the body to the loaded photo with the panel's prior settings on the worker
        (:func:`prior.image_fit.fit_photo`); the body streams in. A newer fit replaces a running one."""
        loaded, session = self.loaded, self.session
        if loaded is None:
            return
        label = self.prior.value if self.prior.value in PRIORS else "DPoser"  # a client may send any string
        weight = in_range(self.weight.value, 0.0, MAX_PRIOR_WEIGHT)
        hyps = in_range(self.hypotheses.value, 0, MAX_HYPOTHESES, integer=True)
        self._request = request = object()
        self.fit = None  # the streamed body has no keypoints' errors or hypotheses until it is done
        self.streamed_updates = 0
        self.edit.disabled = True
        session.mark("fit_started")

        def current() -> bool:  # results of a fit that was replaced, or of another photo, are dropped
            return self._request is request

        def run(ctx: JobContext) -> tuple[ImageFit, float]:
            started = time.perf_counter()
            fit = fit_photo(ctx.resources.prior, ctx.resources.body, loaded.observation, prior_name=PRIORS[label],
                            prior_weight=weight, hypotheses=hyps, seed=0, callback=ctx.report, cancel=ctx.cancel)
            return fit, time.perf_counter() - started

        def on_progress(p: Progress) -> None:
            state = FitState(p.pose_body.numpy(), p.extra["root_orient"].numpy(), p.extra["trans"].numpy(),
                             p.extra["betas"].numpy())
            status = f"*fitting: {p.extra.get('stage', 'body')} stage, step {p.step} of {p.total}*"

            def draw() -> None:
                if current():
                    self._show(state)
                    self.result.content = status
                    self.streamed_updates += 1
                    if self.streamed_updates == 1:
                        session.mark("fit_first_update")

            session.pacer.post("fit-body", draw)

        def on_done(result: tuple[ImageFit, float]) -> None:
            fit, seconds = result

            def finish() -> None:
                if not current():
                    return
                self.fit, self.fit_seconds, self.settings = fit, seconds, (label, weight, hyps)
                self._show(FitState(fit.pose_body, fit.root_orient, fit.trans, fit.betas), final=True)
                self.result.content = self._summary()
                self.edit.disabled = False
                session.mark("fit_done")

            session.pacer.post("fit-body", finish)

        session.submit("fit", run, on_progress=on_progress, on_done=on_done)

    def _summary(self) -> str:
        fit, loaded = self.fit, self.loaded
        label, weight, hyps = self.settings
        assert fit is not None and loaded is not None
        seen = int(np.isfinite(fit.reprojection_px).sum())
        frames = f" over {fit.num_images} frames" if loaded.sequence else ""
        lines = [f"**reprojection error** {fit.mean_reprojection_px:.1f} px (mean of {seen} keypoints{frames})"]
        if loaded.sequence:
            lines.append(f"**frame {self.frame}** {np.nanmean(fit.reprojection_px[self.frame]):.1f} px")
        starts = ", ".join(f"{y:g}°" for y in default_options(PRIORS[label]).yaws_deg)
        where = "the detector" if loaded.keypoints_name is None else literal(loaded.keypoints_name)
        lines.append(f"**start** yaw {fit.start_yaw_deg[self.frame]:g}° won (of {starts}) · **keypoints** {where}")
        lines.append(f"**prior** {label} × {weight:g} · **time** {self.fit_seconds:.1f} s")
        joints = fit.completed_joints[self.frame] if fit.completed_joints else ()
        if fit.hypotheses is not None and joints:
            lines.append(f"**{hyps} hypotheses** (ghosts) for the {len(joints)} joints no keypoint sees")
        return "  \n".join(lines)

    # -- drawing (display thread) ----------------------------------------------------------------
    def _rig(self, frame: int, betas: np.ndarray, *, exact: bool) -> BodyRig:
        """The body with frame ``frame``'s shape: the one drawn when it is (nearly, while streaming) the same."""
        rig = self._rigs.pop(frame, None)
        tol = 0.0 if exact else STREAM_BETAS_TOL
        if rig is None or rig.betas is None or np.abs(rig.betas - betas).max() > tol:
            rig = BodyRig(self.session.rig.body, betas)
        self._rigs[frame] = rig  # the most recent last
        while len(self._rigs) > RIG_CACHE:
            self._rigs.pop(next(iter(self._rigs)))
        return rig

    def _show(self, state: FitState, *, final: bool = False) -> None:
        """Draw a (streamed or final) fit at the current frame: the first draw of a photo places it."""
        self.shown = state
        if self.anchor is None:
            self._place(state)
        self._draw_frame(final=final)

    def _place(self, state: FitState) -> None:
        """Anchor a new photo's world (the body on the grid at the origin) and frame the view on its camera."""
        rig = self._rig(0, state.betas[0], exact=False)
        joints = rig.pose(state.pose_body[:1], root_orient=state.root_orient[:1], transl=state.trans[:1]).positions[0]
        sole = float(rig.rest_joints[:, 1].min() - rig.floor_y)  # the lowest joint's height over the sole
        self.anchor = np.array([-joints[0, 0], sole - joints[:, 1].min(), -joints[0, 2]])
        self._world.position = self.anchor
        cam = self.loaded.observation.camera
        self._camera.wxyz = matrix_to_wxyz_np(cam.rotation.T)  # camera -> world
        self._camera.position = cam.position
        scene = self.session.scene
        vfov = math.radians(cam.fov_deg[1])
        scene.add_camera_frustum("/fit/world/camera/frustum", fov=vfov, aspect=cam.width / cam.height, scale=0.15,
                                 thickness=0.004, color=(60, 60, 60), cast_shadow=False, receive_shadow=False)
        self.depth = self._pelvis_depth(joints[0]) + BEHIND_M
        self.photo_frame = -1
        self.view_button.disabled = False
        if self.session.stage_panel is self:
            self.session.frame_once(f"fit-{self._loads}")  # each new photo: its camera's view

    def _pelvis_depth(self, pelvis: np.ndarray) -> float:
        cam = self.loaded.observation.camera
        return float((cam.rotation @ pelvis + cam.translation)[2])

    def _draw_frame(self, *, final: bool = False) -> None:
        state, loaded = self.shown, self.loaded
        if state is None or loaded is None:
            return
        f = min(self.frame, len(state.pose_body) - 1)
        rig = self._rig(f, state.betas[f], exact=final)
        pose = rig.pose(state.pose_body[f : f + 1], root_orient=state.root_orient[f : f + 1],
                        transl=state.trans[f : f + 1])
        if self.body is None:
            self.body = BodyHandle(self.session.scene, "/fit/world/body", rig, color=FIT_COLOR)
        elif self.body.rig is not rig:
            self.body.set_rig(rig)
        self.body.set_pose(pose)
        if final or loaded.sequence:
            self.depth = self._pelvis_depth(pose.positions[0, 0]) + BEHIND_M  # behind the body, wherever it went
        self._draw_photo(f)
        self._draw_keypoints(f)
        self._draw_ghosts(f, rig)
        self._style()

    def _draw_photo(self, f: int) -> None:
        loaded = self.loaded
        cam = loaded.observation.camera
        if self.photo_frame != f:
            image = loaded.observation.image if f == 0 or not loaded.frame_photos else None
            if image is None and loaded.frame_photos:
                try:
                    image = load_image(loaded.frame_photos[f])
                except InputError as exc:
                    self.session.notify("Cannot show the frame's photo", str(exc), error=True)
            if image is not None and image.shape[:2] != (cam.height, cam.width):
                size = f"{image.shape[1]}×{image.shape[0]} px, the sequence's are {cam.width}×{cam.height}"
                self.session.notify("Cannot show the frame's photo", f"{loaded.frame_photos[f].name}: {size}",
                                    error=True)
                image = None
            self.photo_frame = f
            if image is None:
                if self._photo is not None:
                    self._photo.visible = False
                self._photo_shown = False
            else:
                self._photo = self.session.scene.add_image(
                    "/fit/world/camera/photo", backdrop(image), render_width=1.0, render_height=1.0,
                    cast_shadow=False, receive_shadow=False)
                self._photo_shown = True
        if self._photo is not None and self._photo_shown:
            d, (cx, cy) = self.depth, cam.center
            self._photo.render_width, self._photo.render_height = cam.width / cam.focal * d, cam.height / cam.focal * d
            self._photo.position = ((cam.width / 2 - cx) / cam.focal * d, (cam.height / 2 - cy) / cam.focal * d, d)

    def on_plane(self, xy: np.ndarray, depth: float | None = None) -> np.ndarray:
        """``(K, 3)`` camera-frame points at ``depth`` (default: just before the photo) on the rays
        through pixels ``xy (K, 2)``: where they lie on the photo's plane."""
        cam = self.loaded.observation.camera
        d = 0.995 * self.depth if depth is None else depth
        cx, cy = cam.center
        return np.column_stack([(xy[:, 0] - cx) / cam.focal * d, (xy[:, 1] - cy) / cam.focal * d,
                                np.full(len(xy), d)]).astype(np.float32)

    def _draw_keypoints(self, f: int) -> None:
        """The seen keypoints on the photo and, once fitted, the fit's and the errors between them."""
        loaded, fit, scene = self.loaded, self.fit, self.session.scene
        kp = loaded.observation.keypoints.frames()
        seen = kp.conf[f] > 0
        cam = loaded.observation.camera
        size = KEYPOINT_SIZE * cam.height / cam.focal * self.depth
        for handle in self.keypoint_nodes.values():
            handle.visible = False
        self.keypoint_nodes = {}
        if not seen.any():
            return
        observed = self.on_plane(kp.xy[f][seen])
        self.keypoint_nodes["observed"] = scene.add_point_cloud(
            "/fit/world/camera/keypoints", observed, SIDE_COLORS[seen], point_size=size, point_shape="circle",
            point_shading="flat", precision="float32")
        if fit is None or fit.keypoints.num_frames != kp.num_frames:
            return
        projected = self.on_plane(fit.projected[f][seen], 0.99 * self.depth)
        self.keypoint_nodes["projected"] = scene.add_point_cloud(
            "/fit/world/camera/projected", projected, PROJECTED_COLOR, point_size=0.6 * size, point_shape="diamond",
            point_shading="flat", precision="float32")
        self.keypoint_nodes["errors"] = scene.add_line_segments(
            "/fit/world/camera/errors", np.stack([observed, projected], 1), ERROR_COLOR, thickness=0.25 * size)

    def _draw_ghosts(self, f: int, rig: BodyRig) -> None:
        """The fit's hypotheses for the joints no keypoint sees (finished fits), as ghosts of those limbs."""
        fit = self.fit
        joints = fit.completed_joints[f] if fit is not None and fit.hypotheses is not None else ()
        if not joints:
            self._pool.hide()
            self.ghosts = []
            return
        labels = set(joints)
        key = tuple(sorted(labels))
        tag = "_".join(map(str, key))
        hyps = fit.hypotheses[f]
        self.ghosts = self._pool.take(key, len(hyps), lambda k: BodyHandle(
            self.session.scene, f"/fit/world/ghosts/{tag}/{k}", rig, labels=labels, color=GHOST_COLOR,
            opacity=GHOST_OPACITY))
        for ghost in self.ghosts:
            if ghost.rig is not rig:
                ghost.set_rig(rig)
        n = len(hyps)
        poses = rig.pose(hyps, root_orient=np.repeat(fit.root_orient[f : f + 1], n, 0),
                         transl=np.repeat(fit.trans[f : f + 1], n, 0))
        for k, ghost in enumerate(self.ghosts):
            ghost.set_pose(poses.row(k))

    def _clear(self) -> None:
        """Hide the last photo's body, photo, keypoints and ghosts (a new photo is loading)."""
        for node in (self.body, self._photo, *self.keypoint_nodes.values()):
            if node is not None:
                node.visible = False
        self.keypoint_nodes = {}
        self._photo_shown = False
        self._pool.hide()
        self.ghosts = []

    def _style(self) -> None:
        """Apply the View controls: the body's opacity, the photo and the keypoints shown or not."""
        if self.body is not None:
            opacity = in_range(self.opacity.value, 0.1, 1.0)
            self.body.set_opacity(None if opacity >= 1.0 else opacity)
            if not self.body.visible and self.shown is not None:
                self.body.visible = True
        nodes = [(self._photo, bool(self.show_photo.value) and self._photo_shown)]
        nodes += [(handle, bool(self.show_keypoints.value)) for handle in self.keypoint_nodes.values()]
        for node, visible in nodes:
            if node is not None and node.visible != visible:
                node.visible = visible

    # -- frames ----------------------------------------------------------------------------------
    def _on_timeline(self, event: viser.GuiEvent) -> None:
        loaded = self.loaded
        frame = in_range(self.timeline.value, 0, loaded.num_frames - 1 if loaded else 0, integer=True)
        if event.client is None or frame == self.frame:
            return
        self.show_frame(frame)

    def show_frame(self, frame: int) -> None:
        """Show frame ``frame`` of a sequence: its body, photo, keypoints and error."""
        self.frame = frame

        def draw() -> None:
            if self.fit is not None:  # first: a reader who sees the frame's body sees its numbers
                self.result.content = self._summary()
            self._draw_frame(final=self.fit is not None)
            self.session.mark("fit_frame_shown")

        self.session.pacer.post("fit-frame", draw)

    # -- hand-off ----------------------------------------------------------------------------------
    def edit_fit(self) -> None:
        """Make the fitted pose (of the frame shown) the current pose and open the Edit panel."""
        if self.fit is None:
            return
        f = min(self.frame, self.fit.num_images - 1)
        self.session.set_pose(self.fit.pose_body[f], label="photo fit")
        self.session.activate("edit")

    # -- panel -------------------------------------------------------------------------------------
    def view(self, aspect: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, float] | None:
        """The photo's camera, its field of view widened where needed for the whole photo to fit the canvas."""
        if self.anchor is None or self.loaded is None:
            return None
        cam: Camera = self.loaded.observation.camera
        position = self.anchor + cam.position
        look_at = position + cam.rotation[2] * max(self.depth - BEHIND_M, 0.5)  # at the body: orbits turn about it
        tan_half = max(cam.height / (2 * cam.focal), cam.width / (2 * cam.focal) / max(float(aspect), 1e-3))
        return position, look_at, -cam.rotation[1], 2 * math.atan(tan_half)

    def extent(self) -> tuple[float, float] | None:
        return None if self.anchor is None else (0.0, 0.0)

    def shown_bodies(self) -> list[ShownBody]:
        state = self.shown
        if state is None or self.anchor is None:
            return []
        f = min(self.frame, len(state.pose_body) - 1)
        name = f"fit_frame_{f}" if self.loaded is not None and self.loaded.sequence else "fit"
        at = tuple(float(v) for v in self.anchor)
        out = [ShownBody(name, state.pose_body[f].astype(np.float32), state.root_orient[f].astype(np.float32),
                         state.trans[f].astype(np.float32), state.betas[f].astype(np.float32), position=at,
                         color=FIT_COLOR)]
        if self.ghosts and self.fit is not None and self.fit.hypotheses is not None:
            out += [ShownBody(f"hypothesis_{k}", pose.astype(np.float32), out[0].root_orient, out[0].transl,
                              out[0].betas, position=at, color=GHOST_COLOR, opacity=GHOST_OPACITY)
                    for k, pose in enumerate(self.fit.hypotheses[f])]
        return out

    def rebuild(self) -> None:
        """After a body-model switch the fit (made with the old body) is fitted again."""
        self._rigs = {}
        if self.body is not None:
            self.body.set_rig(self.session.rig)
        self._pool.set_rig(self.session.rig)
        self.ghosts = []
        self.fit = None
        self.start_fit()

    def open_file(self, kind: str, path: Path) -> None:
        self.load_paths(str(path))
