#!/usr/bin/env python
"""Conformance fixtures made by RUNNING the original DPoser code (moonbow721/DPoser) on CPU.

Every random number the original draws is fed from one recorded ``torch.Generator`` per run, so a
reimplementation can replay the exact same draws and must reproduce the stored outputs. Each
fixture is then regenerated a second time in *replay* mode (the recorded draws fed back in) and
the outputs are checked to be bit-identical; the default torch generator's state is checked to be
unchanged after each run, so no draw went unrecorded.

Nothing numerical is reimplemented here: the original modules are imported (or, for the
``DPoserComp`` class that ``run/demo.py`` defines inside ``main()``, its source is extracted with
``ast`` and executed). Only rendering/video modules are stubbed, and only if they fail to import.

Usage (see README.md next to the fixtures for the full setup):

    python make_fixtures.py --src /work/dposer-original/src --out tests/data/dposer_original
"""

from __future__ import annotations

import argparse
import ast
import importlib
import json
import math
import os
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import numpy as np
import torch
from torch.optim.optimizer import register_optimizer_step_post_hook

SEEDS = {"completion": 0, "demo": 1, "scoresde": 2, "shipped": 3, "motion": 4}
POSE_ROWS = [0, 1]
CLIP_FRAMES = slice(0, 32, 4)


# ----------------------------------------------------------------------------------------------
# Random-number recorder
# ----------------------------------------------------------------------------------------------

class Recorder:
    """Replaces torch's random draws by draws from ONE seeded generator (record mode) or by a
    stored list of arrays (replay mode), in call order, float32, keeping every draw and the
    place in the original code that asked for it."""

    PATCHED = ("randn", "randn_like", "rand", "rand_like", "randint", "randint_like",
               "normal", "bernoulli", "multinomial", "randperm")

    def __init__(self, seed: int | None = None, replay: list[np.ndarray] | None = None):
        self.seed = seed
        self.gen = None if seed is None else torch.Generator().manual_seed(seed)
        self.replay = replay
        self.draws: list[np.ndarray] = []
        self.sites: list[str] = []
        self._saved: dict[str, object] = {}

    def _site(self) -> str:
        frame = sys._getframe(1)
        while os.path.abspath(frame.f_code.co_filename) == os.path.abspath(__file__):
            frame = frame.f_back
        path = frame.f_code.co_filename
        if "/src/" in path:
            path = path.split("/src/", 1)[1]
        return f"{path}:{frame.f_lineno}:{frame.f_code.co_name}"

    def _draw(self, shape, device=None, dtype=None):
        shape = tuple(int(s) for s in shape)
        if self.replay is None:
            value = self._saved["randn"](shape, generator=self.gen, dtype=torch.float32)
        else:
            i = len(self.draws)
            if i >= len(self.replay):
                raise RuntimeError(f"replay exhausted at draw {i} (shape {shape}) from {self._site()}")
            stored = self.replay[i]
            if tuple(stored.shape) != shape:
                raise RuntimeError(f"replay draw {i}: stored shape {stored.shape} != asked {shape}")
            value = torch.from_numpy(np.array(stored, dtype=np.float32))
        self.draws.append(value.numpy().copy())
        self.sites.append(self._site())
        return value.to(device=device or "cpu", dtype=dtype or torch.float32)

    def randn(self, *size, generator=None, out=None, dtype=None, layout=None, device=None,
              requires_grad=False, pin_memory=False):
        if generator is not None or out is not None:
            raise RuntimeError("unexpected randn(generator=/out=) in the original code path")
        if len(size) == 1 and isinstance(size[0], (tuple, list, torch.Size)):
            size = tuple(size[0])
        t = self._draw(size, device, dtype)
        return t.requires_grad_(requires_grad)

    def randn_like(self, input, *, dtype=None, layout=None, device=None, requires_grad=False,
                   memory_format=None):
        t = self._draw(input.shape, device or input.device, dtype or input.dtype)
        return t.requires_grad_(requires_grad)

    def _forbidden(self, name):
        def fail(*a, **k):
            raise RuntimeError(f"torch.{name} called from {self._site()}: not a recorded draw")
        return fail

    def __enter__(self):
        for name in self.PATCHED:
            self._saved[name] = getattr(torch, name)
        for name in self.PATCHED:
            setattr(torch, name, getattr(self, name) if name in ("randn", "randn_like")
                    else self._forbidden(name))
        self._state = torch.random.get_rng_state()
        return self

    def __exit__(self, *exc):
        for name, fn in self._saved.items():
            setattr(torch, name, fn)
        if not torch.equal(self._state, torch.random.get_rng_state()):
            raise RuntimeError("the default torch generator moved: a draw went unrecorded")
        if exc[0] is None and self.replay is not None and len(self.draws) != len(self.replay):
            raise RuntimeError(f"replay used {len(self.draws)} of {len(self.replay)} draws")
        return False

    def site_runs(self) -> list[str]:
        """Call sites in order, consecutive repeats of the same site and shape collapsed."""
        runs: list[list] = []
        for site, d in zip(self.sites, self.draws):
            key = f"{site} {tuple(d.shape)}"
            if runs and runs[-1][0] == key:
                runs[-1][1] += 1
            else:
                runs.append([key, 1])
        return [f"{n} x {k}" for k, n in runs]


