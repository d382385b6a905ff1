"""Prior-guided inverse kinematics: reach joint targets with a body pose that stays plausible.

The objective is DPoser's, with a data term for the targets:

    sum_k ||J_k(pose) - target_k||^2  +  prior_weight * w(t) * mean((x - x0_hat)^2)

where ``x`` is the pose in model space and ``x0_hat`` the prior's one-step clean estimate of ``x``
brought to diffusion time ``t`` (``prior.optim.prior_residual`` with zero noise, so that
repeated solves do not jitter), treated as a constant. With ``x0_hat`` held the prior term is
quadratic and the whole objective is least squares, solved by damped Gauss-Newton
(Levenberg-Marquardt): each iteration is one batched forward-kinematics pass (a central-difference
Jacobian of the targeted joints) and one network forward pass. A few last iterations drop the prior
so that reachable targets are met exactly; the prior has by then shaped what the targets leave free.
Starting from the previous solution (warm start), a solve follows a drag at interactive rates.

Pinned joints keep their world position and orientation: each adds its own position and three
points :data:`PIN_ARM_M` along its axes to the least-squares terms, held where the start pose puts
them and weighted :data:`PIN_WEIGHT` times a target, so that a target out of reach is missed rather
than a pin moved. (``fixed`` is the other kind of hold: it freezes local rotations, which leaves a
joint free to move with its parents.)

``keep_plausible`` is the other editing mode: hold the joints the user touched and let DPoser's
completion refine the rest, starting from the current pose.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .body import BodyModel
from .completion import complete, make_mask
from .optim import DPoserSchedule, prior_residual, prior_weights
from .parts import NUM_SKELETON_JOINTS
from .pose_prior import PosePrior, as_tensor
from .progress import CancelFlag, Progress, ProgressFn, check_cancel, cpu_copy

FD_STEP_RAD = 1e-3  # finite-difference step of the Jacobian (float32 joints: ~1e-4 relative error)
PIN_ARM_M = 0.1  # a pinned joint's orientation is held through points this far along its axes
PIN_WEIGHT = 1e3  # of a pin's points against a target's: a target out of reach moves a pin by microns


@dataclass(frozen=True)
class IKOptions:
    """Settings of :func:`inverse_kinematics`."""

    steps: int = 6
    """Gauss-Newton iterations with the prior term."""
    polish_steps: int = 3
    """Then at most this many on the targets alone (stopping once within ``tol_m``): the targets
    are reached exactly where they can be, and the prior has shaped everything they leave free."""
    prior_weight: float = 1.5e-4
    """Weight of the prior term (m^2 per unit of the mean squared model-space residual). Set for
    the shipped prior: dragging a wrist 30 cm then lowers its energy by ~0.47 against plain IK and
    turns leg joints by at most ~0.18 rad (val poses; twice the weight: 0.22 rad)."""
    t: float = 0.1
    """Diffusion time of the prior term: small = a gentle pull towards nearby plausible poses."""
    damping: float = 3e-4
    """Levenberg-Marquardt damping (m^2 / rad^2): keeps steps small where nothing constrains them."""
    max_step_rad: float = 0.3
    """Largest change of any rotation component per iteration."""
    tol_m: float = 2e-4
    """Targets closer than this count as reached."""
    free_root: bool = False
    """Also solve the root orientation and translation (needed to move the pelvis, joint 0)."""


@dataclass
class IKResult:
    """Output of :func:`inverse_kinematics` (CPU tensors)."""

    pose_body: torch.Tensor
    """``(63,)`` the solved body pose (axis-angle)."""
    joints: torch.Tensor
    """``(22, 3)`` its joints (SMPL-X 0..21, metres)."""
    residual_m: float
    """Largest distance between a targeted joint and its target, metres."""
    pin_drift_m: float
    """Largest distance a pinned joint, or a point ``PIN_ARM_M`` along one of its axes, moved
    (metres; 0 without pins)."""
    steps: int
    """Gauss-Newton iterations run."""
    global_orient: torch.Tensor | None = None
    """``(3,)`` the root orientation, when ``free_root``."""
    transl: torch.Tensor | None = None
    """``(3,)`` the translation, when ``free_root``."""


def inverse_kinematics(
    prior: PosePrior,
    body: BodyModel,
    pose_body: torch.Tensor,
    targets: Mapping[int, torch.Tensor | Sequence[float]],
    *,
    fixed: Sequence[int] = (),
    pinned: Sequence[int] = (),
    global_orient: torch.Tensor | None = None,
    transl: torch.Tensor | None = None,
    betas: torch.Tensor | None = None,
    options: IKOptions = IKOptions(),
    callback: ProgressFn | None = None,
    cancel: CancelFlag | None = None,
) -> IKResult:
    """Move joints to target positions with a body pose the prior finds plausible.

    Args:
        prior: the pose prior.
        body: the body model (its first 22 joints, SMPL-X 0..21, are the ones targeted).
        pose_body: ``(63,)`` start pose (axis-angle); pass the previous solution to follow a drag.
        targets: SMPL-X joint index (0..21) -> target position ``(3,)`` in metres, in the same frame
            as the body (after ``global_orient`` and ``transl``).
        fixed: body-pose joints (0..20, ``prior.parts`` numbering) whose rotations are held.
        pinned: SMPL-X joints (0..21) whose world position and orientation are held where
            ``pose_body`` puts them (a pinned head stays put while a wrist is dragged); not targets.
        global_orient: ``(3,)`` root orientation; transl: ``(3,)`` translation (metres);
            betas: ``(NB,)`` shape. None = zero / the mean shape.
        options: iterations, prior weight and time, damping (:class:`IKOptions`).
        callback: ``Progress("ik", ...)`` after every iteration with ``pose_body (1, 63)`` and
            ``extra={"residual_m": ...}``.
        cancel: ``is_set()`` -> raise :class:`prior.errors.Cancelled`.

    Returns:
        :class:`IKResult`.
    """
    device = body.joint_template.device  # the pose lives where the body's FK runs; the network on prior.device
    space = prior.space
    dim = space.dim
    pose = as_tensor(pose_body, device).reshape(-1)
    if pose.shape != (dim,):
        raise ValueError(f"pose_body must be ({dim},), got {tuple(as_tensor(pose_body, device).shape)}")
    if not targets:
        raise ValueError("no targets given")
    ids = sorted(int(j) for j in targets)
    if not all(0 <= j < NUM_SKELETON_JOINTS for j in ids):
        raise ValueError(f"target joints must be SMPL-X joints 0..{NUM_SKELETON_JOINTS - 1}, got {ids}")
    goal = torch.stack([as_tensor(targets[j], device).reshape(3) for j in ids])
    if not torch.isfinite(goal).all():
        raise ValueError("targets contain NaN or Inf")
    pins = sorted({int(j) for j in pinned})
    if not all(0 <= j < NUM_SKELETON_JOINTS for j in pins):
        raise ValueError(f"pinned joints must be SMPL-X joints 0..{NUM_SKELETON_JOINTS - 1}, got {pins}")
    if set(pins) & set(ids):
        raise ValueError(f"joints {sorted(set(pins) & set(ids))} are both pinned and targeted")
    if not all(0 <= j < space.num_joints for j in fixed):
        raise ValueError(f"fixed joints must be body joints 0..{space.num_joints - 1}, got {list(fixed)}")
    root = torch.zeros(3, device=device) if global_orient is None else as_tensor(global_orient, device).reshape(3)
    shift = torch.zeros(3, device=device) if transl is None else as_tensor(transl, device).reshape(3)
    shape = None if betas is None else as_tensor(betas, device)

    # Unknowns: the free pose dims (+ root orientation and translation with free_root).
    free = np.concatenate([~space.joint_mask(tuple(fixed)), np.full(6, options.free_root)])
    free_idx = torch.from_numpy(np.flatnonzero(free)).to(device)
    on_pose = torch.nonzero(free_idx < dim)[:, 0]  # positions (in free_idx) of body-pose dims
    pose_idx = free_idx[on_pose]
    params = torch.cat([pose, root, shift])

    def held_points(p: torch.Tensor) -> torch.Tensor:
        """``(B, K + 4 P, 3)`` for parameter rows ``p: (B, 69)``: the K targeted joints, then the
        P pinned joints and three points on each one's axes (its orientation)."""
        rot, pos = body.skeleton(p[:, :dim], global_orient=p[:, dim : dim + 3], transl=p[:, dim + 3 :], betas=shape)
        if not pins:
            return pos[:, ids]
        axes = pos[:, pins, None] + PIN_ARM_M * rot[:, pins].transpose(-1, -2)  # (B, P, 3 axes, 3)
        return torch.cat([pos[:, ids], pos[:, pins], axes.flatten(1, 2)], 1)

    def distances(p: torch.Tensor) -> tuple[float, float]:
        """Largest target miss and pin drift (metres) of parameters ``p: (69,)``."""
        miss = (held_points(p[None])[0] - goal).norm(dim=-1)
        return float(miss[: len(ids)].max()), float(miss[len(ids) :].max()) if pins else 0.0

    with torch.no_grad():
        goal = torch.cat([goal, held_points(params[None])[0, len(ids) :]])  # pins: held where they start
    # Square roots of the terms' weights, one per residual coordinate.
    row_w = torch.ones(len(goal), 3, device=device)
    row_w[len(ids) :] = PIN_WEIGHT**0.5
    row_w = row_w.reshape(-1)

    # Central differences in one batched forward pass: exact enough for Gauss-Newton (the residual
    # itself is exact, so targets are still reached) and several times cheaper than reverse mode.
    probe = FD_STEP_RAD * torch.eye(dim + 6, device=device)[free_idx]
    sched = prior.schedule(torch.tensor([options.t], device=prior.device))
    prior_w = options.prior_weight * float(prior_weights(sched)[0]) / dim
    # x0_hat of the pose itself scaled to time t (z = 0): a deterministic pull, so that successive
    # solves of a drag do not jitter the joints the targets leave free.
    no_noise = torch.zeros(1, dim, device=prior.device)
    inv_std = (1.0 / prior.std).to(device)
    eye = torch.eye(free_idx.numel(), device=device)
    total = options.steps + options.polish_steps
    steps = 0
    for steps in range(1, total + 1):
        check_cancel(cancel)
        with_prior = steps <= options.steps and options.prior_weight > 0
        with torch.no_grad():
            rows = held_points(torch.cat([params[None], params + probe, params - probe]))
            rows = row_w * rows.reshape(1 + 2 * len(probe), -1)
            r = rows[0] - row_w * goal.reshape(-1)
            jac = ((rows[1 : 1 + len(probe)] - rows[1 + len(probe) :]) / (2 * FD_STEP_RAD)).T  # (3M, F)
            grad = jac.T @ r
            hess = jac.T @ jac + options.damping * eye
            if with_prior:  # diagonal in pose space, body-pose dims only
                x = prior.normalize(params[:dim])[None]
                r_prior = prior_residual(sched, 0, x, no_noise)[0].to(device)
                grad[on_pose] += prior_w * r_prior[pose_idx] * inv_std[pose_idx]
                hess[on_pose, on_pose] += prior_w * inv_std[pose_idx] ** 2  # the diagonal entries
            # In float64: the pins' weight spreads the normal equations' eigenvalues beyond float32.
            delta = -torch.linalg.solve(hess.double(), grad.double()).to(hess.dtype)
            biggest = float(delta.abs().max())
            if biggest > options.max_step_rad:
                delta *= options.max_step_rad / biggest
            params = params.clone()
            params[free_idx] += delta
            miss, drift = distances(params)
        if callback is not None:
            callback(Progress("ik", steps, total, options.t, cpu_copy(params[None, :dim]), {"residual_m": miss}))
        if max(miss, drift) < options.tol_m and not with_prior and steps >= options.steps:
            break
    with torch.no_grad():
        joints = body.skeleton_joints(params[None, :dim], global_orient=params[dim : dim + 3],
                                      transl=params[dim + 3 :], betas=shape)[0]
        miss, drift = distances(params)
    return IKResult(
        pose_body=params[:dim].cpu(),
        joints=joints.cpu(),
        residual_m=miss,
        pin_drift_m=drift,
        steps=steps,
        global_orient=params[dim : dim + 3].cpu() if options.free_root else None,
        transl=params[dim + 3 :].cpu() if options.free_root else None,
    )


