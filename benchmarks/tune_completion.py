"""Choose a checkpoint's completion schedule on validation poses, and optionally store it in the file.

    python benchmarks/tune_completion.py --ckpt checkpoints/dposer_amass_default.safetensors [--write]

Scores each (t_max, t_min) of DPoser's truncated schedule on the first ``--num-poses`` val poses
(part-joint MPJPE, mm, best of 10 and single), relative to the nearest-neighbour baselines, and
prints a markdown table. ``--write`` records the best setting as ``completion_schedule`` in the
checkpoint's provenance, which ``complete()`` then uses by default (``DPoserSchedule.for_prior``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import tyro

from prior import load_body_model, load_prior
from prior.checkpoint import save_prior
from prior.completion import DPoserSchedule, complete, make_mask
from prior.evaluate import body_joints, nearest_visible
from prior.metrics import mpjpe_mm
from prior.parts import part_joints

SHARED = Path(__file__).resolve().parents[2] / "shared"
GRID = ((0.2, 0.002), (0.15, 0.05), (0.3, 0.05), (0.4, 0.05), (0.4, 0.1), (0.5, 0.1))


@dataclass
class Args:
    ckpt: Path
    """Checkpoint to tune (a dposer-view .safetensors when --write is used)."""
    num_poses: int = 80
    parts: tuple[str, ...] = ("left_leg", "right_arm", "trunk")
    hypotheses: int = 10
    write: bool = False
    """Store the chosen schedule in the checkpoint."""


def part_errors(body, pred: np.ndarray, gt: np.ndarray, joints: np.ndarray) -> np.ndarray:
    return mpjpe_mm(body_joints(body, pred)[..., joints, :], gt[:, None, joints, :])


def main(args: Args) -> None:
    prior = load_prior(args.ckpt, device="cpu")
    body = load_body_model()
    with np.load(SHARED / "data" / "amass_body_poses.npz", allow_pickle=False) as f:
        train, val = f["train"].astype(np.float32), f["val"][: args.num_poses].astype(np.float32)
    gt = body_joints(body, val)
    H = args.hypotheses
    scores = {cfg: 0.0 for cfg in GRID}
    rows = []
    for part in args.parts:
        mask = make_mask(part=part)
        joints = np.array(part_joints(part)) + 1
        nn = part_errors(body, nearest_visible(train, val, mask.numpy(), H), gt, joints)
        nn_best, nn1 = nn.min(1).mean(), nn[:, 0].mean()
        rows.append(f"| {part} | NN baseline | {nn_best:.1f} | {nn1:.1f} |")
        for t_max, t_min in GRID:
            sched = DPoserSchedule(t_max=t_max, t_min=t_min)
            pred = complete(prior, torch.from_numpy(val), mask, hypotheses=H, seed=0, schedule=sched).pose_body.numpy()
            err = part_errors(body, pred, gt, joints)
            best, single = err.min(1).mean(), err.mean()
            scores[(t_max, t_min)] += best / nn_best + single / nn1
            rows.append(f"| {part} | t {t_max} -> {t_min} | {best:.1f} | {single:.1f} |")
    print(f"\n{args.ckpt.name}, first {len(val)} val poses, part-joint MPJPE (mm)\n")
    print(f"| part | schedule | best of {H} | single |\n|---|---|---|---|")
    print("\n".join(rows))
    t_max, t_min = min(scores, key=scores.get)
    chosen = DPoserSchedule(t_max=t_max, t_min=t_min)
    print(f"\nchosen: t_max {t_max}, t_min {t_min} (lowest summed error relative to the NN baselines)")
    if args.write:
        info = {k: v for k, v in prior.info.items() if k not in ("format", "path")}
        info["completion_schedule"] = asdict(chosen)
        save_prior(prior, args.ckpt, provenance=info)
        print(f"wrote completion_schedule into {args.ckpt}")


if __name__ == "__main__":
    main(tyro.cli(Args))