class StepRecorder:
    """Records the optimisation variable right after each of the first ``n`` optimizer steps
    (a global optimizer post-step hook: the optimizers are created inside the original code)."""

    def __init__(self, n: int = 10):
        self.n, self.values = n, []

    def __enter__(self):
        def hook(optimizer, args, kwargs):
            if len(self.values) < self.n:
                self.values.append(optimizer.param_groups[0]["params"][0].detach().clone().numpy())
        self.handle = register_optimizer_step_post_hook(hook)
        return self

    def __exit__(self, *exc):
        self.handle.remove()
        return False


# ----------------------------------------------------------------------------------------------
# Loading the original code
# ----------------------------------------------------------------------------------------------

def stub_module(name: str, attrs: tuple[str, ...] = ()) -> None:
    """Install a stub for a rendering/video module that fails to import; its functions raise."""
    try:
        importlib.import_module(name)
        return
    except Exception:
        pass
    mod = types.ModuleType(name)
    for a in attrs:
        def fail(*args, _a=a, **kw):
            raise RuntimeError(f"{name}.{_a} is a stub (rendering is not part of the fixtures)")
        setattr(mod, a, fail)
    sys.modules[name] = mod
    STUBBED.append(name)


STUBBED: list[str] = []


def import_original(src: Path):
    sys.path.insert(0, str(src))
    os.chdir(src)
    stub_module("cv2", ("imwrite", "VideoWriter", "VideoWriter_fourcc", "imread"))
    stub_module("pyrender")
    stub_module("lib.body_model.visual", ("save_obj", "render_mesh", "faster_render", "vis_skeletons",
                                          "multiple_render"))
    stub_module("lib.utils.motion_video", ("seq_to_video",))
    from absl import flags
    mods = types.SimpleNamespace()
    mods.completion = importlib.import_module("run.completion")
    # run/completion.py and run/motion_denoising.py both DEFINE the absl flag 'config'.
    delattr(flags.FLAGS, "config")
    mods.motion = importlib.import_module("run.motion_denoising")
    mods.get_config = importlib.import_module("configs.subvp.amass_scorefc_continuous").get_config
    mods.sde_lib = importlib.import_module("lib.algorithms.advanced.sde_lib")
    mods.sampling = importlib.import_module("lib.algorithms.advanced.sampling")
    mods.mutils = importlib.import_module("lib.algorithms.advanced.utils")
    mods.misc = importlib.import_module("lib.utils.misc")
    mods.model = importlib.import_module("lib.algorithms.advanced.model")
    mods.ema = importlib.import_module("lib.algorithms.ema")
    mods.amass = importlib.import_module("lib.dataset.AMASS")
    mods.body_model = importlib.import_module("lib.body_model.body_model")
    mods.DemoComp = demo_comp_class(src / "run" / "demo.py", mods)
    return mods


