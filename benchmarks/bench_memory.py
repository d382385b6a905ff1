"""Memory of ``dposer complete`` against the number of poses: peak RSS and wall time of the installed command.

    python benchmarks/bench_memory.py [--ckpt PATH] [--sizes 1000 10000 30000] [--hypotheses 2]

Tiles ``shared/data/dposer_demo_poses.npz`` (``pose_body``, 500 poses) to N poses and runs
``dposer complete --part legs`` as a subprocess for each N and solver; prints a markdown table of
its peak resident memory (``ru_maxrss`` of that child, from ``os.wait4``) and wall time.

So that 30000 poses finish in minutes on 2 cores, the solvers run few steps: ``scoresde`` with
``--steps`` (default 2), and ``dps`` / ``dposer`` from a copy of the checkpoint whose recommended
schedules (``posterior_schedule`` / ``completion_schedule`` in its provenance, what ``complete()``
uses by default) are cut to ``--solver-steps`` steps. The memory per pose is what matters: a step
holds the same tensors whatever the number of steps.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import tyro

from prior import load_prior
from prior.checkpoint import save_prior

SHARED = Path(__file__).resolve().parents[2] / "shared"
Solver = Literal["scoresde", "dps", "dposer"]


@dataclass
class Args:
    ckpt: Path | None = None
    """Checkpoint (default: the shipped prior)."""
    sizes: tuple[int, ...] = (1000, 10000, 30000)
    """Numbers of poses completed."""
    solvers: tuple[Solver, ...] = ("scoresde", "dps")
    """Completion solvers measured."""
    hypotheses: int = 2
    steps: int = 2
    """--steps of the scoresde solver."""
    solver_steps: int = 2
    """Steps of the dps (ancestral steps, no resampling) and dposer (one iteration) solvers."""
    device: str = "cpu"
    timeout_s: float = 3600.0
    max_memory_gib: float = 12.0
    """Address-space limit of each run (RLIMIT_AS), so that a run that would exhaust the machine's
    memory fails alone (exit 1, "can't allocate memory") instead of the kernel's OOM killer picking
    a process."""


def short_schedule_checkpoint(ckpt: Path | None, steps: int, folder: Path) -> Path:
    """A copy of ``ckpt`` recommending ``steps``-step dps and dposer schedules."""
    prior = load_prior(ckpt, device="cpu")
    provenance = {k: v for k, v in prior.info.items() if k not in ("format", "path")}
    post = dict(provenance.get("posterior_schedule") or {})
    post |= {"steps": steps, "resample": 1, "refine": None}
    comp = dict(provenance.get("completion_schedule") or {})
    comp |= {"iterations": 1, "steps_per_iter": steps}
    provenance |= {"posterior_schedule": post, "completion_schedule": comp}
    return save_prior(prior, folder / "short_schedule.safetensors", provenance=provenance)


def run_complete(args: list[str], timeout_s: float, max_bytes: int) -> tuple[float, float, int, str]:
    """``(wall s, peak RSS MiB, exit code, stderr tail)`` of one ``dposer`` run."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (max_bytes, max_bytes))

    started = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=err, preexec_fn=limit)
        deadline = started + timeout_s
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.05)
        proc.returncode = os.waitstatus_to_exitcode(status)  # already reaped: keep Popen from waiting again
        wall = time.perf_counter() - started
        err.seek(0)
        tail = err.read().decode("utf-8", "replace").strip().splitlines()[-1:]
    # ru_maxrss is in KiB on Linux
    return wall, usage.ru_maxrss / 1024, proc.returncode, tail[0] if tail else ""


def main(args: Args) -> None:
    dposer = shutil.which("dposer")
    if dposer is None:
        sys.exit("the dposer console script is not installed (pip install -e .)")
    with np.load(SHARED / "data" / "dposer_demo_poses.npz", allow_pickle=False) as f:
        demo = f["pose_body"].astype(np.float32)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        short = short_schedule_checkpoint(args.ckpt, args.solver_steps, folder)
        for solver in args.solvers:
            for n in args.sizes:
                poses = folder / f"poses_{n}.npz"
                if not poses.exists():
                    np.savez(poses, pose_body=np.resize(demo, (n, demo.shape[1])))
                out = folder / f"out_{solver}_{n}.npz"
                cmd = [dposer, "complete", "--poses", str(poses), "--part", "legs", "--solver", solver,
                       "--hypotheses", str(args.hypotheses), "--seed", "0", "--device", args.device,
                       "--out", str(out)]
                if solver == "scoresde":
                    cmd += ["--steps", str(args.steps)]
                    if args.ckpt is not None:
                        cmd += ["--ckpt", str(args.ckpt)]
                    steps = f"{args.steps}"
                else:
                    cmd += ["--ckpt", str(short)]
                    steps = f"{args.solver_steps}"
                wall, rss, code, tail = run_complete(cmd, args.timeout_s, int(args.max_memory_gib * 2**30))
                size = out.stat().st_size / 2**20 if out.exists() and code == 0 else float("nan")
                rows.append((solver, steps, n, args.hypotheses, wall, rss, size, code, tail))
                print(f"{solver} N={n}: {wall:.1f} s, {rss:.0f} MiB, exit {code}", file=sys.stderr, flush=True)
                out.unlink(missing_ok=True)
    print("| solver | steps | poses N | hypotheses H | wall (s) | peak RSS (MiB) | output file (MiB) | exit |")
    print("|---|---|---|---|---|---|---|---|")
    for solver, steps, n, h, wall, rss, size, code, tail in rows:
        status = "0" if code == 0 else f"{code}: {tail[:60]}"
        print(f"| {solver} | {steps} | {n} | {h} | {wall:.1f} | {rss:.0f} | {size:.1f} | {status} |")


if __name__ == "__main__":
    main(tyro.cli(Args))
