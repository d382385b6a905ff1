"""Sequence fitting with DPoser's prior: per-frame body poses of a clip fitted to observations.

DPoser's motion denoising (Lu et al., "DPoser", arXiv 2312.05541; ``MotionDenoise`` in
``moonbow721/DPoser``, ``run/motion_denoising.py``): Adam on every frame's ``pose_body`` at
once, minimising

    data     100 / (1 + it^2) * mean ||J(pose) - J_noisy||      (observed joints, not squared)
    temporal  10 (1 + it)     * mean ||J_t - J_(t+1)||          (22 joints, consecutive frames)
    prior    0.1 (1 + it)     * mean_t sum_d w (x - x0_hat)^2   (model space, x0_hat detached)

over 3 outer iterations of 60 steps while the prior's diffusion time falls from 0.25 to 0.003.
The prior term sums over the dims of a frame (DPoser's motion code: ``sum(...) / batch_size``).

Our defaults differ from the original code in four ways, each a :class:`DenoiseOptions` field,
and :meth:`DenoiseOptions.paper` sets all four back (checked against outputs of the original code
in ``tests/data/dposer_original``; the measured effect of each is in the README): the prior weight
``w = 0.5 sqrt(1 + alpha / std)`` as in completion (the original: ``w = 0.5``); the temporal term on
the 22 joints (the original: on the mesh vertices); the start at the prior's mean (the original:
``0.01 N(0, 1)``, about the zero pose); the time falling linearly (the original: a staircase on a
500-step grid). The original also Gaussian-smooths its result before it reports errors: the
separate ``smooth`` option.

The data term is pluggable (:class:`DataTerm`, given to :func:`fit_sequence`): observed 3D joints
(:class:`JointsTerm`, what :func:`denoise_motion` fits) are the first. All frames share one batch,
so each step costs one network forward pass (no backward through the network) plus forward
kinematics with its backward. Clips longer than ``window`` frames are cut into overlapping
:class:`Windows` that are solved together (up to ``max_batch_frames`` frames per batch) and
cross-faded, so there are no seams and memory stays bounded (the original solves a clip in one
piece: the same for clips of up to ``window`` frames).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np
import torch

from .body import BodyModel
from .data import Clip
from .metrics import mpjpe_mm
from .optim import Adam, DPoserSchedule, prior_residual, prior_weights
from .parts import NUM_SKELETON_JOINTS, PARTS, SMPLX_JOINT_NAMES
from .pose_prior import PosePrior, as_tensor
from .progress import (
    CancelFlag,
    NoiseFn,
    Progress,
    ProgressFn,
    check_cancel,
    cpu_copy,
    make_generator,
    seeded_noise,
    should_report,
)
from .rotations import matrix_to_axis_angle

MOTION_SCHEDULE = DPoserSchedule(lr=0.03, iterations=3, steps_per_iter=60, t_max=0.25, t_min=0.003)
PAPER_SETTINGS = {0.02: (40, 10.0), 0.04: (60, 4.0), 0.1: (80, 3.0)}
"""The original's settings per noise level (``denoise`` in ``run/motion_denoising.py``): steps per
iteration (3 iterations) and the time grid's truncation."""
_NORM_EPS = 1e-10  # inside the square root of distances: a zero distance has a zero gradient


