"""``dposer``: the batch command line (tyro subcommands; progress bars on stderr).

Every subcommand takes ``--ckpt``, ``--body-model`` and ``--device``; ``~`` is expanded in every
path. Bad input exits with code 2 and one line naming the file and the problem; outputs are written
atomically, so Ctrl-C (exit 130) and SIGTERM (exit 143) leave no partial file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import tyro

from .errors import InputError

# Bounds of the flags, checked before any work so a typo is one line, not an allocation failure.
MAX_SAMPLES = 100_000
MAX_STEPS = 100_000
MAX_HYPOTHESES = 1000
MAX_COMPLETIONS = 10_000_000  # poses x hypotheses of one `dposer complete`
MAX_TRAJECTORY = 4_000_000  # steps x samples kept by `dposer generate --trajectory` (1 GB)
MAX_EVAL_SAMPLES = 10_000  # PRDC holds three (N, N) float64 distance matrices
MAX_NOISE_M = 1.0
MAX_WINDOW = 100_000
MAX_SEED = 2**63 - 2  # torch seeds are 64-bit; denoise also uses seed + 1


def _in_range(flag: str, value: float, low: float, high: float, unit: str = "") -> None:
    """Refuse ``flag``'s ``value`` outside ``low..high`` (NaN included), naming both."""
    if not (low <= value <= high):
        raise InputError(f"{flag} must be in {low}..{high}{unit} (got {value})")


def _check_seed(seed: int | None, flag: str = "--seed") -> None:
    if seed is not None:
        _in_range(flag, seed, 0, MAX_SEED)


def _checkpoint_path(prior) -> str | None:
    """The file a prior was read from (named when its results are unusable)."""
    return prior.info.get("path")


@dataclass
class Common:
    ckpt: Path | None = None
    """Prior checkpoint: official DPoser .pth, DPoser-X .ckpt or a dposer-view .safetensors (default: the shipped
    prior)."""
    body_model: Path | None = None
    """SMPL-X / SMPL-H / SMPL model file or folder (default: the mannequin-x body)."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where the prior runs; auto picks CUDA when available."""

    def load_prior(self):
        from .checkpoint import load_prior

        if self.device == "cuda" and not torch.cuda.is_available():
            raise InputError("--device cuda was asked for, but no CUDA device is available")
        return load_prior(self.ckpt, device=self.device)

    def load_body(self):
        from .body import load_body_model

        return load_body_model(self.body_model)

    def joints_of(self, pose_body: np.ndarray) -> np.ndarray:
        """``(..., 63)`` -> ``(..., 22, 3)`` SMPL-X body joints (metres, no root) from --body-model."""
        from .evaluate import body_joints

        return body_joints(self.load_body(), pose_body)


