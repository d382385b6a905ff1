"""Edit tab: rotate joints with a gizmo (forward kinematics), drag hands and feet (IK) with pinned
joints held, undo and redo, and bring your own poses from a file."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import torch
import viser

from prior.ik import IKResult, inverse_kinematics, keep_plausible
from prior.parts import BODY_JOINT_NAMES, SMPLX_JOINT_NAMES, SMPLX_PARENTS
from prior.plausibility import (
    CALIBRATION_NOISE_RAD,
    IMPLAUSIBLE_PERCENTILE,
    TYPICAL_PERCENTILE,
    Plausibility,
    plausibility,
)
from prior.rotations import matrix_to_axis_angle, wxyz_to_matrix_np

from ..body_handle import MASK_COLOR
from ..widgets import PoseFile, checked_choice, in_range, words
from .base import Panel, ShownBody

if TYPE_CHECKING:
    from ..session import ClientSession

# End effectors with IK drag handles: SMPL-X joints of the wrists and ankles.
EFFECTORS = {"left_wrist": 20, "right_wrist": 21, "left_ankle": 7, "right_ankle": 8}
LABEL_COLORS = {"typical": "#2f9e44", "unusual": "#e8590c", "implausible": "#e03131"}
PIN_COLOR = (150, 80, 230)
MAX_REACH_M = 3.0  # an IK target further than this from the body's origin, on any axis, is clamped


JOINT_CHOICES = tuple(words(n) for n in BODY_JOINT_NAMES)  # the Joint dropdown: SMPL-X joints 1..21


def ordinal(n: int) -> str:
    """``1`` -> ``"1st"``, ``12`` -> ``"12th"``, ``22`` -> ``"22nd"``."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def plausibility_text(score: Plausibility) -> str:
    """The readout of a score: its label, where it falls among real poses, and the bands.

    The percentile is rounded up, so the number agrees with the label: a typical pose (at most
    the 90th percentile) reads 90 or less, an unusual one 91 or more, an implausible one 99 or more."""
    color = LABEL_COLORS[score.label]
    shown = math.ceil(score.percentile)
    if shown >= 100:
        where = "beyond every real pose"
    elif shown <= 0:
        where = "more typical than every real pose"
    else:
        where = f"{ordinal(shown)} percentile of real poses (lower is more typical)"
    bands = (f"typical: up to the {ordinal(round(TYPICAL_PERCENTILE))} percentile · unusual: above it · "
             f"implausible: the {ordinal(round(IMPLAUSIBLE_PERCENTILE))} or above and scoring like real poses "
             f"with {CALIBRATION_NOISE_RAD:g} rad of noise on every joint")
    return (f"**plausibility** <span style='color:{color}'>**{score.label}**</span> · {where}  \n"
            f"<small>{bands}</small>")


