"""Faithful to DPoser: paper mode against our defaults, one deviation at a time.

    python benchmarks/bench_faithful.py [--ckpt PATH] [--poses 100] [--threads 1] [--skip-completion]

Default checkpoint: the shipped default prior (the official weights cannot be downloaded here; its
tuned completion schedule is what "ours" runs). Prints two markdown tables, the README's:

- completion on AMASS val (``shared/data/amass_body_poses.npz``, the first ``--poses``), per part:
  the masked part's MPJPE (mm), best of 10 hypotheses and hypothesis 0, for ``solver="dposer"``
  (ours), each of the original's differences added to it alone (its time grid C1, its shared start
  C3, its batch-mean loss C4), the paper mode (all three), and ``run/demo.py``'s fixed t = 0.1 (C2);
- denoising ``shared/data/gesture_clip.npz`` (240 frames) with 0.04 m of joint noise: MPJPE (mm) of
  our defaults, each of the original's four differences alone (M1 unweighted prior, M2 temporal
  term on the mesh, M3 zero start, M4 staircase time grid), the paper mode, and each with the
  original's smoothing (M5), with all 22 joints observed and with the left arm unobserved (where
  the prior fills it in); seconds per run.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import tyro

from prior import load_body_model, load_prior
from prior.completion import _dposer_solve, _to_output, make_mask
from prior.data import load_clip
from prior.evaluate import body_joints
from prior.metrics import mpjpe_mm
from prior.motion import DenoiseOptions
from prior.motion_fit import fit_motion, observe_motion
from prior.optim import PAPER_COMPLETION, DPoserSchedule
from prior.parts import part_joints
from prior.progress import make_generator, seeded_noise

SHARED = Path(__file__).resolve().parents[2] / "shared"
PARTS = ("left_leg", "left_arm", "trunk")
LEFT_ARM = (13, 16, 18, 20)  # SMPL-X left collar, shoulder, elbow, wrist
HYPOTHESES = 10


@dataclass
class Args:
    ckpt: Path | None = None
    """Checkpoint (default: the shipped prior)."""
    poses: int = 100
    """AMASS val poses completed per part."""
    threads: int = 1
    seed: int = 0
    skip_motion: bool = False
    skip_completion: bool = False


def completion_variants(prior) -> dict[str, tuple[DPoserSchedule, int, bool]]:
    """Name -> (schedule, shared start, batch-mean loss) of ``_dposer_solve``."""
    ours = DPoserSchedule.for_prior(prior)
    return {
        "DPoser, ours": (ours, 1, False),
        "+ C1 the original's time grid": (PAPER_COMPLETION, 1, False),
        "+ C3 one shared start per pose": (ours, HYPOTHESES, False),
        "+ C4 loss averaged over the batch": (ours, 1, True),
        "paper mode (C1 + C3 + C4)": (PAPER_COMPLETION, HYPOTHESES, True),
        "demo.py variant: fixed t = 0.1 (C2, + C3 + C4)": (DPoserSchedule(t_max=0.1, t_min=0.1), HYPOTHESES, True),
    }


def solve(prior, pose_body, masked, schedule, noise, shared: int, batch_mean: bool) -> torch.Tensor:
    """``(N, H, 63)`` completions by DPoser's optimisation with the given deviations switched on."""
    with torch.inference_mode():
        obs = prior.normalize(pose_body).repeat_interleave(HYPOTHESES, dim=0)
        rows = masked.repeat_interleave(HYPOTHESES, dim=0)
        x = _dposer_solve(prior, obs, rows, schedule, noise, lambda *a: None, None, shared_start=shared,
                          batch_mean=batch_mean)
        return _to_output(prior, x, pose_body, masked, HYPOTHESES)


