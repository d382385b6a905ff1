"""Fitting a body to 2D keypoints (``dposer fit``): accuracy of each pose prior, and speed.

    python benchmarks/bench_fit.py [--poses 400] [--conditions A B C D] [--priors dposer gmm gaussian none]

Protocol (issue 11): AMASS val poses (``shared/data/amass_body_poses.npz``; poses 0..399 measured,
400..499 kept for tuning), each seen by a 1000x1000 camera with f = sqrt(2) * 1000 px, the body
turned by a random yaw in 0..360 deg and pitch in -15..15 deg, its pelvis 3..6 m away; the 23
keypoints of the mannequin projected. Conditions:

- A: 1% (of the image size: 10 px) Gaussian keypoint noise, 10% of keypoints dropped, a whole limb
  occluded in 30% of images;
- B: clean keypoints;
- C: one limb always occluded (the error on that limb's joints is reported too);
- D: as A, but the fitter's focal length 25% too long.

Reports MPJPE (pelvis-aligned) and PA-MPJPE (Procrustes-aligned) over the 22 SMPL-X joints (mm:
mean, median, 90th percentile), front/back flips (the fit's facing direction more than 90 deg from
the truth's), and time per image, for each prior. With ``--hypotheses 10`` also the best of 10
completion hypotheses on the occluded limb.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import tyro

from prior import load_body_model, load_prior
from prior.body.landmarks import keypoint_rig
from prior.camera import Camera
from prior.image_fit import build_term, default_options, fit_keypoints
from prior.keypoints import KEYPOINT_NAMES, Keypoints
from prior.metrics import mpjpe_mm, pa_mpjpe_mm
from prior.pose_terms import GaussianTerm, GMMTerm
from prior.rotations import axis_angle_to_matrix, matrix_to_axis_angle

SHARED = Path(__file__).resolve().parents[2] / "shared"
SIZE = 1000
# Limbs that can be hidden: their keypoints, and the SMPL-X joints whose error is reported.
LIMBS = {
    "left_arm": (("left_elbow", "left_wrist"), (18, 20)),
    "right_arm": (("right_elbow", "right_wrist"), (19, 21)),
    "left_leg": (("left_knee", "left_ankle", "left_big_toe", "left_small_toe", "left_heel"), (4, 7, 10)),
    "right_leg": (("right_knee", "right_ankle", "right_big_toe", "right_small_toe", "right_heel"), (5, 8, 11)),
}


@dataclass(frozen=True)
class Condition:
    noise_px: float = 0.0
    drop: float = 0.0
    occlude: float = 0.0
    """Chance that a whole limb is hidden."""
    focal_error: float = 0.0
    """The fitter's focal length is (1 + focal_error) times the true one."""


CONDITIONS = {
    "A": Condition(noise_px=0.01 * SIZE, drop=0.1, occlude=0.3),
    "B": Condition(),
    "C": Condition(occlude=1.0),
    "D": Condition(noise_px=0.01 * SIZE, drop=0.1, occlude=0.3, focal_error=0.25),
}


@dataclass
class Views:
    """Synthetic photos' keypoints with their truth."""

    keypoints: Keypoints
    camera: Camera
    """The fitter's camera (condition D: wrong focal)."""
    gt_joints: np.ndarray
    """(N, 22, 3) world joints of the truth."""
    gt_root: np.ndarray
    occluded: list[str | None]


