"""Generate tab: draw poses from the prior, watch them denoise, scrub and replay the trajectory."""

from __future__ import annotations

import collections
from typing import TYPE_CHECKING

import numpy as np
import viser

from prior.progress import Progress
from prior.sampling import GenerationResult, generate

from ..body_handle import BodyHandle, BodyPool
from ..widgets import SEED_RANGE, PlayButton, in_range
from ..worker import JobContext
from .base import Panel, ShownBody, row_positions

if TYPE_CHECKING:
    from ..session import ClientSession

SAMPLE_COLOR = (150, 175, 205)
PLAY_SECONDS = 4.0  # a whole trajectory replays in this long
SPACING_M = 0.95  # distance between samples shown side by side
MAX_SAMPLES = 16
STEPS = (10, 1000)


class GeneratePanel(Panel):
    """Samples laid out side by side under ``/samples``.

    State: ``poses: (N, 63)`` what is drawn now; ``trajectory: (S, N, 63)`` and ``t: (S,)`` once a
    run has finished (t falls from ~1 to 0); ``t_shown`` the diffusion time on display.
    """

    name = "generate"
    label = "Generate"
    icon = "sparkles"
    stage = "samples"

    def __init__(self, session: ClientSession, container: viser.GuiFolderHandle) -> None:
        super().__init__(session, container)
        gui = session.gui
        self.bodies: list[BodyHandle] = []
        self._pool = BodyPool()
        self.poses: np.ndarray | None = None
        self.trajectory: np.ndarray | None = None
        self.t: np.ndarray | None = None
        self.t_shown = 1.0
        self.streamed_updates = 0
        self.first_streamed_t: float | None = None
        self.played_t_max: float | None = None  # highest t drawn by the last playback
        self._t_set = 0.0
        self._t_user: float | None = None
        self._t_recent: collections.deque[float] = collections.deque(maxlen=30)  # values the app set
        with container:
            self.num = gui.add_slider("Samples", min=1, max=MAX_SAMPLES, step=1, initial_value=5)
            self.sampler = gui.add_dropdown("Sampler", ("SDE", "ODE"), initial_value="SDE",
                                            hint="SDE: DPoser's Euler-Maruyama sampler; "
                                                 "ODE: deterministic probability flow")
            self.steps = gui.add_slider("Steps", min=STEPS[0], max=STEPS[1], step=10, initial_value=500)
            self.seed = gui.add_number("Seed", initial_value=0, step=1, hint="Same seed, same samples")
            self.run = gui.add_button("Generate", icon=viser.Icon.SPARKLES)
            self.timestep = gui.add_slider("Timestep t", min=0.0, max=1.0, step=0.001, initial_value=0.0, disabled=True,
                                           hint="Diffusion time of the poses shown: 1 = noise, 0 = the samples")
            self.play = gui.add_button("Play trajectory", icon=viser.Icon.PLAYER_PLAY, disabled=True)
            self.pick = gui.add_slider("Sample to edit", min=1, max=5, step=1, initial_value=1, disabled=True)
            self.use = gui.add_button("Edit this sample", icon=viser.Icon.HAND_FINGER, disabled=True,
                                      hint="Make the chosen sample the current pose and edit it")
        self.run.on_click(lambda _: self.start())
        self.timestep.on_update(self._on_scrub)
        self.player = PlayButton(self.play, session.pacer, "generate-play")
        self.play.on_click(lambda _: self.toggle_play())
        self.use.on_click(lambda _: self.use_sample(in_range(self.pick.value, 1, MAX_SAMPLES, integer=True) - 1))

    # -- running -------------------------------------------------------------------------------
    def start(self) -> None:
        """Submit a generation job with the panel's settings; results stream into the scene."""
        num = in_range(self.num.value, 1, MAX_SAMPLES, integer=True)
        steps = in_range(self.steps.value, *STEPS, integer=True)
        sampler = "sde" if self.sampler.value == "SDE" else "ode"
        seed = in_range(self.seed.value, *SEED_RANGE, integer=True)
        session = self.session
        session.mark("generate_clicked")
        self.stop_play()
        self.trajectory = self.t = None
        self.streamed_updates = 0
        self.first_streamed_t = None
        self.timestep.disabled = True
        self.play.disabled = self.use.disabled = self.pick.disabled = True

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
                self.timestep.disabled = False
                self.play.disabled = self.use.disabled = False
                self.pick.max = max(2, len(final))  # a slider needs max > min
                self.pick.disabled = len(final) < 2
                session.mark("generate_done")

            session.pacer.post("samples", finish)

        def setup() -> None:
            self._ensure_bodies(num)
            session.frame_once()

        session.pacer.post("samples-setup", setup)
        session.submit("generate", run, on_progress=on_progress, on_done=on_done)

    def _ensure_bodies(self, num: int) -> None:
        if len(self.bodies) == num:
            return
        rig, y = self.session.rig, self.session.ground_y
        self.bodies = self._pool.take(
            "samples", num, lambda k: BodyHandle(self.session.scene, f"/samples/{k}", rig, color=SAMPLE_COLOR)
        )
        for body, x in zip(self.bodies, row_positions(num, SPACING_M)):
            body.position = (x, y, 0.0)

    def _draw(self, poses: np.ndarray, t: float, *, streamed: bool = False) -> None:
        """Pose the sample bodies (``poses: (N, 63)``) and show ``t`` (display thread)."""
        self._ensure_bodies(len(poses))
        rig_pose = self.session.rig.pose(poses)
        for k, body in enumerate(self.bodies):
            body.set_pose(rig_pose.row(k))
            body.show_skeleton(self.session.show_skeleton, self.session.show_joints)
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

    def use_sample(self, k: int) -> None:
        """Make sample ``k`` (of the final samples) the current pose and switch to it."""
        if self.trajectory is None:
            return
        k = min(max(k, 0), self.trajectory.shape[1] - 1)
        self.session.set_pose(self.trajectory[-1, k], label=f"generated sample {k + 1}")
        self.session.activate("edit")

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
        xs = row_positions(len(self.bodies), SPACING_M)
        return (xs[0], xs[-1])

    def shown_bodies(self) -> list[ShownBody]:
        if self.poses is None or len(self.poses) != len(self.bodies):
            return []
        return [ShownBody(f"sample_{k}", pose.copy(), position=tuple(body.position), color=SAMPLE_COLOR)
                for k, (pose, body) in enumerate(zip(self.poses, self.bodies))]