class _Bar:
    """A tqdm bar on stderr fed by task progress callbacks. A run that stops (an error, Ctrl-C,
    SIGTERM) clears the bars it left open (:meth:`close_all`), so its message starts its own line.
    SIGTERM is held while a bar is made or closed: tqdm prints the bar before it records that it
    did, and a bar cut off in between cannot be cleared."""

    _open: list[_Bar] = []

    def __init__(self, desc: str) -> None:
        from tqdm import tqdm

        with _sigterm_held():
            self.bar = tqdm(desc=desc, unit="step", file=sys.stderr, dynamic_ncols=True, leave=False)
            _Bar._open.append(self)

    def __call__(self, progress) -> None:
        self.bar.total = progress.total
        self.bar.n = progress.step
        self.bar.set_postfix_str(f"t={progress.t:.3f}", refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        with _sigterm_held():
            self.bar.close()
            if self in _Bar._open:
                _Bar._open.remove(self)

    @classmethod
    def close_all(cls) -> None:
        for bar in list(cls._open):
            bar.close()


@dataclass(kw_only=True)
class Generate(Common):
    """Sample poses from the prior."""

    out: Path
    """Output .npz: pose_body (N, 63), joints (N, 22, 3) from --body-model; with --trajectory also
    trajectory (steps, N, 63) and t (steps,)."""
    num: int = 16
    """Number of samples (1..100000, solved in one batch: memory grows linearly with it)."""
    steps: int = 1000
    """Reverse-diffusion steps (2..100000); with --trajectory, --steps x --num at most 4,000,000."""
    sampler: Literal["sde", "ode"] = "sde"
    """Euler-Maruyama predictor-corrector (sde) or deterministic probability-flow ODE (ode)."""
    corrector: bool = False
    """Add a Langevin corrector step (snr 0.16) to the sde sampler."""
    seed: int | None = None
    """Random seed (0..2^63-2): the same seed gives the same samples."""
    trajectory: bool = False
    """Also save every step of the reverse diffusion."""

    def run(self) -> None:
        from .files import save_npz
        from .outputs import check_writable, refuse_non_finite
        from .sampling import generate

        _in_range("--num", self.num, 1, MAX_SAMPLES)
        _in_range("--steps", self.steps, 2, MAX_STEPS)
        _check_seed(self.seed)
        if self.trajectory and self.steps * self.num > MAX_TRAJECTORY:
            raise InputError(f"--trajectory keeps --steps x --num = {self.steps * self.num} poses, over the "
                             f"{MAX_TRAJECTORY} limit (1 GB); lower --steps or --num")
        check_writable(self.out, "--out")
        prior = self.load_prior()
        bar = _Bar("generate")
        try:
            res = generate(
                prior, self.num, steps=self.steps, sampler=self.sampler, corrector=self.corrector,
                seed=self.seed, record=self.trajectory, callback=bar,
            )
        finally:
            bar.close()
        arrays = {"pose_body": res.pose_body.numpy()}
        arrays["joints"] = self.joints_of(arrays["pose_body"])
        if self.trajectory:
            arrays |= {"trajectory": res.trajectory.numpy(), "t": res.t.numpy()}
        refuse_non_finite(arrays, unit="samples", path=_checkpoint_path(prior), axes={"trajectory": 1})
        save_npz(self.out, arrays)
        print(f"wrote {self.out}: pose_body {arrays['pose_body'].shape}", file=sys.stderr)


@dataclass(kw_only=True)
class Complete(Common):
    """Complete masked body parts of every pose in a file, with several hypotheses each."""

    poses: Path
    """Input .npz with pose_body (N, 63) (also pose_samples, body_pose, or an AMASS clip's frames)."""
    out: Path
    """Output .npz: pose_body (N, H, 63) with observed joints copied exactly, mask (63,) True = completed,
    joints (N, H, 22, 3) from --body-model."""
    part: str | None = None
    """Body part to complete: left_leg, right_leg, left_arm, right_arm, trunk, hands, legs, arms, head, neck."""
    joints: str | None = None
    """Alternatively, comma-separated body joint indices 0..20 (or names like left_knee)."""
    hypotheses: int = 10
    """Completions per pose (1..1000; poses x hypotheses at most 10,000,000). The poses are solved in
    chunks, so the solver's memory does not grow with the number of poses N; the result is held
    whole until it is written: about 0.5 KB x H per pose (pose_body and joints, float32)."""
    solver: Literal["dps", "dposer", "dposer-paper", "scoresde"] = "dps"
    """dps: guided posterior sampling (hypothesis 0 = the consensus of the draws); dposer: DPoser's
    optimisation with our defaults; dposer-paper: the original code's optimisation exactly (its time
    grid, one shared start per pose, its batch-mean loss); scoresde: the ScoreSDE replacement sampler."""
    steps: int = 1000
    """Sampler steps for the scoresde solver (1..100000)."""
    seed: int | None = None
    """Random seed (0..2^63-2): the same seed gives the same completions. Each pose draws from its own
    stream (see prior.completion.complete), so pose i's completions do not depend on the other poses."""

    def run(self) -> None:
        from .completion import complete, make_mask
        from .data import load_poses
        from .files import save_npz
        from .outputs import check_writable, refuse_non_finite
        from .parts import parse_joints

        if (self.part is None) == (self.joints is None):
            raise InputError("give exactly one of --part or --joints")
        _in_range("--hypotheses", self.hypotheses, 1, MAX_HYPOTHESES)
        _in_range("--steps", self.steps, 1, MAX_STEPS)
        _check_seed(self.seed)
        try:
            mask = make_mask(part=self.part) if self.part else make_mask(joints=parse_joints(self.joints))
        except ValueError as e:
            raise InputError(str(e)) from None
        check_writable(self.out, "--out")
        poses = load_poses(self.poses)
        if len(poses) * self.hypotheses > MAX_COMPLETIONS:
            raise InputError(f"{len(poses)} poses x --hypotheses {self.hypotheses} = {len(poses) * self.hypotheses} "
                             f"completions, over the {MAX_COMPLETIONS} limit of one run (about 0.5 KB each in "
                             "memory); split the file or lower --hypotheses", self.poses)
        prior = self.load_prior()
        bar = _Bar("complete")
        try:
            res = complete(
                prior, torch.from_numpy(poses), mask, hypotheses=self.hypotheses, solver=self.solver,
                steps=self.steps, seed=self.seed, callback=bar,
            )
        finally:
            bar.close()
        pose = res.pose_body.numpy()
        arrays = {"pose_body": pose, "mask": res.mask.numpy(), "joints": self.joints_of(pose)}
        refuse_non_finite(arrays, unit="poses", path=_checkpoint_path(prior))
        save_npz(self.out, arrays)
        print(f"wrote {self.out}: pose_body {tuple(res.pose_body.shape)}", file=sys.stderr)


from .train import TrainConfig  # noqa: E402  (a light import: the recipe dataclass)


@dataclass(kw_only=True)
class Train(Common, TrainConfig):
    """Train a DPoser network on pose data; resumable; runs on many GPUs under torchrun."""

    data: Path
    """Training poses: an npz with split keys (train/val) such as amass_body_poses.npz, or any pose file."""
    split: str = "train"
    """Key of the training split inside --data."""
    val_split: str | None = "val"
    """Key of the validation split (val loss is logged); None to skip."""
    run_dir: Path = Path("runs/train")
    """Where last.pt (resume state) and loss_log.jsonl go."""
    out: Path | None = None
    """The trained prior (.safetensors); default <run-dir>/prior.safetensors."""
    resume: bool = True
    """Continue from <run-dir>/last.pt when it exists."""

    def run(self) -> None:
        from .train import check_run_paths, load_training_data, train

        recipe = TrainConfig(**{f: getattr(self, f) for f in TrainConfig.__dataclass_fields__})
        recipe.validate()
        check_run_paths(self.run_dir, self.out)
        data = load_training_data(self.data, split=self.split, val_split=self.val_split)
        path = train(data, self.run_dir, recipe, out=self.out, device=self.device, resume=self.resume)
        if path is not None:
            print(f"wrote {path}", file=sys.stderr)


@dataclass(kw_only=True)
class Eval(Common):
    """Evaluate a prior: generation (APD, pose-space FD, PRDC) and completion per part vs baselines."""

    data: Path
    """Real poses with split keys (train/val), e.g. ../shared/data/amass_body_poses.npz."""
    fid_stats: Path
    """Frechet reference statistics (mu, sigma), e.g. ../shared/data/pose_fid_statistics.npz."""
    out: Path = Path("eval.json")
    """Report JSON (the table is also printed)."""
    split: str = "val"
    """Split evaluated."""
    train_split: str = "train"
    """Split the baselines draw from."""
    num_poses: int | None = None
    """Evaluate only the first N >= 1 poses of --split (default: all)."""
    num_samples: int = 500
    """Generated samples for APD / FD / PRDC (4..10000: PRDC's 3 nearest neighbours need 4, and it
    holds (N, N) distance matrices)."""
    steps: int = 1000
    """Sampler steps for generation (2..100000)."""
    hypotheses: int = 10
    """Completion hypotheses per pose (1..1000, and at most the training poses: the nearest-neighbour
    baseline draws that many)."""
    parts: tuple[str, ...] = ("left_leg", "right_leg", "left_arm", "right_arm", "trunk", "legs", "arms")
    """Parts to complete."""
    solvers: tuple[Literal["dps", "dposer", "dposer-paper", "scoresde"], ...] = ("dps", "dposer")
    """Completion solvers evaluated."""
    baselines_only: bool = False
    """Skip the prior: only the mean-pose and nearest-neighbour baselines."""
    seed: int = 0
    """Random seed (0..2^63-2) of generation and completion."""

    def run(self) -> None:
        import json

        from .data import load_poses
        from .evaluate import EvalData, evaluate_completion, evaluate_generation, format_tables, load_fid_stats
        from .files import write_text_atomic
        from .outputs import check_writable, refuse_non_finite
        from .parts import PARTS

        for part in self.parts:
            if part not in PARTS:
                raise InputError(f"unknown part {part!r}; expected one of {', '.join(PARTS)}")
        if self.num_poses is not None and self.num_poses < 1:
            raise InputError(f"--num-poses must be >= 1 (got {self.num_poses})")
        _in_range("--num-samples", self.num_samples, 4, MAX_EVAL_SAMPLES)
        _in_range("--steps", self.steps, 2, MAX_STEPS)
        _in_range("--hypotheses", self.hypotheses, 1, MAX_HYPOTHESES)
        _check_seed(self.seed)
        check_writable(self.out, "--out")
        train = load_poses(self.data, key=self.train_split)
        test = load_poses(self.data, key=self.split)
        if self.num_poses is not None:
            test = test[: self.num_poses]
        if self.hypotheses > len(train):
            raise InputError(f"--hypotheses {self.hypotheses} is more than the {len(train)} poses of "
                             f"--train-split {self.train_split!r}, which the nearest-neighbour baseline draws from",
                             self.data)
        num_gen = min(self.num_samples, len(test)) if self.num_poses else self.num_samples
        if not self.baselines_only and min(num_gen, len(test)) < 4:
            raise InputError(f"generation metrics need at least 4 poses of --split {self.split!r}, got {len(test)} "
                             "(raise --num-poses, or --baselines-only)", self.data)
        mu, sigma = load_fid_stats(self.fid_stats)
        data = EvalData(train=train, test=test, fid_mu=mu, fid_sigma=sigma)
        body = self.load_body()
        prior = None if self.baselines_only else self.load_prior()
        report: dict = {"checkpoint": None if prior is None else prior.info, "data": str(self.data),
                        "split": self.split, "num_poses": int(len(test)), "hypotheses": self.hypotheses,
                        "body_model": body.kind}
        if prior is not None:
            bar = _Bar("generate")
            try:
                report["generation"] = evaluate_generation(
                    prior, body, data, num=num_gen, steps=self.steps, seed=self.seed, callback=bar)
            finally:
                bar.close()
        report["completion"] = evaluate_completion(
            prior, body, data, parts=self.parts, solvers=self.solvers, hypotheses=self.hypotheses, seed=self.seed,
            callback=lambda part: print(f"completing {part} ...", file=sys.stderr))
        metrics = {"generation": list((report.get("generation") or {}).values())}
        metrics |= {f"completion {part}": list(row.values()) for part, row in report["completion"].items()}
        refuse_non_finite({k: np.asarray(v, dtype=np.float64) for k, v in metrics.items()}, unit="metrics",
                          path=None if prior is None else _checkpoint_path(prior))
        write_text_atomic(self.out, json.dumps(report, indent=2, default=str))
        print(format_tables(report))
        print(f"wrote {self.out}", file=sys.stderr)


@dataclass(kw_only=True)
class Denoise(Common):
    """Denoise motion: fit body poses with the prior to noisy joints. With --clip, DPoser's
    experiment (noise a clip's joints, denoise, compare with the clean ones); with --joints, your
    own observed 3D joints (NaN = not seen in that frame)."""

    out: Path
    """Output AMASS-style .npz of the denoised clip (pose_body, root_orient, trans when known or
    fitted, mocap_frame_rate, ...) plus noisy_joints (T, 22, 3), the observations."""
    clip: Path | None = None
    """Input clip .npz (AMASS SMPL-X / SMPL+H, or pose_body with root_orient): the ground truth."""
    joints: Path | None = None
    """Observed joints .npz instead of --clip: 'joints' (or 'noisy_joints', 'keypoints3d',
    'joints3d') (T, J >= 22, 3) in metres, SMPL-X joints 0..21 first; optional root_orient, trans,
    betas, mocap_frame_rate. A root it lacks is fitted."""
    joints_key: str | None = None
    """The array of --joints to read (default: the first of the names above)."""
    noise_std: float | None = None
    """Gaussian noise added to every joint coordinate, metres (0..1; default 0.04 with --clip, 0 with --joints)."""
    observed: str | None = None
    """Observed joints (default all 22): SMPL-X indices 0..21, names (left_wrist) or parts (legs), comma-separated."""
    window: int = 300
    """Frames per window (2..100000); longer clips are solved in overlapping, cross-faded windows."""
    overlap: int = 30
    """Frames shared by neighbouring windows (0..window-1)."""
    fit_root: bool = False
    """Also fit the root orientation and translation instead of taking them from the input (always
    on for --joints without root_orient and trans)."""
    method: Literal["ours", "paper"] = "ours"
    """ours: our defaults (SNR-weighted prior, temporal term on joints, start at the mean pose, linear
    time); paper: the original code's motion denoising exactly (unweighted prior, temporal term on
    the body's mesh vertices, start about the zero pose, its staircase time grid and its settings for
    the noise level nearest --noise-std: 0.02, 0.04 or 0.1 m). README: "Faithful to DPoser"."""
    smooth: bool = False
    """Gaussian-smooth the result over time (window 3, sigma 2, ends kept), as the original does before it
    reports errors."""
    seed: int | None = None
    """Random seed (0..2^63-3): the same seed gives the same noise and the same result."""
    metrics: Path | None = None
    """Also write metrics to this JSON file: distance of the result to the observations (fit_mm),
    and with --clip MPJPE (mm) of the noisy input and of the result against the clean joints.
    Written together with --out: both or neither."""

    def run(self) -> None:
        import json
        from contextlib import ExitStack

        from .data import clip_arrays, load_clip, load_joints
        from .files import atomic_write
        from .motion import DenoiseOptions, parse_observed
        from .motion_fit import fit_motion, observe_motion
        from .outputs import check_distinct, check_writable, refuse_non_finite
        from .parts import NUM_SKELETON_JOINTS

        if (self.clip is None) == (self.joints is None):
            raise InputError("give exactly one of --clip (a clip to noise and denoise) and --joints (observed joints)")
        noise_std = self.noise_std if self.noise_std is not None else (0.04 if self.clip is not None else 0.0)
        _in_range("--noise-std", noise_std, 0.0, MAX_NOISE_M, " metres")
        _in_range("--window", self.window, 2, MAX_WINDOW, " frames")
        _in_range("--overlap", self.overlap, 0, self.window - 1, " frames (below --window)")
        if self.seed is not None:  # the solver draws from seed + 1
            _in_range("--seed", self.seed, 0, MAX_SEED - 1)
        check_writable(self.out, "--out")
        if self.metrics is not None:
            check_writable(self.metrics, "--metrics")
        check_distinct(**{"--out": self.out, "--metrics": self.metrics})
        source = self.clip if self.clip is not None else self.joints
        motion = load_clip(self.clip) if self.clip is not None else load_joints(self.joints, key=self.joints_key)
        try:
            settings = {"window": self.window, "overlap": self.overlap, "fit_root": self.fit_root,
                        "smooth": self.smooth}
            paper = DenoiseOptions.paper(noise_std if noise_std > 0 else 0.04, **settings)
            options = paper if self.method == "paper" else DenoiseOptions(**settings)
            observed = None if self.observed is None else parse_observed(self.observed)
        except ValueError as e:
            raise InputError(str(e)) from None
        prior, body = self.load_prior(), self.load_body()
        bar = _Bar("denoise")
        try:
            # The noise and the solver draw from seed and seed + 1: one seed reproduces both.
            obs = observe_motion(body, motion, noise_std_m=noise_std, seed=self.seed)
            fit = fit_motion(prior, body, motion, obs, observed=observed, options=options,
                             seed=None if self.seed is None else self.seed + 1, callback=bar)
        except ValueError as e:  # observations the solver cannot use (e.g. none seen)
            raise InputError(str(e), source) from None
        finally:
            bar.close()
        arrays = clip_arrays(fit.clip)
        metrics = fit.metrics
        # The observations may hold NaN (joints not seen); the results may not.
        refuse_non_finite({k: v for k, v in arrays.items() if v.ndim == 2}, unit="frames",
                          path=_checkpoint_path(prior))
        refuse_non_finite({"metrics": np.asarray(list(metrics.values()), np.float64)}, unit="metrics",
                          path=_checkpoint_path(prior))
        with ExitStack() as stack:  # both files or neither: each replaces its target only once both are written
            np.savez(stack.enter_context(atomic_write(self.out)), **(arrays | {"noisy_joints": obs.joints}))
            if self.metrics is not None:
                report = {
                    "input": str(source), "frames": fit.clip.num_frames, "fps": fit.clip.fps,
                    "noise_std_m": noise_std, "seed": self.seed,
                    "observed": list(observed or range(NUM_SKELETON_JOINTS)), "fit_root": fit.root_fitted,
                    "method": self.method, "smooth": self.smooth, **metrics,
                }
                stack.enter_context(atomic_write(self.metrics)).write(json.dumps(report, indent=2).encode("utf-8"))
        summary = f"fit {metrics['fit_mm']:.1f} mm to the observations"
        if "mpjpe_in_mm" in metrics:
            summary = f"MPJPE {metrics['mpjpe_in_mm']:.1f} -> {metrics['mpjpe_out_mm']:.1f} mm"
        print(f"wrote {self.out}: {fit.clip.num_frames} frames, {summary}", file=sys.stderr)


@dataclass(kw_only=True)
class Fit(Common):
    """Fit a body to a photo (DPoser's fourth task): 2D keypoints, from a keypoint file or the
    BlazePose detector run on the photo, -> SMPL-X body pose, shape, root and translation seen by a
    pinhole camera at the image centre (focal sqrt(W^2 + H^2) px unless --focal / --fov). With
    --keypoints-dir, a whole sequence, its frames tied by a temporal term."""

    out: Path
    """Output .npz: pose_body (N, 63), root_orient (N, 3), trans (N, 3), betas (10,) (AMASS layout;
    N = 1 for a photo, the frames of a sequence), the camera (focal, principal_point, image_size,
    camera_rotation, camera_translation), keypoints (N, 23, 3) used, projected_keypoints and
    reprojection_px (N, 23), keypoint_names; with --hypotheses, hypotheses (N, H, 63)."""
    image: Path | None = None
    """The photo (JPEG, PNG, ...). Without --keypoints the detector finds the person in it."""
    keypoints: Path | None = None
    """2D keypoints of the photo: OpenPose, COCO(-WholeBody), MMPose/ViTPose or MediaPipe JSON, or
    an .npz 'keypoints' (K, 3) array; the detector is not run."""
    keypoints_dir: Path | None = None
    """A sequence: a folder of per-frame keypoint files (natural order) or one JSON of frames."""
    person: int | None = None
    """Which person of a keypoint file (0 = the first listed; default: the largest)."""
    prior: Literal["dposer", "gmm", "gaussian", "none"] = "dposer"
    """Pose prior: the DPoser checkpoint (--ckpt), SMPLify's GMM (--gmm), a Gaussian of AMASS train
    poses (shipped), or none (only the elbow/knee bend and shape terms)."""
    gmm: Path | None = None
    """SMPLify's GMM as .npz (means, covars, weights; e.g. shared/data/smplify_gmm_08.npz), for --prior gmm."""
    prior_weight: float = 1.0
    """Multiplies the prior's tuned weight (0..100)."""
    hypotheses: int = 0
    """Also complete joints no keypoint constrains (an occluded limb) with this many hypotheses (0..1000)."""
    focal: float | None = None
    """Focal length in pixels (default sqrt(W^2 + H^2))."""
    fov: float | None = None
    """Horizontal field of view in degrees, instead of --focal."""
    image_size: tuple[int, int] | None = None
    """Width and height in pixels when neither a photo nor the keypoint file gives them."""
    fps: float = 30.0
    """Frame rate written for a sequence."""
    seed: int | None = None
    """Random seed (0..2^63-2): the same seed gives the same fit."""

    def run(self) -> None:
        from .files import MAX_FRAME_RATE, MIN_FRAME_RATE, save_npz
        from .image_fit import PhotoObservation, fit_photo, observe_photo
        from .keypoints import load_keypoint_sequence
        from .outputs import check_writable, refuse_non_finite
        from .pose_terms import GMMTerm

        if self.keypoints is not None and self.keypoints_dir is not None:
            raise InputError("give --keypoints (one photo) or --keypoints-dir (a sequence), not both")
        if self.image is None and self.keypoints is None and self.keypoints_dir is None:
            raise InputError("give --image (the detector finds the person) and/or --keypoints / --keypoints-dir")
        if self.focal is not None and self.fov is not None:
            raise InputError("give --focal or --fov, not both")
        if self.focal is not None:
            _in_range("--focal", self.focal, 1.0, 1e6, " pixels")
        if self.fov is not None:
            _in_range("--fov", self.fov, 1.0, 170.0, " degrees")
        _in_range("--prior-weight", self.prior_weight, 0.0, 100.0)
        _in_range("--hypotheses", self.hypotheses, 0, MAX_HYPOTHESES)
        _in_range("--fps", self.fps, MIN_FRAME_RATE, MAX_FRAME_RATE, " frames per second")
        if self.image_size is not None:
            for flag, v in zip(("width", "height"), self.image_size):
                _in_range(f"--image-size {flag}", v, 1, 100_000, " pixels")
        _check_seed(self.seed)
        if self.prior == "gmm" and self.gmm is None:
            raise InputError("--prior gmm needs --gmm PATH (SMPLify's mixture as .npz: means, covars, weights)")
        check_writable(self.out, "--out")
        gmm = GMMTerm.load(self.gmm) if self.prior == "gmm" else None
        if self.keypoints_dir is not None:
            frames = load_keypoint_sequence(self.keypoints_dir, person=self.person, image_size=self.image_size)
            first = observe_photo(self.image, frames.frame(0), focal=self.focal, fov_deg=self.fov,
                                  image_size=self.image_size or frames.image_size)
            obs = PhotoObservation(keypoints=frames, camera=first.camera, image=first.image)
        else:
            obs = observe_photo(self.image, self.keypoints, person=self.person, focal=self.focal, fov_deg=self.fov,
                                image_size=self.image_size)
        source = self.keypoints or self.keypoints_dir or self.image
        prior, body = self.load_prior(), self.load_body()
        bar = _Bar("fit")
        try:
            fit = fit_photo(prior, body, obs, prior_name=self.prior, gmm=gmm, prior_weight=self.prior_weight,
                            hypotheses=self.hypotheses, seed=self.seed, callback=bar)
        except ValueError as e:  # keypoints the fitter cannot place a body from
            raise InputError(str(e), source) from None
        finally:
            bar.close()
        arrays = fit.arrays()
        arrays["betas"] = arrays["betas"].mean(0)  # one shape (a sequence shares it)
        if obs.keypoints.conf.ndim == 2:
            arrays["mocap_frame_rate"] = np.float32(self.fps)
        refuse_non_finite({k: arrays[k] for k in ("pose_body", "root_orient", "trans")}, unit="frames",
                          path=_checkpoint_path(prior))
        save_npz(self.out, arrays)
        how = "detected" if obs.detected else "from the keypoint file"
        print(f"wrote {self.out}: {fit.num_images} frame(s), keypoints {how}, reprojection error "
              f"{fit.mean_reprojection_px:.1f} px (focal {obs.camera.focal:.0f} px)", file=sys.stderr)


MAX_EXPORT_POSES = 256  # bodies side by side in one GLB


@dataclass(kw_only=True)
class Export(Common):
    """Write a clip or a set of poses for Blender and game engines: BVH, a skinned animated glTF
    binary, or the AMASS npz (the SMPL-X Blender add-on, aitviewer); the format from --out's suffix."""

    out: Path
    """Output file: .bvh (the body's skeleton, Y-up, metres), .glb (skinned mesh + animation) or .npz (AMASS
    SMPL-X layout)."""
    clip: Path | None = None
    """An AMASS-style clip (.npz: poses or pose_body, root_orient, trans, betas, mocap_frame_rate)."""
    poses: Path | None = None
    """Alternatively a set of poses (.npz, as dposer generate/complete write): frames of one BVH/npz, or
    bodies side by side in a GLB."""

    def run(self) -> None:
        from .data import Clip, load_clip, load_poses
        from .exports import export_bytes, format_of
        from .files import atomic_write
        from .outputs import check_writable

        if (self.clip is None) == (self.poses is None):
            raise InputError("give exactly one of --clip (a motion) and --poses (a set of poses)")
        try:
            suffix = format_of(self.out)
        except ValueError as e:
            raise InputError(str(e), self.out) from None
        check_writable(self.out, "--out")
        source = self.clip if self.clip is not None else self.poses
        if self.clip is not None:
            clips = [load_clip(self.clip)]
        else:
            poses = load_poses(self.poses)
            if suffix == ".glb" and len(poses) > MAX_EXPORT_POSES:
                raise InputError(f"{len(poses)} poses: at most {MAX_EXPORT_POSES} bodies go side by side in one GLB",
                                 self.poses)
            clips = [Clip(pose_body=p[None], root_orient=np.zeros((1, 3), np.float32)) for p in poses]
        try:
            data = export_bytes(clips, self.load_body(), suffix)
        except ValueError as e:
            raise InputError(str(e), source) from None
        with atomic_write(self.out) as f:
            f.write(data)
        what = f"{clips[0].num_frames} frames" if len(clips) == 1 else f"{len(clips)} poses"
        print(f"wrote {self.out}: {what}, {len(data) / 1e6:.2f} MB", file=sys.stderr)


MAX_RENDER_FRAMES = 100_000  # frames of one `dposer render` video (55 min at 30 fps)


@dataclass(kw_only=True)
class Render(Common):
    """Render a clip, a set of poses or a generate --trajectory file to a video or an image, headless:
    a software renderer on the CPU (no browser, no GPU) draws the bodies as the viewer shows them."""

    input: tyro.conf.Positional[Path]
    """A clip (.npz, as export --clip reads it), a set of poses (dposer generate's output, at most 64 poses) or a
    dposer generate --trajectory file."""
    out: Path
    """Output: .mp4 (H.264) or .gif, the animation; .png, one image (--frame of a clip or a trajectory, or a
    set of poses side by side)."""
    width: int = 640
    """Image width in pixels (16..4096; even for .mp4)."""
    height: int = 480
    """Image height in pixels (16..4096; even for .mp4)."""
    fps: float | None = None
    """Frame rate of a video (0.1..240; default: a clip's own, at most 240; a trajectory replays in 4 s at 30 fps)."""
    frame: int | None = None
    """For .png: the frame of a clip, or the step of a trajectory (0 = the first: noise), to draw (default 0)."""

    def run(self) -> None:
        from .exports.video import MAX_FPS, MAX_SIDE, VIDEO_FORMATS, check_size
        from .outputs import check_writable
        from .render import MIN_FPS, render_format, write_render

        try:
            suffix = render_format(self.out)
        except ValueError as e:
            raise InputError(str(e), self.out) from None
        video = suffix in VIDEO_FORMATS
        _in_range("--width", self.width, 16, MAX_SIDE, " pixels")
        _in_range("--height", self.height, 16, MAX_SIDE, " pixels")
        try:
            check_size(self.width, self.height, suffix)
        except ValueError as e:
            raise InputError(str(e), self.out) from None
        if self.fps is not None and not video:
            raise InputError("--fps is a video's frame rate: a .png is one image")
        if self.fps is not None:
            _in_range("--fps", self.fps, MIN_FPS, MAX_FPS, " frames per second")
        if self.frame is not None and video:
            raise InputError("--frame picks the image of a .png: a video shows every frame")
        check_writable(self.out, "--out")
        draw, fps, count = self._scene(video)
        if video:
            self._check_length(count, suffix)
        body = self.load_body()
        bar = _Bar("render")
        try:
            written = write_render(self.out, draw(body, progress=bar), fps=fps)
        finally:
            bar.close()
        megabytes = self.out.stat().st_size / 1e6
        print(f"wrote {self.out}: {written} frame{'s' if written != 1 else ''} {self.width}x{self.height}, "
              f"{megabytes:.2f} MB", file=sys.stderr)

    def _scene(self, video: bool) -> tuple:
        """Read the input: ``(draw, fps, frames)``, where ``draw(body, progress=...)`` yields what is
        rendered (a video's frames, or the one image) at ``fps``, ``frames`` of them for a video."""
        import functools

        from .data import DEFAULT_FPS, is_pose_set, load_clip, load_poses
        from .exports.video import MAX_FPS, source_frames
        from .render import (
            is_trajectory,
            load_trajectory,
            render_frames,
            render_poses,
            render_trajectory,
            trajectory_steps,
        )

        size = {"width": self.width, "height": self.height}
        frame = 0 if self.frame is None else self.frame
        if is_trajectory(self.input):
            trajectory = load_trajectory(self.input)
            fps = self.fps or DEFAULT_FPS
            self._check_frame(frame, len(trajectory), "steps")
            draw = functools.partial(render_trajectory, trajectory=trajectory, fps=fps,
                                     step=None if video else frame, **size)
            return draw, fps, len(trajectory_steps(len(trajectory), fps))
        if is_pose_set(self.input):
            poses = load_poses(self.input)
            if video:
                raise InputError(f"is a set of {len(poses)} poses, one still: render it to a .png (a generate "
                                 "--trajectory file renders to a video)", self.input)
            if self.frame is not None:
                raise InputError("--frame picks a frame of a clip or a step of a trajectory, not of a set of poses",
                                 self.input)
            return functools.partial(render_poses, poses=poses, **size), DEFAULT_FPS, 1
        clip = load_clip(self.input)
        fps = self.fps or min(clip.fps, MAX_FPS)
        self._check_frame(frame, clip.num_frames, "frames")
        draw = functools.partial(render_frames, clip=clip, fps=fps, frame=None if video else frame, **size)
        return draw, fps, len(source_frames(clip.num_frames, clip.fps, fps))

    def _check_frame(self, frame: int, count: int, what: str) -> None:
        """Refuse a --frame outside the input's ``count`` frames (or steps)."""
        if not 0 <= frame < count:
            raise InputError(f"--frame {frame} is out of range: it has {count} {what} (0..{count - 1})", self.input)

    def _check_length(self, count: int, suffix: str) -> None:
        """Refuse a video of more frames than one run writes (a GIF: than memory holds)."""
        if count > MAX_RENDER_FRAMES:
            raise InputError(f"{count} frames at this --fps, over the {MAX_RENDER_FRAMES} limit of one video; "
                             "lower --fps", self.input)
        from .exports.video import check_gif_memory

        try:
            check_gif_memory(count, self.width, self.height, suffix)
        except ValueError as e:
            raise InputError(str(e), self.input) from None


SUBCOMMANDS: dict[str, type[Common]] = {
    "generate": Generate, "complete": Complete, "train": Train, "eval": Eval, "denoise": Denoise, "fit": Fit,
    "export": Export, "render": Render,
}


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, ``timeout``, a batch scheduler), raised in the main thread like Ctrl-C so that
    the same unwinding runs: :func:`prior.files.atomic_write` removes its temporary file."""


class _Held:
    depth = 0  # how many _sigterm_held blocks the main thread is in
    pending = False  # a SIGTERM came during one


@contextlib.contextmanager
def _sigterm_held():
    """Run a block that SIGTERM must not cut in two; a SIGTERM sent during it is raised at its end.
    (Python runs signal handlers in the main thread only, so a flag is enough.)"""
    _Held.depth += 1
    try:
        yield
    finally:
        _Held.depth -= 1
        if _Held.pending and not _Held.depth:
            _Held.pending = False
            raise Terminated


def _raise_terminated(signum: int, frame: object) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the cleanup short
    if _Held.depth:
        _Held.pending = True
        return
    raise Terminated


def _expand_user_paths(cmd: Common) -> None:
    """Expand ``~`` in every path flag: a shell leaves ``--out=~/x.npz`` (and a quoted ``~``) as typed."""
    from .files import user_path

    for field in dataclasses.fields(cmd):
        value = getattr(cmd, field.name)
        if isinstance(value, Path):
            setattr(cmd, field.name, user_path(value))


def main(argv: list[str] | None = None) -> None:
    cmd = tyro.extras.subcommand_cli_from_dict(
        {name: cls for name, cls in SUBCOMMANDS.items()},
        prog="dposer",
        description="DPoser pose prior: batch generation, completion, denoising, photo fitting, export, rendering, "
                    "training, evaluation.",
        args=argv,
    )
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        _expand_user_paths(cmd)
        cmd.run()
    except InputError as e:
        _Bar.close_all()
        print(f"dposer: error: {e}", file=sys.stderr)
        sys.exit(2)
    except OSError as e:  # after the checks: a disk that filled up, a folder made read-only, a read that failed
        where = f"{e.filename}: " if e.filename else ""
        _Bar.close_all()
        print(f"dposer: error: {where}{e.strerror or e}", file=sys.stderr)
        sys.exit(2)
    except Terminated:
        _Bar.close_all()
        print("dposer: terminated", file=sys.stderr)
        sys.exit(128 + signal.SIGTERM)
    except KeyboardInterrupt:
        _Bar.close_all()
        print("dposer: interrupted", file=sys.stderr)
        sys.exit(130)
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    main()
