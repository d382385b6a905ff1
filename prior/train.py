"""Training DPoser networks: the reference loss, Adam with warm-up, grad clipping and EMA.

Single process on CPU or one GPU, or many GPUs / nodes under ``torchrun`` (DistributedDataParallel;
gloo on CPU, NCCL on CUDA). Resumable from ``<run>/last.pt``; the result is one self-contained
``.safetensors`` prior (EMA weights, config, normaliser, provenance).
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .checkpoint import save_prior
from .errors import InputError
from .model import NetConfig, ScoreNet
from .pose_prior import LABEL_SCALE, PosePrior, resolve_device
from .sde import SubVPSDE


@dataclass
class TrainConfig:
    """Recipe. Defaults follow DPoser (batch 1280, Adam 2e-4, 5k warm-up, clip 1, EMA 0.9999)."""

    steps: int = 400_000
    """Optimiser steps (1..10^9)."""
    batch_size: int = 1280
    """Global batch (1..65536; split evenly over torchrun processes)."""
    lr: float = 2e-4
    """Adam learning rate after warm-up (0 < lr <= 1)."""
    warmup: int = 5000
    """Linear learning-rate warm-up steps."""
    grad_clip: float = 1.0
    """Gradient-norm clip (0 disables)."""
    ema_decay: float = 0.9999
    """EMA decay; the saved prior holds the EMA weights."""
    t_eps: float = 1e-5
    """Smallest diffusion time drawn, t ~ U(t_eps, 1)."""
    hidden: int = 1024
    """Network width (a multiple of 32, the GroupNorm groups: 32..16384)."""
    embed: int = 512
    """Time-embedding width (4..16384)."""
    blocks: int = 2
    """Residual blocks (0..64)."""
    dropout: float = 0.1
    """Dropout during training (0..0.99; may change when a run is resumed, e.g. 0 to fine-tune)."""
    scale_by_sigma: bool = False
    """Reproduce DPoser's inverted output scaling (needed only to match the official recipe
    exactly); off, the network predicts the noise directly, which trains faster."""
    seed: int = 0
    """Seed for weights and batches."""
    log_every: int = 100
    """Steps between loss-log rows."""
    val_every: int = 1000
    """Steps between validation losses (EMA weights, fixed noise)."""
    save_every: int = 5000
    """Steps between resume checkpoints (last.pt)."""

    def validate(self) -> None:
        """Refuse a recipe that cannot train: one :class:`InputError` line naming the flag and its value."""
        for name, (low, high) in _RECIPE_BOUNDS.items():
            value = getattr(self, name)
            if not low <= value <= high:  # NaN too
                raise InputError(f"--{name.replace('_', '-')} must be in {low}..{high} (got {value})")
        if self.hidden % NetConfig.groups:
            raise InputError(f"--hidden must be a multiple of {NetConfig.groups} (the network's GroupNorm groups), "
                             f"got {self.hidden}")


_RECIPE_BOUNDS: dict[str, tuple[float, float]] = {  # TrainConfig field: inclusive bounds
    "steps": (1, 10**9), "batch_size": (1, 65536), "lr": (1e-12, 1.0), "warmup": (0, 10**9),
    "grad_clip": (0.0, 1e6), "ema_decay": (0.0, 1.0), "t_eps": (1e-9, 0.5), "hidden": (32, 16384),
    "embed": (4, 16384), "blocks": (0, 64), "dropout": (0.0, 0.99), "seed": (0, 2**32 - 1),
    "log_every": (1, 10**9), "val_every": (1, 10**9), "save_every": (1, 10**9),
}


@dataclass
class TrainData:
    """Training (and optional validation) poses ``(N, 63)`` float32 with where they came from."""

    train: np.ndarray
    val: np.ndarray | None
    source: dict[str, Any] = field(default_factory=dict)


def denoising_loss(net: nn.Module, sde: SubVPSDE, x0: torch.Tensor, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """DPoser's score-matching loss ``mean((s std + z)^2)`` with ``s = -net(x_t, 999 t) / std``."""
    mean, std = sde.marginal_prob(x0, t)
    x_t = mean + std[:, None] * z
    out = net(x_t, t * LABEL_SCALE)
    score = -out / std[:, None]
    return torch.mean((score * std[:, None] + z) ** 2)


