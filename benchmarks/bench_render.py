"""Offscreen render speed and size: the 240-frame gesture clip at 640x480 to H.264 MP4 and GIF.

    python benchmarks/bench_render.py [--body-model PATH] [--width 640] [--height 480]

Target: 240 frames rendered and encoded in under 60 s on this CPU (2 cores), each format; the
seconds, frames per second and file size are printed as a markdown table. The body is the mannequin
(24,256 vertices) unless ``--body-model`` names a SMPL-X / SMPL-H file.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import tyro

from prior import load_body_model
from prior.data import load_clip
from prior.render import SUPERSAMPLE, render_frames, write_render

SHARED = Path(__file__).resolve().parents[2] / "shared"
TARGET_S = 60.0


@dataclass
class Args:
    body_model: Path | None = None
    width: int = 640
    height: int = 480


def main(args: Args) -> None:
    body = load_body_model(args.body_model)
    clip = load_clip(SHARED / "data" / "gesture_clip.npz")
    print(f"body: {body.kind}, {body.num_vertices} vertices; clip: {clip.num_frames} frames at {clip.fps:g} fps; "
          f"{args.width}x{args.height}, supersample {SUPERSAMPLE}")
    print("| format | frames | time (s) | frames/s | size (MB) | target |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        for suffix in (".mp4", ".gif"):
            out = Path(folder) / f"clip{suffix}"
            t0 = time.perf_counter()
            count = write_render(out, render_frames(body, clip, width=args.width, height=args.height), fps=clip.fps)
            seconds = time.perf_counter() - t0
            verdict = "ok" if seconds < TARGET_S else "MISSED"
            print(f"| {suffix} | {count} | {seconds:.1f} | {count / seconds:.1f} | {out.stat().st_size / 1e6:.2f} | "
                  f"<{TARGET_S:g} s {verdict} |")


if __name__ == "__main__":
    main(tyro.cli(Args))
