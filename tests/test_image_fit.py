"""Fitting a body to 2D keypoints (``prior.image_fit``) on real AMASS val poses seen by known cameras:
the pieces (camera, keypoint rig, pose terms, which joints an occluded limb frees) and the fit
(accuracy against the truth, front/back, hypotheses for an occluded limb, sequences)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from prior.body.landmarks import keypoint_rig
from prior.camera import Camera, default_focal, focal_from_fov
from prior.image_fit import (
    PhotoObservation,
    constrained_joints,
    default_options,
    fit_photo,
    shipped_gaussian,
    unconstrained_joints,
)
from prior.keypoints import KEYPOINT_NAMES, Keypoints
from prior.metrics import pa_mpjpe_mm
from prior.pose_terms import DPoserTerm, GaussianTerm, GMMTerm
from prior.rotations import axis_angle_to_matrix

from prior_helpers import DATA

pytest_plugins = ["task_fixtures"]  # body, val_poses, trained


@pytest.fixture(scope="module")
def prior(trained):
    return trained


def _view(body, pose: np.ndarray, yaw_deg: float, depth: float = 4.0, size: int = 1000):
    """Truth joints, keypoints and camera of ``pose`` turned by ``yaw_deg`` at ``depth`` metres."""
    camera = Camera.for_image(size, size)
    pose_t = torch.as_tensor(pose, dtype=torch.float32).reshape(-1, 63)
    n = pose_t.shape[0]
    root = torch.tensor([[0.0, math.radians(yaw_deg), 0.0]]).expand(n, 3)
    with torch.no_grad():
        _, joints = body.skeleton(pose_t, global_orient=root)
        trans = torch.tensor([0.0, 0.0, -depth]) - joints[:, 0]
        rot, joints = body.skeleton(pose_t, global_orient=root, transl=trans)
        xy = camera.project(keypoint_rig(body).points(rot, joints)).numpy()
    return joints.numpy(), xy.astype(np.float32), camera


def _fit_joints(body, fit) -> np.ndarray:
    with torch.no_grad():
        return body.skeleton_joints(torch.from_numpy(fit.pose_body), global_orient=torch.from_numpy(fit.root_orient),
                                    transl=torch.from_numpy(fit.trans), betas=torch.from_numpy(fit.betas)).numpy()


def test_camera_projects_like_opencv():
    cam = Camera.for_image(640, 480)
    assert cam.focal == pytest.approx(default_focal(640, 480)) == pytest.approx(800.0)
    assert cam.center == (320.0, 240.0)
    # World Y up, the camera looks along -Z: a point above the axis is higher (smaller y) in the image.
    px = cam.project(torch.tensor([[0.0, 0.0, -2.0], [0.5, 0.25, -2.0]], dtype=torch.float64)).numpy()
    assert np.allclose(px[0], [320, 240]) and np.allclose(px[1], [320 + 800 * 0.25, 240 - 800 * 0.125])
    assert np.allclose(cam.position, 0) and cam.fov_deg[0] == pytest.approx(2 * math.degrees(math.atan(0.4)))
    assert Camera.for_image(640, 480, fov_deg=60).focal == pytest.approx(focal_from_fov(60, 640, 480))
    assert focal_from_fov(90, 1000, 10) == pytest.approx(500)
    with pytest.raises(ValueError, match="not both"):
        Camera.for_image(10, 10, focal=5, fov_deg=30)


def test_keypoint_rig_is_mirror_symmetric_and_anatomical(body):
    rig = keypoint_rig(body)
    rot, joints = body.skeleton(torch.zeros(1, 63))
    pts = dict(zip(KEYPOINT_NAMES, rig.points(rot, joints)[0].numpy()))
    head = joints[0, 15].numpy()
    centre_x = 0.5 * (pts["left_shoulder"][0] + pts["right_shoulder"][0])
    for name in ("eye", "ear", "big_toe", "small_toe", "heel"):  # left = right mirrored in x
        left, right = pts[f"left_{name}"], pts[f"right_{name}"]
        assert left[0] - centre_x > 0.02 and right[0] - centre_x < -0.02, name
        assert abs((left[0] - centre_x) + (right[0] - centre_x)) < 0.03 and abs(left[1] - right[1]) < 0.01, name
    # The face looks forward (+Z), the eyes above the nose, the ears behind it; toes ahead of the heels.
    assert pts["nose"][2] > head[2] + 0.08 and pts["left_eye"][1] > pts["nose"][1]
    assert pts["left_ear"][2] < pts["nose"][2] - 0.08
    assert pts["left_big_toe"][2] > pts["left_ankle"][2] + 0.1 > pts["left_heel"][2] + 0.1
    assert abs(pts["left_big_toe"][0]) < abs(pts["left_small_toe"][0])  # the big toe is on the inside


def test_an_occluded_limb_frees_exactly_its_joints(body):
    rig = keypoint_rig(body)
    seen = np.ones(len(KEYPOINT_NAMES), bool)
    assert unconstrained_joints(seen, rig) == ()
    assert constrained_joints(seen, rig)[:20].all()  # every body joint but the wrists moves a keypoint
    arm = seen.copy()
    arm[[KEYPOINT_NAMES.index("left_elbow"), KEYPOINT_NAMES.index("left_wrist")]] = False
    assert unconstrained_joints(arm, rig) == (16, 18)  # left shoulder and elbow
    leg = seen.copy()
    for name in ("right_knee", "right_ankle", "right_big_toe", "right_small_toe", "right_heel"):
        leg[KEYPOINT_NAMES.index(name)] = False
    assert unconstrained_joints(leg, rig) == (2, 5, 8, 11)  # right hip, knee, ankle, foot


def test_pose_term_gradients_are_the_gradients_of_their_losses(prior, val_poses):
    data = np.load(DATA / "amass_body_poses.npz", allow_pickle=False)["train"]
    pose = torch.tensor(val_poses[:5] + 0.05, requires_grad=True)
    gmm = GMMTerm.load(DATA / "smplify_gmm_08.npz")
    for term in (GaussianTerm.fit(data), gmm, shipped_gaussian()):
        (auto,) = torch.autograd.grad(term.energy(pose).sum(), pose)
        assert torch.allclose(term.gradient(pose.detach(), 0, 1), auto, rtol=1e-3, atol=1e-3)
    # DPoser's: 2 w r / std, the gradient of sum_d w (x - x0_hat)^2 with x0_hat held constant.
    a, b = (DPoserTerm(prior, t_max=0.5, t_min=0.1, seed=3) for _ in range(2))
    grad = a.gradient(pose.detach(), 10, 50)
    sched, weight = b._schedule(50)
    x = prior.normalize(pose)
    noise = torch.randn(x.shape, generator=b.gen)
    x_t = sched.alpha[10] * x + sched.std[10] * noise
    x0 = sched.x0_hat(x_t.detach(), 10).detach()
    (auto,) = torch.autograd.grad((weight[10] * (x - x0) ** 2).sum(), pose)
    assert torch.allclose(grad, auto, rtol=1e-4, atol=1e-5)


def test_gmm_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "gmm.npz"
    np.savez(bad, means=np.zeros((2, 63)), covars=np.zeros((2, 63, 63)))
    with pytest.raises(Exception, match=r"gmm\.npz: .*'weights' is missing"):
        GMMTerm.load(bad)
    np.savez(bad, means=np.zeros((2, 10)), covars=np.zeros((2, 10, 10)), weights=np.ones(2))
    with pytest.raises(Exception, match=r"gmm\.npz: GMM arrays must be"):
        GMMTerm.load(bad)


@pytest.mark.slow
def test_fit_recovers_real_poses_from_every_side(prior, body, val_poses):
    # Clean keypoints of 8 val poses, facing the camera, sideways and from behind.
    picks = val_poses[[3, 50, 120, 210, 260, 330, 410, 480]]
    yaws = [0, 180, 90, 270, 30, 150, 200, 320]
    truth, xy, camera = zip(*(_view(body, p, y) for p, y in zip(picks, yaws)))
    kp = Keypoints(np.concatenate(xy), np.ones((8, len(KEYPOINT_NAMES)), np.float32), (1000, 1000))
    fit = fit_photo(prior, body, PhotoObservation(kp, camera[0]), seed=0,
                    options=dataclasses.replace(default_options("dposer"), temporal_weight=0.0))
    joints = _fit_joints(body, fit)
    pa = pa_mpjpe_mm(joints, np.concatenate(truth))
    assert fit.mean_reprojection_px < 3.0
    assert np.median(pa) < 45 and pa.max() < 110, pa
    # Facing the right way: the fit's forward direction within 45 deg of the truth's.
    fwd = axis_angle_to_matrix(torch.from_numpy(fit.root_orient)).numpy()[:, :, 2]
    for f, yaw in zip(fwd, yaws):
        truth_fwd = np.array([math.sin(math.radians(yaw)), 0, math.cos(math.radians(yaw))])
        assert f @ truth_fwd > math.cos(math.radians(45)), (yaw, f)
    # The none prior, same keypoints: noticeably worse (the prior earns its place even on clean points).
    none = fit_photo(prior, body, PhotoObservation(kp, camera[0]), prior_name="none", seed=0)
    assert np.mean(pa_mpjpe_mm(_fit_joints(body, none), np.concatenate(truth))) > np.mean(pa)


@pytest.mark.slow
def test_hypotheses_complete_an_occluded_arm_and_keep_the_rest(prior, body, val_poses):
    truth, xy, camera = _view(body, val_poses[77], 20)
    conf = np.ones((1, len(KEYPOINT_NAMES)), np.float32)
    conf[0, [KEYPOINT_NAMES.index("right_elbow"), KEYPOINT_NAMES.index("right_wrist")]] = 0
    fit = fit_photo(prior, body, PhotoObservation(Keypoints(xy, conf, (1000, 1000)), camera), hypotheses=6, seed=1)
    assert fit.completed_joints == ((17, 19),)
    hyp = fit.hypotheses[0]
    assert hyp.shape == (6, 63)
    free = np.zeros(63, bool)
    for j in (17, 19):
        free[3 * (j - 1) : 3 * j] = True
    assert np.array_equal(hyp[:, ~free], np.broadcast_to(fit.pose_body[0, ~free], (6, 57)))  # observed: exact
    assert np.ptp(hyp[:, free], axis=0).max() > 0.1  # the hidden arm: several different answers
    arrays = fit.arrays()
    assert arrays["hypotheses"].shape == (1, 6, 63) and arrays["keypoints"].shape == (1, 23, 3)
    assert np.isnan(arrays["reprojection_px"][0, KEYPOINT_NAMES.index("right_wrist")])


@pytest.mark.slow
def test_a_sequence_shares_one_shape_and_moves_smoothly(prior, body):
    with np.load(DATA / "gesture_clip.npz", allow_pickle=False) as f:
        poses = f["pose_body"][:24].astype(np.float32)
    truth, xy, camera = _view(body, poses, 25)
    noisy = xy + np.random.default_rng(0).normal(0, 4, xy.shape).astype(np.float32)
    kp = Keypoints(noisy, np.ones(noisy.shape[:2], np.float32), (1000, 1000))
    obs = PhotoObservation(kp, camera)
    tied = fit_photo(prior, body, obs, seed=0)  # a sequence: default options tie the frames
    alone = fit_photo(prior, body, obs, seed=0, options=default_options("dposer", sequence=False))
    assert np.ptp(tied.betas, axis=0).max() < 1e-5 and np.ptp(alone.betas, axis=0).max() > 1e-3

    def accel(j):
        return np.linalg.norm(j[2:] - 2 * j[1:-1] + j[:-2], axis=-1).mean()

    jt, ja = _fit_joints(body, tied), _fit_joints(body, alone)
    assert accel(jt) < 0.3 * accel(ja)
    assert pa_mpjpe_mm(jt, truth).mean() < pa_mpjpe_mm(ja, truth).mean()


def test_too_few_keypoints_is_an_error(prior, body):
    conf = np.zeros((1, len(KEYPOINT_NAMES)), np.float32)
    conf[0, :3] = 1
    with pytest.raises(ValueError, match="at least 4"):
        fit_photo(prior, body, PhotoObservation(Keypoints(np.zeros((1, 23, 2), np.float32), conf),
                                                Camera.for_image(100, 100)))


def test_a_sequence_frame_that_sees_nobody_is_carried_by_its_neighbours(prior, body):
    with np.load(DATA / "gesture_clip.npz", allow_pickle=False) as f:
        poses = f["pose_body"][:6].astype(np.float32)
    truth, xy, camera = _view(body, poses, -20)
    conf = np.ones(xy.shape[:2], np.float32)
    conf[3] = 0  # the detector lost the person in frame 3
    xy[3] = 0
    fit = fit_photo(prior, body, PhotoObservation(Keypoints(xy, conf, (1000, 1000)), camera), seed=0)
    joints = _fit_joints(body, fit)
    assert np.isnan(fit.reprojection_px[3]).all()
    # Frame 3 lies between its neighbours (the temporal term), not somewhere else.
    assert np.linalg.norm(joints[3] - 0.5 * (joints[2] + joints[4]), axis=-1).mean() < 0.05
    assert pa_mpjpe_mm(joints[3], truth[3]) < 80
