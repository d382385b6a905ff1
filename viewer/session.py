"""``ClientSession``: one browser tab's state, scene and panels.

Each tab has its own bodies, current pose, mask, selection and playback (viser's client-scoped
``client.scene`` / ``client.gui``); the model resources and the prior worker are the app's.
Scene updates from jobs and playback go through the tab's :class:`viewer.pacer.Pacer`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import viser

from prior.progress import Progress

from .body_handle import MASK_COLOR, BodyHandle
from .history import History
from .pacer import Pacer
from .rig import BodyRig
from .worker import Job, JobContext

if TYPE_CHECKING:
    from .app import ViewerApp

STAGES = ("pose", "samples", "motion")
SPACING_M = 0.95  # distance between bodies shown side by side
PANEL_FRACTION = 0.25  # of the canvas width, covered by the control panel on the right


class ClientSession:
    """A connected tab. ``pose: (63,)`` is the pose being edited; ``mask`` the body-pose joints
    (0..20) to complete; ``timings`` holds ``time.perf_counter()`` stamps of user-visible events
    (for tests and benchmarks)."""

    def __init__(self, app: ViewerApp, client: viser.ClientHandle) -> None:
        from .panels import build_panels  # panels import this module

        self.app = app
        self.client = client
        self.scene = client.scene
        self.gui = client.gui
        self.pacer = Pacer(name=f"pacer-{client.client_id}", frame=client.atomic)
        self.pose = np.zeros(63, np.float32)
        self.history = History(self.pose)
        self.mask: set[int] = set()
        self.stage = "pose"
        self.timings: dict[str, float] = {}
        self.notifications: list[tuple[str, str]] = []
        self.show_skeleton = False
        self.show_joints = False
        self._pose_listeners: list[Callable[[], None]] = []

        self.scene.set_up_direction("+y")
        # No shadow maps: viser's cascaded shadow light costs most of a software-rendered frame,
        # and its teardown can throw in the browser when the scene changes under it.
        self.scene.configure_default_lights(enabled=True, cast_shadow=False)
        self.grid = self.scene.add_grid(
            "/ground", width=20.0, height=20.0, plane="xz", cell_size=0.25, section_size=1.0,
            cell_color=(215, 215, 215), section_color=(165, 165, 165), shadow_opacity=0.0,
        )
        self.groups = {stage: self.scene.add_frame(f"/{stage}", show_axes=False) for stage in STAGES}
        self.main: BodyHandle = self._add_main()
        self.status = self.gui.add_markdown("", order=0)
        self.panels = build_panels(self)
        self.refresh_status()
        self.apply_pose()
        self.show_stage("pose")

    # -- resources -----------------------------------------------------------------------------
    @property
    def rig(self) -> BodyRig:
        return self.app.resources.rig

    @property
    def ground_y(self) -> float:
        """Height of the body origin above the grid for a body standing at rest."""
        return -self.rig.floor_y

    def _add_main(self) -> BodyHandle:
        return BodyHandle(
            self.scene, "/pose/main", self.rig, split=True, position=(0.0, self.ground_y, 0.0), on_click=self.on_joint_click
        )

    def rebuild_bodies(self) -> None:
        """Redraw every body with a new body model (new mesh, new bones), keeping the state.

        Bodies are re-drawn in place (:meth:`BodyHandle.set_rig`), never removed."""
        stage = self.stage  # a panel's redraw may show its own stage (motion reloads its clip)
        self.main.set_rig(self.rig)
        for panel in self.panels.values():
            panel.rebuild()
        self.apply_pose()
        self.show_stage(stage)

    # -- stage and camera ----------------------------------------------------------------------
    def show_stage(self, stage: str, *, frame: bool = True) -> None:
        """Show one group of bodies (``pose``, ``samples`` or ``motion``) and frame the camera on it."""
        self.stage = stage
        for name, group in self.groups.items():
            group.visible = name == stage
        if frame:
            self.frame_camera()

    def stage_extent(self) -> tuple[np.ndarray, float]:
        """Centre (metres) and width of what the current stage shows."""
        panel = {"pose": "inspect", "samples": "generate", "motion": "motion"}[self.stage]
        lo, hi = self.panels[panel].x_range() if panel in self.panels else (0.0, 0.0)
        height = self.rig.height_m
        return np.array([(lo + hi) / 2, 0.5 * height, 0.0]), (hi - lo) + 1.9  # + one arm span

    def frame_camera(self) -> None:
        """Point the camera at the shown bodies from the front (+Z), all of them in view."""
        center, width = self.stage_extent()
        height = self.rig.height_m * 1.15
        cam = self.client.camera
        fov = float(cam.fov) if cam.fov else math.radians(50)
        aspect = float(cam.aspect) if cam.aspect else 16 / 9
        # The control panel covers about the right quarter of the canvas: fit the bodies into the
        # rest and shift the view so they sit in its middle.
        free = 1.0 - PANEL_FRACTION
        dist_v = 0.5 * height / math.tan(0.5 * fov)
        dist_h = 0.5 * width / (math.tan(0.5 * fov) * aspect * free)
        dist = max(dist_v, dist_h, 1.5) * 1.1
        view_w = 2 * dist * math.tan(0.5 * fov) * aspect
        center = center + np.array([0.5 * PANEL_FRACTION * view_w, 0.0, 0.0])
        with self.client.atomic():
            # Position first: viser's position setter moves look_at along with the camera.
            cam.up_direction = (0.0, 1.0, 0.0)
            cam.position = center + np.array([0.0, 0.25 * dist, dist])
            cam.look_at = center

    # -- the edited pose -------------------------------------------------------------------------
    def set_pose(self, pose_body: np.ndarray, *, label: str | None = None) -> None:
        """Make ``pose_body: (63,)`` the current pose; ``label`` records an undo step."""
        self.pose = np.array(pose_body, np.float32).reshape(63)
        if label is not None:
            self.history.push(self.pose, label)
        self.pacer.post("main", self.apply_pose)

    def apply_pose(self) -> None:
        """Draw the current pose on the main body (and anything that follows it)."""
        self.main.set_pose(self.rig.pose(self.pose[None]))
        self.main.show_skeleton(self.show_skeleton, self.show_joints)
        for listener in self._pose_listeners:
            listener()

    def on_pose_change(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` (on the display thread) after every redraw of the current pose."""
        self._pose_listeners.append(listener)

    def undo(self) -> None:
        self.set_pose(self.history.undo())

    def redo(self) -> None:
        self.set_pose(self.history.redo())

    # -- masking ---------------------------------------------------------------------------------
    def on_joint_click(self, smplx_joint: int) -> None:
        """A click on the main body's submesh of ``smplx_joint``: toggle the part it belongs to, or
        select the joint for the rotation gizmo (the Edit tab's "Click on body")."""
        edit = self.panels["edit"]
        if edit.click_mode.value == "select joint":
            edit.select(smplx_joint)
        else:
            self.panels["complete"].toggle_joint(smplx_joint)

    def set_mask(self, joints: set[int]) -> None:
        """Mask body-pose joints (0..20) for completion and colour them on the main body."""
        self.mask = set(joints)
        self.pacer.post("mask", self.apply_mask_colors)

    def apply_mask_colors(self) -> None:
        self.main.set_joint_colors({j + 1: MASK_COLOR for j in self.mask})

    # -- jobs --------------------------------------------------------------------------------------
    def submit(
        self,
        kind: str,
        run: Callable[[JobContext], Any],
        *,
        on_progress: Callable[[Progress], None] | None = None,
        on_done: Callable[[Any], None] | None = None,
        needs_prior: bool = True,
    ) -> Job | None:
        """Run ``run`` on the prior worker; a newer job of the same kind from this tab cancels it.

        Errors become notifications. Returns None (and notifies) when a prior is needed but none
        is loaded."""
        if needs_prior and self.app.resources.prior is None:
            self.notify("No prior loaded", self.app.no_prior_message(), error=True)
            return None

        def on_error(message: str) -> None:
            self.notify(f"{kind.capitalize()} failed", message, error=True)

        return self.app.worker.submit(
            Job(kind, self, run, on_progress=on_progress, on_done=on_done, on_error=on_error)
        )

    def cancel(self, kind: str | None = None) -> None:
        self.app.worker.cancel(self, kind)

    # -- messages --------------------------------------------------------------------------------
    def notify(self, title: str, body: str, *, error: bool = False) -> None:
        """Show a notification in this tab (errors in red, kept until closed)."""
        self.notifications.append((title, body))
        try:
            self.client.add_notification(
                title, body, color="red" if error else "blue", auto_close_seconds=None if error else 6.0
            )
        except Exception:  # the tab may be gone
            pass

    def refresh_status(self) -> None:
        """Rewrite the status line: device, checkpoint, body model, the running job."""
        res = self.app.resources
        job = self.app.worker.running
        prior = res.prior_label if res.prior is not None else ("loading..." if self.app.loading_prior else "**none loaded**")
        running = "idle" if job is None else job.describe()
        text = (
            f"**device** {res.device.type} &nbsp;·&nbsp; **prior** {prior}  \n"
            f"**body** {res.body_label} &nbsp;·&nbsp; **job** {running}"
        )
        if self.status.content != text:
            self.status.content = text

    def mark(self, event: str) -> None:
        """Record when ``event`` happened (``time.perf_counter()``), for tests and benchmarks."""
        self.timings[event] = time.perf_counter()

    def close(self) -> None:
        self.app.worker.cancel(self)
        self.pacer.stop()
