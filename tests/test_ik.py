"""Prior-guided IK on real poses: targets reached, fixed joints held, drags followed, the prior keeps
poses plausible; and the keep-plausible refinement."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from prior import Cancelled
from prior.ik import IKOptions, inverse_kinematics, keep_plausible
from prior.parts import PARTS, joint_mask
from prior.plausibility import prior_energy

from prior_helpers import DATA

pytest_plugins = ["task_fixtures"]  # body, official, trained, one_thread
pytestmark = pytest.mark.usefixtures("one_thread")

R_WRIST, L_ANKLE, PELVIS = 21, 7, 0  # SMPL-X joints
SPINE3, NECK, HEAD = 9, 12, 15


@pytest.fixture(scope="module")
def val_poses():
    with np.load(DATA / "amass_body_poses.npz", allow_pickle=False) as f:
        return torch.from_numpy(f["val"][:8])


def joints_of(body, pose, **kw):
    return body.skeleton_joints(pose[None], **{k: v for k, v in kw.items() if v is not None})[0]


def test_reaches_targets_and_holds_fixed_joints(official, body, val_poses):
    pose = val_poses[0]
    root, shift = torch.tensor([0.3, -1.2, 0.1]), torch.tensor([0.5, 0.9, -0.2])
    start = joints_of(body, pose, global_orient=root, transl=shift)
    targets = {R_WRIST: start[R_WRIST] + torch.tensor([0.12, 0.15, -0.05]), L_ANKLE: start[L_ANKLE]}
    legs = PARTS["right_leg"]
    res = inverse_kinematics(official, body, pose, targets, fixed=legs, global_orient=root, transl=shift)
    assert res.residual_m < 1e-3
    assert (res.joints[R_WRIST] - targets[R_WRIST]).norm() < 1e-3
    assert (res.joints[L_ANKLE] - targets[L_ANKLE]).norm() < 1e-3
    held = torch.from_numpy(joint_mask(legs))
    assert torch.equal(res.pose_body[held], pose[held])  # fixed rotations are bit-exact
    assert torch.allclose(res.joints, joints_of(body, res.pose_body, global_orient=root, transl=shift), atol=1e-6)
    assert res.global_orient is None and 1 <= res.steps <= IKOptions().steps + IKOptions().polish_steps


def test_warm_started_solves_follow_a_drag_smoothly(official, body, val_poses):
    pose = val_poses[1]
    start = joints_of(body, pose)[R_WRIST]
    end = start + torch.tensor([-0.1, 0.2, 0.1])
    current = pose
    for k in range(1, 11):
        res = inverse_kinematics(official, body, current, {R_WRIST: start + (end - start) * k / 10})
        assert res.residual_m < 1e-3
        assert float((res.pose_body - current).abs().max()) < 0.3  # small target step, small pose step
        current = res.pose_body


def test_the_prior_keeps_dragged_poses_plausible(trained, body, val_poses):
    gen = torch.Generator().manual_seed(0)
    with_prior, without, leg_change = [], [], []
    legs = torch.from_numpy(joint_mask(PARTS["legs"]))
    for pose in val_poses[:6]:
        start = joints_of(body, pose)[R_WRIST]
        direction = torch.randn(3, generator=gen)
        end = start + 0.3 * direction / direction.norm()
        for weight, out in ((IKOptions().prior_weight, with_prior), (0.0, without)):
            current = pose
            for k in range(1, 6):
                res = inverse_kinematics(trained, body, current, {R_WRIST: start + (end - start) * k / 5},
                                         options=IKOptions(prior_weight=weight))
                current = res.pose_body
            assert res.residual_m < 1e-3  # the prior never costs reaching the target
            out.append(float(prior_energy(trained, current[None])[0]))
            if weight > 0:
                leg_change.append(float((current[legs] - pose[legs]).abs().max()))
    assert np.mean(with_prior) < np.mean(without) - 0.1, (with_prior, without)
    assert sum(a < b for a, b in zip(with_prior, without)) >= 5
    assert max(leg_change) < 0.2, leg_change  # joints far from the dragged wrist barely move


def drag(prior, body, pose, joint, offset, **kw):
    """Drag ``joint`` by ``offset`` (metres) in five warm-started solves, as the viewer follows a mouse."""
    start = joints_of(body, pose)[joint]
    for k in range(1, 6):
        res = inverse_kinematics(prior, body, pose, {joint: start + offset * k / 5}, **kw)
        pose = res.pose_body
    return res


def test_pinned_joints_keep_their_place_and_turn_while_a_wrist_is_dragged(trained, body, val_poses):
    """Pins on spine3, neck and head: dragging a wrist moves them by less than a millimetre and turns
    them by less than 0.1 degree, and the wrist still reaches its target; without the pins the same
    drag bends the spine by centimetres."""
    pins = [SPINE3, NECK, HEAD]
    for pose, offset in zip(val_poses[:3], ([0.1, 0.12, -0.05], [-0.08, 0.1, 0.1], [0.1, 0.0, 0.1])):
        offset = torch.tensor(offset)
        rot0, pos0 = (x[0] for x in body.skeleton(pose[None]))
        free = drag(trained, body, pose, R_WRIST, offset)
        assert (free.joints[pins] - pos0[pins]).norm(dim=-1).max() > 0.01, "the drag did not test the pins"
        res = drag(trained, body, pose, R_WRIST, offset, pinned=pins)
        assert res.residual_m < 1e-3
        rot, pos = (x[0] for x in body.skeleton(res.pose_body[None]))
        assert (pos[pins] - pos0[pins]).norm(dim=-1).max() < 1e-3
        turn = (rot[pins].transpose(-1, -2) @ rot0[pins] - torch.eye(3)).abs().max()
        assert turn < np.radians(0.1), float(turn)
        assert res.pin_drift_m < 1e-3


def test_a_target_out_of_reach_moves_no_pin(trained, body, val_poses):
    pose = val_poses[3]
    pins = [SPINE3, NECK, HEAD]
    start = joints_of(body, pose)
    res = inverse_kinematics(trained, body, pose, {R_WRIST: start[R_WRIST] + torch.tensor([0.0, 0.0, 1.5])},
                             pinned=pins)
    assert res.residual_m > 0.3  # the arm alone cannot reach 1.5 m forward
    assert (res.joints[pins] - start[pins]).norm(dim=-1).max() < 1e-3 and res.pin_drift_m < 1e-3
    with pytest.raises(ValueError, match="both pinned and targeted"):
        inverse_kinematics(trained, body, pose, {HEAD: start[HEAD]}, pinned=pins)
    with pytest.raises(ValueError, match="pinned joints must be"):
        inverse_kinematics(trained, body, pose, {R_WRIST: start[R_WRIST]}, pinned=[22])


def test_free_root_moves_the_pelvis(official, body, val_poses):
    pose = val_poses[2]
    goal = joints_of(body, pose)[PELVIS] + torch.tensor([0.2, -0.1, 0.3])
    stuck = inverse_kinematics(official, body, pose, {PELVIS: goal})
    assert stuck.residual_m > 0.3  # the body pose alone cannot move the pelvis
    moved = inverse_kinematics(official, body, pose, {PELVIS: goal}, options=IKOptions(free_root=True))
    assert moved.residual_m < 1e-3 and moved.transl is not None
    assert torch.allclose(moved.transl, torch.tensor([0.2, -0.1, 0.3]), atol=1e-3)


def test_streams_iterations_and_cancels(official, body, val_poses):
    pose = val_poses[3]
    target = {R_WRIST: joints_of(body, pose)[R_WRIST] + 0.1}
    seen = []
    res = inverse_kinematics(official, body, pose, target, callback=seen.append)
    assert [p.step for p in seen] == list(range(1, res.steps + 1)) and seen[0].task == "ik"
    assert seen[-1].pose_body.shape == (1, 63)
    assert seen[-1].extra["residual_m"] == pytest.approx(res.residual_m, abs=1e-6)
    cancel = threading.Event()
    with pytest.raises(Cancelled):
        inverse_kinematics(official, body, pose, target, cancel=cancel, callback=lambda p: cancel.set())
    with pytest.raises(ValueError, match="0..21"):
        inverse_kinematics(official, body, pose, {22: torch.zeros(3)})
    with pytest.raises(ValueError, match="no targets"):
        inverse_kinematics(official, body, pose, {})


def test_keep_plausible_repairs_untouched_joints_and_holds_touched_ones(trained, val_poses):
    pose = val_poses[4]
    touched = list(PARTS["right_arm"])
    untouched = torch.from_numpy(~joint_mask(touched))
    gen = torch.Generator().manual_seed(1)
    broken = pose.clone()
    broken[untouched] += 0.3 * torch.randn(int(untouched.sum()), generator=gen)
    refined = keep_plausible(trained, broken, touched, seed=0)
    assert refined.shape == (63,)
    assert torch.equal(refined[~untouched], broken[~untouched])
    energies = prior_energy(trained, torch.stack([pose, broken, refined])).tolist()
    assert energies[2] < energies[1] - 0.5, energies  # much more plausible than the broken pose
