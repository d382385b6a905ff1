"""Rotation conversions: torch against smplx, numpy twins against torch, round trips, the edge angles."""

from __future__ import annotations

import numpy as np
import torch
from smplx.lbs import batch_rodrigues

from prior.rotations import (
    axis_angle_to_matrix,
    axis_angle_to_matrix_np,
    axis_angle_to_wxyz_np,
    matrix_to_axis_angle,
    matrix_to_wxyz_np,
    slerp_axis_angle_np,
    wxyz_to_axis_angle_np,
    wxyz_to_matrix_np,
)

F64 = torch.float64


def axis_angles(count: int, *, seed: int) -> np.ndarray:
    """``(count + 8, 3)`` axis-angle vectors: random angles in [0, pi] plus 0, tiny, near-pi and pi."""
    rng = np.random.default_rng(seed)
    axis = rng.standard_normal((count + 8, 3))
    axis /= np.linalg.norm(axis, axis=1, keepdims=True)
    special = [0.0, 1e-9, 1e-5, 5e-3, np.pi - 1e-7, np.pi, np.pi / 2, 3.0]
    angle = np.concatenate([rng.uniform(0, np.pi, count), special])
    return axis * angle[:, None]


# ---- torch ------------------------------------------------------------------------------------


def test_axis_angle_to_matrix_matches_smplx_rodrigues_and_is_a_rotation() -> None:
    g = torch.Generator().manual_seed(0)
    aa = torch.cat([torch.randn(200, 3, generator=g, dtype=F64) * 2, 1e-3 * torch.randn(20, 3, generator=g, dtype=F64)])
    ours = axis_angle_to_matrix(aa)
    # smplx adds 1e-8 to the vector before taking its norm, so agreement is to ~1e-8.
    torch.testing.assert_close(ours, batch_rodrigues(aa), atol=1e-7, rtol=0)
    eye = torch.eye(3, dtype=F64).expand(220, 3, 3)
    torch.testing.assert_close(ours @ ours.transpose(-1, -2), eye, atol=1e-12, rtol=0)
    torch.testing.assert_close(torch.linalg.det(ours), torch.ones(220, dtype=F64), atol=1e-12, rtol=0)
    assert torch.equal(axis_angle_to_matrix(torch.zeros(3, dtype=F64)), torch.eye(3, dtype=F64))


def test_matrix_to_axis_angle_inverts_rodrigues_at_every_angle() -> None:
    g = torch.Generator().manual_seed(1)
    axis = torch.nn.functional.normalize(torch.randn(400, 3, generator=g, dtype=F64), dim=-1)
    angle = torch.cat([torch.rand(392, 1, generator=g, dtype=F64) * torch.pi, torch.tensor([[0.0], [1e-9], [1e-5],
                       [torch.pi - 1e-7], [torch.pi], [torch.pi], [torch.pi / 2], [3.0]], dtype=F64)])
    aa = axis * angle
    back = matrix_to_axis_angle(axis_angle_to_matrix(aa).reshape(20, 20, 3, 3)).reshape(400, 3)
    assert torch.allclose(axis_angle_to_matrix(back), axis_angle_to_matrix(aa), atol=1e-10)
    away_from_pi = angle[:, 0] < torch.pi - 1e-3  # at pi, v and -v are the same rotation
    assert torch.allclose(back[away_from_pi], aa[away_from_pi], atol=1e-9)


def test_axis_angle_gradients_are_exact_near_and_at_zero() -> None:
    for scale in (0.0, 1e-5, 5e-3, 0.02, 1.5):
        aa = (scale * torch.tensor([[0.3, -0.5, 0.8], [1.0, 0.2, -0.1]], dtype=F64)).requires_grad_()
        assert torch.autograd.gradcheck(axis_angle_to_matrix, (aa,), eps=1e-7, atol=1e-6)


def test_edge_angles_are_exact() -> None:
    assert torch.equal(matrix_to_axis_angle(torch.eye(3, dtype=F64)), torch.zeros(3, dtype=F64))
    half_turns = torch.diag_embed(torch.tensor([[1.0, -1, -1], [-1, 1, -1], [-1, -1, 1]], dtype=F64))
    assert torch.equal(matrix_to_axis_angle(half_turns), torch.pi * torch.eye(3, dtype=F64))


# ---- numpy twins against torch ----------------------------------------------------------------


def test_numpy_axis_angle_to_matrix_is_the_torch_one() -> None:
    aa = axis_angles(300, seed=2).reshape(4, 77, 3)
    np.testing.assert_allclose(axis_angle_to_matrix_np(aa), axis_angle_to_matrix(torch.from_numpy(aa)).numpy(),
                               atol=1e-15, rtol=0)
    assert np.array_equal(axis_angle_to_matrix_np(np.zeros(3)), np.eye(3))


