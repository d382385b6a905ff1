"""Prior speed: batched completion vs the reference-style loop, first streamed update, generation.

    python benchmarks/bench_prior.py [--ckpt PATH] [--device auto] [--repeats 3]

Default checkpoint: the official-format conformance fixture (hidden 1024, the released size).
Prints a markdown table; the ratio is measured in one run on the same machine and checkpoint.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import tyro

from prior import load_prior
from prior.completion import complete, make_mask
from prior.reference import reference_complete
from prior.sampling import generate

SHARED = Path(__file__).resolve().parents[2] / "shared"


@dataclass
class Args:
    ckpt: Path = SHARED / "conformance" / "dposer_official_format_random.pth"
    """Checkpoint to time (default: official-size conformance fixture)."""
    device: str = "auto"
    repeats: int = 3
    """Timed repeats per row (the median is reported); one warm-up run precedes them."""
    hypotheses: int = 10
    gen_num: int = 16
    gen_steps: int = 1000


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main(args: Args) -> None:
    prior = load_prior(args.ckpt, device=args.device)
    dev = prior.device
    with np.load(SHARED / "data" / "dposer_demo_poses.npz", allow_pickle=False) as f:
        pose = torch.from_numpy(f["pose_body"][:1].astype(np.float32)).to(dev)
    mask = make_mask(part="left_leg")
    H = args.hypotheses

    def ours():
        complete(prior, pose, mask, hypotheses=H, solver="dposer", seed=0)
        sync(dev)

    def dps():
        complete(prior, pose, mask, hypotheses=H, solver="dps", seed=0)
        sync(dev)

    def reference():
        reference_complete(prior, pose, mask.to(dev), hypotheses=H, generator=torch.Generator(dev).manual_seed(0))
        sync(dev)

    t_ours = timed(ours, args.repeats)
    t_ref = timed(reference, max(1, args.repeats // 2))
    t_dps = timed(dps, args.repeats)

    firsts = []
    for _ in range(max(3, args.repeats)):
        t0 = time.perf_counter()
        got = []

        def cb(p, t0=t0, got=got):
            if not got:
                got.append(time.perf_counter() - t0)

        complete(prior, pose, mask, hypotheses=H, seed=0, callback=cb)  # the default solver, as the viewer
        firsts.append(got[0])

    def gen_sde():
        generate(prior, args.gen_num, steps=args.gen_steps, seed=0)
        sync(dev)

    def gen_ode():
        generate(prior, args.gen_num, steps=args.gen_steps // 2, sampler="ode", seed=0)
        sync(dev)

    t_sde = timed(gen_sde, max(1, args.repeats // 2))
    t_ode = timed(gen_ode, max(1, args.repeats // 2))

    cfg = prior.net.config
    params = sum(p.numel() for p in prior.net.parameters())
    print(f"\ncheckpoint: {args.ckpt.name} (hidden {cfg.hidden}, {params:,} params)")
    print(f"device: {dev}, torch threads: {torch.get_num_threads()}\n")
    print("| task | time | note |")
    print("|---|---|---|")
    print(f"| complete 1 pose x {H} hyp, DPS (default; 100 guided steps) | {t_dps * 1000:.0f} ms "
          f"| median of {args.repeats}; target < 500 ms on CPU |")
    print(f"| complete 1 pose x {H} hyp, DPoser batched solver (200 steps) | {t_ours * 1000:.0f} ms "
          f"| median of {args.repeats} |")
    print(f"| complete 1 pose x {H} hyp, DPoser reference-style loop | {t_ref * 1000:.0f} ms "
          "| hypotheses in turn, autograd |")
    print(f"| DPoser batched speed-up | {t_ref / t_ours:.1f}x | target >= 5x |")
    print(f"| first streamed completion update | {np.median(firsts) * 1000:.1f} ms | target < 100 ms |")
    print(f"| generate {args.gen_num} x {args.gen_steps} steps, SDE | {t_sde:.2f} s "
          f"| {t_sde / args.gen_steps * 1000:.2f} ms/step |")
    print(f"| generate {args.gen_num} x {args.gen_steps // 2} Heun steps, ODE | {t_ode:.2f} s "
          f"| {args.gen_steps} evaluations |")


if __name__ == "__main__":
    main(tyro.cli(Args))
