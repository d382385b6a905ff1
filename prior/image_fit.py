"""Fit a body to a photo: 2D keypoints -> SMPL-X body pose, shape, root and translation (DPoser's
fourth task; the fitting of ``run/demo_fit.py`` / ``run/smplify.py`` in ``moonbow721/DPoser``,
itself SMPLify's, Bogo et al. 2016).

The camera is a pinhole (:class:`prior.camera.Camera`) at the world origin; the body's root
orientation and translation absorb the extrinsics. For every image, the fit:

1. starts the body at the depth the torso's 2D lengths give by similar triangles (rest torso
   edges in metres against their lengths in pixels), standing at the hips' 2D position, turned
   to each of ``options.yaws_deg`` (a batch of starts: a photo does not say whether it sees the
   front or the back);
2. fits root orientation and translation to the torso keypoints (the camera stage) with the pose
   held at the prior's mean and the depth kept near its estimate;
3. fits pose, shape, root and translation in stages of falling prior weight: a robust
   (Geman-McClure), confidence-weighted reprojection term; the pose prior (:mod:`prior.pose_terms`:
   DPoser's, SMPLify's GMM, a Gaussian, or none); SMPLify's elbow and knee bend prior; a shape
   regulariser; across the frames of a sequence, the temporal term of motion fitting;
4. keeps, per image, the start with the lowest reprojection error plus prior score;
5. with ``hypotheses``, completes the joints the keypoints say nothing about (an occluded limb)
   with the prior's completion solver, several hypotheses.

Reprojection errors are measured in pixels of the photo but weighed in pixels of a person
:data:`REFERENCE_HEIGHT_PX` tall (the seen keypoints' extent), so the weights do not depend on
the photo's resolution or how far away the person stands.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from .body import BodyModel
from .body.landmarks import KeypointRig, keypoint_rig
from .camera import Camera
from .completion import complete
from .errors import InputError
from .files import asset_path
from .keypoints import KEYPOINT_NAMES, NUM_KEYPOINTS, Keypoints, load_keypoints
from .optim import Adam
from .parts import NUM_SKELETON_JOINTS, POSE_DIM, SMPLX_PARENTS
from .pose_prior import PosePrior
from .pose_terms import DPoserTerm, GaussianTerm, GMMTerm, NoTerm, PoseTerm
from .progress import CancelFlag, Progress, ProgressFn, check_cancel, cpu_copy, should_report
from .rotations import axis_angle_to_matrix, matrix_to_axis_angle

REFERENCE_HEIGHT_PX = 1000.0
NUM_FIT_BETAS = 10
TORSO = tuple(KEYPOINT_NAMES.index(n) for n in ("left_shoulder", "right_shoulder", "left_hip", "right_hip"))
# SMPLify's bend prior: exp(sign * angle)^2 on the elbows' y and knees' x axis-angle components
# (the directions they cannot bend), as pose_body indices (SMPL-X joint j -> 3 (j - 1) + axis).
BEND_DIMS = (3 * 17 + 1, 3 * 18 + 1, 3 * 3 + 0, 3 * 4 + 0)
BEND_SIGNS = (1.0, -1.0, -1.0, -1.0)


@dataclass(frozen=True)
class Stage:
    """One stage of the body fit: ``steps`` Adam steps at these weights."""

    steps: int
    prior: float
    bend: float
    shape: float


@dataclass(frozen=True)
class FitOptions:
    """Settings of :func:`fit_keypoints`; defaults chosen on AMASS val (``benchmarks/bench_fit.py``)."""

    prior_weight: float = 1.0
    """Multiplies every stage's prior weight (0 = no prior; the viewer's slider, ``--prior-weight``)."""
    prior_scale: float = 1.0
    """The prior's own scale of the stage weights (each prior's, chosen on val: :func:`default_options`)."""
    stages: tuple[Stage, ...] = (
        Stage(40, 20.0**2, 150.0**2, 50.0**2), Stage(40, 15.0**2, 50.0**2, 20.0**2),
        Stage(40, 10.0**2, 30.0**2, 10.0**2), Stage(40, 8.0**2, 15.0**2, 5.0**2),
        Stage(40, 6.0**2, 5.0**2, 2.0**2),
    )
    """Five stages of falling weights: DPoser's bend and shape weights, a flatter prior schedule
    than its 50 -> 2 (on val, a prior that stays strong to the end copes better with noisy and
    missing keypoints), 40 steps each (DPoser's 100 are no better on val and 2.5 times slower)."""
    lr: float = 0.02
    """Adam's step (radians, metres and shape units per step)."""
    camera_steps: int = 40
    """Steps of the camera stage."""
    camera_lr: float = 0.03
    depth_weight: float = 100.0**2
    """Keeps the camera stage's depth at the similar-triangles estimate (metres^2, DPoser's)."""
    robust_sigma: float = 100.0
    """Geman-McClure scale of the last stage, in pixels of a person :data:`REFERENCE_HEIGHT_PX` tall."""
    robust_start: float = 10.0
    """The first stage's scale is this many times ``robust_sigma``, falling geometrically: a limb
    far from its keypoints is pulled in (a narrow robust term would give up on it), outliers are
    discounted at the end."""
    yaws_deg: tuple[float, ...] = (0.0, 90.0, 180.0, 270.0)
    """Starting turns of the body about the vertical (0 = facing the camera)."""
    fit_shape: bool = True
    """Fit ``NUM_FIT_BETAS`` shape coefficients (else the mean shape)."""
    temporal_weight: float = 0.0
    """Weight of the joints' squared frame-to-frame motion in a sequence, measured like the data
    term: as reference pixels at the body's depth (1 = a joint's move costs what missing its
    keypoint by that much does)."""
    keypoint_weights: dict[str, float] = field(default_factory=lambda: {"left_hip": 0.5, "right_hip": 0.5})
    """Per keypoint weights (others 1): COCO's hips are not SMPL-X's hip joints, so they count less."""
    dposer_times: tuple[float, float] = (0.7, 0.3)
    """DPoser's diffusion time, falling from the first to the second over the body stages."""
    dposer_draws: int = 4
    """Noise draws averaged in each step's one-step estimate (fewer noisy steps for Adam)."""
    dposer_antithetic: bool = True
    """Draw the noise in pairs ``z, -z`` (cancels the estimate's linear response to the noise)."""

    @property
    def body_steps(self) -> int:
        return sum(s.steps for s in self.stages)


@dataclass
class ImageFit:
    """The result of :func:`fit_keypoints` for ``N`` images (or the ``N`` frames of a sequence)."""

    pose_body: np.ndarray
    """``(N, 63)`` body poses (axis-angle)."""
    root_orient: np.ndarray
    """``(N, 3)`` root orientation in the world frame (the camera's, see :mod:`prior.camera`)."""
    trans: np.ndarray
    """``(N, 3)`` root translation, metres."""
    betas: np.ndarray
    """``(N, 10)`` shape coefficients."""
    camera: Camera
    keypoints: Keypoints
    """The keypoints fitted, with a frame axis ``(N, 23, ...)``."""
    projected: np.ndarray
    """``(N, 23, 2)`` the fit's keypoints in the image, pixels."""
    reprojection_px: np.ndarray
    """``(N, 23)`` distance of each seen keypoint to the fit's, pixels (NaN where not seen)."""
    start_yaw_deg: np.ndarray
    """``(N,)`` the start each image's fit came from."""
    hypotheses: np.ndarray | None = None
    """``(N, H, 63)`` completions of the joints with no evidence (observed joints exact), or None."""
    completed_joints: tuple[tuple[int, ...], ...] = ()
    """Per image, the SMPL-X body joints (1..21) the hypotheses complete (those no keypoint constrains)."""

    @property
    def num_images(self) -> int:
        return int(self.pose_body.shape[0])

    @property
    def mean_reprojection_px(self) -> float:
        """Mean over the seen keypoints of every image, pixels."""
        return float(np.nanmean(self.reprojection_px))

    def arrays(self) -> dict[str, np.ndarray]:
        """What ``dposer fit`` writes: the AMASS body layout, the camera and the keypoints."""
        kp = self.keypoints.frames()
        out = {
            "pose_body": self.pose_body.astype(np.float32),
            "root_orient": self.root_orient.astype(np.float32),
            "trans": self.trans.astype(np.float32),
            "betas": self.betas.astype(np.float32),
            "keypoints": np.concatenate([kp.xy, kp.conf[..., None]], -1).astype(np.float32),
            "keypoint_names": np.array(KEYPOINT_NAMES),
            "projected_keypoints": self.projected.astype(np.float32),
            "reprojection_px": self.reprojection_px.astype(np.float32),
            "start_yaw_deg": self.start_yaw_deg.astype(np.float32),
        } | self.camera.as_arrays()
        if self.hypotheses is not None:
            out["hypotheses"] = self.hypotheses.astype(np.float32)
        return out


def build_term(prior_name: str, prior: PosePrior | None, *, options: FitOptions, gmm: GMMTerm | None = None,
               gaussian: GaussianTerm | None = None, seed: int | None = None) -> PoseTerm:
    """The pose term named ``prior_name`` (``dposer`` needs ``prior``, ``gmm`` a loaded
    :class:`GMMTerm`, ``gaussian`` a :class:`GaussianTerm`)."""
    if prior_name == "dposer":
        if prior is None:
            raise ValueError("the dposer prior term needs a prior")
        return DPoserTerm(prior, t_max=options.dposer_times[0], t_min=options.dposer_times[1],
                          draws=options.dposer_draws, antithetic=options.dposer_antithetic, seed=seed)
    if prior_name == "gmm":
        if gmm is None:
            raise ValueError("the gmm prior term needs SMPLify's GMM (GMMTerm.load)")
        return gmm
    if prior_name == "gaussian":
        if gaussian is None:
            raise ValueError("the gaussian prior term needs a GaussianTerm")
        return gaussian
    if prior_name == "none":
        return NoTerm()
    raise ValueError(f"unknown prior {prior_name!r}; expected dposer, gmm, gaussian or none")


def gmof(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Geman-McClure ``sigma^2 x^2 / (sigma^2 + x^2)``, elementwise."""
    x2 = x * x
    return sigma * sigma * x2 / (sigma * sigma + x2)


def bend_prior(pose_body: torch.Tensor) -> torch.Tensor:
    """``(B,)`` SMPLify's elbow and knee bend penalty, ``sum exp(sign * angle)^2``."""
    signs = torch.tensor(BEND_SIGNS, dtype=pose_body.dtype, device=pose_body.device)
    return torch.exp(pose_body[:, list(BEND_DIMS)] * signs).pow(2).sum(-1)


def constrained_joints(seen: np.ndarray, rig: KeypointRig) -> np.ndarray:
    """``(..., 22)`` bool from ``seen (..., 23)``: SMPL-X joints whose rotation moves a seen keypoint."""
    bone = rig.bone.cpu().numpy()
    moving = rig.offset.abs().sum(-1).cpu().numpy() > 0
    depends = np.zeros((NUM_KEYPOINTS, NUM_SKELETON_JOINTS), dtype=bool)
    for k in range(NUM_KEYPOINTS):
        j = int(bone[k]) if moving[k] else SMPLX_PARENTS[int(bone[k])]
        while j >= 0:
            depends[k, j] = True
            j = SMPLX_PARENTS[j]
    return (seen[..., :, None] & depends).any(-2)


def unconstrained_joints(seen: np.ndarray, rig: KeypointRig) -> tuple[int, ...]:
    """SMPL-X body joints (1..21) that all 23 keypoints would constrain but ``seen (23,)`` does not:
    the joints of an occluded limb, which the completion solver fills."""
    full = constrained_joints(np.ones(NUM_KEYPOINTS, dtype=bool), rig)
    have = constrained_joints(np.asarray(seen, dtype=bool), rig)
    return tuple(int(j) for j in np.flatnonzero(full & ~have) if j >= 1)


def rest_keypoints(body: BodyModel, rig: KeypointRig) -> np.ndarray:
    """``(23, 3)`` the keypoints of the body at rest (zero pose, mean shape), metres."""
    with torch.no_grad():
        rot, joints = body.skeleton(torch.zeros(1, POSE_DIM, device=body.joint_template.device))
        return rig.points(rot, joints)[0].cpu().numpy()


def initial_depth(rest: np.ndarray, xy: np.ndarray, seen: np.ndarray, focal: float) -> float:
    """Depth (metres) of a body whose keypoints at rest are ``rest (23, 3)`` (:func:`rest_keypoints`)
    by similar triangles: ``focal * L_3d / L_2d`` over the torso's shoulder-hip edges (nearly
    parallel to the image in upright poses), else the torso's widths, else the seen keypoints'
    extent against the body's height."""
    ls, rs, lh, rh = TORSO
    for edges in (((ls, lh), (rs, rh)), ((ls, rs), (lh, rh))):
        l3 = [np.linalg.norm(rest[a] - rest[b]) for a, b in edges if seen[a] and seen[b]]
        l2 = [np.linalg.norm(xy[a] - xy[b]) for a, b in edges if seen[a] and seen[b]]
        if l3 and sum(l2) > 1.0:
            return float(focal * sum(l3) / sum(l2))
    pts = xy[seen]
    extent = float(np.ptp(pts[:, 1])) if len(pts) > 1 else 0.0
    height = float(np.ptp(rest[:, 1]))
    return float(focal * height / extent) if extent > 1.0 else 5.0


def fit_keypoints(
    prior: PosePrior | None,
    body: BodyModel,
    keypoints: Keypoints,
    camera: Camera,
    term: PoseTerm,
    *,
    options: FitOptions = FitOptions(),
    hypotheses: int = 0,
    init_pose: np.ndarray | None = None,
    seed: int | None = None,
    callback: ProgressFn | None = None,
    callback_every: int = 5,
    cancel: CancelFlag | None = None,
) -> ImageFit:
    """Fit the body to the 2D ``keypoints`` of one person in one image or in each frame of a
    sequence (a leading frame axis; with ``options.temporal_weight`` the frames are tied), seen by
    ``camera``; see the module docstring for the method.

    Args:
        prior: the pose prior; its space must be the body's (needed for ``hypotheses``; its mean
            pose starts the fit). None: start from zero pose, no hypotheses.
        body: the body model fitted (its first 22 joints; :func:`prior.body.landmarks.keypoint_rig`).
        keypoints: ``(23, 2)`` / ``(T, 23, 2)`` pixels with confidences (0 = not seen).
        camera: the photo's camera.
        term: the pose prior term (:func:`build_term`).
        hypotheses: with ``H > 0``, ``H`` completions of the joints no keypoint constrains.
        init_pose: ``(63,)`` or ``(N, 63)`` body pose(s) to start from (default the prior's mean).
        callback: ``Progress("fit", ...)`` with the current best ``(N, 63)`` poses and ``extra``
            ``root_orient``, ``trans``, ``betas`` ``(N, ...)`` every ``callback_every`` steps.
        cancel: ``is_set()`` -> :class:`prior.errors.Cancelled` at the next step.

    Raises:
        ValueError: too few seen keypoints to place a body (fewer than 4 in an image, or no torso).
    """
    kp = keypoints.frames()
    n = kp.num_frames
    seen = kp.conf > 0
    placeable = seen.sum(1) >= 4
    sequence = options.temporal_weight > 0 and n > 1
    # A sequence may have frames that see too little (the temporal term carries them); an image may not.
    if not placeable.any() or (not placeable.all() and not sequence):
        bad = int(np.flatnonzero(~placeable)[0])
        raise ValueError(f"frame {bad} has {int(seen[bad].sum())} seen keypoints; a fit needs at least 4")
    device = body.joint_template.device
    dtype = body.joint_template.dtype
    rig = keypoint_rig(body)
    yaws = np.asarray(options.yaws_deg, dtype=np.float64)
    k = len(yaws)
    rows = n * k

    # Per-keypoint weights (confidence^2 as SMPLify, times the keypoint's own weight) and the
    # scale that turns pixels into pixels of a reference-sized person.
    kw = np.array([options.keypoint_weights.get(name, 1.0) for name in KEYPOINT_NAMES])
    weight = torch.as_tensor(kp.conf.astype(np.float64) ** 2 * kw, dtype=dtype, device=device)
    target = torch.as_tensor(kp.xy, dtype=dtype, device=device)
    extent = np.array([_extent(kp.xy[i], seen[i]) for i in range(n)])
    extent[~placeable] = np.median(extent[placeable])  # frames that see too little: the others' size
    scale = torch.as_tensor(REFERENCE_HEIGHT_PX / np.maximum(extent, 1.0), dtype=dtype, device=device)

    def per_row(x: torch.Tensor) -> torch.Tensor:  # (N, ...) -> (N * K, ...): image-major
        return x.repeat_interleave(k, 0)

    weight_r, target_r, scale_r = per_row(weight), per_row(target), per_row(scale)
    mean_pose = (prior.mean.to(device, dtype) if prior is not None else torch.zeros(POSE_DIM, device=device))
    if init_pose is not None:
        mean_pose = torch.as_tensor(np.asarray(init_pose, dtype=np.float32), device=device, dtype=dtype)
        mean_pose = mean_pose.expand(n, POSE_DIM).repeat_interleave(k, 0)
    pose = mean_pose.expand(rows, POSE_DIM).clone()
    betas = torch.zeros(rows, NUM_FIT_BETAS, device=device, dtype=dtype)
    rest_pelvis = body.rest_joints()[0].to(dtype)

    # 1. Starts: depth by similar triangles, the pelvis on the ray through the hips' (or torso's) centre.
    root, trans = _starts(body, rig, kp, seen, camera, yaws, rest_pelvis, device, dtype)

    def project(pose_: torch.Tensor, root_: torch.Tensor, trans_: torch.Tensor, betas_: torch.Tensor | None):
        rot, joints = body.skeleton(pose_, global_orient=root_, transl=trans_, betas=betas_)
        points = rig.points(rot, joints)
        return camera.project(points), joints

    def data_loss(px: torch.Tensor, sigma: float) -> torch.Tensor:
        """(rows,) robust weighted reprojection loss in reference pixels."""
        err = (px - target_r) * scale_r[:, None, None]
        return (weight_r * gmof(err, sigma).sum(-1)).sum(-1)

    total_steps = options.camera_steps + options.body_steps
    done = 0

    def report(t: float, pose_: torch.Tensor, root_: torch.Tensor, trans_: torch.Tensor, betas_: torch.Tensor,
               loss: torch.Tensor) -> None:
        if callback is None or not should_report(done, total_steps, callback_every):
            return
        best = loss.detach().reshape(n, k).argmin(1) + torch.arange(n, device=device) * k
        extra = {"root_orient": cpu_copy(root_[best]), "trans": cpu_copy(trans_[best]),
                 "betas": cpu_copy(betas_[best]), "stage": "camera" if done <= options.camera_steps else "body"}
        callback(Progress("fit", done, total_steps, t, cpu_copy(pose_[best]), extra))

    # 2. Camera stage: root and translation on the torso keypoints, depth held near its estimate.
    torso = torch.zeros(NUM_KEYPOINTS, dtype=dtype, device=device)
    torso[list(TORSO)] = 1.0
    depth0 = camera.to_camera(trans + rest_pelvis)[:, 2].detach()
    cam_params = torch.cat([root, trans], 1)
    adam = Adam(options.camera_lr)
    for _ in range(options.camera_steps):
        check_cancel(cancel)
        var = cam_params.detach().requires_grad_(True)
        px, _ = project(pose, var[:, :3], var[:, 3:], None)
        err = (px - target_r) * scale_r[:, None, None]
        loss = (weight_r * torso * err.pow(2).sum(-1)).sum(-1)
        depth = camera.to_camera(var[:, 3:] + rest_pelvis)[:, 2]
        loss = loss + options.depth_weight * (depth - depth0).pow(2) * scale_r / REFERENCE_HEIGHT_PX
        (grad,) = torch.autograd.grad(loss.sum(), var)
        cam_params = adam.step(cam_params, grad)
        done += 1
        report(0.0, pose, cam_params[:, :3], cam_params[:, 3:], betas, loss)
    root, trans = cam_params[:, :3].detach(), cam_params[:, 3:].detach()
    # Reference pixels per metre at each row's depth: the temporal term's metres in the data term's units.
    px_per_m = camera.focal * scale_r / depth0.clamp_min(0.1)

    # 3. Body stages: pose, shape, root and translation.
    params = torch.cat([pose, root, trans, betas], 1)
    adam = Adam(options.lr)
    step = 0
    body_total = options.body_steps
    stages = len(options.stages)
    for s_index, stage in enumerate(options.stages):
        sigma = options.robust_sigma * options.robust_start ** (1 - s_index / max(stages - 1, 1))
        for _ in range(stage.steps):
            check_cancel(cancel)
            var = params.detach().requires_grad_(True)
            pose_v, root_v, trans_v, betas_v = _split(var)
            px, joints = project(pose_v, root_v, trans_v, betas_v if options.fit_shape else None)
            loss = data_loss(px, sigma) + stage.bend * bend_prior(pose_v) + stage.shape * betas_v.pow(2).sum(-1)
            total = loss.sum()
            if sequence:
                j = joints.reshape(n, k, NUM_SKELETON_JOINTS, 3)
                motion = (j[1:] - j[:-1]).pow(2).sum(-1).sum(-1)  # (N-1, K)
                total = total + options.temporal_weight * (motion * px_per_m.reshape(n, k)[1:] ** 2).sum()
            (grad,) = torch.autograd.grad(total, var)
            if not options.fit_shape:
                grad[:, POSE_DIM + 6 :] = 0
            elif sequence:  # one body: every frame of a start shares its shape
                shape_grad = grad[:, POSE_DIM + 6 :].reshape(n, k, -1).mean(0, keepdim=True)
                grad[:, POSE_DIM + 6 :] = shape_grad.expand(n, k, -1).reshape(rows, -1)
            with torch.no_grad():
                prior_w = stage.prior * options.prior_scale * options.prior_weight
                if prior_w > 0:
                    grad[:, :POSE_DIM] += prior_w * term.gradient(params[:, :POSE_DIM], step, body_total)
                params = adam.step(params, grad)
            step += 1
            done += 1
            report(term.time(step - 1, body_total), *_split(params), loss)

    # 4. Keep, per image, the start with the lowest reprojection plus prior score.
    with torch.no_grad():
        pose, root, trans, betas = _split(params)
        px, _ = project(pose, root, trans, betas if options.fit_shape else None)
        last = options.stages[-1]
        prior_w = last.prior * options.prior_scale * options.prior_weight
        score = data_loss(px, options.robust_sigma) + prior_w * term.energy(pose) + last.bend * bend_prior(pose)
        score = score.reshape(n, k)
        if sequence:  # one start for the whole sequence: the frames are tied
            choice = torch.full((n,), int(score.sum(0).argmin()), device=device)
        else:
            choice = score.argmin(1)
        best = choice + torch.arange(n, device=device) * k
        pose, root, trans, betas, px = pose[best], root[best], trans[best], betas[best], px[best]

    err = np.linalg.norm(px.cpu().numpy() - kp.xy, axis=-1)
    fit = ImageFit(
        pose_body=pose.cpu().numpy(), root_orient=root.cpu().numpy(), trans=trans.cpu().numpy(),
        betas=betas.cpu().numpy(), camera=camera, keypoints=kp, projected=px.cpu().numpy(),
        reprojection_px=np.where(seen, err, np.nan), start_yaw_deg=yaws[choice.cpu().numpy()],
    )
    if hypotheses > 0 and prior is not None:
        fit = complete_unseen(prior, fit, rig, hypotheses=hypotheses, seed=seed, cancel=cancel)
    return fit


@dataclass(frozen=True, eq=False)
class PhotoObservation:
    """What a photo fit is fitted to: one person's keypoints (from a file or the detector) and the
    camera, with the photo when there is one."""

    keypoints: Keypoints
    """``(23, ...)`` for a photo, ``(T, 23, ...)`` for a sequence."""
    camera: Camera
    image: np.ndarray | None = None
    """``(H, W, 3)`` uint8 RGB photo (the first frame's for a sequence), or None."""
    detected: bool = False
    """Whether the keypoints came from the BlazePose detector (else from a keypoint file)."""


def observe_photo(
    image: str | Path | np.ndarray | None = None,
    keypoints: str | Path | Keypoints | None = None,
    *,
    person: int | None = None,
    focal: float | None = None,
    fov_deg: float | None = None,
    image_size: tuple[int, int] | None = None,
    source: str | None = None,
) -> PhotoObservation:
    """The keypoints and camera of a photo: ``keypoints`` (a file any :func:`prior.keypoints.load_keypoints`
    format, or points) when given, else the BlazePose detector on ``image`` (a path or an
    ``(H, W, 3)`` uint8 array). The camera is the default of a photo the image's size (or the
    keypoint file's, or ``image_size``), with ``focal`` pixels or a ``fov_deg`` horizontal view if given.

    Raises:
        InputError: an unreadable photo or keypoint file, no person in the photo, no image size.
    """
    from .detect import detect_keypoints, load_image

    if image is None and keypoints is None:
        raise InputError("give a photo or a keypoint file")
    photo = None
    if image is not None:
        photo = load_image(image) if not isinstance(image, np.ndarray) else image
        source = source or (str(image) if not isinstance(image, np.ndarray) else None)
    size = (int(photo.shape[1]), int(photo.shape[0])) if photo is not None else image_size
    if keypoints is None:
        assert photo is not None
        kp = detect_keypoints(photo, source=source)
        detected = True
    else:
        kp = keypoints if isinstance(keypoints, Keypoints) else load_keypoints(keypoints, person=person,
                                                                                 image_size=size)
        detected = False
    size = size or kp.image_size
    if size is None:
        raise InputError("the keypoint file gives no image size; pass the photo or the image size", kp.source)
    seen_per_frame = (kp.frames().conf > 0).sum(-1)
    if (seen_per_frame < 4).all():
        raise InputError("fewer than 4 keypoints are seen; a body cannot be placed from them", kp.source or source)
    camera = Camera.for_image(size[0], size[1], focal=focal, fov_deg=fov_deg)
    return PhotoObservation(keypoints=kp, camera=camera, image=photo, detected=detected)


def fit_photo(
    prior: PosePrior,
    body: BodyModel,
    observation: PhotoObservation,
    *,
    prior_name: str = "dposer",
    gmm: GMMTerm | None = None,
    prior_weight: float = 1.0,
    options: FitOptions | None = None,
    hypotheses: int = 0,
    seed: int | None = None,
    callback: ProgressFn | None = None,
    callback_every: int = 5,
    cancel: CancelFlag | None = None,
) -> ImageFit:
    """Fit the body to a photo's observation (:func:`observe_photo`) with the named pose prior:
    the task ``dposer fit`` and the viewer's Fit panel run. ``gmm`` is SMPLify's mixture for
    ``prior_name="gmm"``; ``"gaussian"`` uses the shipped Gaussian of AMASS train poses; options
    default to the prior's own tuned settings (:func:`default_options`) with its weight scaled by
    ``prior_weight``. Sequences are tied by the temporal term."""
    if options is None:
        options = replace(default_options(prior_name, sequence=observation.keypoints.conf.ndim == 2),
                          prior_weight=prior_weight)
    gaussian = shipped_gaussian(prior.device) if prior_name == "gaussian" else None
    term = build_term(prior_name, prior, options=options, gmm=gmm, gaussian=gaussian, seed=seed)
    return fit_keypoints(prior, body, observation.keypoints, observation.camera, term, options=options,
                         hypotheses=hypotheses, seed=seed, callback=callback, callback_every=callback_every,
                         cancel=cancel)


GAUSSIAN_ASSET = "pose_gaussian.npz"

# Each prior's weights and times, chosen on AMASS val poses 400..499 (benchmarks/bench_fit.py).
# Condition A of the benchmark (noisy, dropped and occluded keypoints); a sweep of 3, 10, 30, 100.
_TUNED: dict[str, dict] = {"dposer": {"prior_scale": 30.0}, "gmm": {"prior_scale": 10.0},
                           "gaussian": {"prior_scale": 30.0}, "none": {"prior_scale": 0.0}}
SEQUENCE_TEMPORAL_WEIGHT = 1.0  # gesture clip, 5 px noise: PA-MPJPE 24.9 -> 17.6 mm, jitter 158 -> 7 mm/frame^2


def default_options(prior_name: str, *, sequence: bool = False) -> FitOptions:
    """The fit settings chosen for the prior ``prior_name`` (and for sequences, the temporal term)."""
    if prior_name not in _TUNED:
        raise ValueError(f"unknown prior {prior_name!r}; expected dposer, gmm, gaussian or none")
    options = FitOptions(**_TUNED[prior_name])
    return replace(options, temporal_weight=SEQUENCE_TEMPORAL_WEIGHT) if sequence else options


def shipped_gaussian(device: torch.device | str = "cpu") -> GaussianTerm:
    """The full-covariance Gaussian of AMASS train body poses (``assets/pose_gaussian.npz``)."""
    with np.load(asset_path(GAUSSIAN_ASSET), allow_pickle=False) as f:
        return GaussianTerm(f["mean"], f["cov"], device=device)


def complete_unseen(prior: PosePrior, fit: ImageFit, rig: KeypointRig, *, hypotheses: int,
                    seed: int | None = None, cancel: CancelFlag | None = None) -> ImageFit:
    """``fit`` with ``hypotheses`` completions per image of the joints no seen keypoint constrains
    (hypothesis 0 is the fit itself where nothing is missing)."""
    seen = fit.keypoints.frames().conf > 0
    missing = [unconstrained_joints(seen[i], rig) for i in range(fit.num_images)]
    mask = torch.zeros(fit.num_images, POSE_DIM, dtype=torch.bool)
    for i, joints in enumerate(missing):
        for j in joints:
            mask[i, 3 * (j - 1) : 3 * j] = True
    pose = torch.from_numpy(fit.pose_body.astype(np.float32))
    out = np.repeat(fit.pose_body[:, None], hypotheses, 1).astype(np.float32)
    rows = np.flatnonzero(mask.any(1).numpy())
    if len(rows):
        res = complete(prior, pose[rows], mask[rows], hypotheses=hypotheses, seed=seed, cancel=cancel)
        out[rows] = res.pose_body.numpy()
    return replace(fit, hypotheses=out, completed_joints=tuple(missing))


def _split(params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Body-stage rows ``(B, 63 + 3 + 3 + NB)`` -> pose, root, translation, shape."""
    return (params[:, :POSE_DIM], params[:, POSE_DIM : POSE_DIM + 3], params[:, POSE_DIM + 3 : POSE_DIM + 6],
            params[:, POSE_DIM + 6 :])


def _extent(xy: np.ndarray, seen: np.ndarray) -> float:
    """The seen keypoints' extent (the larger of width and height), pixels."""
    pts = xy[seen]
    return float(max(np.ptp(pts[:, 0]), np.ptp(pts[:, 1]))) if len(pts) > 1 else 1.0


def _starts(body: BodyModel, rig: KeypointRig, kp: Keypoints, seen: np.ndarray, camera: Camera,
            yaws: np.ndarray, rest_pelvis: torch.Tensor, device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Root ``(N K, 3)`` and translation ``(N K, 3)`` of every start (image-major)."""
    cam_r = torch.as_tensor(camera.rotation, dtype=dtype, device=device)
    cam_t = torch.as_tensor(camera.translation, dtype=dtype, device=device)
    cx, cy = camera.center
    rest = rest_keypoints(body, rig)
    # Turns about the world's vertical, which is the camera's -y for the default camera.
    up = -cam_r[1]
    turns = [matrix_to_axis_angle(_rotation_about(up, math.radians(float(yaw)))[None])[0] for yaw in yaws]
    roots, transl = [], []
    placeable = np.flatnonzero(seen.sum(1) >= 4)
    for frame in range(kp.num_frames):
        i = int(placeable[np.abs(placeable - frame).argmin()])  # frames that see too little start as the nearest
        depth = initial_depth(rest, kp.xy[i], seen[i], camera.focal)
        hips = [KEYPOINT_NAMES.index("left_hip"), KEYPOINT_NAMES.index("right_hip")]
        centre_of = [h for h in hips if seen[i, h]] or [t for t in TORSO if seen[i, t]] or list(np.flatnonzero(seen[i]))
        u, v = kp.xy[i, centre_of].mean(0)
        ray = torch.tensor([(u - cx) / camera.focal, (v - cy) / camera.focal, 1.0], dtype=dtype, device=device)
        pelvis_world = cam_r.T @ (depth * ray - cam_t)
        roots += turns
        transl += [pelvis_world - rest_pelvis] * len(turns)
    return torch.stack(roots), torch.stack(transl)


def _rotation_about(axis: torch.Tensor, angle: float) -> torch.Tensor:
    axis = axis / axis.norm()
    return axis_angle_to_matrix((axis * angle)[None])[0]


__all__ = [
    "FitOptions", "ImageFit", "PhotoObservation", "Stage", "build_term", "complete_unseen", "constrained_joints",
    "default_options", "fit_keypoints", "fit_photo", "gmof", "observe_photo", "shipped_gaussian",
    "unconstrained_joints",
]