def bench_completion(prior, body, args: Args) -> list[str]:
    with np.load(SHARED / "data" / "amass_body_poses.npz") as f:
        val = torch.from_numpy(f["val"][: args.poses].astype(np.float32))
    gt = body_joints(body, val.numpy())
    variants = completion_variants(prior)
    header = "| variant | " + " | ".join(f"{p} best-of-{HYPOTHESES} / h0 (mm)" for p in PARTS) + " | s per part |"
    lines = [header, "|---" * (len(PARTS) + 2) + "|"]
    for name, (schedule, shared, batch_mean) in variants.items():
        cells, seconds = [], []
        for part in PARTS:
            mask = make_mask(part=part).expand(len(val), -1)
            noise = seeded_noise(make_generator(args.seed, prior.device), prior.device)
            t0 = time.perf_counter()
            pred = solve(prior, val, mask, schedule, noise, shared, batch_mean)
            seconds.append(time.perf_counter() - t0)
            joints = np.array(part_joints(part)) + 1
            err = mpjpe_mm(body_joints(body, pred.cpu().numpy())[..., joints, :], gt[:, None, joints, :])
            cells.append(f"{err.min(1).mean():.1f} / {err[:, 0].mean():.1f}")
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {np.mean(seconds):.1f} |")
    return lines


def motion_variants() -> dict[str, DenoiseOptions]:
    ours, paper = DenoiseOptions(), DenoiseOptions.paper(0.04)
    return {
        "ours": ours,
        "+ M1 unweighted prior term": dataclasses.replace(ours, prior_weighting="none"),
        "+ M2 temporal term on the mesh vertices": dataclasses.replace(ours, temporal="vertices"),
        "+ M3 start about the zero pose": dataclasses.replace(ours, start="zero"),
        "+ M4 staircase time grid": dataclasses.replace(ours, schedule=paper.schedule),
        "paper mode (M1-M4)": paper,
        "ours + M5 smoothing": dataclasses.replace(ours, smooth=True),
        "paper mode + M5 smoothing": dataclasses.replace(paper, smooth=True),
    }


def bench_motion(prior, body, args: Args) -> None:
    """Prints each row as it is measured (the mesh variants take minutes on a CPU)."""
    clip = load_clip(SHARED / "data" / "gesture_clip.npz")
    obs = observe_motion(body, clip, noise_std_m=0.04, seed=args.seed)
    observed = [j for j in range(22) if j not in LEFT_ARM]
    print("| variant | all 22 joints: MPJPE in -> out (mm) | left arm unobserved: MPJPE all / unseen arm (mm) | s |")
    print("|---|---|---|---|")
    for name, options in motion_variants().items():
        t0 = time.perf_counter()
        fit = fit_motion(prior, body, clip, obs, options=options, seed=args.seed + 1)
        seconds = time.perf_counter() - t0
        hidden = fit_motion(prior, body, clip, obs, observed=observed, options=options, seed=args.seed + 1)
        arm = float(mpjpe_mm(hidden.joints[:, list(LEFT_ARM)], obs.gt_joints[:, list(LEFT_ARM)]).mean())
        print(f"| {name} | {fit.metrics['mpjpe_in_mm']:.1f} -> {fit.metrics['mpjpe_out_mm']:.1f} | "
              f"{hidden.metrics['mpjpe_out_mm']:.1f} / {arm:.1f} | {seconds:.1f} |", flush=True)


def main(args: Args) -> None:
    torch.set_num_threads(args.threads)
    prior = load_prior(args.ckpt) if args.ckpt else load_prior()
    body = load_body_model()
    print(f"prior: {prior.info.get('path', 'shipped default')}; body: {body.kind}, {body.num_vertices} vertices")
    if not args.skip_completion:
        print(f"\ncompletion, {args.poses} AMASS val poses, {HYPOTHESES} hypotheses\n")
        print("\n".join(bench_completion(prior, body, args)))
    if not args.skip_motion:
        print("\ndenoising the gesture clip (240 frames), 0.04 m joint noise (s: the all-joints run)\n")
        bench_motion(prior, body, args)


if __name__ == "__main__":
    main(tyro.cli(Args))
