"""Task quality and speed: motion denoising, prior-guided IK, plausibility score.

    python benchmarks/bench_tasks.py [--ckpt PATH] [--device auto] [--threads 1]

Default checkpoint: the shipped default prior. Prints a markdown table with each task's target:

- denoising ``shared/data/gesture_clip.npz`` (240 frames, root known, no translation) with 0.04 m of
  joint noise: output MPJPE at most half the input's (also: the left arm unobserved, with and
  without the prior term; and observed joints with gaps and an unknown root, as ``dposer denoise
  --joints`` fits them);
- IK: one warm-started solve for one dragged joint within 150 ms;
- plausibility: AUC >= 0.95 between AMASS val poses (not in the shipped calibration set) and the same
  poses with 0.3 rad of noise on every dim; single-pose scoring time.

``--threads 1`` by default: these solvers run small batches, and on a shared 2-core machine a second
OpenMP thread mostly waits on the other jobs (measured 10x slower under load).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import tyro

from prior import load_body_model, load_prior
from prior.data import load_clip
from prior.files import asset_path
from prior.ik import inverse_kinematics
from prior.metrics import mpjpe_mm
from prior.motion import DenoiseOptions, add_joint_noise, denoise_motion
from prior.motion_fit import fit_motion, observe_motion
from prior.plausibility import (
    CALIBRATION_ASSET,
    calibrate,
    label_for,
    plausibility,
    prior_energy,
)
from prior.rotations import axis_angle_to_matrix, matrix_to_axis_angle

SHARED = Path(__file__).resolve().parents[2] / "shared"
LEFT_ARM = (13, 16, 18, 20)  # SMPL-X left collar, shoulder, elbow, wrist
R_WRIST = 21


@dataclass
class Args:
    ckpt: Path | None = None
    """Checkpoint (default: the shipped prior)."""
    device: str = "cpu"
    threads: int = 1
    """torch CPU threads (see the module docstring)."""
    noise_std: float = 0.04
    seed: int = 0
    ik_poses: int = 10
    """Val poses dragged (10 warm-started solves each) for the IK timing."""
    skip_partial: bool = False
    """Skip the two partial-observation denoising rows (they take most of the time)."""


Row = tuple[str, str, str, str]


def bench_denoise(prior, body, args: Args) -> list[Row]:
    clip = load_clip(SHARED / "data" / "gesture_clip.npz")
    t0 = time.perf_counter()
    # As `dposer denoise --clip` runs it: the noise from seed, the solver's draws from seed + 1.
    obs = observe_motion(body, clip, noise_std_m=args.noise_std, seed=args.seed)
    metrics = fit_motion(prior, body, clip, obs, seed=args.seed + 1).metrics
    seconds = time.perf_counter() - t0
    mpjpe_in, mpjpe_out = metrics["mpjpe_in_mm"], metrics["mpjpe_out_mm"]
    ratio = mpjpe_out / mpjpe_in
    rows: list[Row] = [
        ("denoise gesture (240 f, all 22 joints)", "MPJPE in -> out (mm)",
         f"{mpjpe_in:.1f} -> {mpjpe_out:.1f} (x{ratio:.2f})", f"x<=0.50 {'ok' if ratio <= 0.5 else 'MISSED'}"),
        ("denoise gesture (240 f, all 22 joints)", "time (s)", f"{seconds:.1f}", "report"),
    ]
    if not args.skip_partial:
        observed = [j for j in range(22) if j not in LEFT_ARM]
        arm_joints = list(LEFT_ARM)
        for weight in (DenoiseOptions().prior_weight, 0.0):
            out = fit_motion(prior, body, clip, obs, observed=observed, seed=args.seed + 1,
                             options=DenoiseOptions(prior_weight=weight))
            arm = float(mpjpe_mm(out.joints[:, arm_joints], obs.gt_joints[:, arm_joints]).mean())
            rows.append((f"denoise, left arm unobserved, prior weight {weight:g}", "MPJPE all / unseen arm (mm)",
                         f"{out.metrics['mpjpe_out_mm']:.1f} / {arm:.1f}", "report"))
        rows += bench_observed_joints(prior, body, clip, args)
    return rows


def bench_observed_joints(prior, body, clip, args: Args) -> list[Row]:
    """Observed joints with the root unknown (the clip turned to face away, walking a line), 10% of
    the entries missing at random and the left elbow and wrist occluded for 1 s: the fit from a
    Kabsch start of the root, against a start at zero rotation."""
    turn = axis_angle_to_matrix(torch.tensor([0.0, 2.5, 0.0]))
    root = matrix_to_axis_angle(turn @ axis_angle_to_matrix(torch.from_numpy(clip.root_orient)))
    path = torch.from_numpy(np.linspace([0.0, 0.9, 0.0], [1.5, 0.9, 0.6], clip.num_frames)).float()
    gt = body.skeleton_joints(torch.from_numpy(clip.pose_body), global_orient=root, transl=path)
    noisy = add_joint_noise(gt, args.noise_std, seed=args.seed)
    gap = torch.rand(gt.shape[:2], generator=torch.Generator().manual_seed(args.seed)) < 0.1
    occluded = (slice(60, 90), [18, 20])
    gap[occluded] = True
    noisy[gap] = torch.nan
    name = f"denoise observed joints ({clip.num_frames} f, root unknown, {100 * gap.float().mean():.0f}% missing)"
    rows: list[Row] = []
    for start, root_start in (("Kabsch torso start", None), ("zero-rotation start", torch.zeros_like(root))):
        t0 = time.perf_counter()
        res = denoise_motion(prior, body, noisy, root_orient=root_start, gt_joints=gt, seed=args.seed,
                             options=DenoiseOptions(fit_root=True))
        seconds = time.perf_counter() - t0
        err = 1000 * (res.joints - gt).norm(dim=-1)
        rows.append((f"{name}, {start}", "MPJPE in -> out / occluded arm (mm); time (s)",
                     f"{res.mpjpe_in_mm:.1f} -> {res.mpjpe_out_mm:.1f} / {float(err[occluded].mean()):.1f}; "
                     f"{seconds:.1f}",
                     "report"))
    return rows


def bench_ik(prior, body, val: torch.Tensor, args: Args) -> list[Row]:
    gen = torch.Generator().manual_seed(args.seed)
    times, residuals = [], []
    for pose in val[: args.ik_poses]:
        start = body.skeleton_joints(pose[None])[0, R_WRIST]
        direction = torch.randn(3, generator=gen)
        end = start + 0.3 * direction / direction.norm()
        current = pose
        inverse_kinematics(prior, body, current, {R_WRIST: start})  # warm-up (first call allocates)
        for k in range(1, 11):  # a drag: 10 target updates, each solve warm-started from the last
            t0 = time.perf_counter()
            res = inverse_kinematics(prior, body, current, {R_WRIST: start + (end - start) * k / 10})
            times.append(time.perf_counter() - t0)
            residuals.append(res.residual_m)
            current = res.pose_body
    median_ms, p90_ms = 1e3 * np.median(times), 1e3 * np.percentile(times, 90)
    return [
        ("IK, one dragged wrist, warm start", "time per solve median / p90 (ms)", f"{median_ms:.1f} / {p90_ms:.1f}",
         f"<=150 {'ok' if median_ms <= 150 else 'MISSED'}"),
        ("IK, one dragged wrist, warm start", "largest residual (mm)", f"{1e3 * max(residuals):.3f}", "report"),
    ]


def bench_plausibility(prior, val: np.ndarray, args: Args) -> list[Row]:
    with np.load(asset_path(CALIBRATION_ASSET), allow_pickle=False) as f:
        held = torch.from_numpy(np.delete(val, f["val_index"], axis=0))
    gen = torch.Generator().manual_seed(args.seed)
    noised = held + 0.3 * torch.randn(held.shape, generator=gen)
    random = (torch.rand(held.shape, generator=gen) * 2 - 1) * np.pi / 2
    t0 = time.perf_counter()
    cal = calibrate(prior)
    calib_s = time.perf_counter() - t0
    real_e, noised_e, random_e = (prior_energy(prior, p).numpy() for p in (held, noised, random))

    def auc(neg: np.ndarray, pos: np.ndarray) -> float:
        diff = pos[None, :] - neg[:, None]
        return float((diff > 0).mean() + 0.5 * (diff == 0).mean())

    def share(energies: np.ndarray, label: str) -> float:
        return float(np.mean([label_for(e, cal) == label for e in energies]))

    plausibility(prior, held[0])
    times = []
    for pose in held[:50]:
        t0 = time.perf_counter()
        plausibility(prior, pose)
        times.append(time.perf_counter() - t0)
    a_noised, a_random = auc(real_e, noised_e), auc(real_e, random_e)
    n = len(held)
    return [
        (f"plausibility, {n} held-out val vs +0.3 rad", "AUC", f"{a_noised:.3f}",
         f">=0.95 {'ok' if a_noised >= 0.95 else 'MISSED'}"),
        (f"plausibility, {n} held-out val vs random", "AUC", f"{a_random:.3f}", "report"),
        ("plausibility labels", "real typical / real implausible / noised implausible / random implausible",
         f"{share(real_e, 'typical'):.2f} / {share(real_e, 'implausible'):.2f} / {share(noised_e, 'implausible'):.2f}"
         f" / {share(random_e, 'implausible'):.2f}", "report"),
        ("plausibility, one pose", "time median (ms)", f"{1e3 * np.median(times):.1f}",
         f"<=50 {'ok' if np.median(times) <= 0.05 else 'MISSED'}"),
        ("plausibility calibration (once per prior)", "time (s)", f"{calib_s:.2f}", "report"),
    ]


def main(args: Args) -> None:
    torch.set_num_threads(args.threads)
    prior = load_prior(args.ckpt, device=args.device)
    body = load_body_model(device=prior.device)
    with np.load(SHARED / "data" / "amass_body_poses.npz", allow_pickle=False) as f:
        val = f["val"]
    rows = bench_plausibility(prior, val, args) + bench_ik(prior, body, torch.from_numpy(val), args)
    rows += bench_denoise(prior, body, args)
    name = prior.info.get("path", args.ckpt)
    print(f"prior: {name} ({prior.info.get('format')}, {prior.info.get('steps', '?')} steps, "
          f"hidden {prior.net.config.hidden}); device {prior.device}, {torch.get_num_threads()} thread(s)\n")
    print("| task | metric | value | target |")
    print("|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main(tyro.cli(Args))
