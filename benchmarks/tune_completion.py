"""Choose a checkpoint's completion settings on validation poses, and optionally store them in the file.

    python benchmarks/tune_completion.py --ckpt checkpoints/dposer_amass_default.safetensors \
        [--solver dps|dposer] [--write]

Scores each setting of the solver (``dps``: guidance strength and step clip of posterior sampling;
``dposer``: the (t_max, t_min) of DPoser's truncated schedule) on the first ``--num-poses`` val
poses (part-joint MPJPE, mm, best of 10 and single = hypothesis 0), relative to the
nearest-neighbour baselines, and prints a markdown table. ``--write`` records the best setting in
the checkpoint's provenance (``posterior_schedule`` / ``completion_schedule``), which
``complete()`` then uses by default (``PosteriorSchedule.for_prior`` / ``DPoserSchedule.for_prior``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import tyro

from prior import load_body_model, load_prior
from prior.checkpoint import save_prior
from prior.completion import PosteriorSchedule, complete, make_mask
from prior.evaluate import body_joints, nearest_visible
from prior.metrics import mpjpe_mm
from prior.optim import DPoserSchedule
from prior.parts import part_joints

SHARED = Path(__file__).resolve().parents[2] / "shared"
GRIDS = {
    "dposer": [DPoserSchedule(t_max=a, t_min=b) for a, b in
               ((0.2, 0.002), (0.15, 0.05), (0.3, 0.05), (0.4, 0.05), (0.4, 0.1), (0.5, 0.1))],
    "dps": [PosteriorSchedule(guidance=g, max_guidance_step=m) for g, m in
            ((1.0, 1.0), (1.0, 2.0), (2.0, 1.0), (2.0, 2.0), (2.0, 4.0), (3.0, 3.0))],
}
PROVENANCE_KEY = {"dposer": "completion_schedule", "dps": "posterior_schedule"}


@dataclass
class Args:
    ckpt: Path
    """Checkpoint to tune (a dposer-view .safetensors when --write is used)."""
    solver: Literal["dps", "dposer"] = "dps"
    num_poses: int = 100
    parts: tuple[str, ...] = ("left_leg", "arms", "legs", "trunk")
    hypotheses: int = 10
    write: bool = False
    """Store the chosen setting in the checkpoint."""


def part_errors(body, pred: np.ndarray, gt: np.ndarray, joints: np.ndarray) -> np.ndarray:
    return mpjpe_mm(body_joints(body, pred)[..., joints, :], gt[:, None, joints, :])


def describe(schedule: DPoserSchedule | PosteriorSchedule) -> str:
    if isinstance(schedule, DPoserSchedule):
        return f"t {schedule.t_max} -> {schedule.t_min}"
    return f"guidance {schedule.guidance}, step clip {schedule.max_guidance_step}"


def main(args: Args) -> None:
    prior = load_prior(args.ckpt, device="cpu")
    body = load_body_model()
    with np.load(SHARED / "data" / "amass_body_poses.npz", allow_pickle=False) as f:
        train, val = f["train"].astype(np.float32), f["val"][: args.num_poses].astype(np.float32)
    gt = body_joints(body, val)
    H = args.hypotheses
    grid = GRIDS[args.solver]
    scores = [0.0] * len(grid)
    rows = []
    for part in args.parts:
        mask = make_mask(part=part)
        joints = np.array(part_joints(part)) + 1
        nn = part_errors(body, nearest_visible(train, val, mask.numpy(), H), gt, joints)
        nn_best, nn1 = nn.min(1).mean(), nn[:, 0].mean()
        rows.append(f"| {part} | NN baseline | {nn_best:.1f} | {nn1:.1f} |")
        for k, schedule in enumerate(grid):
            pred = complete(prior, torch.from_numpy(val), mask, hypotheses=H, solver=args.solver, seed=0,
                            schedule=schedule).pose_body.numpy()
            err = part_errors(body, pred, gt, joints)
            best, single = err.min(1).mean(), err[:, 0].mean()
            scores[k] += best / nn_best + single / nn1
            rows.append(f"| {part} | {describe(schedule)} | {best:.1f} | {single:.1f} |")
    print(f"\n{args.ckpt.name}, solver {args.solver}, first {len(val)} val poses, part-joint MPJPE (mm)\n")
    print(f"| part | setting | best of {H} | single |\n|---|---|---|---|")
    print("\n".join(rows))
    chosen = grid[int(np.argmin(scores))]
    print(f"\nchosen: {describe(chosen)} (lowest summed error relative to the NN baselines)")
    if args.write:
        info = {k: v for k, v in prior.info.items() if k not in ("format", "path")}
        info[PROVENANCE_KEY[args.solver]] = asdict(chosen)
        save_prior(prior, args.ckpt, provenance=info)
        print(f"wrote {PROVENANCE_KEY[args.solver]} into {args.ckpt}")


if __name__ == "__main__":
    main(tyro.cli(Args))