@dataclass(frozen=True)
class DenoiseOptions:
    """Settings of :func:`denoise_motion`; the defaults are DPoser's."""

    schedule: DPoserSchedule = MOTION_SCHEDULE
    """Adam learning rate (radians per step), outer iterations, steps each, and the prior's times."""
    data_weight: float = 100.0
    """Weight of the data term, divided by ``1 + it^2`` (``it`` = outer iteration)."""
    temporal_weight: float = 10.0
    """Weight of the temporal term, times ``1 + it``."""
    prior_weight: float = 0.1
    """Weight of the prior term, times ``1 + it``."""
    window: int = 300
    """Frames per window; a clip of at most this many frames is solved in one piece."""
    overlap: int = 30
    """Frames shared by neighbouring windows (cross-faded linearly)."""
    max_batch_frames: int = 4096
    """Windows are solved together up to this many frames per batch (bounds memory)."""
    fit_root: bool = False
    """Also optimise the root orientation and translation (starting from the given ones, or zero
    rotation and the observed pelvis); otherwise they are held as given."""
    prior_weighting: Literal["snr", "none"] = "snr"
    """``"snr"``: the prior term weighted by ``w = 0.5 sqrt(1 + alpha / std)``, as completion is (ours);
    ``"none"``: ``w = 0.5``, what the original's motion code runs (its ``DPoser_loss`` is called
    without ``weighted``; completion's call passes its time index there, which weights completion)."""
    temporal: Literal["joints", "vertices"] = "joints"
    """The temporal term on the 22 joints (ours) or on the body's mesh vertices (the original's)."""
    start: Literal["mean", "zero"] = "mean"
    """Start from the prior's mean pose (ours) or from ``0.01 N(0, 1)`` radians, about the zero pose
    (the original's)."""
    smooth: bool = False
    """Gaussian-smooth the result over time (window 3, sigma 2, first and last frame kept): what the
    original applies before it reports its errors. Off by default, in paper mode too."""

    @classmethod
    def paper(cls, noise_std_m: float = 0.04, **overrides) -> DenoiseOptions:
        """The original's motion denoising (``MotionDenoise`` in ``run/motion_denoising.py``): its
        settings for the listed noise level nearest ``noise_std_m`` (0.02, 0.04 or 0.1 m), the
        staircase time grid on a 500-step sampler grid, an unweighted prior term, the temporal term
        on mesh vertices and a start about the zero pose. ``overrides`` replace fields (e.g.
        ``smooth=True``)."""
        level = min(PAPER_SETTINGS, key=lambda s: abs(s - noise_std_m))
        steps, truncation = PAPER_SETTINGS[level]
        schedule = DPoserSchedule(lr=0.03, iterations=3, steps_per_iter=steps, grid="dposer", sde_steps=500,
                                  truncation=truncation)
        return cls(**{"schedule": schedule, "prior_weighting": "none", "temporal": "vertices", "start": "zero",
                      **overrides})

    def __post_init__(self) -> None:
        if self.window < 2:
            raise ValueError(f"window must be >= 2 frames, got {self.window}")
        if not 0 <= self.overlap < self.window:
            raise ValueError(f"overlap must be in 0..window-1, got {self.overlap} (window {self.window})")
        for name, allowed in (("prior_weighting", ("snr", "none")), ("temporal", ("joints", "vertices")),
                              ("start", ("mean", "zero"))):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")


@dataclass
class DenoiseResult:
    """Output of :func:`denoise_motion` (CPU tensors, metres and radians)."""

    pose_body: torch.Tensor
    """``(T, D)`` denoised body poses (``D = prior.space.dim``, 63)."""
    joints: torch.Tensor
    """``(T, 22, 3)`` joints of the denoised poses (SMPL-X joints 0..21)."""
    root_orient: torch.Tensor
    """``(T, 3)`` the root orientation used (fitted when ``fit_root``)."""
    trans: torch.Tensor | None
    """``(T, 3)`` the translation used, or None when there was none."""
    noisy_joints: torch.Tensor | None = None
    """``(T, 22, 3)`` the observations the poses were fitted to."""
    mpjpe_in_mm: float | None = None
    """MPJPE of the noisy input against ``gt_joints`` over the observed entries, when given."""
    mpjpe_out_mm: float | None = None
    """MPJPE of the result against ``gt_joints`` over all 22 joints, when given."""
    fit_mm: float | None = None
    """Mean distance (mm) of the result's joints to the observations, over the observed entries."""
    metrics: dict[str, float] = field(default_factory=dict)


TORSO_JOINTS = (0, 1, 2, 3, 6, 9)  # pelvis, hips, spine1..3: rigid enough to place the root


