"""Inspect tab: the diffusion at one time t for the current pose: x_t and the prior's x0_hat."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
import viser

from ..body_handle import BodyHandle
from ..widgets import SEED_RANGE, in_range
from ..worker import JobContext
from .base import Panel, ShownBody

if TYPE_CHECKING:
    from ..session import ClientSession

OFFSET_M = 1.0  # x_t and x0_hat stand to the right of the current pose
XT_COLOR = (170, 170, 170)
X0_COLOR = (120, 200, 160)
T_RANGE = (0.001, 1.0)


def noised_and_estimate(prior, pose_body: np.ndarray, t: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(x_t, x0_hat)`` as axis-angle ``(63,)`` each: the pose forward-noised to time ``t``
    (sub-VP: ``x_t = alpha(t) x0 + std(t) z``, in the prior's normalised space) and the prior's
    one-step clean estimate from it."""
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    with torch.inference_mode():
        x0 = prior.normalize(pose_body[None])
        tt = torch.full((1,), float(t), device=prior.device)
        z = torch.randn(x0.shape, generator=gen).to(prior.device)
        x_t = prior.sde.alpha(tt)[:, None] * x0 + prior.sde.std(tt)[:, None] * z
        x0_hat = prior.x0_hat(x_t, tt)
        return prior.denormalize(x_t)[0].cpu().numpy(), prior.denormalize(x0_hat)[0].cpu().numpy()


class InspectPanel(Panel):
    """State: ``t``; ``x_t`` and ``x0_hat`` ``(63,)`` once computed for the current pose."""

    name = "inspect"
    label = "Inspect"
    icon = "microscope"
    stage = "pose"

    def __init__(self, session: ClientSession, container: viser.GuiFolderHandle) -> None:
        super().__init__(session, container)
        gui = session.gui
        self.bodies: dict[str, BodyHandle] = {}
        self.labels: dict[str, viser.LabelHandle] = {}
        self.x_t: np.ndarray | None = None
        self.x0_hat: np.ndarray | None = None
        self._root = session.scene.add_frame("/pose/inspect", show_axes=False, visible=False)
        with container:
            gui.add_markdown("Noise the current pose to time *t* and see the prior's one-step estimate "
                             "x̂₀ = (x_t + σ² s(x_t, t)) / α beside it.")
            self.enabled = gui.add_checkbox("Show x_t and x̂₀", initial_value=False,
                                            hint="Stand the noised pose x_t and the prior's estimate x̂₀ "
                                                 "beside the current pose")
            self.t = gui.add_slider("t", min=T_RANGE[0], max=T_RANGE[1], step=0.001, initial_value=0.3,
                                    hint="Diffusion time: near 0 barely noised, 1 pure noise")
            self.seed = gui.add_number("Noise seed", initial_value=0, step=1,
                                       hint="Same seed, same noise: change it to see another x_t")
        self.enabled.on_update(lambda _: self._toggle())
        self.t.on_update(lambda _: self.update())
        self.seed.on_update(lambda _: self.update())
        session.on_pose_change(self._on_pose_change)

    # -- panel -----------------------------------------------------------------------------------
    def on_show(self) -> None:
        self._toggle()

    def on_hide(self) -> None:
        self._root.visible = False

    def shown_bodies(self) -> list[ShownBody]:
        y = self.session.ground_y
        out = [ShownBody("pose", self.session.pose.copy(), position=(0.0, y, 0.0))]
        if self._root.visible and self.x_t is not None and self.x0_hat is not None:
            for key, pose, color in (("x_t", self.x_t, XT_COLOR), ("x0_hat", self.x0_hat, X0_COLOR)):
                out.append(ShownBody(key, pose, position=tuple(self.bodies[key].position), color=color))
        return out

    def extent(self) -> tuple[float, float]:
        return (0.0, 2 * OFFSET_M) if self._root.visible else (0.0, 0.0)

    def _toggle(self) -> None:
        if self.enabled.value:
            self.update()
        else:
            self._root.visible = False

    def _on_pose_change(self) -> None:
        if self.enabled.value:
            self.update()

    def update(self) -> None:
        """Recompute x_t and x0_hat for the current pose on the worker and redraw them."""
        if not (self.enabled.value and self.active):
            return
        pose, t = self.session.pose.copy(), in_range(self.t.value, *T_RANGE)
        seed = in_range(self.seed.value, *SEED_RANGE, integer=True)

        def run(ctx: JobContext) -> tuple[np.ndarray, np.ndarray]:
            return noised_and_estimate(ctx.resources.prior, pose, t, seed)

        def on_done(result: tuple[np.ndarray, np.ndarray]) -> None:
            self.session.pacer.post("inspect", lambda: self._draw(*result, t))

        self.session.submit("inspect", run, on_done=on_done)

    def _draw(self, x_t: np.ndarray, x0_hat: np.ndarray, t: float) -> None:
        if not (self.enabled.value and self.active):
            return
        session = self.session
        if not self.bodies:
            for key, color in (("x_t", XT_COLOR), ("x0_hat", X0_COLOR)):
                self.bodies[key] = BodyHandle(session.scene, f"/pose/inspect/{key}", session.rig, color=color)
                self.labels[key] = session.scene.add_label(f"/pose/inspect/label_{key}", "", anchor="bottom-center")
            self._place()
        self._root.visible = True
        session.frame_once("inspect")  # the first time x_t and x0_hat appear beside the pose
        self.x_t, self.x0_hat = x_t, x0_hat
        poses = session.rig.pose(np.stack([x_t, x0_hat]))
        self.bodies["x_t"].set_pose(poses.row(0))
        self.bodies["x0_hat"].set_pose(poses.row(1))
        self.labels["x_t"].text = f"x_t  (t = {t:.3f})"
        self.labels["x0_hat"].text = "x̂₀ (one-step estimate)"

    def _place(self) -> None:
        """Stand the bodies side by side on the ground, each label above its body's head."""
        y, top = self.session.ground_y, self.session.rig.height_m + 0.12
        for k, key in enumerate(self.bodies):
            x = OFFSET_M * (k + 1)
            self.bodies[key].position = (x, y, 0.0)
            self.labels[key].position = (x, top, 0.0)

    def rebuild(self) -> None:
        for body in self.bodies.values():
            body.set_rig(self.session.rig)
        self._place()
        if self.enabled.value:
            self.update()