def make_views(body, poses: np.ndarray, condition: Condition, seed: int) -> Views:
    """The truth posed, turned and placed at random, its keypoints projected and corrupted."""
    rng = np.random.default_rng(seed)
    n = len(poses)
    camera = Camera.for_image(SIZE, SIZE)
    rig = keypoint_rig(body)
    yaw = rng.uniform(0, 2 * math.pi, n)
    pitch = rng.uniform(-math.radians(15), math.radians(15), n)
    depth = rng.uniform(3.0, 6.0, n)
    ry = axis_angle_to_matrix(torch.tensor(np.stack([0 * yaw, yaw, 0 * yaw], 1)))
    rx = axis_angle_to_matrix(torch.tensor(np.stack([pitch, 0 * pitch, 0 * pitch], 1)))
    root = matrix_to_axis_angle(rx @ ry).float()
    pose = torch.as_tensor(poses, dtype=torch.float32)
    rest_pelvis = body.rest_joints()[0]
    with torch.no_grad():
        rot, joints = body.skeleton(pose, global_orient=root)
        # Centre the body's bounding box on the optical axis at the pelvis's depth, plus a little offset.
        centre = 0.5 * (joints.amax(1) + joints.amin(1))
        offset = torch.tensor(rng.uniform(-0.15, 0.15, (n, 2)), dtype=torch.float32)
        target = torch.stack([offset[:, 0], offset[:, 1], -torch.tensor(depth, dtype=torch.float32)], 1)
        trans = target - centre + (centre - joints[:, 0]) * torch.tensor([0.0, 0.0, 1.0])
        trans = target - centre
        rot, joints = body.skeleton(pose, global_orient=root, transl=trans)
        px = camera.project(rig.points(rot, joints)).numpy()
    del rest_pelvis
    conf = np.ones((n, len(KEYPOINT_NAMES)), np.float32)
    xy = px + rng.normal(0, condition.noise_px, px.shape) if condition.noise_px else px.copy()
    conf[rng.random(conf.shape) < condition.drop] = 0
    occluded: list[str | None] = []
    names = list(LIMBS)
    for i in range(n):
        limb = None
        if rng.random() < condition.occlude:
            limb = names[rng.integers(len(names))]
            conf[i, [KEYPOINT_NAMES.index(k) for k in LIMBS[limb][0]]] = 0
        occluded.append(limb)
    outside = (xy < 0).any(-1) | (xy >= SIZE).any(-1)
    conf[outside] = 0
    xy[conf == 0] = 0
    fit_camera = Camera.for_image(SIZE, SIZE, focal=camera.focal * (1 + condition.focal_error))
    return Views(Keypoints(xy.astype(np.float32), conf, (SIZE, SIZE), "synthetic"), fit_camera,
                 joints.numpy(), root.numpy(), occluded)


def facing(root: np.ndarray) -> np.ndarray:
    """(N, 2) the body's forward direction (its +Z) projected on the ground plane (x, z)."""
    fwd = axis_angle_to_matrix(torch.as_tensor(root, dtype=torch.float64)).numpy()[:, :, 2]
    return fwd[:, [0, 2]] / np.maximum(np.linalg.norm(fwd[:, [0, 2]], axis=1, keepdims=True), 1e-9)


@dataclass
class Args:
    poses: int = 400
    first: int = 0
    """First val pose (400 = the tuning poses)."""
    conditions: list[str] = field(default_factory=lambda: ["A", "B", "C", "D"])
    priors: list[str] = field(default_factory=lambda: ["dposer", "gmm", "gaussian", "none"])
    ckpt: Path | None = None
    hypotheses: int = 0
    seed: int = 0
    batch: int = 100
    """Images fitted together."""
    threads: int = 2
    prior_weight: dict[str, float] = field(default_factory=dict)
    """Per prior multiplier of the stage weights (tuning)."""
    renders: int = 0
    """Instead: the closed loop on this many rendered photos of the mannequin (photo -> BlazePose ->
    fit, one photo at a time, as ``dposer fit --image`` runs), with the shipped prior."""


def _stats(x: np.ndarray) -> str:
    return f"{np.mean(x):.1f} / {np.median(x):.1f} / {np.percentile(x, 90):.1f}"


def main(args: Args) -> None:
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    prior = load_prior(args.ckpt) if args.ckpt else load_prior()
    body = load_body_model()
    data = np.load(SHARED / "data" / "amass_body_poses.npz")
    val = data["val"][args.first : args.first + args.poses].astype(np.float32)
    if args.renders:
        closed_loop(prior, body, val[: args.renders], args.seed)
        return
    gmm = GMMTerm.load(SHARED / "data" / "smplify_gmm_08.npz")
    gaussian = GaussianTerm.fit(data["train"])
    print("| cond | prior | MPJPE mean/med/p90 | PA-MPJPE mean/med/p90 | flips | occluded limb PA (single / best-of-H) "
          "| s/image |")
    print("|---|---|---|---|---|---|---|")
    for cond_name in args.conditions:
        views = make_views(body, val, CONDITIONS[cond_name], seed=args.seed + ord(cond_name))
        for name in args.priors:
            options = dataclasses.replace(default_options(name), prior_weight=args.prior_weight.get(name, 1.0))
            fits, start = [], time.perf_counter()
            for b in range(0, len(val), args.batch):
                sl = slice(b, b + args.batch)
                kp = Keypoints(views.keypoints.xy[sl], views.keypoints.conf[sl], (SIZE, SIZE))
                term = build_term(name, prior, options=options, gmm=gmm, gaussian=gaussian, seed=args.seed)
                fits.append(fit_keypoints(prior, body, kp, views.camera, term, options=options,
                                          hypotheses=args.hypotheses, seed=args.seed))
            seconds = (time.perf_counter() - start) / len(val)
            pose = np.concatenate([f.pose_body for f in fits])
            root = np.concatenate([f.root_orient for f in fits])
            trans = np.concatenate([f.trans for f in fits])
            betas = np.concatenate([f.betas for f in fits])
            with torch.no_grad():
                joints = body.skeleton_joints(torch.from_numpy(pose), global_orient=torch.from_numpy(root),
                                              transl=torch.from_numpy(trans), betas=torch.from_numpy(betas)).numpy()
            gt = views.gt_joints
            mp = mpjpe_mm(joints - joints[:, :1], gt - gt[:, :1])
            pa = pa_mpjpe_mm(joints, gt)
            flips = (facing(root) * facing(views.gt_root)).sum(1) < 0
            limb = "-"
            occ = [i for i, o in enumerate(views.occluded) if o]
            if occ:
                single = [_limb_error(joints[i], gt[i], views.occluded[i]) for i in occ]
                limb = f"{np.mean(single):.1f}"
                if args.hypotheses:
                    hyp = np.concatenate([f.hypotheses for f in fits])
                    best = [_best_hypothesis(body, hyp[i], root[i], trans[i], betas[i], gt[i], views.occluded[i])
                            for i in occ]
                    limb += f" / {np.mean(best):.1f}"
            row = f"| {cond_name} | {name} | {_stats(mp)} | {_stats(pa)} | {flips.mean():.1%} | {limb} | {seconds:.3f}"
            print(row + " |", flush=True)