def demo_comp_class(path: Path, mods):
    """The DPoserComp class defined inside run/demo.py's main(), executed from its own source."""
    text = path.read_text()
    main = next(n for n in ast.parse(text).body if isinstance(n, ast.FunctionDef) and n.name == "main")
    cls = next(n for n in ast.walk(main) if isinstance(n, ast.ClassDef) and n.name == "DPoserComp")
    lines = text.splitlines(keepends=True)[cls.lineno - 1:cls.end_lineno]
    namespace = {"torch": torch, "nn": torch.nn, "math": math, "mutils": mods.mutils,
                 "linear_interpolation": mods.misc.linear_interpolation,
                 "__name__": "run.demo.main"}
    source = "\n" * (cls.lineno - 1) + textwrap.dedent("".join(lines))  # keep demo.py's line numbers
    exec(compile(source, str(path), "exec"), namespace)
    return namespace["DPoserComp"]


def load_model(mods, ckpt: str):
    """ScoreModelFC + EMA exactly as run/demo.py / run/motion_denoising.py load it, on CPU."""
    config = mods.get_config()
    model = mods.model.ScoreModelFC(config, n_poses=mods.amass.N_POSES, pose_dim=3,
                                    hidden_dim=config.model.HIDDEN_DIM, embed_dim=config.model.EMBED_DIM,
                                    n_blocks=config.model.N_BLOCKS)
    model.to("cpu")
    model.eval()
    checkpoint = torch.load(ckpt, map_location={"cuda:0": "cpu"})
    ema = mods.ema.ExponentialMovingAverage(model.parameters(), decay=config.model.ema_rate)
    model.load_state_dict(checkpoint["model_state_dict"])
    ema.load_state_dict(checkpoint["ema"])
    ema.copy_to(model.parameters())
    return config, model


def normalizer_layout(scratch: Path, normalizer_dir: Path) -> tuple[str, str]:
    """A scratch dataset folder with the `{dataset_folder}/{version}/train` layout (symlinks)."""
    train = scratch / "amass_processed" / "version1" / "train"
    train.mkdir(parents=True, exist_ok=True)
    for name in ("axis_normalize1.pt", "axis_normalize2.pt"):
        link = train / name
        if not link.exists():
            link.symlink_to(normalizer_dir / name)
    return str(scratch / "amass_processed"), "version1"


# ----------------------------------------------------------------------------------------------
# Fixture runs (each returns its outputs; draws come from the recorder)
# ----------------------------------------------------------------------------------------------

def wrap_loss(compfn, log: dict):
    """Record t and quan_t at each call of the instance's loss, then run the original."""
    original = compfn.loss

    def loss(x_0, vec_t, weighted=False, multi_denoise=False):
        log.setdefault("times", []).append(float(vec_t[0]))
        log.setdefault("t_index", []).append(int(weighted))
        return original(x_0, vec_t, weighted, multi_denoise)
    compfn.loss = loss