def root_from_joints(
    body: BodyModel, joints: torch.Tensor, *, observed: Sequence[int] | None = None, betas: torch.Tensor | None = None
) -> torch.Tensor:
    """Root orientations ``(T, 3)`` (axis-angle) that turn the rest skeleton's torso onto observed
    ``joints (T, 22, 3)`` (NaN = not seen in that frame): per frame, the rotation that best maps the
    rest pelvis, hips and spine (about their centroid) onto the observed ones (Kabsch). Frames that
    see fewer than three of them are interpolated from their neighbours (zero rotation when no frame
    does). A start for fitting the root, not a fit of the pose.
    """
    torso = [j for j in TORSO_JOINTS if observed is None or j in set(observed)]
    if len(torso) < 3:
        return joints.new_zeros(joints.shape[0], 3)
    rest = body.rest_joints(betas).reshape(-1, body.num_joints, 3)[0, torso].to(joints)
    seen = torch.isfinite(joints[:, torso]).all(-1)  # (T, k)
    w = seen.to(joints.dtype)[..., None]
    obs = torch.nan_to_num(joints[:, torso]) * w
    count = w.sum(1, keepdim=True).clamp_min(1)
    a = (rest - (rest * w).sum(1, keepdim=True) / count) * w  # each frame centres on what it sees
    b = obs - obs.sum(1, keepdim=True) / count * w
    u, _, vh = torch.linalg.svd(a.transpose(-1, -2) @ b)  # (T, 3, 3): a^T b = u s vh
    v, ut = vh.transpose(-1, -2), u.transpose(-1, -2)
    flip = torch.ones(joints.shape[0], 3, dtype=joints.dtype, device=joints.device)
    flip[:, 2] = torch.sign(torch.linalg.det(v @ ut))  # a proper rotation, never a reflection
    root = matrix_to_axis_angle(v @ torch.diag_embed(flip) @ ut)
    return fill_gaps(root, seen.sum(1) >= 3)


