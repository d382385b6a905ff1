"""Motion fitting as one task for every front end: a clip or observed joints in, a fitted clip out.

Two steps, so a front end can show the observations before it fits them:

- :func:`observe_motion` turns the input into what the solver fits: a :class:`prior.data.Clip`'s
  joints (the body model with its pose, root, translation and shape) plus Gaussian noise (DPoser's
  denoising experiment, with the clean joints kept as ground truth), or a
  :class:`prior.data.JointTrack`'s observed joints as they are (plus noise when asked);
- :func:`fit_motion` fits body poses to them with :func:`prior.motion.denoise_motion`, deciding
  which root to fit and where the root, translation and shape come from, and returns the result
  as a clip with per-frame errors and the metrics ``dposer denoise`` writes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .body import BodyModel
from .data import Clip, JointTrack
from .metrics import mpjpe_mm
from .motion import DenoiseOptions, add_joint_noise, clip_joints, denoise_motion
from .parts import NUM_SKELETON_JOINTS
from .pose_prior import PosePrior
from .progress import CancelFlag, ProgressFn


@dataclass(frozen=True, eq=False)  # arrays: compared by identity
class Observations:
    """What a motion fit is fitted to, and the truth when it is known."""

    joints: np.ndarray
    """``(T, 22, 3)`` float32 SMPL-X joints 0..21, metres; NaN = not seen: what the data term fits."""
    gt_joints: np.ndarray | None
    """``(T, 22, 3)`` clean joints when the source is a clip (from its pose, root, translation and
    betas), else None."""

    @property
    def num_frames(self) -> int:
        return int(self.joints.shape[0])

    @property
    def seen(self) -> np.ndarray:
        """``(T, 22)`` bool: which joints were seen in which frames."""
        return np.isfinite(self.joints).all(-1)

    def input_errors_mm(self, observed: Sequence[int] | None = None) -> np.ndarray | None:
        """``(T,)`` per-frame MPJPE (mm) of ``joints`` against ``gt_joints`` over the seen entries of
        the ``observed`` joints (default all 22); NaN in a frame that sees none. None without truth."""
        if self.gt_joints is None:
            return None
        return _frame_mean_mm(self.joints, self.gt_joints, _mask(self.seen, observed))


def observe_motion(
    body: BodyModel, motion: Clip | JointTrack, *, noise_std_m: float = 0.0, seed: int | None = None
) -> Observations:
    """The observations of a motion, with ``noise_std_m`` metres of Gaussian noise per coordinate
    drawn with ``seed`` (:func:`prior.motion.add_joint_noise`; 0 = none).

    A :class:`Clip`: its joints from ``body`` (pose, root, translation and betas) are the truth, and
    the noisy copy is what is fitted. A :class:`JointTrack`: its joints (NaN gaps kept), no truth.
    """
    if not noise_std_m >= 0:
        raise ValueError(f"noise_std_m must be >= 0 metres, got {noise_std_m}")
    if isinstance(motion, Clip):
        gt = clip_joints(body, motion)
        noisy = add_joint_noise(gt, noise_std_m, seed=seed) if noise_std_m > 0 else gt
        return Observations(joints=_numpy(noisy), gt_joints=_numpy(gt))
    joints = torch.from_numpy(np.asarray(motion.joints, dtype=np.float32))
    noisy = add_joint_noise(joints, noise_std_m, seed=seed) if noise_std_m > 0 else joints
    return Observations(joints=_numpy(noisy), gt_joints=None)


@dataclass
class MotionFit:
    """The result of :func:`fit_motion`."""

    clip: Clip
    """The fit as a clip: the input clip with the fitted ``pose_body`` (and ``root_orient`` /
    ``trans`` when the root was fitted); for a joint track, ``track.as_clip(...)``."""
    observations: Observations
    """What was fitted."""
    joints: np.ndarray
    """``(T, 22, 3)`` joints of the fit (with the clip's betas), metres."""
    root_fitted: bool
    """Whether the root orientation and translation were fitted (else taken from the input)."""
    frame_errors_mm: dict[str, np.ndarray]
    """Per frame ``(T,)``: with truth ``"input"`` (observations vs truth, over the seen entries) and
    ``"fit"`` (fit vs truth, all 22 joints); without, only ``"fit"``: the fit's distance to the
    observations over the seen entries (NaN in a frame that sees none)."""
    metrics: dict[str, float]
    """``fit_mm`` (mean distance to the observations), ``observed_fraction``, and with truth
    ``mpjpe_in_mm`` / ``mpjpe_out_mm``: what ``dposer denoise --metrics`` writes."""


def fit_motion(
    prior: PosePrior,
    body: BodyModel,
    motion: Clip | JointTrack,
    observations: Observations,
    *,
    observed: Sequence[int] | None = None,
    options: DenoiseOptions = DenoiseOptions(),
    fit_root: bool | None = None,
    seed: int | None = None,
    callback: ProgressFn | None = None,
    callback_every: int = 5,
    cancel: CancelFlag | None = None,
) -> MotionFit:
    """Fit body poses to ``observations`` of ``motion`` (from :func:`observe_motion`) with the prior.

    Args:
        prior, body: the pose prior and the body model whose joints were observed.
        motion: the clip or joint track observed: its root orientation, translation and betas are
            used (a track's unknown root starts from a Kabsch fit of the observed torso).
        observations: what to fit; its frame count must be the motion's.
        observed: SMPL-X joints (0..21) that take part in the data term; None = all 22.
        options: weights, schedule, windows (:class:`prior.motion.DenoiseOptions`).
        fit_root: fit the root orientation and translation; None = fit them when ``motion`` is a
            joint track that does not give both (:attr:`JointTrack.root_known`), else
            ``options.fit_root``.
        seed: seeds the prior's noise draws (None = fresh).
        callback: ``Progress("denoise", ...)`` with ``pose_body (T, D)`` and, when the root is
            fitted, ``extra["root_orient"]`` and ``extra["trans"]``, every ``callback_every`` steps.
        cancel: ``is_set()`` -> raise :class:`prior.errors.Cancelled` at the next step.

    Raises:
        ValueError: observations that cannot be fitted (wrong shape, none seen, Inf).
    """
    if observations.num_frames != motion.num_frames:
        raise ValueError(f"observations have {observations.num_frames} frames, the motion {motion.num_frames}")
    if fit_root is None:
        fit_root = (isinstance(motion, JointTrack) and not motion.root_known) or options.fit_root
    if fit_root != options.fit_root:
        options = dataclasses.replace(options, fit_root=fit_root)
    gt = None if observations.gt_joints is None else torch.from_numpy(observations.gt_joints)
    res = denoise_motion(
        prior, body, torch.from_numpy(observations.joints), root_orient=_tensor(motion.root_orient),
        trans=_tensor(motion.trans), betas=_tensor(motion.betas), observed=observed, gt_joints=gt,
        options=options, seed=seed, callback=callback, callback_every=callback_every, cancel=cancel,
    )
    pose_body = res.pose_body.numpy().astype(np.float32)
    root_orient = res.root_orient.numpy().astype(np.float32)
    trans = None if res.trans is None else res.trans.numpy().astype(np.float32)
    if isinstance(motion, Clip):
        clip = dataclasses.replace(motion, pose_body=pose_body)
        if fit_root:
            clip = dataclasses.replace(clip, root_orient=root_orient, trans=trans)
    else:
        clip = motion.as_clip(pose_body, root_orient, trans)
    joints = res.joints.numpy()
    seen = _mask(observations.seen, observed)
    if observations.gt_joints is not None:
        errors = {"input": observations.input_errors_mm(observed), "fit": mpjpe_mm(joints, observations.gt_joints)}
    else:
        errors = {"fit": _frame_mean_mm(joints, observations.joints, seen)}
    return MotionFit(clip=clip, observations=observations, joints=joints, root_fitted=fit_root,
                     frame_errors_mm=errors, metrics=dict(res.metrics))


def _tensor(x: np.ndarray | None) -> torch.Tensor | None:
    return None if x is None else torch.from_numpy(x)


def _numpy(x: torch.Tensor) -> np.ndarray:
    return x.detach().cpu().numpy().astype(np.float32)


def _mask(seen: np.ndarray, observed: Sequence[int] | None) -> np.ndarray:
    """``seen (T, 22)`` restricted to the ``observed`` joints (None = all)."""
    if observed is None:
        return seen
    keep = np.zeros(NUM_SKELETON_JOINTS, dtype=bool)
    keep[list(observed)] = True
    return seen & keep


def _frame_mean_mm(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``(T,)`` mean over the ``mask (T, 22)`` entries of ``|a - b|`` per frame, mm; NaN where none."""
    dist = np.where(mask, np.linalg.norm(np.nan_to_num(a - b), axis=-1), 0.0)
    count = mask.sum(1)
    return np.where(count > 0, 1000.0 * dist.sum(1) / np.maximum(count, 1), np.nan)


__all__ = ["MotionFit", "Observations", "fit_motion", "observe_motion"]
