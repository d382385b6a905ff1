"""Complete tab: mask body parts (click the mesh or tick them) and let the prior fill them in; bring
your own poses from a file."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import viser

from prior.completion import CompletionResult, complete
from prior.parts import BODY_JOINT_NAMES, PARTS, joint_mask
from prior.progress import Progress

from ..body_handle import BodyHandle, BodyPool
from ..widgets import SEED_RANGE, PoseFile, checked_choice, in_range, words
from ..worker import JobContext
from .base import Panel, ShownBody

if TYPE_CHECKING:
    from ..session import ClientSession

# The parts offered for masking, in the order a click on a shared joint resolves them.
MASK_PARTS = ("left_leg", "right_leg", "left_arm", "right_arm", "trunk", "head", "neck")
GHOST_COLOR = (110, 150, 235)
PICKED_COLOR = (40, 200, 140)
GHOST_OPACITY = 0.3
# dropdown label -> complete() solver
SOLVERS = {"DPS": "dps", "DPoser": "dposer", "DPoser (paper)": "dposer-paper", "ScoreSDE": "scoresde"}
DEFAULT_SOLVER = "DPS"
PICKED_OPACITY = 0.75
MAX_HYPOTHESES = 20
SDE_STEPS = (50, 1000)
MASKED_LIMB_OPACITY = 0.25  # the main body's masked limb while hypotheses are shown


def part_of_joint(body_joint: int) -> str | None:
    """The first of :data:`MASK_PARTS` holding body-pose joint ``body_joint`` (0..20)."""
    return next((p for p in MASK_PARTS if body_joint in PARTS[p]), None)


class CompletePanel(Panel):
    """Hypotheses are translucent ghosts of the completed joints only, overlaid on the main body.

    State: ``hypotheses: (H, 63)`` the latest (streamed or final) completions; ``done`` once the
    solver finished; ``picked`` the hypothesis highlighted (and adopted by "Adopt").
    """

    name = "complete"
    label = "Complete"
    short_label = "Compl"
    icon = "puzzle"
    stage = "pose"

    def __init__(self, session: ClientSession, container: viser.GuiFolderHandle) -> None:
        super().__init__(session, container)
        gui = session.gui
        self.ghosts: list[BodyHandle] = []
        self._pool = BodyPool()
        self._root = session.scene.add_frame("/pose/ghosts", show_axes=False)
        self.hypotheses: np.ndarray | None = None
        self.done = False
        self.picked = 0
        self.streamed_updates = 0
        self._input: tuple[np.ndarray, frozenset[int]] | None = None  # (pose, mask) the ghosts answer
        self._solver = DEFAULT_SOLVER  # the last valid choice of the Solver dropdown
        with container:
            gui.add_markdown("Click a body part or tick it to mask it (orange); the prior completes the masked joints.")
            self.parts = {
                part: gui.add_checkbox(
                    words(part), initial_value=False,
                    hint="Mask the joints " + ", ".join(words(BODY_JOINT_NAMES[j]) for j in PARTS[part]))
                for part in MASK_PARTS
            }
            self.clear = gui.add_button("Clear mask", icon=viser.Icon.ERASER, hint="Unmask every part")
            self.solver = gui.add_dropdown(
                "Solver", tuple(SOLVERS), initial_value=DEFAULT_SOLVER,
                hint="DPS: posterior sampling guided by the visible joints (hypothesis 1 = consensus of the draws); "
                     "DPoser: the truncated-diffusion optimisation with our settings (200 steps); DPoser (paper): "
                     "the original code's, exactly; ScoreSDE: masked sampling")
            self.num = gui.add_slider("Hypotheses", min=1, max=MAX_HYPOTHESES, step=1, initial_value=10,
                                      hint="How many completions to draw, shown as ghosts over the body")
            self.sde_steps = gui.add_slider("ScoreSDE steps", min=SDE_STEPS[0], max=SDE_STEPS[1], step=50,
                                            initial_value=500,
                                            hint="Steps of the ScoreSDE sampler: more is slower and smoother")
            self.seed = gui.add_number("Seed", initial_value=0, step=1,
                                       hint="The same seed, pose and mask give the same hypotheses")
            self.run = gui.add_button("Complete", icon=viser.Icon.PUZZLE,
                                      hint="Fill in the masked joints with the prior")
            self.pick = gui.add_slider("Hypothesis", min=1, max=10, step=1, initial_value=1, disabled=True,
                                       hint="With DPS, hypothesis 1 is the consensus: the best single answer")
            self.adopt = gui.add_button("Adopt hypothesis", icon=viser.Icon.CHECK, disabled=True,
                                        hint="Make the highlighted hypothesis the current pose (undoable in Edit)")
            self.pose_file = PoseFile(session)
        for box in self.parts.values():
            box.on_update(lambda _: self._mask_from_boxes())
        self.clear.on_click(lambda _: self.set_parts(()))
        self.run.on_click(lambda _: self.start())
        self.solver.on_update(lambda _: self._show_solver_options())
        self._show_solver_options()
        self.pick.on_update(lambda _: self._on_pick())
        self.adopt.on_click(lambda _: self.adopt_picked())
        session.on_pose_change(self._drop_if_stale)
        session.on_mask_change(self._drop_if_stale)

    # -- panel -----------------------------------------------------------------------------------
    def on_show(self) -> None:
        self._root.visible = True
        self.session.pacer.post("ghost-style", self._style_main)

    def on_hide(self) -> None:
        self._root.visible = False
        self.session.pacer.post("ghost-style", self._style_main)

    def on_joint_click(self, smplx_joint: int) -> None:
        self.toggle_joint(smplx_joint)

    def uploads(self) -> list[tuple[viser.GuiUploadButtonHandle, int]]:
        return self.pose_file.uploads()

    def shown_bodies(self) -> list[ShownBody]:
        y = (0.0, self.session.ground_y, 0.0)
        out = [ShownBody("pose", self.session.pose.copy(), position=y)]
        if self.ghosts and self.hypotheses is not None:
            out += [ShownBody(f"hypothesis_{k}", p, position=y, color=GHOST_COLOR, opacity=GHOST_OPACITY)
                    for k, p in enumerate(self.hypotheses)]
        return out

    def extent(self) -> tuple[float, float]:
        return (0.0, 0.0)

    def _show_solver_options(self) -> None:
        self._solver = checked_choice(self.session, self.solver, reset_to=self._solver) or self._solver
        self.sde_steps.visible = self._solver == "ScoreSDE"  # the other solvers' steps are fixed

    # -- mask ------------------------------------------------------------------------------------
    def _mask_from_boxes(self) -> None:
        joints = {j for part, box in self.parts.items() if box.value for j in PARTS[part]}
        self.session.set_mask(joints)

    def set_parts(self, parts: tuple[str, ...] | list[str]) -> None:
        """Tick exactly ``parts`` (names from :data:`MASK_PARTS`)."""
        for part, box in self.parts.items():
            box.value = part in parts
        self._mask_from_boxes()

    def toggle_joint(self, smplx_joint: int) -> None:
        """Toggle the part that SMPL-X joint ``smplx_joint`` belongs to (a click on the mesh)."""
        part = part_of_joint(smplx_joint - 1) if smplx_joint > 0 else None
        if part is None:
            self.session.notify("Not maskable", "The pelvis is the root: its rotation is not part of the body pose.")
            return
        self.session.mark("part_clicked")
        self.parts[part].value = not self.parts[part].value
        self._mask_from_boxes()

    # -- running -----------------------------------------------------------------------------------
    def start(self) -> None:
        session = self.session
        session.mark("complete_clicked")
        if not session.mask:
            session.notify("Nothing to complete", "Mask a body part first: click it on the body or tick it.")
            return
        choice = checked_choice(session, self.solver, reset_to=self._solver)
        if choice is None:
            return
        solver = SOLVERS[choice]
        mask = joint_mask(sorted(session.mask))
        pose = session.pose.copy()
        hyps = in_range(self.num.value, 1, MAX_HYPOTHESES, integer=True)
        steps = in_range(self.sde_steps.value, *SDE_STEPS, integer=True)
        seed = in_range(self.seed.value, *SEED_RANGE, integer=True)
        labels = {j + 1 for j in session.mask}
        self._input = request = (pose.copy(), frozenset(session.mask))
        self.done = False
        self.streamed_updates = 0
        self.pick.disabled = self.adopt.disabled = True

        def current() -> bool:  # results of a request that went stale are dropped
            return self._input is request

        session.pacer.post("ghosts-setup", lambda: current() and self._make_ghosts(hyps, labels))

        def run(ctx: JobContext) -> CompletionResult:
            return complete(
                ctx.resources.prior, pose[None], mask, hypotheses=hyps, solver=solver, steps=steps, seed=seed,
                callback=ctx.report, callback_every=2, cancel=ctx.cancel,
            )

        def on_progress(p: Progress) -> None:
            poses = p.pose_body.numpy()[0]
            session.pacer.post("ghosts", lambda: current() and self._draw(poses, streamed=True))

        def on_done(result: CompletionResult) -> None:
            poses = result.pose_body.numpy()[0]

            def finish() -> None:
                if not current():
                    return
                self._draw(poses)
                self.done = True
                self.pick.max = max(2, len(poses))
                self.pick.disabled = len(poses) < 2
                self.adopt.disabled = False
                session.mark("complete_done")

            session.pacer.post("ghosts", finish)

        session.submit("complete", run, on_progress=on_progress, on_done=on_done)

    def _make_ghosts(self, count: int, labels: set[int]) -> None:
        rig, y = self.session.rig, self.session.ground_y
        key = tuple(sorted(labels))
        tag = "_".join(map(str, key))
        self.ghosts = self._pool.take(key, count, lambda k: BodyHandle(
            self.session.scene, f"/pose/ghosts/{tag}/{k}", rig, labels=labels, color=GHOST_COLOR,
            opacity=GHOST_OPACITY, position=(0.0, y, 0.0)))
        self.picked = 0
        self.pick.value = 1
        self._style_ghosts()
        self._style_main()

    def _draw(self, poses: np.ndarray, *, streamed: bool = False) -> None:
        """Pose the ghosts with ``poses: (H, 63)`` (display thread)."""
        self.hypotheses = poses
        if len(self.ghosts) != len(poses):
            return
        rig_pose = self.session.rig.pose(poses)
        for k, ghost in enumerate(self.ghosts):
            ghost.set_pose(rig_pose.row(k))
        if streamed:
            self.streamed_updates += 1
            if self.streamed_updates == 1:
                self.session.mark("complete_first_update")

    def _style_ghosts(self) -> None:
        for k, ghost in enumerate(self.ghosts):
            picked = k == self.picked
            ghost.set_color(PICKED_COLOR if picked else GHOST_COLOR)
            ghost.set_opacity(PICKED_OPACITY if picked else GHOST_OPACITY)

    def _on_pick(self) -> None:
        count = MAX_HYPOTHESES if self.hypotheses is None else len(self.hypotheses)
        self.picked = in_range(self.pick.value, 1, count, integer=True) - 1
        self.session.pacer.post("ghost-style", self._style_ghosts)

    def adopt_picked(self) -> None:
        """Make the highlighted hypothesis the current pose (an undo step) and clear the ghosts."""
        if self.hypotheses is None or not self.done:
            return
        pose = self.hypotheses[min(self.picked, len(self.hypotheses) - 1)]
        self.session.set_pose(pose, label="completion")  # the ghosts are stale now: cleared

    def clear_ghosts(self) -> None:
        self._pool.hide()
        self.ghosts = []
        self._style_main()

    def _style_main(self) -> None:
        """While hypotheses are shown, the masked limb of the main body is see-through, so a
        hypothesis lying inside it stays visible (display thread)."""
        showing = bool(self.ghosts) and self.active
        labels = self._input[1] if showing and self._input is not None else frozenset()
        self.session.main.set_joint_opacity({j + 1: MASKED_LIMB_OPACITY for j in labels})

    def _drop_if_stale(self) -> None:
        """Clear hypotheses that no longer answer the pose and mask on screen (after an edit, IK,
        undo, rest pose or a mask change): they are results for another input."""
        if self._input is None:
            return
        pose, mask = self._input
        if frozenset(self.session.mask) == mask and np.array_equal(self.session.pose, pose):
            return
        self._input = None
        self.session.cancel("complete")
        self.hypotheses = None
        self.done = False
        self.pick.disabled = self.adopt.disabled = True
        self.session.pacer.post("ghosts-setup", self.clear_ghosts)
        self.session.mark("completion_cleared")

    def rebuild(self) -> None:
        self._pool.set_rig(self.session.rig)
        self.ghosts = []
        self.hypotheses = None
        self._input = None
        self.done = False
        self.pick.disabled = self.adopt.disabled = True