class EMA:
    """Exponential moving average of parameters, ``decay = min(d, (1 + n) / (10 + n))`` as the reference."""

    def __init__(self, params: list[nn.Parameter], decay: float) -> None:
        self.decay = decay
        self.num_updates = 0
        self.shadow = [p.detach().clone() for p in params]

    @torch.no_grad()
    def update(self, params: list[nn.Parameter]) -> None:
        self.num_updates += 1
        d = min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))
        for s, p in zip(self.shadow, params):
            s.lerp_(p.detach(), 1 - d)

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "num_updates": self.num_updates, "shadow_params": self.shadow}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.decay, self.num_updates = state["decay"], state["num_updates"]
        for s, v in zip(self.shadow, state["shadow_params"]):
            s.copy_(v)


_BOOKKEEPING = ("steps", "log_every", "val_every", "save_every")


def _without(d: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k not in keys}


def _dist_info() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment; (0, 1, 0) otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0"))


def check_run_paths(run_dir: str | os.PathLike, out: str | os.PathLike | None, *, write: bool = True
                    ) -> tuple[Path, Path]:
    """``(run_dir, out)`` (default ``<run_dir>/prior.safetensors``) once both are known to be usable
    (``write``: that files can be created there), before any work; else an :class:`InputError`."""
    from .outputs import check_writable

    run_dir = Path(run_dir)
    out = Path(out) if out is not None else run_dir / "prior.safetensors"
    if run_dir.exists() and not run_dir.is_dir():
        raise InputError("--run-dir is a file, expected a folder (for last.pt and loss_log.jsonl)", run_dir)
    if write:
        check_writable(run_dir / "last.pt", "--run-dir")
        check_writable(out, "--out")
    return run_dir, out