def test_quaternions_agree_with_the_torch_conversions() -> None:
    aa = axis_angles(300, seed=3)
    rot = axis_angle_to_matrix(torch.from_numpy(aa)).numpy()
    # axis-angle -> quaternion -> matrix is the torch axis-angle -> matrix
    np.testing.assert_allclose(wxyz_to_matrix_np(axis_angle_to_wxyz_np(aa)), rot, atol=1e-12, rtol=0)
    # matrix -> quaternion -> axis-angle is the torch matrix -> axis-angle (both take the angle in [0, pi])
    back = wxyz_to_axis_angle_np(matrix_to_wxyz_np(rot))
    want = matrix_to_axis_angle(torch.from_numpy(rot)).numpy()
    away_from_pi = np.linalg.norm(aa, axis=1) < np.pi - 1e-3  # at pi, v and -v are the same rotation
    np.testing.assert_allclose(back[away_from_pi], want[away_from_pi], atol=1e-9, rtol=0)
    np.testing.assert_allclose(axis_angle_to_matrix_np(back), rot, atol=1e-9, rtol=0)


def test_quaternion_round_trips() -> None:
    aa = axis_angles(300, seed=4).reshape(2, -1, 3)
    q = axis_angle_to_wxyz_np(aa)
    np.testing.assert_allclose(np.linalg.norm(q, axis=-1), 1.0, atol=1e-15, rtol=0)
    assert (q[..., 0] >= 0).all()
    np.testing.assert_allclose(wxyz_to_axis_angle_np(q), aa, atol=1e-9, rtol=0)
    rot = wxyz_to_matrix_np(q)
    again = matrix_to_wxyz_np(rot)
    assert again.shape == q.shape
    # q and -q are the same rotation; Shepperd's method does not fix the sign
    np.testing.assert_allclose(np.abs((again * q).sum(-1)), 1.0, atol=1e-12, rtol=0)
    np.testing.assert_allclose(wxyz_to_matrix_np(again), rot, atol=1e-12, rtol=0)


def test_numpy_edge_angles_are_exact() -> None:
    assert np.array_equal(axis_angle_to_wxyz_np(np.zeros(3)), [1.0, 0, 0, 0])
    assert np.array_equal(wxyz_to_axis_angle_np(np.array([1.0, 0, 0, 0])), np.zeros(3))
    assert np.array_equal(matrix_to_wxyz_np(np.eye(3)), [1.0, 0, 0, 0])
    for i in range(3):
        q = np.eye(4)[i + 1]  # a half turn about axis i
        assert np.array_equal(wxyz_to_axis_angle_np(q), np.pi * np.eye(3)[i])
        assert np.array_equal(wxyz_to_matrix_np(q), 2 * np.outer(q[1:], q[1:]) - np.eye(3))
        assert np.array_equal(np.abs(matrix_to_wxyz_np(wxyz_to_matrix_np(q))), q)


# ---- slerp ------------------------------------------------------------------------------------


def test_slerp_endpoints_and_midpoint() -> None:
    rng = np.random.default_rng(5)
    frames = rng.normal(0, 0.8, (4, 6)).astype(np.float32)  # 4 frames of 2 joints
    lower, upper = np.array([0, 1, 2, 2]), np.array([1, 2, 3, 3])
    out = slerp_axis_angle_np(frames, lower, upper, np.array([0.0, 0.0, 0.5, 1 - 1e-12]))
    assert out.shape == (4, 6) and out.dtype == np.float64
    # frac 0 copies the lower frame exactly; frac -> 1 reaches the upper frame's rotation
    assert np.array_equal(out[:2], frames[:2].astype(np.float64))
    rot = axis_angle_to_matrix_np(out.reshape(4, 2, 3))
    want = axis_angle_to_matrix_np(frames.astype(np.float64).reshape(4, 2, 3))
    np.testing.assert_allclose(rot[3], want[3], atol=1e-9, rtol=0)

    def angle(r1: np.ndarray, r2: np.ndarray) -> np.ndarray:
        cos = (np.trace(np.swapaxes(r1, -1, -2) @ r2, axis1=-2, axis2=-1) - 1) / 2
        return np.arccos(np.clip(cos, -1, 1))

    # the midpoint is halfway along the geodesic
    np.testing.assert_allclose(angle(want[2], rot[2]), 0.5 * angle(want[2], want[3]), atol=1e-7)
    np.testing.assert_allclose(angle(rot[2], want[3]), 0.5 * angle(want[2], want[3]), atol=1e-7)


def test_slerp_about_one_axis_is_linear_in_the_angle_and_goes_the_short_way() -> None:
    axis = np.array([0.0, 0.6, 0.8])
    frames = np.stack([0.2 * axis, 1.4 * axis, 3.0 * axis, -3.0 * axis])  # the last pair is 0.28 rad apart
    frac = np.array([0.25, 0.5, 0.5])
    out = slerp_axis_angle_np(frames, np.array([0, 0, 2]), np.array([1, 1, 3]), frac)
    np.testing.assert_allclose(out[:2], [0.5 * axis, 0.8 * axis], atol=1e-12, rtol=0)
    # 3 rad and -3 rad about the same axis: the short way passes through pi, not through 0
    np.testing.assert_allclose(np.abs(out[2] @ axis), np.pi, atol=1e-12)
