"""Pose metrics: joint errors, diversity (APD), pose-space Frechet distance and PRDC."""

from __future__ import annotations

import numpy as np
import torch


def mpjpe_mm(pred: torch.Tensor | np.ndarray, gt: torch.Tensor | np.ndarray) -> np.ndarray:
    """Mean per-joint position error in millimetres over the joint axis: ``(..., J, 3)`` -> ``(...)``."""
    pred, gt = np.asarray(pred, dtype=np.float64), np.asarray(gt, dtype=np.float64)
    return np.linalg.norm(pred - gt, axis=-1).mean(-1) * 1000.0


def procrustes_align(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """``pred (..., J, 3)`` moved onto ``gt (..., J, 3)`` by the similarity (rotation, scale,
    translation) that best aligns them in the least-squares sense (Umeyama), per leading index."""
    pred, gt = np.asarray(pred, dtype=np.float64), np.asarray(gt, dtype=np.float64)
    mp, mg = pred.mean(-2, keepdims=True), gt.mean(-2, keepdims=True)
    a, b = pred - mp, gt - mg
    u, s, vt = np.linalg.svd(np.swapaxes(a, -1, -2) @ b)  # a^T b = u s vt
    d = np.sign(np.linalg.det(u @ vt))
    flip = np.ones_like(s)
    flip[..., -1] = d
    rot = (u * flip[..., None, :]) @ vt  # rotation applied as a @ rot
    scale = (s * flip).sum(-1) / (a * a).sum((-1, -2))
    return scale[..., None, None] * (a @ rot) + mg


def pa_mpjpe_mm(pred: torch.Tensor | np.ndarray, gt: torch.Tensor | np.ndarray) -> np.ndarray:
    """MPJPE after Procrustes alignment (rotation, scale, translation) of ``pred`` onto ``gt``,
    millimetres: ``(..., J, 3)`` -> ``(...)``; the error of the pose alone, as image fitting reports it."""
    gt = np.asarray(gt, dtype=np.float64)
    return mpjpe_mm(procrustes_align(np.asarray(pred, dtype=np.float64), gt), gt)


def apd_m(joints: torch.Tensor | np.ndarray) -> float:
    """Average pairwise distance of ``joints: (N, J, 3)`` (metres): the mean over ordered pairs of
    distinct samples of their mean joint distance."""
    j = torch.as_tensor(np.asarray(joints), dtype=torch.float64)
    n = j.shape[0]
    if n < 2:
        raise ValueError("APD needs at least two samples")
    total = 0.0
    for i in range(n):  # row by row: (N, J) distances at a time keeps memory flat for large N
        total += float(torch.linalg.norm(j - j[i], dim=-1).mean(-1).sum())
    return total / (n * (n - 1))


def gaussian_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``(D,)`` and covariance ``(D, D)`` of samples ``x: (N, D)``."""
    x = np.asarray(x, dtype=np.float64)
    return x.mean(0), np.cov(x, rowvar=False)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Frechet distance between two Gaussians:
    ``|mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2))`` (numpy only, via symmetric square roots)."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    s1, s2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    w, v = np.linalg.eigh((s1 + s1.T) / 2)
    root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    inner = root1 @ s2 @ root1  # similar to S1 S2 and symmetric PSD: same eigenvalues
    tr_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh((inner + inner.T) / 2), 0, None)).sum()
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * tr_sqrt)


def prdc(real: np.ndarray, fake: np.ndarray, *, k: int = 3) -> dict[str, float]:
    """Precision, recall, density and coverage (Naeem et al. 2020) of ``fake (M, D)`` against
    ``real (N, D)`` with k-nearest-neighbour balls (``k`` excludes the point itself)."""
    real = torch.as_tensor(np.asarray(real), dtype=torch.float64)
    fake = torch.as_tensor(np.asarray(fake), dtype=torch.float64)
    d_rr = torch.cdist(real, real)
    d_ff = torch.cdist(fake, fake)
    d_rf = torch.cdist(real, fake)  # (N, M)
    r_real = d_rr.kthvalue(k + 1, dim=1).values  # +1: distance to itself is the smallest
    r_fake = d_ff.kthvalue(k + 1, dim=1).values
    inside_real = d_rf <= r_real[:, None]  # fake j inside real i's ball
    return {
        "precision": float(inside_real.any(0).double().mean()),
        "recall": float((d_rf <= r_fake[None, :]).any(1).double().mean()),
        "density": float(inside_real.double().sum(0).mean() / k),
        "coverage": float((d_rf.min(1).values <= r_real).double().mean()),
    }