def train(
    data: TrainData,
    run_dir: str | os.PathLike,
    config: TrainConfig = TrainConfig(),
    *,
    out: str | os.PathLike | None = None,
    device: str = "auto",
    resume: bool = True,
    progress: bool = True,
) -> Path | None:
    """Train a prior on ``data`` and write it to ``out`` (default ``<run_dir>/prior.safetensors``).

    Under ``torchrun`` every rank calls this; rank 0 logs, checkpoints and writes the result, and
    the others return ``None``. ``resume=True`` continues from ``<run_dir>/last.pt`` if present.
    """
    config.validate()
    rank, world, local_rank = _dist_info()
    run_dir, out = check_run_paths(run_dir, out, write=rank == 0)
    distributed = world > 1
    if distributed:
        import torch.distributed as dist

        backend = "nccl" if torch.cuda.is_available() and device != "cpu" else "gloo"
        if not dist.is_initialized():
            dist.init_process_group(backend)
        dev = torch.device("cuda", local_rank) if backend == "nccl" else torch.device("cpu")
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
    else:
        dev = resolve_device(device)
    if config.batch_size % world:
        raise InputError(f"batch size {config.batch_size} is not divisible by the {world} processes")

    if rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)

    train_np = data.train.astype(np.float32)
    mean = torch.from_numpy(train_np.mean(0))
    std = torch.from_numpy(train_np.std(0)).clamp_min(1e-4)
    x_train = ((torch.from_numpy(train_np) - mean) / std).to(dev)
    x_val = None if data.val is None else ((torch.from_numpy(data.val.astype(np.float32)) - mean) / std).to(dev)

    torch.manual_seed(config.seed)  # identical initial weights on every rank
    net_config = NetConfig(hidden=config.hidden, embed=config.embed, blocks=config.blocks,
                           dropout=config.dropout, cond_layer=False, scale_by_sigma=config.scale_by_sigma)
    net = ScoreNet(net_config).to(dev)
    params = list(net.parameters())
    sde = SubVPSDE()
    opt = torch.optim.Adam(params, lr=config.lr)
    ema = EMA(params, config.ema_decay)
    step, log_rows, started, rng_state = 0, [], time.time(), None
    phases: list[dict[str, Any]] = []  # {"from_step", "recipe"}: the recipe of each stretch of steps

    last = run_dir / "last.pt"
    if resume and last.exists():
        state = _read_resume_state(last, dev)
        try:
            if _without(state.get("net_config") or {}, "dropout") != _without(net_config.to_dict(), "dropout"):
                raise InputError("resume state was made with another network config; use a new --run-dir", last)
            net.load_state_dict(state["net"])
            opt.load_state_dict(state["opt"])
            ema.load_state_dict(state["ema"])
            step = int(state["step"])
            log_rows = list(state.get("log", []))
            rng_state = (state.get("rng") or {}).get(rank)
            phases = list(state.get("phases", [{"from_step": 0, "recipe": None}]))  # None: not recorded
            if rng_state is not None:
                rng_state = {"batches": rng_state["batches"], "torch": rng_state["torch"]}
        except InputError:
            raise
        except (KeyError, TypeError, ValueError, RuntimeError, AttributeError, IndexError) as e:
            raise InputError(f"resume state is damaged ({_first_line(e)}); delete it or use a new --run-dir",
                             last) from None
    recipe = asdict(config)
    if not phases or _without(phases[-1]["recipe"] or {}, *_BOOKKEEPING) != _without(recipe, *_BOOKKEEPING):
        phases.append({"from_step": step, "recipe": recipe})  # resumed with a changed recipe

    model: nn.Module = net
    if distributed:
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(net, device_ids=[dev.index] if dev.type == "cuda" else None)

    gen = torch.Generator(device=dev)
    gen.manual_seed(config.seed * 1000 + rank * 7919)  # each rank draws its own batches
    if rng_state is not None:  # a resumed run continues exactly where it stopped
        try:
            gen.set_state(rng_state["batches"].to(gen.get_state().device))
            torch.set_rng_state(rng_state["torch"])
        except (TypeError, ValueError, RuntimeError, AttributeError) as e:
            raise InputError(f"resume state is damaged (random state: {_first_line(e)}); delete it or use a new "
                             "--run-dir", last) from None
    local_batch = config.batch_size // world
    bar = None
    if progress and rank == 0:
        from tqdm import tqdm

        bar = tqdm(total=config.steps, initial=step, desc="train", unit="step", dynamic_ncols=True)

    def save_state() -> None:
        # Rank 0 saves; with DDP the other ranks' batch streams restart from their seeds on resume.
        rng = {0: {"batches": gen.get_state(), "torch": torch.get_rng_state()}}
        state = {"net": net.state_dict(), "opt": opt.state_dict(), "ema": ema.state_dict(), "step": step,
                 "net_config": net_config.to_dict(), "log": log_rows, "rng": rng, "phases": phases}
        tmp = last.with_suffix(".tmp")
        torch.save(state, tmp)
        os.replace(tmp, last)

    def export(path: Path) -> Path:
        """Write the EMA weights as a self-contained prior (also used for mid-run snapshots)."""
        from .outputs import refuse_non_finite

        final = copy.deepcopy(net).cpu()  # not ScoreNet(...): that would draw from the global RNG
        with torch.no_grad():
            for p, s in zip(final.parameters(), ema.shadow):
                p.copy_(s)
        try:
            refuse_non_finite({k: v.numpy() for k, v in final.state_dict().items()}, unit="rows", source="training",
                              hint=f"the run diverged by step {step}; lower --lr or keep --grad-clip on")
        except InputError:
            if bar is not None:
                bar.close()
            raise
        provenance = {
            "trained_by": "dposer train",
            "data": data.source,
            "num_train_poses": int(train_np.shape[0]),
            "steps": step,
            "recipe": recipe,
            "world_size": world,
            "final_loss": log_rows[-1]["loss"] if log_rows else None,
            "final_val_loss": next((r["val_loss"] for r in reversed(log_rows) if "val_loss" in r), None),
        }
        if len(phases) > 1:  # resumed with another recipe (e.g. dropout 0 to fine-tune): every phase
            provenance["phases"] = phases
        return save_prior(PosePrior(final, mean, std, sde=sde), path, provenance=provenance)

    net.train()
    running = 0.0
    while step < config.steps:
        idx = torch.randint(0, x_train.shape[0], (local_batch,), generator=gen, device=dev)
        x0 = x_train[idx]
        t = torch.rand(local_batch, generator=gen, device=dev) * (sde.T - config.t_eps) + config.t_eps
        z = torch.randn(x0.shape, generator=gen, device=dev)
        loss = denoising_loss(model, sde, x0, t, z)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        for g in opt.param_groups:
            g["lr"] = config.lr * min(1.0, (step + 1) / max(1, config.warmup))
        if config.grad_clip > 0:
            nn.utils.clip_grad_norm_(params, config.grad_clip)
        opt.step()
        ema.update(params)
        step += 1
        loss_value = float(loss.detach())
        if not math.isfinite(loss_value):
            if bar is not None:
                bar.close()
            raise InputError(f"training diverged at step {step}: the loss is {loss_value}; lower --lr (now "
                             f"{config.lr}) or keep --grad-clip on (last.pt holds the last saved step)", run_dir)
        running += loss_value
        if bar is not None:
            bar.update(1)
        if rank == 0 and (step % config.log_every == 0 or step == config.steps):
            n = config.log_every if step % config.log_every == 0 else step % config.log_every
            row = {"step": step, "loss": running / n, "lr": opt.param_groups[0]["lr"],
                   "elapsed_s": round(time.time() - started, 1)}
            if x_val is not None and (step % config.val_every == 0 or step == config.steps):
                row["val_loss"] = validation_loss(net, ema, sde, x_val)
            log_rows.append(row)
            with open(run_dir / "loss_log.jsonl", "a") as f:
                f.write(json.dumps(row) + "\n")
            if bar is not None:
                val = {"val": f"{row['val_loss']:.4f}"} if "val_loss" in row else {}
                bar.set_postfix(loss=f"{row['loss']:.4f}", **val)
        if step % config.log_every == 0:
            running = 0.0
        if rank == 0 and (step % config.save_every == 0 or step == config.steps):
            save_state()
            export(run_dir / "snapshot.safetensors")
    if bar is not None:
        bar.close()

    result = export(out) if rank == 0 else None
    if distributed:
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()
    return result


