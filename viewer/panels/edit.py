"""Edit tab: rotate joints with a gizmo (forward kinematics), undo and redo."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
import viser

from prior.ik import IKResult, inverse_kinematics, keep_plausible
from prior.parts import BODY_JOINT_NAMES, SMPLX_PARENTS
from prior.plausibility import Plausibility, plausibility
from prior.rotations import matrix_to_axis_angle, wxyz_to_matrix_np

from .base import Panel, ShownBody

if TYPE_CHECKING:
    from ..session import ClientSession

# End effectors with IK drag handles: SMPL-X joints of the wrists and ankles.
EFFECTORS = {"left_wrist": 20, "right_wrist": 21, "left_ankle": 7, "right_ankle": 8}
LABEL_COLORS = {"typical": "#2f9e44", "unusual": "#e8590c", "implausible": "#e03131"}


def local_rotation(
    pose_body: np.ndarray, world_r: np.ndarray, smplx_joint: int, new_world_wxyz: np.ndarray
) -> np.ndarray:
    """``pose_body: (63,)`` with SMPL-X joint ``smplx_joint`` (1..21) rotated so that its world
    rotation becomes ``new_world_wxyz``; ``world_r: (22, 3, 3)`` the current world rotations."""
    parent_r = world_r[SMPLX_PARENTS[smplx_joint]]
    local = parent_r.T @ wxyz_to_matrix_np(new_world_wxyz)
    out = pose_body.copy()
    out[3 * (smplx_joint - 1) : 3 * smplx_joint] = matrix_to_axis_angle(torch.from_numpy(local)).numpy()
    return out


class EditPanel(Panel):
    """A rotation gizmo sits on the selected joint (a child of the main body's root frame)."""

    name = "edit"
    label = "Edit"
    icon = "hand-finger"
    stage = "pose"

    def __init__(self, session: ClientSession, container: viser.GuiFolderHandle) -> None:
        super().__init__(session, container)
        gui = session.gui
        self.gizmo: viser.TransformControlsHandle | None = None
        self.dragging = False
        self._drag_start_pose: np.ndarray | None = None
        with container:
            gui.add_markdown("Click a joint on the body to rotate it; drag the handles for IK.")
            self.joint = gui.add_dropdown("Joint", BODY_JOINT_NAMES, initial_value="left_shoulder")
            self.rotate = gui.add_checkbox("Rotation gizmo", initial_value=False)
            self.ik = gui.add_checkbox("Drag hands and feet (IK)", initial_value=False,
                                       hint="Handles on the wrists and ankles; the prior-guided IK moves the rest")
            self.plausible = gui.add_checkbox("Keep plausible", initial_value=False,
                                              hint="After a rotation, the prior refines the joints you did not touch")
            self.score = gui.add_markdown("**plausibility** –")
            with gui.add_folder("History"):
                self.undo = gui.add_button("Undo", icon=viser.Icon.ARROW_BACK_UP, disabled=True)
                self.redo = gui.add_button("Redo", icon=viser.Icon.ARROW_FORWARD_UP, disabled=True)
                self.reset = gui.add_button("Rest pose", hint="Set every joint to zero rotation (undoable)")
        self.handles: dict[int, viser.TransformControlsHandle] = {}
        self.score_value: Plausibility | None = None
        self.ik_runs = 0
        self.rotate.on_update(lambda _: session.pacer.post("gizmo", self._sync_gizmo))
        self.ik.on_update(lambda _: session.pacer.post("handles", self._sync_handles))
        self.joint.on_update(lambda _: session.pacer.post("gizmo", self._sync_gizmo))
        self.undo.on_click(lambda _: session.undo())
        self.redo.on_click(lambda _: session.redo())
        self.reset.on_click(lambda _: session.set_pose(np.zeros(63, np.float32), label="rest pose"))
        session.on_pose_change(self._on_pose_change)

    # -- panel -----------------------------------------------------------------------------------
    def on_show(self) -> None:
        self._sync_controls()
        self.update_score()

    def on_hide(self) -> None:
        self._sync_controls()  # the gizmo and handles go: they act only while the pose is on screen

    def _sync_controls(self) -> None:
        self.session.pacer.post("gizmo", self._sync_gizmo)
        self.session.pacer.post("handles", self._sync_handles)

    def on_joint_click(self, smplx_joint: int) -> None:
        self.select(smplx_joint)

    def shown_bodies(self) -> list[ShownBody]:
        return [ShownBody("pose", self.session.pose.copy(), position=(0.0, self.session.ground_y, 0.0))]

    def extent(self) -> tuple[float, float]:
        return (0.0, 0.0)

    @property
    def selected_joint(self) -> int:
        """The SMPL-X joint (1..21) being edited."""
        return BODY_JOINT_NAMES.index(self.joint.value) + 1

    def select(self, smplx_joint: int) -> None:
        """Select a joint to rotate (a click in "select joint" mode) and show its gizmo."""
        if smplx_joint < 1:
            return
        self.joint.value = BODY_JOINT_NAMES[smplx_joint - 1]
        self.rotate.value = True

    def _on_pose_change(self) -> None:
        self.undo.disabled = not self.session.history.can_undo
        self.redo.disabled = not self.session.history.can_redo
        if not self.dragging:
            self._sync_gizmo()
            self._sync_handles()
        self.update_score()

    # -- plausibility ------------------------------------------------------------------------------
    def update_score(self) -> None:
        """Score the current pose with the prior (on the worker; the newest request wins)."""
        if self.session.app.resources.prior is None or not self.active:
            return
        pose = self.session.pose.copy()

        def run(ctx) -> Plausibility:
            return plausibility(ctx.resources.prior, torch.as_tensor(pose))

        def on_done(result: Plausibility) -> None:
            self.score_value = result
            color = LABEL_COLORS.get(result.label, "black")
            text = (f"**plausibility** <span style='color:{color}'>**{result.label}**</span> "
                    f"· worse than {result.percentile:.0f}% of real poses")
            self.session.pacer.post("score", lambda: setattr(self.score, "content", text))

        self.session.submit("plausibility", run, on_done=on_done)

    # -- IK handles --------------------------------------------------------------------------------
    def _sync_handles(self) -> None:
        """Show translation handles on the wrists and ankles (display thread)."""
        main = self.session.main
        if not (self.ik.value and self.active) or main.pose is None:
            for handle in self.handles.values():
                handle.visible = False
            return
        for name, joint in EFFECTORS.items():
            handle = self.handles.get(joint)
            if handle is None:
                handle = self.session.scene.add_transform_controls(
                    f"{main.name}/ik_{name}", scale=0.15, disable_rotations=True, depth_test=False,
                )
                handle.on_update(lambda event, joint=joint: self._on_handle(event, joint))
                self.handles[joint] = handle
            handle.visible = True
            handle.position = main.pose.positions[0, joint]

    def _on_handle(self, event: viser.TransformControlsEvent, joint: int) -> None:
        if event.phase == "start":
            self.dragging = True
            return
        self.solve_ik({joint: np.asarray(event.target.position, np.float64)}, final=event.phase == "end")

    def solve_ik(self, targets: dict[int, np.ndarray], *, final: bool) -> None:
        """Move SMPL-X joints to ``targets`` (metres, body frame) with the prior-guided IK; the other
        end effectors stay where they are. ``final`` records an undo step when it is done."""
        session = self.session
        pose = session.pose.copy()
        main = session.main
        held = {} if main.pose is None else {
            j: main.pose.positions[0, j] for j in EFFECTORS.values() if j not in targets
        }
        goal = {j: torch.as_tensor(p) for j, p in {**held, **targets}.items()}

        def run(ctx) -> IKResult:
            return inverse_kinematics(ctx.resources.prior, ctx.resources.body, torch.as_tensor(pose), goal,
                                      cancel=ctx.cancel)

        def on_done(result: IKResult) -> None:
            self.ik_runs += 1
            if final:
                self.dragging = False
                session.set_pose(result.pose_body.numpy(), label="IK drag")
            else:
                session.set_pose(result.pose_body.numpy())

        session.submit("ik", run, on_done=on_done)

    def _sync_gizmo(self) -> None:
        """Place the gizmo on the selected joint with the joint's world rotation (display thread)."""
        main = self.session.main
        if not (self.rotate.value and self.active) or main.pose is None:
            if self.gizmo is not None:
                self.gizmo.remove()
                self.gizmo = None
            return
        j = self.selected_joint
        if self.gizmo is None:
            self.gizmo = self.session.scene.add_transform_controls(
                f"{main.name}/gizmo", scale=0.22, disable_axes=True, disable_sliders=True, depth_test=False,
            )
            self.gizmo.on_update(self._on_gizmo)
        self.gizmo.position = main.pose.positions[0, j]
        self.gizmo.wxyz = main.pose.wxyz[0, j]

    async def _on_gizmo(self, event: viser.TransformControlsEvent) -> None:
        # async: runs on the event loop in phase order; only numpy here, drawing goes to the pacer.
        session = self.session
        main = session.main
        if main.pose is None:
            return
        if event.phase == "start":
            self.dragging = True
            self._drag_start_pose = session.pose.copy()
            return
        pose = local_rotation(session.pose, main.pose.rotations[0], self.selected_joint, np.asarray(event.target.wxyz))
        if event.phase == "end":
            self.dragging = False
            session.set_pose(pose, label=f"rotate {self.joint.value}")
            if self.plausible.value:
                self.refine(touched=[self.selected_joint - 1])
        else:
            session.set_pose(pose)

    def refine(self, *, touched: list[int]) -> None:
        """Let the prior refine every joint but ``touched`` (body-pose joints 0..20); an undo step."""
        session = self.session
        pose = session.pose.copy()

        def run(ctx) -> np.ndarray:
            return keep_plausible(ctx.resources.prior, torch.as_tensor(pose), touched, cancel=ctx.cancel).numpy()

        session.submit("refine", run, on_done=lambda refined: session.set_pose(refined, label="keep plausible"))

    def rebuild(self) -> None:
        self._sync_controls()  # they live under the main body's root, which is redrawn in place
