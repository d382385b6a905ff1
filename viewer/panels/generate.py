"""Generate tab: draw poses from the prior (or open a file of them), watch them denoise, scrub and
replay the trajectory, pick one to edit."""

from __future__ import annotations

import collections
import itertools
import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import viser

from prior.data import load_poses
from prior.errors import InputError
from prior.progress import Progress
from prior.render import grid_positions, render_trajectory
from prior.sampling import GenerationResult, generate

from ..body_handle import BodyHandle, BodyPool
from ..markup import literal
from ..page import PANEL_FRACTION
from ..rig import NUM_BONES, BodyRig, RigPose
from ..uploads import upload_error, uploaded_to_file
from ..widgets import SEED_RANGE, PlayButton, checked_choice, in_range
from ..worker import JobContext
from .base import Panel, ShownBody, Timeline

if TYPE_CHECKING:
    from ..session import ClientSession

SAMPLE_COLOR = (150, 175, 205)
SELECTED_COLOR = (240, 160, 40)
PLAY_SECONDS = 4.0  # a whole trajectory replays in this long
SPACING_M = 0.95  # between the samples of a row
ROW_M = 2.0  # between rows, going back (-Z): a row behind shows above the heads in front
LABEL_ABOVE_M = 0.06  # a sample's "#k" stands this far above the top of its head
HEAD = 15  # SMPL-X joint: each label follows its body's head
VIEW_PITCH_ROW = math.radians(15)  # one row is framed from the front, looking down this much
VIEW_PITCH_GRID = math.radians(35)  # rows from higher up: each row behind shows above the heads in front
VIEW_FOV = math.radians(35)  # vertical: narrower than viser's 75 degrees, so near and far rows look alike
VIEW_MARGIN = 0.05  # of the canvas half-height kept free around the framed samples (labels' text)
MAX_SAMPLES = 16  # generated at once
MAX_SHOWN = 36  # samples of a file shown (the first ones): 6 rows of 6
MAX_FILE_POSES = 100_000  # what `dposer generate --num` writes at most
MAX_SAMPLES_FILE_BYTES = 64 * 2**20  # an uploaded samples file
STEPS = (10, 1000)
SAMPLERS = {"SDE": "sde", "ODE": "ode"}  # dropdown label -> generate()'s sampler


def view_over(points: np.ndarray, *, pitch: float, fov: float, aspect: float,
              covered: float, margin: float = VIEW_MARGIN) -> tuple[np.ndarray, np.ndarray]:
    """``(position, look_at)`` of the nearest camera that looks from the front (+Z) down by
    ``pitch`` (radians) and has every one of ``points: (P, 3)`` in view, with ``margin`` (of the
    canvas half-size) to spare, in the part of the canvas the control panel leaves free: the
    right ``covered`` fraction of its width is hidden. ``fov`` is vertical (radians), ``aspect``
    the canvas's width / height; the camera's up is +Y.

    In the camera's axes (right, up, forward) a point's screen x is ``(X - R) / ((Z - F) tan)``:
    for a fixed direction each bound is linear in the camera's position (R, U, F), so the nearest
    F at which the points fit horizontally (and vertically) has a closed form, and R and U then
    centre them in the free part."""
    forward = np.array([0.0, -math.sin(pitch), -math.cos(pitch)])
    right = np.array([1.0, 0.0, 0.0])
    up = np.cross(right, forward)
    points = np.asarray(points, np.float64)
    x, y, z = points @ right, points @ up, points @ forward
    tan_v = math.tan(0.5 * fov)
    tan_h = tan_v * aspect

    def fit(coord: np.ndarray, lo: float, hi: float, tan: float) -> tuple[float, float, float]:
        """``(F, a, b)``: the largest F (the nearest camera) with ``lo <= (coord - C) / ((z - F) tan) <= hi``
        for some C and all points; there C can only be ``b + hi tan F = a + lo tan F``."""
        a = float((coord - lo * tan * z).min())
        b = float((coord - hi * tan * z).max())
        return (a - b) / ((hi - lo) * tan), a, b

    lo_x, hi_x = -1.0 + margin, 1.0 - 2.0 * covered - margin
    f_h, a_h, b_h = fit(x, lo_x, hi_x, tan_h)
    f_v, a_v, b_v = fit(y, -1.0 + margin, 1.0 - margin, tan_v)
    f = min(f_h, f_v)
    r = 0.5 * ((b_h + hi_x * tan_h * f) + (a_h + lo_x * tan_h * f))
    u = 0.5 * ((b_v + (1.0 - margin) * tan_v * f) + (a_v + (-1.0 + margin) * tan_v * f))
    position = r * right + u * up + f * forward
    depth = float(z.mean()) - f  # look at the points' middle depth: orbits turn about the samples
    return position, position + depth * forward


