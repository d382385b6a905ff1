"""Body model speed: forward kinematics + skinning per frame, for each backend, batch 1 and 64.

    python benchmarks/bench_body.py [--repeats 20] [--threads 0] [--model PATH]

Backends: the mannequin (default body) and SMPL-X. Real SMPL-X files are licensed and not here,
so a synthetic file with SMPL-X's exact sizes (10475 vertices, 55 joints, 486 pose correctives,
300 + 100 shape/expression columns) stands in; pass ``--model`` to time a real one. Target: FK +
skinning under 5 ms per frame for the mannequin. Times are medians, under ``torch.inference_mode``
(the viewer's path); the "train" column keeps autograd on (optimisation's path).
"""

from __future__ import annotations

import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import tyro

from prior.body import BodyModel, load_body_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from bench_prior import timed  # same folder: one timing helper for all benchmarks

from synthetic_body import write_synthetic_model  # a test helper, reused on purpose


@dataclass
class Args:
    repeats: int = 20
    """Timed repeats per cell (the median is reported); a warm-up run precedes them."""
    threads: int = 0
    """torch CPU threads (0: torch's default)."""
    model: Path | None = None
    """A real SMPL-X/SMPL-H/SMPL file to time instead of the synthetic SMPL-X."""
    batches: tuple[int, ...] = (1, 64)


def row(name: str, body: BodyModel, batch: int, repeats: int) -> str:
    g = torch.Generator().manual_seed(0)
    pose = 0.4 * torch.randn(batch, 63, generator=g)
    orient, transl = torch.randn(batch, 3, generator=g), torch.randn(batch, 3, generator=g)
    hands = 0.3 * torch.randn(batch, 90, generator=g)

    def run(vertices: bool) -> None:
        body(pose, global_orient=orient, transl=transl, hand_pose=hands, vertices=vertices)

    def train() -> None:
        p = pose.clone().requires_grad_()
        body(p, global_orient=orient, transl=transl, hand_pose=hands).vertices.square().mean().backward()

    with torch.inference_mode():
        joints_ms = timed(lambda: run(False), repeats) * 1e3 / batch
        full_ms = timed(lambda: run(True), repeats) * 1e3 / batch
    train_ms = timed(train, max(3, repeats // 4)) * 1e3 / batch
    return (
        f"| {name} | {body.num_vertices} | {body.num_joints} | {batch} | {joints_ms:.3f} | "
        f"{full_ms:.3f} | {train_ms:.3f} |"
    )


def main(args: Args) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    bodies = {"mannequin": load_body_model()}
    load_s = {"mannequin": time.perf_counter() - t0}
    with tempfile.TemporaryDirectory() as tmp:
        if args.model is None:
            path, label = write_synthetic_model(Path(tmp) / "SMPLX_NEUTRAL.npz", "smplx"), "SMPL-X (synthetic file)"
        else:
            path, label = args.model, f"{args.model.name}"
        t0 = time.perf_counter()
        bodies[label] = load_body_model(path, allow_pickle=path.suffix == ".pkl")
        load_s[label] = time.perf_counter() - t0

    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, float32, median of {args.repeats}")
    print("load time: " + ", ".join(f"{k} {v:.2f} s" for k, v in load_s.items()))
    print()
    print(
        "| backend | vertices | joints | batch | joints only, ms/frame | FK + skinning, ms/frame "
        "| FK + skinning + backward, ms/frame |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, body in bodies.items():
        for batch in args.batches:
            print(row(name, body, batch, args.repeats), flush=True)
    print()
    print("Target: FK + skinning under 5 ms per frame for the mannequin.")


if __name__ == "__main__":
    main(tyro.cli(Args))