def keep_plausible(
    prior: PosePrior,
    pose_body: torch.Tensor,
    touched: Sequence[int],
    *,
    schedule: DPoserSchedule = DPoserSchedule(),
    seed: int | None = 0,
    callback: ProgressFn | None = None,
    callback_every: int = 5,
    cancel: CancelFlag | None = None,
) -> torch.Tensor:
    """Refine the joints the user did not touch so the pose stays plausible; touched ones are held.

    DPoser's completion (``prior.completion.complete``, its schedule by default) with the untouched
    joints masked, started from the current pose instead of noise (so it repairs rather than
    re-imagines them). ``pose_body: (63,)``; ``touched``: body-pose joints
    0..20 (``prior.parts`` numbering). Returns ``(63,)`` with the touched joints' rotations exact.
    Progress arrives as completion's (``task="complete"``, ``pose_body (1, 1, 63)``).
    """
    space = prior.space
    pose = as_tensor(pose_body, torch.device("cpu")).reshape(1, space.dim)
    held = {int(j) for j in touched}
    if not held <= set(range(space.num_joints)):
        raise ValueError(f"touched joints must be body joints 0..{space.num_joints - 1}, got {sorted(held)}")
    untouched = [j for j in range(space.num_joints) if j not in held]
    if not untouched:
        return pose[0].clone()
    result = complete(
        prior, pose, make_mask(joints=untouched, space=space), hypotheses=1, solver="dposer", schedule=schedule,
        seed=seed, init="pose", callback=callback, callback_every=callback_every, cancel=cancel,
    )
    return result.pose_body[0, 0]


__all__ = ["IKOptions", "IKResult", "inverse_kinematics", "keep_plausible"]