def run_completion(ctx, comp_cls, rec: Recorder):
    """DPoserComp (either class) as run/completion.py drives it: H = 2 hypotheses, stacked dim=1."""
    m, log = ctx.mods, {}
    sde = m.sde_lib.subVPSDE(beta_min=0.1, beta_max=20, N=1000)
    poses = ctx.normalizer.offline_normalize(ctx.pose_body, from_axis=True)
    with rec, StepRecorder() as steps:
        mask, observation = m.misc.create_mask(poses, part="left_leg")
        compfn = comp_cls(ctx.model, sde, True, batch_size=2)
        wrap_loss(compfn, log)
        hypos = []
        for hypo in range(2):
            hypos.append(compfn.optimize(observation, mask).detach())
            if hypo == 0:
                first = list(steps.values)
                steps.values.clear()
        second = list(steps.values)
        out = torch.stack(hypos, dim=1)
    out_axis = ctx.normalizer.offline_denormalize(out, to_axis=True)
    times, t_index = np.array(log["times"], np.float32), np.array(log["t_index"], np.int64)
    if not (np.array_equal(times[:200], times[200:]) and np.array_equal(t_index[:200], t_index[200:])):
        raise RuntimeError("the two hypotheses used different time schedules")
    return {"poses": poses.numpy(), "mask": mask[0].numpy(), "observation": observation.numpy(),
            "out": out.numpy(), "out_axis": out_axis.numpy(),
            "first_steps": np.stack([np.stack(first), np.stack(second)]),
            "times": times[:200], "t_index": t_index[:200]}


def run_scoresde(ctx, rec: Recorder, task: str):
    """The PC sampler as demo.py's completion2 loop calls it, with ``args.task = task``."""
    m = ctx.mods
    config = m.get_config()
    config.model.num_scales = 50
    sde = m.sde_lib.subVPSDE(0.1, 20, N=50)
    poses = ctx.normalizer.offline_normalize(ctx.pose_body, from_axis=True)
    with rec:
        mask, observation = m.misc.create_mask(poses, part="left_leg")
        sampler = m.sampling.get_sampling_fn(config, sde, observation.shape, lambda x: x, 1e-3, device="cpu")
        hypos = []
        for hypo in range(2):
            _, completion = sampler(ctx.model, observation=observation, mask=mask,
                                    args=argparse.Namespace(task=task))
            hypos.append(completion)
        out = torch.stack(hypos, dim=1)
    return {"out": out.numpy(), "mask": mask[0].numpy(), "observation": observation.numpy()}


def float64_mse(x, y):
    """nn.MSELoss(reduction='none') evaluated in float64 (the floor run's one rounding change)."""
    return torch.nn.functional.mse_loss(x.double(), y.double(), reduction="none")


def run_motion(ctx, rec: Recorder, loss_fn=None):
    """denoise() as run/motion_denoising.py calls it; ``loss_fn`` replaces MotionDenoise.loss_fn."""
    md, log = ctx.mods.motion, {}
    args = argparse.Namespace(device="cpu", time_strategy="3", file_path=None,
                              dataset_folder=ctx.dataset_folder, version=ctx.version,
                              bodymodel_path=ctx.bodymodel_path)
    cls = md.MotionDenoise
    orig_init, orig_opt, orig_loss, orig_smooth = cls.__init__, cls.optimize, cls.DPoser_loss, md.gaussian_smoothing

    def init(self, *a, **k):
        orig_init(self, *a, **k)
        if loss_fn is not None:
            self.loss_fn = loss_fn

    def optimize(self, joints3d, *a, **k):
        log["noisy_joints"] = joints3d.detach().clone().numpy()
        return orig_opt(self, joints3d, *a, **k)

    def dposer_loss(self, x_0, vec_t, quan_t, *a, **k):
        log.setdefault("times", []).append(float(vec_t[0]))
        log.setdefault("t_index", []).append(int(quan_t))
        return orig_loss(self, x_0, vec_t, quan_t, *a, **k)

    def smoothing(data, *a, **k):
        log["pose_body"] = data.detach().clone().numpy()
        log["smoothed_ref"] = orig_smooth(data, *a, **k)
        return log["smoothed_ref"]

    cls.__init__, cls.optimize, cls.DPoser_loss, md.gaussian_smoothing = init, optimize, dposer_loss, smoothing
    try:
        with rec, StepRecorder() as steps:
            results = md.denoise(ctx.config, args, ctx.model, ctx.gt_file, out_path=None, std=0.04)
    finally:
        cls.__init__, cls.optimize, cls.DPoser_loss, md.gaussian_smoothing = orig_init, orig_opt, orig_loss, orig_smooth
    return {"noisy_joints": log["noisy_joints"], "first_steps": np.stack(steps.values),
            "pose_body": log["pose_body"], "smoothed": log["smoothed_ref"].detach().numpy(),
            "MPJPE": results["MPJPE"], "MPVPE": results["MPVPE"], "init_MPJPE": results["init_MPJPE"],
            "times": np.array(log["times"], np.float32), "t_index": np.array(log["t_index"], np.int64)}


