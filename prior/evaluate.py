"""``dposer eval``: generation and completion quality of a prior, with two baselines, on real poses.

Protocol (DPoser's): SMPL-X body joints from our FK with betas 0 and no root orientation;
completion error is the MPJPE (mm) of the masked part's joints (part indices + 1), best of the
hypotheses per pose and of hypothesis 0 alone (what ``complete(hypotheses=1)`` returns: for the
DPS solver the consensus of its draws, for DPoser's optimisation one run), averaged over poses.
Baselines on the same poses: the training mean pose, and nearest neighbours
in the training set on the visible joints' rotations (best of the 10 nearest for best-of-10).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .body import BodyModel
from .completion import Solver, complete, make_mask
from .metrics import apd_m, frechet_distance, gaussian_stats, mpjpe_mm, prdc
from .outputs import refuse_non_finite
from .parts import NUM_SKELETON_JOINTS, part_joints
from .pose_prior import PosePrior
from .sampling import generate
from .space import BODY_SPACE

EVAL_PARTS: tuple[str, ...] = ("left_leg", "right_leg", "left_arm", "right_arm", "trunk", "legs", "arms")
SOLVER_NAMES: dict[str, str] = {"dps": "DPS", "dposer": "DPoser", "dposer-paper": "DPoser (paper)",
                                "scoresde": "ScoreSDE"}


@dataclass
class EvalData:
    """Real poses ``(N, 63)``: ``train`` (baselines' source), ``test`` (what is evaluated) and the
    Frechet reference statistics ``fid_mu (63,)``, ``fid_sigma (63, 63)``."""

    train: np.ndarray
    test: np.ndarray
    fid_mu: np.ndarray
    fid_sigma: np.ndarray


def load_fid_stats(path, *, dim: int = BODY_SPACE.dim) -> tuple[np.ndarray, np.ndarray]:
    """Frechet reference statistics ``mu (dim,)``, ``sigma (dim, dim)`` of raw poses from an npz
    (checked); ``dim`` is the pose space's (63 for the body)."""
    from .errors import InputError
    from .files import open_npz, real_numbers

    with open_npz(path, max_bytes=16 * 2**20) as archive:
        out = []
        for key, shape in (("mu", (dim,)), ("sigma", (dim, dim))):
            if key not in archive:
                raise InputError(
                    f"has no {key!r}, expected Frechet statistics 'mu' ({dim},) and 'sigma' ({dim}, {dim})", path)
            value = archive.raw(key)
            if not real_numbers(value.dtype):
                raise InputError(f"{key!r} has dtype {value.dtype}, expected numbers (real floats or integers)", path)
            if value.shape != shape:
                raise InputError(f"{key!r} must be finite with shape {shape}, found {value.shape}", path)
            value = value.astype(np.float64)
            if not np.isfinite(value).all():
                raise InputError(f"{key!r} contains NaN or Inf", path)
            out.append(value)
    return out[0], out[1]


def body_joints(body: BodyModel, pose_body: np.ndarray | torch.Tensor, *, chunk: int = 2048) -> np.ndarray:
    """Body poses ``(..., 63)`` -> ``(..., 22, 3)`` SMPL-X joints 0..21, betas 0, no root (metres)."""
    pose = torch.as_tensor(np.asarray(pose_body), dtype=torch.float32)
    flat = pose.reshape(-1, BODY_SPACE.dim)
    out = np.empty((flat.shape[0], NUM_SKELETON_JOINTS, 3), np.float32)  # filled in place: one copy in memory
    with torch.no_grad():
        for i in range(0, flat.shape[0], chunk):
            out[i : i + chunk] = body.joints(flat[i : i + chunk])[:, :NUM_SKELETON_JOINTS].cpu().numpy()
    return out.reshape(*pose.shape[:-1], NUM_SKELETON_JOINTS, 3)


def evaluate_generation(
    prior: PosePrior, body: BodyModel, data: EvalData, *, num: int = 500, steps: int = 1000, seed: int = 0,
    callback: Callable | None = None,
) -> dict[str, float]:
    """APD (generated vs real), pose-space Frechet distance and PRDC on joint positions."""
    gen = generate(prior, num, steps=steps, seed=seed, callback=callback).pose_body.numpy()
    refuse_non_finite({"generated pose_body": gen}, unit="samples", path=prior.info.get("path"))
    real = data.test[:num]
    j_gen, j_real = body_joints(body, gen), body_joints(body, real)
    pr = prdc(j_real.reshape(len(real), -1), j_gen.reshape(num, -1), k=3)
    return {
        "num_samples": num,
        "apd_m": apd_m(j_gen),
        "apd_real_m": apd_m(j_real),
        "fid": frechet_distance(*gaussian_stats(gen), data.fid_mu, data.fid_sigma),
        "fid_real": frechet_distance(*gaussian_stats(real), data.fid_mu, data.fid_sigma),
        **pr,
    }


def _part_errors(body: BodyModel, pred: np.ndarray, gt_joints: np.ndarray, joints: np.ndarray) -> np.ndarray:
    """``pred (N, H, 63)`` -> per-hypothesis part MPJPE ``(N, H)`` in mm."""
    pj = body_joints(body, pred)[..., joints, :]
    return mpjpe_mm(pj, gt_joints[:, None, joints, :])


def nearest_visible(train: np.ndarray, test: np.ndarray, mask: np.ndarray, k: int) -> np.ndarray:
    """Fill the masked dims of ``test (N, 63)`` from its ``k`` nearest training poses on the visible
    dims -> ``(N, k, 63)`` (observed dims kept)."""
    vis = ~mask
    train_vis = torch.from_numpy(train[:, vis]).double()
    rows = max(1, 2**24 // max(1, len(train)))  # test poses per (rows, len(train)) distance block: 128 MiB
    idx = np.zeros((len(test), k), np.int64)  # (N, k), nearest first
    for i in range(0, len(test), rows):
        d = torch.cdist(torch.from_numpy(test[i : i + rows, vis]).double(), train_vis)
        idx[i : i + rows] = d.topk(k, largest=False).indices.numpy()
    out = np.repeat(test[:, None, :], k, axis=1)
    out[:, :, mask] = train[idx][:, :, mask]
    return out


def evaluate_completion(
    prior: PosePrior | None, body: BodyModel, data: EvalData, *, parts: Sequence[str] = EVAL_PARTS,
    solvers: Sequence[Solver] = ("dps", "dposer"), hypotheses: int = 10, seed: int = 0,
    callback: Callable[[str], None] | None = None,
) -> dict[str, dict[str, float]]:
    """Per part: ``{solver}_best{H}_mm`` and ``{solver}_single_mm`` for each solver of the prior
    (when given), ``mean_pose_mm``, ``nn_best{H}_mm`` and ``nn1_mm`` for the baselines."""
    test, train = data.test.astype(np.float32), data.train.astype(np.float32)
    gt = body_joints(body, test)
    mean_pose = train.mean(0)
    results: dict[str, dict[str, float]] = {}
    for part in parts:
        if callback is not None:
            callback(part)
        mask = make_mask(part=part).numpy()
        joints = np.array(part_joints(part)) + 1  # positions of the part's joints (skip the pelvis)
        row: dict[str, float] = {}
        for solver in solvers if prior is not None else ():
            pred = complete(prior, torch.from_numpy(test), torch.from_numpy(mask), hypotheses=hypotheses,
                            solver=solver, seed=seed).pose_body.numpy()
            refuse_non_finite({f"{solver} completions of {part}": pred}, unit="poses", path=prior.info.get("path"))
            err = _part_errors(body, pred, gt, joints)
            row[f"{solver}_best{hypotheses}_mm"] = float(err.min(1).mean())
            row[f"{solver}_single_mm"] = float(err[:, 0].mean())
        filled = test.copy()
        filled[:, mask] = mean_pose[mask]
        err = _part_errors(body, filled[:, None], gt, joints)
        row["mean_pose_mm"] = float(err.mean())
        nn = nearest_visible(train, test, mask, hypotheses)
        err = _part_errors(body, nn, gt, joints)
        row[f"nn_best{hypotheses}_mm"] = float(err.min(1).mean())
        row["nn1_mm"] = float(err[:, 0].mean())
        results[part] = row
    return results


def format_tables(report: dict) -> str:
    """Markdown tables of an eval report (as written to the JSON)."""
    lines = []
    g = report.get("generation")
    if g:
        lines += [
            "| generation | value |", "|---|---|",
            f"| APD generated (m) | {g['apd_m']:.4f} |",
            f"| APD real val (m) | {g['apd_real_m']:.4f} |",
            f"| APD ratio | {g['apd_m'] / g['apd_real_m']:.3f} |",
            f"| pose-space FD (generated) | {g['fid']:.4f} |",
            f"| pose-space FD (real val, floor) | {g['fid_real']:.4f} |",
            f"| precision / recall | {g['precision']:.3f} / {g['recall']:.3f} |",
            f"| density / coverage | {g['density']:.3f} / {g['coverage']:.3f} |",
            "",
        ]
    c = report.get("completion")
    if c:
        h = report.get("hypotheses", 10)
        first = next(iter(c.values()))
        solvers = [s for s in SOLVER_NAMES if f"{s}_best{h}_mm" in first]
        head = ["part"]
        for solver in solvers:
            head += [f"{SOLVER_NAMES[solver]} best-of-{h}", f"{SOLVER_NAMES[solver]} single"]
        head += [f"NN best-of-{h}", "NN-1", "mean pose"]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for part, row in c.items():
            cells = [part]
            for solver in solvers:
                cells += [f"{row[f'{solver}_best{h}_mm']:.1f}", f"{row[f'{solver}_single_mm']:.1f}"]
            cells += [f"{row[f'nn_best{h}_mm']:.1f}", f"{row['nn1_mm']:.1f}", f"{row['mean_pose_mm']:.1f}"]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
        lines.append("completion: part-joint MPJPE in mm (lower is better); single = hypothesis 0")
    return "\n".join(lines)