def fill_gaps(track: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """``track (T, D)`` with the rows where ``valid (T,)`` is False linearly interpolated from the
    nearest valid rows (held constant beyond the first and last); zeros when none is valid."""
    if bool(valid.all()):
        return track
    if not bool(valid.any()):
        return torch.zeros_like(track)
    frames = torch.arange(len(track), dtype=torch.float64).numpy()
    known = valid.cpu().numpy()
    values = track.detach().cpu().double().numpy()
    filled = np.stack([np.interp(frames, frames[known], values[known, d]) for d in range(track.shape[1])], 1)
    return torch.as_tensor(filled, dtype=track.dtype, device=track.device)


def add_joint_noise(joints: torch.Tensor, std_m: float, *, seed: int | None = None) -> torch.Tensor:
    """``joints (..., 3)`` plus i.i.d. Gaussian noise of ``std_m`` metres per coordinate (DPoser's
    corruption: 0.04 m in the paper)."""
    joints = torch.as_tensor(joints, dtype=torch.float32)
    gen = make_generator(seed, joints.device)
    return joints + std_m * torch.randn(joints.shape, generator=gen, device=joints.device)


def clip_joints(body: BodyModel, clip: Clip) -> torch.Tensor:
    """Ground-truth joints ``(T, 22, 3)`` of a clip: the body model with its pose, root, translation and shape."""
    device = body.joint_template.device

    def tensor(x: np.ndarray | None) -> torch.Tensor | None:
        return None if x is None else torch.from_numpy(x).to(device)

    with torch.no_grad():
        return body.skeleton_joints(tensor(clip.pose_body), global_orient=tensor(clip.root_orient),
                               transl=tensor(clip.trans), betas=tensor(clip.betas))


class Windows:
    """Overlapping windows of a clip: the frames are cut into windows of ``length`` frames that
    neighbours share at least ``overlap`` of, solved as a batch and cross-faded back together.

    ``starts`` are the windows' first frames, evenly spaced from 0 to ``frames - length`` (one window
    when the clip fits in one); ``weights: (W, length)`` blend them: linear ramps over the frames a
    window shares with its neighbours, normalised so that each clip frame's weights sum to 1.
    """

    def __init__(self, frames: int, window: int, overlap: int) -> None:
        if frames < 1 or window < 2 or not 0 <= overlap < window:
            raise ValueError(f"windows need frames >= 1, window >= 2 and 0 <= overlap < window, got "
                             f"{frames}, {window}, {overlap}")
        self.frames = frames
        self.length = min(frames, window)
        if frames <= window:
            self.starts = [0]
        else:
            count = int(np.ceil((frames - overlap) / (window - overlap)))
            self.starts = [int(s) for s in np.round(np.linspace(0, frames - window, count))]
        self.weights = self._crossfade()

    def __len__(self) -> int:
        return len(self.starts)

    def _crossfade(self) -> torch.Tensor:
        starts, length = self.starts, self.length
        weights = torch.ones(len(starts), length, dtype=torch.float64)
        pos = torch.arange(length, dtype=torch.float64)
        for w, start in enumerate(starts):
            if w > 0:
                shared = starts[w - 1] + length - start
                weights[w] = torch.minimum(weights[w], (pos + 1) / (shared + 1))
            if w + 1 < len(starts):
                shared = start + length - starts[w + 1]
                weights[w] = torch.minimum(weights[w], (length - pos) / (shared + 1))
        total = torch.zeros(self.frames, dtype=torch.float64)
        for w, start in enumerate(starts):
            total[start : start + length] += weights[w]
        for w, start in enumerate(starts):
            weights[w] /= total[start : start + length]
        return weights.float()

    def cut(self, x: torch.Tensor, windows: Sequence[int] | None = None) -> torch.Tensor:
        """``x: (frames, ...)`` -> ``(len(windows), length, ...)``: the frames of the given windows
        (default all of them)."""
        group = range(len(self.starts)) if windows is None else windows
        return torch.stack([x[self.starts[w] : self.starts[w] + self.length] for w in group])

    def assemble(self, windows: torch.Tensor) -> torch.Tensor:
        """All windows ``(W, length, D)`` -> the clip ``(frames, D)``, cross-faded by ``weights``."""
        blend = self.weights.to(windows.device)
        out = torch.zeros(self.frames, windows.shape[-1], device=windows.device)
        for w, start in enumerate(self.starts):
            out[start : start + self.length] += blend[w, :, None] * windows[w]
        return out


WindowLoss = Callable[[torch.Tensor], torch.Tensor]
"""The data loss of a batch of windows: their joints ``(w, length, 22, 3)`` -> a scalar."""


class DataTerm(Protocol):
    """What :func:`fit_sequence` fits the body to: observations of a clip's frames.

    Before a batch of windows is solved the term is asked for that batch's loss function; it cuts
    its per-frame targets with ``windows.cut(..., group)`` once, and the function is then called at
    every step with the batch's joints.
    """

    def for_windows(self, windows: Windows, group: Sequence[int]) -> WindowLoss: ...


@dataclass(frozen=True)
class JointsTerm:
    """Observed 3D joints: the mean distance (not squared: robust, DPoser's) between the fit's
    joints and the observed ones, over the seen entries of the ``observed`` joints."""

    joints: torch.Tensor
    """``(T, 22, 3)`` observed positions, metres (entries not seen may hold anything finite)."""
    seen: torch.Tensor
    """``(T, len(observed))`` 1 where the joint was seen in the frame, 0 where not (no data term)."""
    observed: tuple[int, ...]
    """The SMPL-X joints (0..21) the term compares."""

    def for_windows(self, windows: Windows, group: Sequence[int]) -> WindowLoss:
        idx = list(self.observed)
        targets = windows.cut(self.joints, group)[:, :, idx]
        seen = windows.cut(self.seen, group)
        seen_count = seen.sum().clamp_min(1)  # = the mean over entries when all are seen (DPoser's)

        def loss(joints: torch.Tensor) -> torch.Tensor:
            return (_distance(joints[:, :, idx] - targets) * seen).sum() / seen_count

        return loss


@dataclass
class MotionParams:
    """Body-model parameters of every frame of a clip (tensors on the body's device)."""

    pose_body: torch.Tensor
    """``(T, D)`` axis-angle poses in the prior's space (``D = prior.space.dim``)."""
    root_orient: torch.Tensor
    """``(T, 3)`` root orientation (axis-angle)."""
    trans: torch.Tensor | None = None
    """``(T, 3)`` root translation (metres), or None for none."""


def fit_sequence(
    prior: PosePrior,
    body: BodyModel,
    term: DataTerm,
    init: MotionParams,
    options: DenoiseOptions = DenoiseOptions(),
    *,
    betas: torch.Tensor | None = None,
    seed: int | None = None,
    noise: NoiseFn | None = None,
    callback: ProgressFn | None = None,
    callback_every: int = 5,
    cancel: CancelFlag | None = None,
) -> MotionParams:
    """Fit a clip's body poses (and with ``options.fit_root`` its root) to a data term with DPoser's
    prior and a temporal term, starting from ``init`` (see the module docstring for the objective).

    The clip is cut into :class:`Windows` (``options.window``, ``options.overlap``), solved in
    batches of up to ``options.max_batch_frames`` frames and cross-faded. ``betas: (NB,)`` shape for
    the body (None = mean). ``seed`` seeds the prior's noise draws; ``noise`` (``shape -> N(0, 1)``
    draws) replaces them, e.g. to feed recorded ones. ``callback`` receives
    ``Progress("denoise", ...)`` with the whole clip's current ``(T, D)`` poses every
    ``callback_every`` steps and at the end (with ``options.fit_root``, ``extra`` holds the current
    ``root_orient`` and ``trans``); ``cancel.is_set()`` raises :class:`prior.errors.Cancelled`.
    Returns the fitted parameters; ``root_orient`` and ``trans`` are ``init``'s unless fitted.
    """
    dim = prior.space.dim
    frames = init.pose_body.shape[0]
    has_trans = init.trans is not None
    windows = Windows(frames, options.window, options.overlap)
    per_batch = max(1, options.max_batch_frames // windows.length)
    groups = [list(range(i, min(i + per_batch, len(windows)))) for i in range(0, len(windows), per_batch)]
    steps_each = options.schedule.total
    total = steps_each * len(groups)
    draw = noise or seeded_noise(make_generator(seed, prior.device), prior.device)

    # Every window's current parameters; windows not yet solved hold the start.
    trans = init.trans if init.trans is not None else torch.zeros_like(init.root_orient)
    params = torch.cat([init.pose_body, init.root_orient, trans], 1)
    solved = windows.cut(params)

    for g, group in enumerate(groups):

        def report(step: int, t: float, current: torch.Tensor, group: list[int] = group, g: int = g) -> None:
            done = g * steps_each + step
            if callback is not None and should_report(done, total, callback_every):
                solved[group] = current.detach()
                whole = windows.assemble(solved)
                extra = {}
                if options.fit_root:  # the root being fitted, for a display of the whole body
                    extra["root_orient"] = cpu_copy(whole[:, dim : dim + 3])
                    extra["trans"] = cpu_copy(whole[:, dim + 3 :]) if has_trans else None
                callback(Progress("denoise", done, total, t, cpu_copy(whole[:, :dim]), extra))

        solved[group] = _solve_windows(
            prior, body, term.for_windows(windows, group), windows.cut(params, group), betas,
            has_trans=has_trans, options=options, noise=draw, report=report, cancel=cancel,
        )

    with torch.no_grad():
        final = windows.assemble(solved)
        if options.smooth:
            final = torch.cat([gaussian_smooth(final[:, :dim]), final[:, dim:]], 1)
    if not options.fit_root:
        return MotionParams(final[:, :dim], init.root_orient, init.trans)
    return MotionParams(final[:, :dim], final[:, dim : dim + 3], final[:, dim + 3 :] if has_trans else None)


def denoise_motion(
    prior: PosePrior,
    body: BodyModel,
    noisy_joints: torch.Tensor,
    *,
    root_orient: torch.Tensor | None = None,
    trans: torch.Tensor | None = None,
    betas: torch.Tensor | None = None,
    observed: Sequence[int] | None = None,
    gt_joints: torch.Tensor | None = None,
    options: DenoiseOptions = DenoiseOptions(),
    seed: int | None = None,
    noise: NoiseFn | None = None,
    callback: ProgressFn | None = None,
    callback_every: int = 5,
    cancel: CancelFlag | None = None,
) -> DenoiseResult:
    """Fit body poses to noisy joint observations of a clip with DPoser's prior: :func:`fit_sequence`
    with a :class:`JointsTerm`, starting from the prior's mean pose (or as ``options.start`` says).

    Args:
        prior: the pose prior (its space must drive the body pose).
        body: the body model whose joints were observed (its first 22 joints, SMPL-X 0..21).
        noisy_joints: ``(T, 22, 3)`` observed joint positions, metres. NaN marks a joint not seen
            in a frame (the prior and the temporal term fill it); entries of joints not in
            ``observed`` are ignored.
        root_orient: ``(T, 3)`` root orientation (axis-angle), or None: zero rotation, or with
            ``options.fit_root`` a start from the observed torso (:func:`root_from_joints`).
        trans: ``(T, 3)`` root translation (metres), or None for none (with ``options.fit_root``:
            a start at the observed pelvis).
        betas: ``(NB,)`` body shape, or None for the mean shape.
        observed: SMPL-X joints (0..21) that were observed; None = all 22.
        gt_joints: ``(T, 22, 3)`` clean joints, when known: MPJPE of input and output is reported.
        options: weights, schedule, windows, root fitting (:class:`DenoiseOptions`).
        seed: seeds the prior's noise draws (None = fresh).
        noise: ``shape -> N(0, 1)`` draws replacing the seeded ones (the zero start's first, then
            one per step), e.g. to feed recorded random numbers.
        callback: receives ``Progress("denoise", ...)`` with the current ``(T, D)`` estimate of the
            whole clip every ``callback_every`` steps and at the end (with ``options.fit_root``, its
            ``extra`` holds the current ``root_orient`` and ``trans``).
        cancel: ``is_set()`` -> raise :class:`prior.errors.Cancelled` at the next step.

    Returns:
        :class:`DenoiseResult` with ``pose_body (T, D)`` and ``joints (T, 22, 3)``.
    """
    device = body.joint_template.device  # poses live where the body's FK runs; the network on prior.device
    if "body_pose" not in prior.space.drives:
        raise ValueError(f"motion fitting needs a prior of body poses, got the {prior.space.name!r} space")
    noisy = as_tensor(noisy_joints, device)
    if noisy.ndim != 3 or noisy.shape[1:] != (NUM_SKELETON_JOINTS, 3) or noisy.shape[0] < 1:
        raise ValueError(f"noisy_joints must be (T, {NUM_SKELETON_JOINTS}, 3), got {tuple(noisy.shape)}")
    frames = noisy.shape[0]
    obs_idx = list(range(NUM_SKELETON_JOINTS)) if observed is None else sorted({int(j) for j in observed})
    if not obs_idx or not all(0 <= j < NUM_SKELETON_JOINTS for j in obs_idx):
        raise ValueError(f"observed must list joints in 0..{NUM_SKELETON_JOINTS - 1}, got {observed}")
    if torch.isinf(noisy[:, obs_idx]).any():
        raise ValueError("noisy_joints has Inf on observed joints (mark unseen joints with NaN)")
    seen = torch.isfinite(noisy).all(-1)  # (T, 22)
    seen[:, [j for j in range(NUM_SKELETON_JOINTS) if j not in obs_idx]] = False
    if not bool(seen.any()):
        raise ValueError("noisy_joints has no observation (every observed joint is NaN in every frame)")
    root = torch.zeros(frames, 3, device=device) if root_orient is None else as_tensor(root_orient, device)
    shift = None if trans is None else as_tensor(trans, device)
    for name, value in (("root_orient", root), ("trans", shift)):
        if value is not None and value.shape != (frames, 3):
            raise ValueError(f"{name} must be ({frames}, 3), got {tuple(value.shape)}")
    shape = None if betas is None else as_tensor(betas, device)
    if options.fit_root and root_orient is None:
        root = root_from_joints(body, torch.where(seen[..., None], noisy, torch.nan), betas=shape)
    if options.fit_root and shift is None:
        # Start the root where the pelvis was seen (pelvis = rest pelvis + translation).
        rest_pelvis = body.rest_joints(shape)[..., 0, :].reshape(3)
        shift = fill_gaps(torch.nan_to_num(noisy[:, 0]) - rest_pelvis, seen[:, 0])
    observations = noisy
    noisy = torch.nan_to_num(noisy)

    term = JointsTerm(noisy, seen[:, obs_idx].to(noisy.dtype), tuple(obs_idx))
    draw = noise or seeded_noise(make_generator(seed, prior.device), prior.device)
    if options.start == "zero":  # the original's 0.01 N(0, 1) radians
        pose = 0.01 * draw((frames, prior.space.dim)).to(device)
    else:
        pose = prior.mean.to(device).expand(frames, prior.space.dim)
    fit = fit_sequence(prior, body, term, MotionParams(pose, root, shift), options, betas=shape, noise=draw,
                       callback=callback, callback_every=callback_every, cancel=cancel)

    with torch.no_grad():
        joints = body.skeleton_joints(fit.pose_body, global_orient=fit.root_orient, transl=fit.trans, betas=shape)
    result = DenoiseResult(
        pose_body=fit.pose_body.cpu(), joints=joints.cpu(), root_orient=fit.root_orient.cpu(),
        trans=None if fit.trans is None else fit.trans.cpu(), noisy_joints=observations.cpu(),
    )
    distance = (joints - noisy).norm(dim=-1)[seen]
    result.fit_mm = float(1000 * distance.mean())
    result.metrics = {"fit_mm": result.fit_mm, "observed_fraction": float(seen[:, obs_idx].float().mean())}
    if gt_joints is not None:
        gt = as_tensor(gt_joints, device)
        if gt.shape != (frames, NUM_SKELETON_JOINTS, 3):
            raise ValueError(f"gt_joints must be ({frames}, {NUM_SKELETON_JOINTS}, 3), got {tuple(gt.shape)}")
        result.mpjpe_in_mm = float(1000 * (noisy - gt).norm(dim=-1)[seen].mean())
        result.mpjpe_out_mm = float(mpjpe_mm(joints.cpu(), gt.cpu()).mean())
        result.metrics |= {"mpjpe_in_mm": result.mpjpe_in_mm, "mpjpe_out_mm": result.mpjpe_out_mm}
    return result


def parse_observed(spec: str) -> tuple[int, ...]:
    """SMPL-X joints (0..21) from ``"0,1,2"``, joint names (``"pelvis,left_wrist"``) or part names
    of ``prior.parts.PARTS`` (``"legs,trunk"``), mixed freely; raises ``ValueError`` naming the problem."""
    out: list[int] = []
    for token in (t.strip() for t in spec.split(",")):
        if not token:
            continue
        if token.isdigit():
            joints: tuple[int, ...] = (int(token),)
        elif token in SMPLX_JOINT_NAMES:
            joints = (SMPLX_JOINT_NAMES.index(token),)
        elif token in PARTS:
            joints = tuple(j + 1 for j in PARTS[token])  # parts list body-pose joints: SMPL-X j + 1
        else:
            raise ValueError(
                f"unknown joint {token!r}; use SMPL-X indices 0..21, names like 'left_wrist', or parts like 'arms'")
        for j in joints:
            if not 0 <= j < NUM_SKELETON_JOINTS:
                raise ValueError(f"joint index {j} out of range 0..{NUM_SKELETON_JOINTS - 1}")
            if j not in out:
                out.append(j)
    if not out:
        raise ValueError("no observed joints given")
    return tuple(sorted(out))


def gaussian_smooth(pose: torch.Tensor, window: int = 3, sigma: float = 2.0) -> torch.Tensor:
    """``pose (T, D)`` smoothed over time by a normalised Gaussian of ``window`` frames (zero-padded
    at the ends, whose frames are then kept as they were): the original's ``gaussian_smoothing``
    with its endpoints restored."""
    if pose.shape[0] < 3:
        return pose
    taps = torch.arange(window, dtype=pose.dtype, device=pose.device) - window // 2
    kernel = torch.exp(-0.5 * (taps / sigma) ** 2)
    kernel = (kernel / kernel.sum()).reshape(1, 1, -1)
    out = torch.nn.functional.conv1d(pose.T[:, None], kernel, padding=window // 2)[:, 0].T
    out[[0, -1]] = pose[[0, -1]]
    return out


def _distance(a: torch.Tensor) -> torch.Tensor:
    return ((a * a).sum(-1) + _NORM_EPS).sqrt()


def _solve_windows(
    prior: PosePrior,
    body: BodyModel,
    data_loss: WindowLoss,
    start: torch.Tensor,
    betas: torch.Tensor | None,
    *,
    has_trans: bool,
    options: DenoiseOptions,
    noise: NoiseFn,
    report,
    cancel: CancelFlag | None,
) -> torch.Tensor:
    """Optimise ``start: (W, L, D + 6)`` (pose D, root 3, translation 3) of ``W`` windows of ``L``
    frames together against ``data_loss`` of their joints; returns the optimum, same shape."""
    dim = prior.space.dim
    windows, length = start.shape[:2]
    schedule = options.schedule
    times = torch.as_tensor(schedule.times(), dtype=torch.float32, device=prior.device)
    sched = prior.schedule(times)
    weight = prior_weights(sched) if options.prior_weighting == "snr" else torch.full_like(sched.t, 0.5)
    free = slice(None) if options.fit_root else slice(0, dim)
    params = start.clone()
    adam = Adam(schedule.lr)
    # d/d pose of the per-frame sum of w r^2, averaged over the W L frames, through x = (pose - mean) / std.
    prior_scale = (2.0 / (windows * length) / prior.std).to(start.device)
    for k in range(schedule.total):
        check_cancel(cancel)
        it = k // schedule.steps_per_iter
        var = params[..., free].detach().requires_grad_(True)
        full = torch.cat([var, params[..., dim:]], -1) if not options.fit_root else var
        pose_args = {"global_orient": full[..., dim : dim + 3], "transl": full[..., dim + 3 :] if has_trans else None,
                     "betas": betas}
        if options.temporal == "vertices":  # the original's: the whole mesh (the joints come with it)
            posed = body(full[..., :dim], **pose_args)
            joints, moving = posed.joints[..., :NUM_SKELETON_JOINTS, :], posed.vertices
        else:
            joints = moving = body.skeleton_joints(full[..., :dim], **pose_args)
        loss = (options.data_weight / (1 + it * it)) * data_loss(joints)
        if length > 1:
            loss = loss + (options.temporal_weight * (1 + it)) * _distance(moving[:, 1:] - moving[:, :-1]).mean()
        (grad,) = torch.autograd.grad(loss, var)
        with torch.no_grad():
            pose = params[..., :dim].reshape(-1, dim)
            x = prior.normalize(pose)
            residual = prior_residual(sched, k, x, noise(x.shape).to(x.device))
            residual = (options.prior_weight * (1 + it) * weight[k] * residual).to(start.device)
            grad[..., :dim] += (residual * prior_scale).reshape(windows, length, dim)
            params[..., free] = adam.step(params[..., free], grad)
        report(k + 1, float(times[k]), params)
    return params.detach()
