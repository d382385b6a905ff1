"""``ClientSession``: one browser tab's state, scene and panels.

Each tab has its own bodies, current pose, mask, selection and playback (viser's client-scoped
``client.scene`` / ``client.gui``); the model resources and the prior worker are the app's.
Scene updates from jobs and playback go through the tab's :class:`viewer.pacer.Pacer`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import viser

from prior.errors import InputError
from prior.progress import Progress

from .body_handle import MASK_COLOR, BodyHandle
from .history import History
from .markup import literal
from .pacer import Pacer
from .page import PANEL_FRACTION, page_markup
from .panels.base import Panel, ShownBody
from .rig import BodyRig
from .uploads import limit_uploads
from .worker import Job, JobContext, non_finite_part

if TYPE_CHECKING:
    from .app import ViewerApp

ARM_SPAN_M = 1.9  # room for one body's arms when framing


def framed_view(
    center: np.ndarray, width_m: float, height_m: float, *, fov: float | None = None, aspect: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``(position, look_at)`` of a camera in front of (+Z) bodies of ``height_m`` spread over
    ``width_m`` around ``center``, all in view of a vertical field of view ``fov`` (radians) on a
    canvas of ``aspect`` (width / height; defaults 50 degrees and 16:10)."""
    fov = float(fov) if fov else math.radians(50)
    aspect = float(aspect) if aspect else 16 / 10
    height = 1.15 * height_m
    # The control panel covers about the right quarter of the canvas: fit the bodies into the
    # rest and shift the view so they sit in its middle.
    free = 1.0 - PANEL_FRACTION
    dist_v = 0.5 * height / math.tan(0.5 * fov)
    dist_h = 0.5 * width_m / (math.tan(0.5 * fov) * aspect * free)
    dist = max(dist_v, dist_h, 1.5) * 1.1
    view_w = 2 * dist * math.tan(0.5 * fov) * aspect
    look_at = np.asarray(center, np.float64) + np.array([0.5 * PANEL_FRACTION * view_w, 0.0, 0.0])
    return look_at + np.array([0.0, 0.25 * dist, dist]), look_at