# ----------------------------------------------------------------------------------------------
# Record, replay, compare, save
# ----------------------------------------------------------------------------------------------

def record_and_replay(name: str, run):
    """Run once recording draws from SEEDS[name], once replaying them; outputs must be identical."""
    rec = Recorder(seed=SEEDS[name])
    outputs = run(rec)
    again = Recorder(replay=rec.draws)
    replayed = run(again)
    for key, value in outputs.items():
        if not np.array_equal(value, replayed[key]):
            raise RuntimeError(f"{name}: replay of '{key}' is not bit-identical")
    if again.sites != rec.sites:
        raise RuntimeError(f"{name}: replay drew from different call sites")
    print(f"[{name}] {len(rec.draws)} draws, replay bit-identical", flush=True)
    for line in rec.site_runs():
        print(f"    {line}", flush=True)
    return rec, outputs


def check_sites(rec: Recorder, expected: list[tuple[str, int]]):
    """Assert the draws came from the expected (calling function, count) sequence."""
    names = [s.rsplit(":", 1)[1] for s in rec.sites]
    if names != [site for site, n in expected for _ in range(n)]:
        raise RuntimeError(f"draw order differs from expected: {rec.site_runs()[:8]}")


def completion_fixture(ctx):
    m = ctx.mods
    rec, out = record_and_replay("completion", lambda r: run_completion(ctx, m.completion.DPoserComp, r))
    check_sites(rec, [("create_mask", 1), ("loss", 400)])
    drec, dout = record_and_replay("demo", lambda r: run_completion(ctx, m.DemoComp, r))
    check_sites(drec, [("create_mask", 1), ("loss", 400)])
    return {
        "pose_body": ctx.pose_body.numpy(), "poses_normalized": out["poses"], "mask": out["mask"],
        "observation": out["observation"],
        "start": rec.draws[0], "z": np.stack(rec.draws[1:]).reshape(2, 200, 2, 63),
        "out": out["out"], "out_axis": out["out_axis"], "first_steps": out["first_steps"],
        "times": out["times"], "t_index": out["t_index"],
        "demo_start": drec.draws[0], "demo_z": np.stack(drec.draws[1:]).reshape(2, 200, 2, 63),
        "demo_out": dout["out"], "demo_observation": dout["observation"],
        "demo_times": dout["times"], "demo_t_index": dout["t_index"],
        "seed": np.int64(SEEDS["completion"]), "demo_seed": np.int64(SEEDS["demo"]),
        "draw_order": np.array(rec.site_runs()), "demo_draw_order": np.array(drec.site_runs()),
    }, {"completion": rec.site_runs(), "demo": drec.site_runs()}