@torch.no_grad()
def validation_loss(net: ScoreNet, ema: EMA, sde: SubVPSDE, x_val: torch.Tensor, repeats: int = 4) -> float:
    """Loss of the EMA weights on held-out poses with fixed noise (comparable across steps and runs)."""
    params = list(net.parameters())
    backup = [p.detach().clone() for p in params]
    for p, s in zip(params, ema.shadow):
        p.copy_(s)
    was_training = net.training
    net.eval()
    gen = torch.Generator(device=x_val.device).manual_seed(1234)
    total = 0.0
    for _ in range(repeats):
        t = torch.rand(x_val.shape[0], generator=gen, device=x_val.device) * (1 - 1e-5) + 1e-5
        z = torch.randn(x_val.shape, generator=gen, device=x_val.device)
        total += float(denoising_loss(net, sde, x_val, t, z))
    for p, b in zip(params, backup):
        p.copy_(b)
    net.train(was_training)
    return total / repeats


def _first_line(e: BaseException, limit: int = 160) -> str:
    text = str(e).strip().splitlines()
    line = text[0] if text else type(e).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _read_resume_state(last: Path, dev: torch.device) -> dict[str, Any]:
    """``last.pt`` read by torch's weights-only unpickler; unreadable or foreign content is an :class:`InputError`."""
    try:
        state = torch.load(last, map_location=dev, weights_only=True)
    except Exception as e:  # truncated zip, a pickle the weights-only unpickler refuses, I/O errors
        raise InputError(f"resume state cannot be read ({type(e).__name__}: {_first_line(e)}); delete it or use "
                         "a new --run-dir", last) from None
    missing = [k for k in ("net", "opt", "ema", "step") if not isinstance(state, dict) or k not in state]
    if missing:
        found = f"a {type(state).__name__}" if not isinstance(state, dict) else f"a dict without {missing}"
        raise InputError(f"is not a dposer train resume state (found {found}); delete it or use a new --run-dir",
                         last)
    return state


def load_training_data(path: str | os.PathLike, *, split: str = "train", val_split: str | None = "val") -> TrainData:
    """Poses from an npz with split keys (``train``/``val``, as ``amass_body_poses.npz``), or any pose file.

    Read and checked by ``prior.data`` (no pickles, size limits, shapes, NaN/Inf)."""
    from .data import MAX_FILE_BYTES, load_poses
    from .files import open_npz

    path = Path(path)
    with open_npz(path, max_bytes=MAX_FILE_BYTES) as archive:
        keys = archive.files
    if split not in keys:
        return TrainData(load_poses(path), None, {"path": str(path)})
    train = load_poses(path, key=split)
    val = load_poses(path, key=val_split) if val_split and val_split in keys else None
    return TrainData(train, val, {"path": str(path), "split": split, "val_split": val_split})