def _duration(seconds: float) -> str:
    """``"4 s"``, ``"2 min 5 s"``, ``"3 h 20 min"``: a time left as people read it."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


class ClientSession:
    """A connected tab. ``pose: (63,)`` is the pose being edited; ``mask`` the body-pose joints
    (0..20) to complete; ``active_panel`` the panel whose controls are open and ``stage`` the scene
    group on screen (the active panel's, or the last one shown when the active panel has none);
    ``timings`` holds ``time.perf_counter()`` stamps of user-visible events (tests, benchmarks)."""

    def __init__(self, app: ViewerApp, client: viser.ClientHandle, *, browser: str | None = None) -> None:
        from .panels import PANELS  # panels import this module

        self.app = app
        self.client = client
        self.browser = browser  # the browser's cookie: a reload of this tab gets its work back
        self.scene = client.scene
        self.gui = client.gui
        self.pacer = Pacer(name=f"pacer-{client.client_id}", frame=client.atomic)
        self.pose = np.zeros(63, np.float32)
        self.history = History(self.pose)
        self.mask: set[int] = set()
        self.stage = ""
        self.stage_panel: Panel | None = None  # the panel whose stage is on screen
        self.active_panel: Panel | None = None
        self.framed: set[str] = set()  # stages the camera has been framed on (once each)
        self._camera_known = False
        self._framed_view: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # the last view the app set
        self._default_fov: float | None = None  # the field of view before a panel's view changed it
        self._unacknowledged = 0  # re-sends left for the first framing (see _on_camera)
        self._views: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, float | None]] = {}
        # stage -> (position, look_at, up, the panel's fov or None) the user left it with
        self.timings: dict[str, float] = {}
        self.notifications: list[tuple[str, str]] = []
        self.show_skeleton = False
        self.show_joints = False
        self._pose_listeners: list[Callable[[], None]] = []
        self._mask_listeners: list[Callable[[], None]] = []

        self.scene.set_up_direction("+y")
        # No shadow maps: viser's cascaded shadow light costs most of a software-rendered frame,
        # and its teardown can throw in the browser when the scene changes under it.
        self.scene.configure_default_lights(enabled=True, cast_shadow=False)
        self.grid = self.scene.add_grid(
            "/ground", width=20.0, height=20.0, plane="xz", cell_size=0.25, section_size=1.0,
            cell_color=(215, 215, 215), section_color=(165, 165, 165), shadow_opacity=0.0,
        )
        self.groups: dict[str, viser.FrameHandle] = {}
        for cls in PANELS:
            if cls.stage is not None and cls.stage not in self.groups:
                self.groups[cls.stage] = self.scene.add_frame(f"/{cls.stage}", show_axes=False, visible=False)
        self.main: BodyHandle = self._add_main()
        self.status = self.gui.add_markdown("", order=0)
        self.job_bar = self.gui.add_progress_bar(0.0, visible=False, order=0.1)
        self.job_cancel = self.gui.add_button("Cancel", icon=viser.Icon.X, color="red", visible=False, order=0.2,
                                              hint="Stop this tab's running job (other tabs' jobs go on)")
        self.bar = self.gui.add_button_group("Panel", [cls.short_label or cls.label for cls in PANELS], order=1,
                                             hint=" · ".join(cls.label for cls in PANELS))
        self.page = self.gui.add_html("", order=1.5)  # the bar's look and the keyboard shortcuts (viewer.page)
        self.frame_button = self.gui.add_button("Frame view", icon=viser.Icon.FOCUS_CENTERED, order=2,
                                                hint="Point the camera at what is shown")
        self.panels: dict[str, Panel] = {}
        for k, cls in enumerate(PANELS):
            folder = self.gui.add_folder(cls.label, order=10 + k, visible=False)
            self.panels[cls.name] = cls(self, folder)  # a panel adds its controls inside ``folder``
        limits = [pair for panel in self.panels.values() for pair in panel.uploads()]
        limit_uploads(client, limits, on_refused=lambda message: self.notify("Upload refused", message, error=True))
        self.bar.on_click(lambda event: self._on_bar(event.target.value))
        self.frame_button.on_click(lambda _: self.frame_camera())
        self.job_cancel.on_click(lambda _: self.cancel_job())
        client.camera.on_update(self._on_camera)
        self.refresh_status()
        self.apply_pose()
        self.activate("complete")
        # viser connects a tab on its first camera message and may hand that message to the
        # camera callbacks before this session has registered its own: then no report would come
        # until the user moves the camera, and the tab would never be framed.
        if client.camera._state.update_timestamp != 0.0:
            self._on_camera(client.camera)

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
            self.scene, "/pose/main", self.rig, split=True, position=(0.0, self.ground_y, 0.0),
            on_click=self.on_joint_click, contact=True,
        )

    def rebuild_bodies(self) -> None:
        """Redraw every body with a new body model (new mesh, new bones), keeping the state.

        Bodies are re-drawn in place (:meth:`BodyHandle.set_rig`), never removed."""
        self.main.set_rig(self.rig)
        for panel in self.panels.values():
            panel.rebuild()
        self.apply_pose()
        self.apply_mask_colors()

    # -- panels, stages and the camera ---------------------------------------------------------
    def _panel_by_label(self, label: str) -> str | None:
        return next((name for name, panel in self.panels.items() if (panel.short_label or panel.label) == label), None)

    def activate(self, name: str) -> None:
        """Open panel ``name``: its controls, and its stage in the scene (framed the first time)."""
        panel = self.panels[name]
        previous = self.active_panel
        if previous is panel:
            return
        self.active_panel = panel
        if previous is not None:
            previous.container.visible = False
        panel.container.visible = True
        panels = list(self.panels.values())
        self.page.content = page_markup(self.bar, [p.icon for p in panels], panels.index(panel))
        if panel.stage is not None:  # a panel without a stage (Export, Model) leaves the scene as it is
            shown_before, self.stage_panel = self.stage_panel, panel
            if shown_before is not None and shown_before is not panel:
                shown_before.on_hide()
            self.show_stage(panel.stage)
        panel.on_show()
        self.mark(f"panel_{name}")

    def _on_bar(self, value: object) -> None:
        name = self._panel_by_label(value) if isinstance(value, str) else None
        if name is not None:  # a page may send anything
            self.activate(name)

    def show_stage(self, stage: str) -> None:
        """Show one stage's group of bodies, hiding the others. The camera is framed on a stage
        the first time it shows something; coming back to a stage brings back the view the user
        left it with; otherwise the camera stays where the user put it."""
        if stage == self.stage:
            return
        cam = self.client.camera
        if self.stage in self.framed and self._camera_known:  # with a panel's own field of view, if it set one
            fov = float(cam.fov) if self._default_fov is not None else None
            self._views[self.stage] = (np.asarray(cam.position), np.asarray(cam.look_at),
                                       np.asarray(cam.up_direction, np.float64), fov)
        self.stage = stage
        for name, group in self.groups.items():
            if group.visible != (name == stage):
                group.visible = name == stage
        ground = self.stage_panel is None or self.stage_panel.ground
        if self.grid.visible != ground:
            self.grid.visible = ground
        if self._default_fov is not None:  # a panel's view (Fit's photo camera) narrowed it
            self.client.camera.fov, self._default_fov = self._default_fov, None
        view = self._views.get(stage)
        if view is not None:
            position, look_at, up, fov = view
            self.set_view(position, look_at, up=up, fov=fov)
        else:
            self.frame_once()

    def frame_once(self, what: str | None = None) -> None:
        """Frame the camera on the current stage if ``what`` (default: the stage) has never been
        framed with something in it: panels call this when they first draw into their stage, or
        first show something new in it (Inspect's x_t and x0_hat)."""
        what = what or self.stage
        if what in self.framed or not self._camera_known:
            return
        if self.stage_panel is None or self.stage_panel.extent() is None:
            return  # nothing to frame yet
        self.framed.add(what)
        self.frame_camera()

    def _on_camera(self, camera: viser.CameraHandle) -> None:
        # A new tab's camera is known once the browser reports it (its aspect ratio): frame then.
        # The browser may still apply its start-up camera after that first framing; until it
        # reports the framed view back, the framing is sent again (a few times at most).
        if not self._camera_known:
            self._camera_known = True
            self.frame_once()
            self._unacknowledged = 5
            return
        if self._unacknowledged and self._framed_view is not None:
            position, look_at, up = self._framed_view
            if np.allclose(camera.position, position, atol=1e-3) and np.allclose(camera.look_at, look_at, atol=1e-3):
                self._unacknowledged = 0
            else:
                self._unacknowledged -= 1
                self.set_view(position, look_at, up=up)

    def stage_extent(self) -> tuple[np.ndarray, float]:
        """Centre (metres) and width of what the current stage shows."""
        extent = self.stage_panel.extent() if self.stage_panel is not None else None
        lo, hi = extent if extent is not None else (0.0, 0.0)
        height = self.rig.height_m
        return np.array([(lo + hi) / 2, 0.5 * height, 0.0]), (hi - lo) + ARM_SPAN_M

    def frame_camera(self) -> None:
        """Point the camera at the shown bodies from the front (+Z), all of them in view, or take
        the view of the stage's panel when it has its own (:meth:`Panel.view`)."""
        self.framed.add(self.stage)
        cam = self.client.camera
        view = self.stage_panel.view(cam.aspect) if self.stage_panel is not None else None
        if view is not None:
            position, look_at, up, fov = view
            self.set_view(position, look_at, up=up, fov=fov)
        else:
            center, width = self.stage_extent()
            self.set_view(*framed_view(center, width, self.rig.height_m, fov=cam.fov, aspect=cam.aspect))
        self.mark("framed")

    def set_view(self, position: np.ndarray, look_at: np.ndarray, *, up: np.ndarray | None = None,
                 fov: float | None = None) -> None:
        """Put the camera at ``position`` looking at ``look_at``, ``up`` (default +Y) up; ``fov``
        (vertical, radians) changes the field of view until another stage is shown."""
        cam = self.client.camera
        up = np.array([0.0, 1.0, 0.0]) if up is None else np.asarray(up, np.float64)
        self._framed_view = (np.asarray(position, np.float64), np.asarray(look_at, np.float64), up)
        with self.client.atomic():
            if fov is not None:
                if self._default_fov is None:
                    self._default_fov = float(cam.fov)
                cam.fov = float(fov)
            # Position first: viser's position setter moves look_at along with the camera.
            cam.up_direction = tuple(up)
            cam.position = position
            cam.look_at = look_at

    def shown_bodies(self) -> list[ShownBody]:
        """The bodies on screen now (the stage's panel's), for exports and ``.viser`` files."""
        return [] if self.stage_panel is None else self.stage_panel.shown_bodies()

    def typed_path(self, text: str) -> Path | None:
        """The file a path typed in this tab names, in the app's read folder (None for an empty box).

        Raises :class:`InputError` for a path outside it (see :class:`viewer.paths.ReadFolder`)."""
        return self.app.read_folder.resolve(text) if text.strip() else None

    def open_file(self, kind: str, path: Path) -> None:
        """Hand a file to the panel that takes ``kind`` files (``--clip``: ``"motion"``) and open it."""
        panel = next(p for p in self.panels.values() if kind in p.file_kinds)
        self.activate(panel.name)
        panel.open_file(kind, path)

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

    # -- masking and clicks ----------------------------------------------------------------------
    def on_joint_click(self, smplx_joint: int) -> None:
        """A click on the main body's submesh of ``smplx_joint``: the active panel decides what it
        means (Complete masks the part, Edit selects the joint)."""
        if self.active_panel is not None:
            self.active_panel.on_joint_click(smplx_joint)

    def set_mask(self, joints: set[int]) -> None:
        """Mask body-pose joints (0..20) for completion and colour them on the main body."""
        joints = set(joints)
        if joints == self.mask:
            return
        self.mask = joints
        self.pacer.post("mask", self.apply_mask_colors)
        for listener in self._mask_listeners:
            listener()

    def on_mask_change(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` (on the caller's thread) after every change of the mask."""
        self._mask_listeners.append(listener)

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
        on_error: Callable[[str], None] | None = None,
        on_cancel: Callable[[], None] | None = None,
        needs_prior: bool = True,
    ) -> Job | None:
        """Run ``run`` on the prior worker; a newer job of the same kind from this tab cancels it.

        Errors become notifications (or go to ``on_error``); ``on_cancel`` hears a cancelled job
        (the Cancel button's, a newer one of the same kind). Returns None (and notifies) when a prior is needed but none
        is loaded. A prior's result holding NaN or Inf is an error, never drawn (:func:`non_finite_part`)."""
        if needs_prior and self.app.resources.prior is None:
            self.notify("No prior loaded", self.app.no_prior_message(), error=True)
            return None

        def notify_error(message: str) -> None:
            self.notify(f"{kind.capitalize()} failed", message, error=True)

        def checked(ctx: JobContext) -> Any:
            result = run(ctx)
            bad = non_finite_part(result) if needs_prior else None
            if bad is not None:  # never drawn: NaN bodies vanish or smear across the view
                raise InputError(f"the prior produced NaN or Inf values ({bad}); the checkpoint may be broken, "
                                 "so nothing was shown")
            return result

        def progressed(progress: Progress) -> None:
            if on_progress is not None:
                on_progress(progress)
            self.pacer.post("status", self.refresh_status)  # the progress bar and time left

        on_error = on_error or notify_error
        return self.app.worker.submit(
            Job(kind, self, checked, on_progress=progressed, on_done=on_done, on_error=on_error, on_cancel=on_cancel)
        )

    def cancel(self, kind: str | None = None) -> None:
        self.app.worker.cancel(self, kind)

    def cancel_job(self) -> None:
        """The Cancel button: stop this tab's running job (the next queued one, if any, starts)."""
        job = self.app.worker.job_of(self)
        if job is None:
            return
        job.cancel.set()
        p = job.progress
        where = "before its first step" if p is None else f"at step {p.step} of {p.total}"
        self.notify(f"{job.kind.capitalize()} cancelled", f"stopped {where}")
        self.mark("cancel_clicked")

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
        job = self.app.worker.job_of(self)
        if res.prior is not None:
            prior = literal(res.prior_label)  # file names: shown as text, never as markup
        else:
            prior = "loading..." if self.app.loading_prior else "**none loaded**"
        elsewhere = " (loaded in another tab)"
        if res.changed_elsewhere("prior", self):
            prior += elsewhere
        body = literal(res.body_label) + (elsewhere if res.changed_elsewhere("body", self) else "")
        running = "idle" if job is None else literal(job.describe())
        if job is not None and job.started is None:
            running += " (waiting)"
        elif job is not None and (left := job.seconds_left()) is not None:
            running += f", {_duration(left)} left"
        text = (
            f"**device** {res.device.type} &nbsp;·&nbsp; **prior** {prior}  \n"
            f"**body** {body} &nbsp;·&nbsp; **job** {running}"
        )
        if self.status.content != text:
            self.status.content = text
        self._show_job(job)  # after the line it belongs to

    def _show_job(self, job: Job | None) -> None:
        """This tab's job under the status line (which gives its steps and time left): a progress bar
        and Cancel, for jobs that stream steps (an IK drag's short solves would make the panel jump)."""
        shown = job is not None and job.progress is not None
        if self.job_cancel.visible != shown:
            self.job_cancel.visible = shown
            self.job_bar.visible = shown
        if not shown:
            return
        p = job.progress
        value = 0.0 if p.total <= 0 else min(100.0, 100.0 * p.step / p.total)
        if self.job_bar.value != value:
            self.job_bar.value = value
        label = f"Cancel {job.kind}"  # fixed while it runs: a button that changes under the pointer is hard to hit
        if self.job_cancel.label != label:
            self.job_cancel.label = label

    def mark(self, event: str) -> None:
        """Record when ``event`` happened (``time.perf_counter()``), for tests and benchmarks."""
        self.timings[event] = time.perf_counter()

    # -- keeping the work over a reload --------------------------------------------------------
    def keep(self) -> dict[str, Any]:
        """This tab's work as plain data (no scene or GUI handles): the pose and its undo history,
        the mask, the open panel and each panel's own (:meth:`Panel.keep`)."""
        return {
            "pose": self.pose.copy(), "history": self.history, "mask": set(self.mask),
            "panel": self.active_panel.name if self.active_panel is not None else "complete",
            "panels": {name: panel.keep() for name, panel in self.panels.items()},
        }

    def restore(self, kept: dict[str, Any]) -> None:
        """Take back what :meth:`keep` returned for a tab of the same browser (a reload)."""
        self.history = kept["history"]
        self.set_pose(kept["pose"])
        self.set_mask(kept["mask"])
        for name, state in kept["panels"].items():
            if state is not None and name in self.panels:
                self.panels[name].restore(state)
        self.activate(kept["panel"])
        self.notify("Work restored", "this tab has the poses, history and results it had before the reload")

    def close(self) -> None:
        self.app.worker.cancel(self)
        self.pacer.stop()