def scoresde_fixture(ctx):
    rec, out = record_and_replay("scoresde", lambda r: run_scoresde(ctx, r, "completion"))
    per_hypo = [("prior_sampling", 1)] + [("imputation_update_fn", 1), ("update_fn", 1),
                                          ("imputation_update_fn", 1)] * 50
    check_sites(rec, [("create_mask", 1)] + per_hypo * 2)
    srec, sout = record_and_replay("shipped", lambda r: run_scoresde(ctx, r, "completion2"))
    check_sites(srec, [("create_mask", 1)] + ([("prior_sampling", 1)] + [("update_fn", 1)] * 50) * 2)
    z = np.stack(rec.draws[1:]).reshape(2, 151, 2, 63)
    sz = np.stack(srec.draws[1:]).reshape(2, 51, 2, 63)
    return {
        "pose_body": ctx.pose_body.numpy(), "mask": out["mask"], "observation": out["observation"],
        "start": rec.draws[0], "z_prior": z[:, 0], "z_steps": z[:, 1:].reshape(2, 50, 3, 2, 63),
        "out": out["out"],
        "shipped_start": srec.draws[0], "shipped_observation": sout["observation"],
        "shipped_z_prior": sz[:, 0], "shipped_z_steps": sz[:, 1:].reshape(2, 50, 1, 2, 63),
        "shipped_out": sout["out"],
        "seed": np.int64(SEEDS["scoresde"]), "shipped_seed": np.int64(SEEDS["shipped"]),
        "draw_order": np.array(rec.site_runs()), "shipped_draw_order": np.array(srec.site_runs()),
    }, {"scoresde": rec.site_runs(), "shipped": srec.site_runs()}


def motion_fixture(ctx, floor_threads: int):
    rec, out = record_and_replay("motion", lambda r: run_motion(ctx, r))
    check_sites(rec, [("denoise", 1), ("__init__", 1), ("DPoser_loss", 180)])
    body = ctx.mods.body_model.BodyModel(bm_path=ctx.bodymodel_path, model_type="smplx", batch_size=8,
                                         num_betas=10)
    with torch.no_grad():
        gt = body(pose_body=ctx.clip)
    floor = chaotic_floor(ctx, rec, out, floor_threads)
    return {
        "pose_body_gt": ctx.clip.numpy(), "joint_noise": rec.draws[0], "start_noise": rec.draws[1],
        "z": np.stack(rec.draws[2:]), "noisy_joints": out["noisy_joints"], "first_steps": out["first_steps"],
        "pose_body": out["pose_body"], "smoothed": out["smoothed"], "MPJPE": out["MPJPE"],
        "MPVPE": out["MPVPE"], "init_MPJPE": out["init_MPJPE"], "times": out["times"],
        "t_index": out["t_index"], "gt_joints": gt.Jtr[:, :22].numpy(), "vertices0": gt.v[0].numpy(),
        "seed": np.int64(SEEDS["motion"]), "draw_order": np.array(rec.site_runs()), **floor,
    }, {"motion": rec.site_runs()}


def floor_diff(label: str, again: dict, out: dict) -> tuple[float, float, float]:
    pose = float(np.abs(again["pose_body"] - out["pose_body"]).max())
    mpjpe = float(np.abs(again["MPJPE"] - out["MPJPE"]).max() * 10.0)  # MPJPE is in cm
    first = float(np.abs(again["first_steps"] - out["first_steps"]).max())
    print(f"[floor] {label}: max|d pose_body| {pose:.3e} rad, max|d MPJPE| {mpjpe:.3e} mm, "
          f"max|d first_steps| {first:.3e} rad", flush=True)
    return pose, mpjpe, first