def pinned_chain(pins: set[int]) -> list[int]:
    """Body-pose joints (0..20) whose rotations place the pinned SMPL-X joints: each pin and the
    joints between it and the pelvis. Holding them keeps every pin exactly where it is."""
    chain: set[int] = set()
    for joint in pins:
        while joint > 0:
            chain.add(joint - 1)
            joint = SMPLX_PARENTS[joint]
    return sorted(chain)


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
    """A rotation gizmo sits on the selected joint (a child of the main body's root frame).

    ``pins``: SMPL-X joints (1..21) that IK drags and "Keep plausible" hold in place (position and
    orientation); drawn in :data:`PIN_COLOR` with a label while the panel is shown."""

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
        self._joint = BODY_JOINT_NAMES.index("left_shoulder") + 1  # the last valid choice of the Joint dropdown
        self.pins: set[int] = set()
        with container:
            gui.add_markdown("Click a joint on the body to rotate it; drag the handles for IK.")
            self.joint = gui.add_dropdown("Joint", JOINT_CHOICES, initial_value=JOINT_CHOICES[self._joint - 1],
                                          hint="The joint the rotation gizmo turns (a click on the body picks it too)")
            self.rotate = gui.add_checkbox("Rotation gizmo", initial_value=False,
                                           hint="A rotation gizmo on the selected joint; its children turn with it")
            self.ik = gui.add_checkbox("Drag hands and feet (IK)", initial_value=False,
                                       hint="Handles on the wrists and ankles; the prior-guided IK moves the rest "
                                            "(pinned joints stay put)")
            self.plausible = gui.add_checkbox("Keep plausible", initial_value=False,
                                              hint="After a rotation, the prior refines the joints you did not touch "
                                                   "(pinned joints stay put)")
            with gui.add_folder("Pins"):
                self.pin_click = gui.add_checkbox(
                    "Pin on click", initial_value=False,
                    hint="While ticked, a click on the body pins or unpins that joint instead of selecting it")
                self.pin = gui.add_button(
                    f"Pin {words(SMPLX_JOINT_NAMES[self._joint])}", icon=viser.Icon.PIN,
                    hint="Pin or unpin the selected joint: IK drags keep a pinned joint's place and turn "
                         "(the rotation gizmo still turns any joint)")
                self.clear_pins = gui.add_button("Clear pins", icon=viser.Icon.PINNED_OFF, disabled=True,
                                                 hint="Unpin every joint")
                self.pinned = gui.add_markdown("*No joint pinned.*")
            self.score = gui.add_markdown("**plausibility** –")
            with gui.add_folder("History"):
                self.undo = gui.add_button("Undo", icon=viser.Icon.ARROW_BACK_UP, disabled=True,
                                           hint="Go back one edit")
                self.redo = gui.add_button("Redo", icon=viser.Icon.ARROW_FORWARD_UP, disabled=True,
                                           hint="Redo the edit undone last")
                self.reset = gui.add_button("Rest pose", hint="Set every joint to zero rotation (undoable)")
            self.pose_file = PoseFile(session)
        self.handles: dict[int, viser.TransformControlsHandle] = {}
        self.pin_labels: dict[int, viser.LabelHandle] = {}
        self.score_value: Plausibility | None = None
        self.ik_runs = 0
        self.rotate.on_update(lambda _: session.pacer.post("gizmo", self._sync_gizmo))
        self.ik.on_update(lambda _: session.pacer.post("handles", self._sync_handles))
        self.joint.on_update(lambda _: self._on_joint())
        self.pin.on_click(lambda _: self.toggle_pin(self.selected_joint))
        self.clear_pins.on_click(lambda _: self.set_pins(set()))
        self.undo.on_click(lambda _: session.undo())
        self.redo.on_click(lambda _: session.redo())
        self.reset.on_click(lambda _: session.set_pose(np.zeros(63, np.float32), label="rest pose"))
        session.on_pose_change(self._on_pose_change)

    # -- panel -----------------------------------------------------------------------------------
    def on_show(self) -> None:
        self._sync_controls()
        self.update_score()

    def on_hide(self) -> None:
        self._sync_controls()  # the gizmo, handles and pin marks go: they act only while the pose is on screen

    def uploads(self) -> list[tuple[viser.GuiUploadButtonHandle, int]]:
        return self.pose_file.uploads()

    def _sync_controls(self) -> None:
        self.session.pacer.post("gizmo", self._sync_gizmo)
        self.session.pacer.post("handles", self._sync_handles)
        self.session.pacer.post("pins", self._show_pins)

    def on_joint_click(self, smplx_joint: int) -> None:
        if self.pin_click.value:
            self.toggle_pin(smplx_joint)
        else:
            self.select(smplx_joint)

    def shown_bodies(self) -> list[ShownBody]:
        return [ShownBody("pose", self.session.pose.copy(), position=(0.0, self.session.ground_y, 0.0))]

    def extent(self) -> tuple[float, float]:
        return (0.0, 0.0)

    @property
    def selected_joint(self) -> int:
        """The SMPL-X joint (1..21) being edited."""
        return self._joint

    def select(self, smplx_joint: int) -> None:
        """Select a joint to rotate (a click in "select joint" mode) and show its gizmo."""
        if smplx_joint < 1:
            return
        self.joint.value = JOINT_CHOICES[smplx_joint - 1]
        self.rotate.value = True

    def _on_joint(self) -> None:
        choice = checked_choice(self.session, self.joint, reset_to=JOINT_CHOICES[self._joint - 1])
        if choice is not None:
            self._joint = JOINT_CHOICES.index(choice) + 1
        self._show_pin_button()
        self.session.pacer.post("gizmo", self._sync_gizmo)

    def _on_pose_change(self) -> None:
        self.undo.disabled = not self.session.history.can_undo
        self.redo.disabled = not self.session.history.can_redo
        if not self.dragging:
            self._sync_gizmo()
            self._sync_handles()
        self._place_pin_labels()
        self.update_score()

    # -- pins ----------------------------------------------------------------------------------------
    def toggle_pin(self, smplx_joint: int) -> None:
        """Pin SMPL-X joint ``smplx_joint`` (1..21), or unpin it if it is pinned."""
        if not 1 <= smplx_joint < len(SMPLX_JOINT_NAMES):
            self.session.notify("Not pinnable", "The pelvis is the root: IK never moves it, so it needs no pin.")
            return
        self.set_pins(self.pins ^ {smplx_joint})

    def set_pins(self, pins: set[int]) -> None:
        """Pin exactly ``pins`` (SMPL-X joints 1..21)."""
        self.pins = set(pins)
        names = ", ".join(words(SMPLX_JOINT_NAMES[j]) for j in sorted(self.pins))
        self.pinned.content = f"**pinned** {names}" if names else "*No joint pinned.*"
        self.clear_pins.disabled = not self.pins
        self._show_pin_button()
        self._sync_controls()

    def _show_pin_button(self) -> None:
        """The pin button names what it does to the selected joint: "Pin left shoulder", "Unpin head"."""
        verb = "Unpin" if self.selected_joint in self.pins else "Pin"
        self.pin.label = f"{verb} {words(SMPLX_JOINT_NAMES[self.selected_joint])}"

    def _show_pins(self) -> None:
        """Pinned joints in the pin colour (over the mask's) and labelled while the panel is shown;
        the mask's colours alone otherwise (display thread)."""
        session, main = self.session, self.session.main
        shown = self.active and main.pose is not None
        if shown:
            main.set_joint_colors({j + 1: MASK_COLOR for j in session.mask} | {j: PIN_COLOR for j in self.pins})
        else:
            session.apply_mask_colors()
        for joint in self.pins - self.pin_labels.keys():
            self.pin_labels[joint] = session.scene.add_label(
                f"{main.name}/pin_{SMPLX_JOINT_NAMES[joint]}", f"● {words(SMPLX_JOINT_NAMES[joint])}",
                anchor="center-left", font_screen_scale=0.8, visible=False)
        for joint, label in self.pin_labels.items():
            want = shown and joint in self.pins
            if label.visible != want:
                label.visible = want
        self._place_pin_labels()

    def _place_pin_labels(self) -> None:
        main = self.session.main
        if main.pose is None:
            return
        for joint in self.pins & self.pin_labels.keys():
            self.pin_labels[joint].position = main.pose.positions[0, joint]

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
            text = plausibility_text(result)
            self.session.pacer.post("score", lambda: setattr(self.score, "content", text))

        self.session.submit("plausibility", run, on_done=on_done)

    # -- IK handles --------------------------------------------------------------------------------
    def _sync_handles(self) -> None:
        """Show translation handles on the wrists and ankles that are not pinned (display thread)."""
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
            handle.visible = joint not in self.pins
            handle.position = main.pose.positions[0, joint]

    def _on_handle(self, event: viser.TransformControlsEvent, joint: int) -> None:
        if event.phase == "start":
            self.dragging = True
            return
        position = np.asarray(event.target.position, np.float64)
        if position.shape != (3,) or not np.isfinite(position).all() or joint in self.pins:
            return  # a page script can send anything; a pinned joint has no handle to drag
        target = np.array([in_range(x, -MAX_REACH_M, MAX_REACH_M) for x in position])
        self.solve_ik({joint: target}, final=event.phase == "end")

    def solve_ik(self, targets: dict[int, np.ndarray], *, final: bool) -> None:
        """Move SMPL-X joints to ``targets`` (metres, body frame) with the prior-guided IK; pinned
        joints keep their place and turn, the other end effectors stay where they are (loosely).
        ``final`` records an undo step when it is done."""
        session = self.session
        pose = session.pose.copy()
        main = session.main
        pinned = sorted(self.pins - targets.keys())
        held = {} if main.pose is None else {
            j: main.pose.positions[0, j] for j in EFFECTORS.values() if j not in targets and j not in self.pins
        }
        goal = {j: torch.as_tensor(p) for j, p in {**held, **targets}.items()}

        def run(ctx) -> IKResult:
            return inverse_kinematics(ctx.resources.prior, ctx.resources.body, torch.as_tensor(pose), goal,
                                      pinned=pinned, cancel=ctx.cancel)

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
        wxyz = np.asarray(event.target.wxyz, np.float64)
        norm = float(np.linalg.norm(wxyz)) if wxyz.shape == (4,) else float("nan")
        if not (np.isfinite(norm) and norm > 1e-6):
            return  # not a rotation (a page script can send anything)
        pose = local_rotation(session.pose, main.pose.rotations[0], self.selected_joint, wxyz / norm)
        if event.phase == "end":
            self.dragging = False
            session.set_pose(pose, label=f"rotate {words(BODY_JOINT_NAMES[self.selected_joint - 1])}")
            if self.plausible.value:
                self.refine(touched=[self.selected_joint - 1])
        else:
            session.set_pose(pose)

    def refine(self, *, touched: list[int]) -> None:
        """Let the prior refine every joint but ``touched`` (body-pose joints 0..20) and those that
        place the pins; an undo step."""
        session = self.session
        pose = session.pose.copy()
        held = sorted(set(touched) | set(pinned_chain(self.pins)))

        def run(ctx) -> np.ndarray:
            return keep_plausible(ctx.resources.prior, torch.as_tensor(pose), held, cancel=ctx.cancel).numpy()

        session.submit("refine", run, on_done=lambda refined: session.set_pose(refined, label="keep plausible"))

    def rebuild(self) -> None:
        self._sync_controls()  # they live under the main body's root, which is redrawn in place