def skinned_vertices(rig: BodyRig, pose: RigPose) -> np.ndarray:
    """``(N, V, 3)`` the meshes of ``N`` posed bodies (metres, body frame), skinned as the browser
    skins them: ``vertex = sum_k w_k (R_k (v - rest_k) + p_k)``. That is linear in the bones'
    ``[R_k | p_k - R_k rest_k]`` with coefficients ``w_k [v, 1]``: one matrix product for all."""
    piece, n = rig.whole, len(pose)
    shift = pose.positions - np.einsum("nkij,kj->nki", pose.rotations, rig.rest_joints)
    bones = np.concatenate([pose.rotations, shift[..., None]], 3)  # (N, 22, 3, 4)
    rest = np.concatenate([piece.vertices, np.ones((len(piece.vertices), 1), np.float32)], 1)  # (V, 4)
    coefficients = (piece.skin_weights[:, :, None] * rest[:, None, :]).reshape(len(rest), -1)  # (V, 22 * 4)
    verts = coefficients @ bones.transpose(1, 3, 0, 2).reshape(4 * NUM_BONES, 3 * n).astype(np.float32)
    return verts.reshape(len(rest), n, 3).transpose(1, 0, 2)


class GeneratePanel(Panel):
    """Samples in a grid under ``/samples``, each labelled ``#k`` (its index in the batch or file).

    State: ``poses: (N, 63)`` what is drawn now; ``samples: (N, 63)`` the finished (or loaded)
    samples; ``trajectory: (S, N, 63)`` and ``t: (S,)`` once a run has finished (t falls from ~1 to
    0; a loaded file has none); ``t_shown`` the diffusion time on display; ``selected`` the sample
    a click (or the slider) chose, which "Edit this sample" takes.
    """

    name = "generate"
    label = "Generate"
    short_label = "Gen"
    icon = "sparkles"
    stage = "samples"
    file_kinds = ("samples",)

    def __init__(self, session: ClientSession, container: viser.GuiFolderHandle) -> None:
        super().__init__(session, container)
        gui = session.gui
        self.bodies: list[BodyHandle] = []
        self.labels: list[viser.LabelHandle] = []
        self._pool = BodyPool()
        self._clickable: dict[str, viser.MeshSkinnedHandle] = {}  # mesh name -> the handle its click is on
        self.poses: np.ndarray | None = None
        self.samples: np.ndarray | None = None
        self.trajectory: np.ndarray | None = None
        self.t: np.ndarray | None = None
        self.selected: int | None = None
        self._framed: tuple[np.ndarray, np.ndarray] | None = None  # the camera view this panel last gave
        self.t_shown = 1.0
        self.streamed_updates = 0
        self.first_streamed_t: float | None = None
        self.played_t_max: float | None = None  # highest t drawn by the last playback
        self._t_set = 0.0
        self._t_user: float | None = None
        self._t_recent: collections.deque[float] = collections.deque(maxlen=30)  # values the app set
        with container:
            self.num = gui.add_slider("Samples", min=1, max=MAX_SAMPLES, step=1, initial_value=5,
                                      hint=f"How many poses to draw at once (1 to {MAX_SAMPLES})")
            self.sampler = gui.add_dropdown("Sampler", tuple(SAMPLERS), initial_value="SDE",
                                            hint="SDE: DPoser's Euler-Maruyama sampler; "
                                                 "ODE: deterministic probability flow")
            self.steps = gui.add_slider("Steps", min=STEPS[0], max=STEPS[1], step=10, initial_value=500,
                                        hint="Reverse-diffusion steps: more are slower and a little cleaner")
            self.seed = gui.add_number("Seed", initial_value=0, step=1, hint="Same seed, same samples")
            self.run = gui.add_button("Generate", icon=viser.Icon.SPARKLES,
                                      hint="Draw the samples from the prior; they denoise as you watch")
            self.upload = gui.add_upload_button(
                "Load samples (.npz)", icon=viser.Icon.UPLOAD, mime_type=".npz",
                hint=f"Show poses from a file: 'pose_body' (N, 63) as `dposer generate` writes "
                     f"(the first {MAX_SHOWN}; at most {MAX_SAMPLES_FILE_BYTES // 2**20} MiB)")
            self.info = gui.add_markdown("*No samples yet.*")
            self.timestep = gui.add_slider("Timestep t", min=0.0, max=1.0, step=0.001, initial_value=0.0, disabled=True,
                                           hint="Diffusion time of the poses shown: 1 = noise, 0 = the samples")
            self.play = gui.add_button("Play trajectory", icon=viser.Icon.PLAYER_PLAY, disabled=True,
                                       hint="Replay the denoising from noise (t = 1) to the samples (t = 0)")
            self.pick = gui.add_slider("Sample to edit", min=0, max=4, step=1, initial_value=0, disabled=True,
                                       hint="The sample #k that 'Edit this sample' takes (or click a body)")
            self.use = gui.add_button("Edit this sample", icon=viser.Icon.HAND_FINGER, disabled=True,
                                      hint="Make the selected sample the current pose and edit it")
        self.run.on_click(lambda _: self.start())
        self.upload.on_upload(lambda _: self._on_upload())
        self.timestep.on_update(self._on_scrub)
        self.player = PlayButton(self.play, session.pacer, "generate-play")
        self.play.on_click(lambda _: self.toggle_play())
        self.pick.on_update(lambda _: self.select(in_range(self.pick.value, 0, MAX_SHOWN - 1, integer=True)))
        self.use.on_click(lambda _: self.use_sample(self.selected))

    def uploads(self) -> list[tuple[viser.GuiUploadButtonHandle, int]]:
        return [(self.upload, MAX_SAMPLES_FILE_BYTES)]

    # -- running -------------------------------------------------------------------------------
    def start(self) -> None:
        """Submit a generation job with the panel's settings; results stream into the scene."""
        num = in_range(self.num.value, 1, MAX_SAMPLES, integer=True)
        steps = in_range(self.steps.value, *STEPS, integer=True)
        seed = in_range(self.seed.value, *SEED_RANGE, integer=True)
        session = self.session
        label = checked_choice(session, self.sampler, reset_to=next(iter(SAMPLERS)))
        if label is None:  # only a forged message sends another string
            return
        sampler = SAMPLERS[label]
        session.mark("generate_clicked")
        session.cancel("samples-load")
        self._clear()
        settings = f"{label}, {steps} steps, seed {seed}"
        self.info.content = f"Generating {num} samples ({settings})..."

        def run(ctx: JobContext) -> GenerationResult:
            return generate(
                ctx.resources.prior, num, steps=steps, sampler=sampler, seed=seed, record=True,
                callback=ctx.report, callback_every=max(1, steps // 100), cancel=ctx.cancel,
            )

        def on_progress(p: Progress) -> None:
            poses = p.pose_body.numpy()
            session.pacer.post("samples", lambda: self._draw(poses, p.t, streamed=True))

        def on_done(result: GenerationResult) -> None:
            traj = result.trajectory.numpy()
            t = result.t.numpy()
            final = result.pose_body.numpy()

            def finish() -> None:
                self.trajectory, self.t = traj, t
                self._draw(final, 0.0)
                self._reframe_if_unmoved()
                self._set_samples(final, f"{len(final)} samples ({settings})")
                self.timestep.disabled = self.play.disabled = False
                session.mark("generate_done")

            session.pacer.post("samples", finish)

        session.pacer.post("samples-setup", lambda: self._frame(self._ensure_bodies(num)))
        session.submit("generate", run, on_progress=on_progress, on_done=on_done)

    def _clear(self) -> None:
        """Forget the shown samples (a new run or file replaces them): nothing to scrub, play or pick."""
        self.stop_play()
        self.trajectory = self.t = self.samples = None
        self.selected = None
        self.streamed_updates = 0
        self.first_streamed_t = None
        self.timestep.disabled = self.play.disabled = self.use.disabled = self.pick.disabled = True
        self.session.pacer.post("samples-select", self._highlight)

    # -- a reload ------------------------------------------------------------------------------
    def keep(self) -> dict[str, object] | None:
        """The samples shown, their trajectory (None for a file's) and their description."""
        if self.samples is None:
            return None
        return {"samples": self.samples, "trajectory": self.trajectory, "t": self.t, "info": self.info.content}

    def restore(self, kept: object) -> None:
        state: dict = kept  # type: ignore[assignment]

        def show() -> None:
            self._clear()
            changed = self._ensure_bodies(len(state["samples"]))
            self.trajectory, self.t = state["trajectory"], state["t"]
            self._draw(state["samples"], 0.0)
            self._frame(changed)
            self._set_samples(state["samples"], state["info"])
            self.timestep.disabled = self.play.disabled = self.trajectory is None

        self.session.pacer.post("samples", show)

    # -- a file of samples ---------------------------------------------------------------------
    def open_file(self, kind: str, path: Path) -> None:
        """Show the poses of a samples file (``pose_body (N, 63)``, as `dposer generate` writes)."""
        self._load(lambda: load_poses(path, max_poses=MAX_FILE_POSES), Path(path).name)

    def _on_upload(self) -> None:
        upload = self.upload.value

        def read() -> np.ndarray:
            try:
                with uploaded_to_file(upload, max_bytes=MAX_SAMPLES_FILE_BYTES, suffix=".npz") as path:
                    return load_poses(path, max_bytes=MAX_SAMPLES_FILE_BYTES, max_poses=MAX_FILE_POSES)
            except InputError as exc:
                raise InputError(upload_error(exc, upload)) from None

        self._load(read, Path(upload.name).name)

    def _load(self, read: Callable[[], np.ndarray], name: str) -> None:
        """Read poses on the worker (``read() -> (N, 63)``; errors become a notification, the shown
        samples stay) and show the first :data:`MAX_SHOWN` of them as the grid."""
        session = self.session

        def on_done(poses: np.ndarray) -> None:
            shown = poses[:MAX_SHOWN]
            note = "" if len(poses) == len(shown) else f" (the first {len(shown)} of {len(poses)})"

            def show() -> None:
                self._clear()
                changed = self._ensure_bodies(len(shown))
                self._draw(shown, 0.0)
                self._frame(changed)
                self._set_samples(shown, f"{len(shown)} samples from {literal(name)}{note}")
                session.mark("samples_loaded")

            session.cancel("generate")  # its samples would replace these
            session.pacer.post("samples", show)

        session.submit("samples-load", lambda ctx: read(), on_done=on_done, needs_prior=False,
                       on_error=lambda message: session.notify("Cannot load samples", message, error=True))

    def _set_samples(self, samples: np.ndarray, info: str) -> None:
        """The finished samples: pick one by click or slider (the first is selected), edit it."""
        self.samples = samples
        self.info.content = info
        self.pick.max = max(1, len(samples) - 1)  # a slider needs max > min
        self.pick.disabled = len(samples) < 2
        self.use.disabled = False
        self.select(0)

    # -- drawing -------------------------------------------------------------------------------
    def _frame(self, changed: bool) -> None:
        """Frame the grid the first time it shows something, and again when it ``changed`` (a run
        or file of another size) while it is on screen (display thread)."""
        session = self.session
        if changed and session.stage_panel is self and session.stage in session.framed:
            session.frame_camera()
        else:
            session.frame_once()

    def _reframe_if_unmoved(self) -> None:
        """Frame the finished samples (the run was framed on the grid's slots, before their poses
        were known) unless the user has moved the camera since."""
        cam, framed = self.session.client.camera, self._framed
        if framed is not None and self.session.stage_panel is self and np.allclose(cam.position, framed[0], atol=1e-3) \
                and np.allclose(cam.look_at, framed[1], atol=1e-3):
            self.session.frame_camera()

    def _ensure_bodies(self, num: int) -> bool:
        """``num`` sample bodies at their grid places, each with its label; whether that changed."""
        if len(self.bodies) == num:
            return False
        session = self.session
        rig, y = session.rig, session.ground_y
        self.bodies = self._pool.take(
            "samples", num, lambda k: BodyHandle(session.scene, f"/samples/{k}", rig, color=SAMPLE_COLOR)
        )
        while len(self.labels) < num:
            self.labels.append(session.scene.add_label(f"/samples/label_{len(self.labels)}", "",
                                                       anchor="bottom-center"))
        for k, (body, (x, z)) in enumerate(zip(self.bodies, grid_positions(num, SPACING_M, ROW_M))):
            body.position = (x, y, z)
            self._make_clickable(k, body)
        self._place_labels(rig.pose(np.zeros((num, 63), np.float32)))
        for k, label in enumerate(self.labels):
            label.visible = k < num
        self._highlight()
        return True

    def _place_labels(self, pose: RigPose) -> None:
        """Stand each body's label just above its head as posed."""
        rig = self.session.rig
        head = pose.positions[:, HEAD]  # (N, 3), body frame
        above = float(rig.whole.vertices[:, 1].max() - rig.rest_joints[HEAD, 1]) + LABEL_ABOVE_M
        for body, label, at in zip(self.bodies, self.labels, head):
            label.position = body.position + at + (0.0, above, 0.0)

    def _make_clickable(self, k: int, body: BodyHandle) -> None:
        """A click on sample ``k``'s mesh selects it. A body redrawn for another body model has new
        mesh handles (:meth:`BodyHandle.set_rig`): those get the click then."""
        for mesh in body.meshes:
            if self._clickable.get(mesh.name) is not mesh:
                mesh.on_click(lambda _event, k=k: self.select(k))
                self._clickable[mesh.name] = mesh

    def _draw(self, poses: np.ndarray, t: float, *, streamed: bool = False) -> None:
        """Pose the sample bodies (``poses: (N, 63)``) and show ``t`` (display thread)."""
        self._ensure_bodies(len(poses))
        rig_pose = self.session.rig.pose(poses)
        for k, body in enumerate(self.bodies):
            body.set_pose(rig_pose.row(k))
            body.show_skeleton(self.session.show_skeleton, self.session.show_joints)
        self._place_labels(rig_pose)
        self.poses = poses
        self.t_shown = float(t)
        self._t_set = round(float(t), 3)
        self._t_recent.append(self._t_set)
        if abs(self.timestep.value - self._t_set) > 1e-9:
            self.timestep.value = self._t_set
        if streamed:
            self.streamed_updates += 1
            if self.streamed_updates == 1:
                self.first_streamed_t = float(t)
                self.session.mark("generate_first_update")

    # -- selection -----------------------------------------------------------------------------
    def select(self, k: int) -> None:
        """Select sample ``k`` (a click on its body, or the slider): it is drawn highlighted and
        "Edit this sample" takes it. Ignored while there are no finished samples."""
        if self.samples is None:
            return
        k = min(max(int(k), 0), len(self.samples) - 1)
        self.selected = k
        if self.pick.value != k:
            self.pick.value = k
        self.session.pacer.post("samples-select", self._highlight)
        self.session.mark("sample_selected")

    def _highlight(self) -> None:
        """Colour the selected sample and mark its label (display thread)."""
        for k, (body, label) in enumerate(zip(self.bodies, self.labels)):
            chosen = k == self.selected
            body.set_color(SELECTED_COLOR if chosen else SAMPLE_COLOR)
            text = f"#{k} selected" if chosen else f"#{k}"
            if label.text != text:
                label.text = text

    def use_sample(self, k: int | None) -> None:
        """Make sample ``k`` the current pose (an undo step "sample #k") and open Edit on it."""
        if self.samples is None or k is None:
            return
        k = min(max(int(k), 0), len(self.samples) - 1)
        self.session.set_pose(self.samples[k], label=f"sample #{k}")
        self.session.activate("edit")

    # -- the trajectory ------------------------------------------------------------------------
    def show_t(self, t: float) -> None:
        """Show the recorded step whose time is closest to ``t`` (0..1)."""
        if self.trajectory is None or self.t is None:
            return
        i = int(np.abs(self.t - t).argmin())
        poses = self.trajectory[i]
        self.session.pacer.post("samples", lambda: self._draw(poses, float(self.t[i])))

    def _on_scrub(self, event: viser.GuiEvent) -> None:
        # Ignore the app's own updates (while streaming or playing) and the browser echoing them or
        # re-sending the user's last typed value (a number box commits again when it loses focus).
        value = in_range(self.timestep.value, 0.0, 1.0)
        if event.client is None or value in self._t_recent or value == self._t_user:
            return
        self._t_user = value
        self.stop_play()
        self.session.mark("scrubbed")
        self.show_t(value)

    def toggle_play(self) -> None:
        if self.player.playing:
            self.stop_play()
            return
        if self.trajectory is None:
            return
        state = {"t": 1.0}
        self.played_t_max = 0.0

        def tick(dt: float) -> bool:
            state["t"] = max(0.0, state["t"] - dt / PLAY_SECONDS)
            i = int(np.abs(self.t - state["t"]).argmin())
            self._draw(self.trajectory[i], float(self.t[i]))
            self.played_t_max = max(self.played_t_max, float(self.t[i]))
            return state["t"] > 0.0

        self.player.start(tick)

    def stop_play(self) -> None:
        self.player.stop()

    def playback(self) -> Timeline | None:
        """The trajectory's steps, noise to samples, replayed in :data:`PLAY_SECONDS` (for recordings)."""
        if self.trajectory is None or self.t is None:
            return None
        trajectory, t = self.trajectory, self.t

        def show(i: int) -> None:
            self.stop_play()
            self._draw(trajectory[i], float(t[i]))

        return Timeline("the trajectory", len(trajectory), len(trajectory) / PLAY_SECONDS, show,
                        offscreen=lambda body, **kw: render_trajectory(body, trajectory, **kw))

    # -- panel ---------------------------------------------------------------------------------
    def rebuild(self) -> None:
        self._pool.set_rig(self.session.rig)
        self.bodies = []
        if self.poses is not None:
            poses, t = self.poses, self.t_shown
            self.session.pacer.post("samples", lambda: self._draw(poses, t))

    def extent(self) -> tuple[float, float] | None:
        if not self.bodies:
            return None
        xs = [x for x, _ in grid_positions(len(self.bodies), SPACING_M, ROW_M)]
        return (min(xs), max(xs))

    def view(self, aspect: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, float] | None:
        """The grid from the front and above, every body and label in the free part of the canvas."""
        if not self.bodies:
            return None

        rows = len({z for _, z in grid_positions(len(self.bodies), SPACING_M, ROW_M)})
        pitch = VIEW_PITCH_GRID if rows > 1 else VIEW_PITCH_ROW
        position, look_at = view_over(self._bounds(), pitch=pitch, fov=VIEW_FOV, aspect=aspect, covered=PANEL_FRACTION)
        self._framed = (position, look_at)
        return position, look_at, np.array([0.0, 1.0, 0.0]), VIEW_FOV

    def _bounds(self) -> np.ndarray:
        """``(P, 3)`` scene points: every sample's mesh vertices and its label. Before the poses are
        known (a run starting), each body is the box of its grid slot."""
        rig = self.session.rig
        num = len(self.bodies)
        at = np.array([body.position for body in self.bodies])
        if self.poses is not None and len(self.poses) == num:
            bodies = skinned_vertices(rig, rig.pose(self.poses))
        else:
            half = np.array([0.5 * SPACING_M, 0.5 * rig.height_m, 0.25 * ROW_M])
            mid = np.array([0.0, rig.floor_y + 0.5 * rig.height_m, 0.0])
            bodies = np.tile([mid + half * np.array(c) for c in itertools.product((-1, 1), repeat=3)], (num, 1, 1))
        labels = np.array([label.position for label in self.labels[:num]])
        return np.concatenate([(bodies + at[:, None]).reshape(-1, 3), labels])

    def shown_bodies(self) -> list[ShownBody]:
        if self.poses is None or len(self.poses) != len(self.bodies):
            return []
        return [ShownBody(f"sample_{k}", pose.copy(), position=tuple(body.position),
                          color=SELECTED_COLOR if k == self.selected else SAMPLE_COLOR)
                for k, (pose, body) in enumerate(zip(self.poses, self.bodies))]
