"""Export speed and size: the 240-frame gesture clip to BVH, glTF binary and AMASS npz.

    python benchmarks/bench_export.py [--body-model PATH] [--repeats 3]

Target: each export under 1 s on this CPU (2 cores); the GLB's size reported. The body is the
mannequin (52 joints, 24,256 vertices) unless ``--body-model`` names a SMPL-X / SMPL-H file.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import tyro

from prior import load_body_model
from prior.data import load_clip
from prior.exports import export_bytes

SHARED = Path(__file__).resolve().parents[2] / "shared"


@dataclass
class Args:
    body_model: Path | None = None
    repeats: int = 3


def main(args: Args) -> None:
    body = load_body_model(args.body_model)
    clip = load_clip(SHARED / "data" / "gesture_clip.npz")
    print(f"body: {body.kind}, {body.num_joints} joints, {body.num_vertices} vertices; clip: {clip.num_frames} frames")
    print("| format | time (s), best of {} | size (MB) | target |".format(args.repeats))
    print("|---|---|---|---|")
    for suffix in (".bvh", ".glb", ".npz"):
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            data = export_bytes([clip], body, suffix)
            times.append(time.perf_counter() - t0)
        best = min(times)
        print(f"| {suffix} | {best:.3f} | {len(data) / 1e6:.2f} | <1 s {'ok' if best < 1 else 'MISSED'} |")


if __name__ == "__main__":
    main(tyro.cli(Args))