def chaotic_floor(ctx, rec: Recorder, out: dict, threads: int) -> dict:
    """Replay the motion run twice more, each with ONE rounding-level change: more threads, and
    the DPoser loss's squared errors evaluated in float64. The float64 run sets the floor."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        again = run_motion(ctx, Recorder(replay=rec.draws))
        t_pose, t_mpjpe, _ = floor_diff(f"threads {before}->{threads}", again, out)
    finally:
        torch.set_num_threads(before)
    again = run_motion(ctx, Recorder(replay=rec.draws), loss_fn=float64_mse)
    pose, mpjpe, first = floor_diff("float64 DPoser MSE", again, out)
    return {"floor_pose_rad": np.float64(pose), "floor_mpjpe_mm": np.float64(mpjpe),
            "floor_first_steps_rad": np.float64(first),
            "floor_change": np.array("MotionDenoise.loss_fn = float64 MSE (x.double(), y.double()), "
                                     "everything else as recorded"),
            "floor_threads_pose_rad": np.float64(t_pose), "floor_threads_mpjpe_mm": np.float64(t_mpjpe)}


def common_keys(ctx) -> dict:
    return {"mean": ctx.normalizer.mean_poses.numpy(), "std": ctx.normalizer.std_poses.numpy(),
            "commit": np.array(ctx.commit), "torch_version": np.array(torch.__version__)}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--src", type=Path, default=Path("/work/dposer-original/src"))
    p.add_argument("--mirror", default="/work/.mirror/moonbow721+DPoser/repo")
    p.add_argument("--out", type=Path, default=Path("/work/main/tests/data/dposer_original"))
    p.add_argument("--scratch", type=Path, default=Path("/work/dposer-original/scratch"))
    p.add_argument("--ckpt", default="/work/shared/conformance/dposer_official_format_random.pth")
    p.add_argument("--normalizer-dir", type=Path, default=Path("/work/shared/data/dposer_normalizer_files"))
    p.add_argument("--data-dir", type=Path, default=Path("/work/shared/data"))
    p.add_argument("--body-tests", type=Path, default=Path("/work/main/tests"),
                   help="folder with synthetic_body.py (write_synthetic_model)")
    p.add_argument("--floor-threads", type=int, default=2)
    p.add_argument("--only", choices=["completion", "scoresde", "motion"], action="append")
    a = p.parse_args()
    torch.set_num_threads(1)
    a.out, a.scratch, a.src = a.out.resolve(), a.scratch.resolve(), a.src.resolve()
    a.scratch.mkdir(parents=True, exist_ok=True)

    ctx = types.SimpleNamespace()
    ctx.commit = subprocess.check_output(["git", f"--git-dir={a.mirror}", "rev-parse", "HEAD"], text=True).strip()
    ctx.bodymodel_path = str(a.scratch / "SMPLX_NEUTRAL.npz")
    if not Path(ctx.bodymodel_path).exists():
        sys.path.insert(0, str(a.body_tests))
        from synthetic_body import write_synthetic_model
        write_synthetic_model(ctx.bodymodel_path, "smplx", seed=0)
    ctx.dataset_folder, ctx.version = normalizer_layout(a.scratch, a.normalizer_dir)
    ctx.pose_body = torch.from_numpy(np.load(a.data_dir / "amass_body_poses.npz")["val"][POSE_ROWS])
    ctx.clip = torch.from_numpy(np.load(a.data_dir / "gesture_clip.npz")["pose_body"][CLIP_FRAMES].astype(np.float32))
    ctx.gt_file = str(a.scratch / "gesture_gt.npz")
    np.savez(ctx.gt_file, pose_body=ctx.clip.numpy())

    ctx.mods = import_original(a.src)
    print(f"commit {ctx.commit}; stubbed: {STUBBED}", flush=True)
    ctx.config, ctx.model = load_model(ctx.mods, a.ckpt)
    ctx.normalizer = ctx.mods.amass.Posenormalizer(data_path=f"{ctx.dataset_folder}/{ctx.version}/train",
                                                   normalize=True, min_max=False, rot_rep="axis", device="cpu")

    a.out.mkdir(parents=True, exist_ok=True)
    orders = {}
    makers = {"completion": completion_fixture, "scoresde": scoresde_fixture,
              "motion": lambda c: motion_fixture(c, a.floor_threads)}
    for name in a.only or makers:
        arrays, order = makers[name](ctx)
        np.savez_compressed(a.out / f"{name}.npz", **arrays, **common_keys(ctx))
        orders.update(order)
        print(f"wrote {a.out / (name + '.npz')} ({(a.out / (name + '.npz')).stat().st_size} bytes)", flush=True)
    (a.scratch / "draw_orders.json").write_text(json.dumps(orders, indent=1))


if __name__ == "__main__":
    main()