def closed_loop(prior, body, poses: np.ndarray, seed: int) -> None:
    """Photos of the dressed mannequin (``tests/photo_render.py``) at the protocol's random views,
    through the detector and the fit, one at a time; against the synthetic condition A on the same poses."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    import photo_render

    from prior.detect import detect_keypoints
    from prior.image_fit import PhotoObservation, fit_photo
    from prior.progress import Progress

    def tensor(x):
        return None if x is None else torch.as_tensor(np.asarray(x, np.float32))

    def joints_of(pose_body, root_orient, transl, betas=None):
        with torch.no_grad():
            return body.skeleton_joints(tensor(pose_body), global_orient=tensor(root_orient), transl=tensor(transl),
                                        betas=tensor(betas)).numpy()

    rng = np.random.default_rng(seed)
    pa, detect_s, fit_s, first_s, found = [], [], [], [], 0
    for pose in poses:
        camera, root, trans = photo_render.random_view(rng, body=body, pose_body=pose)
        image = photo_render.photo(body, pose, camera=camera, root_orient=root, trans=trans)
        start = time.perf_counter()
        try:
            kp = detect_keypoints(image)
        except Exception:  # no person found
            continue
        found += 1
        detect_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        first: list[float] = []

        def on_progress(p: Progress, first=first, start=start) -> None:
            if not first:
                first.append(time.perf_counter() - start)

        fit = fit_photo(prior, body, PhotoObservation(kp, camera), seed=seed, callback=on_progress)
        fit_s.append(time.perf_counter() - start)
        first_s.append(first[0])
        joints = joints_of(fit.pose_body, fit.root_orient, fit.trans, fit.betas)
        truth = joints_of(pose[None], np.reshape(root, (1, 3)), np.reshape(trans, (1, 3)))
        pa.append(float(pa_mpjpe_mm(joints, truth)[0]))
    pa_a = np.asarray(pa)
    print("| photos | person found | PA-MPJPE mean/med/p90 | detector s | fit s | detector + fit s | first update ms |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {len(poses)} | {found} | {_stats(pa_a)} | {np.median(detect_s):.2f} | {np.median(fit_s):.2f} | "
          f"{np.median(np.add(detect_s, fit_s)):.2f} | {1000 * np.median(first_s):.0f} |")


def _limb_error(joints: np.ndarray, gt: np.ndarray, limb: str) -> float:
    """PA-aligned (whole body) error of the limb's joints, mm."""
    from prior.metrics import procrustes_align

    aligned = procrustes_align(joints, gt)
    idx = list(LIMBS[limb][1])
    return float(1000 * np.linalg.norm(aligned[idx] - gt[idx], axis=-1).mean())


def _best_hypothesis(body, hyp, root, trans, betas, gt, limb) -> float:
    with torch.no_grad():
        h = torch.from_numpy(hyp)
        joints = body.skeleton_joints(h, global_orient=torch.from_numpy(root).expand(len(h), 3),
                                      transl=torch.from_numpy(trans).expand(len(h), 3),
                                      betas=torch.from_numpy(betas).expand(len(h), -1)).numpy()
    return min(_limb_error(j, gt, limb) for j in joints)


if __name__ == "__main__":
    main(tyro.cli(Args))
