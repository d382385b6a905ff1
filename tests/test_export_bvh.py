"""BVH export, read back by real readers: ``bvhio`` (pip) and Blender's own importer (headless).

The oracle is the body model's forward kinematics (its joints, turned Y up as the clip's
skeleton is): what each reader computes from the file must land on it within 1 mm.

Blender is Z up; its importer's default axes (forward -Z, up Y, passed explicitly) turn the
file's Y up into Blender's Z up, which maps our ``(x, y, z)`` to Blender's ``(x, -z, y)``.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
from pathlib import Path

import bvhio
import numpy as np
import pytest
import torch

from prior import load_body_model
from prior.body import BodyModel
from prior.data import Clip, load_clip
from prior.exports.bvh import JOINT_CHANNELS, ROOT_CHANNELS, bvh_bytes, matrix_to_euler_zxy
from prior.exports.skeleton import Skeleton, clip_skeleton
from prior.rotations import axis_angle_to_matrix_np, matrix_to_wxyz_np, wxyz_to_axis_angle_np, wxyz_to_matrix_np

from prior_helpers import DATA
from synthetic_body import write_synthetic_model

GESTURE = DATA / "gesture_clip.npz"
TOLERANCE_M = 1e-3
MARKER = "BVH_TEST_RESULT "


# ---- rotations, clips and bodies --------------------------------------------------------------


def about(axis: str, angle: np.ndarray) -> np.ndarray:
    """``(..., 3, 3)`` rotations by ``angle (...)`` radians about the ``"x"``, ``"y"`` or ``"z"`` axis."""
    i, j = {"x": (1, 2), "y": (2, 0), "z": (0, 1)}[axis]
    angle = np.asarray(angle, np.float64)
    out = np.broadcast_to(np.eye(3), (*angle.shape, 3, 3)).copy()
    out[..., i, i] = out[..., j, j] = np.cos(angle)
    out[..., i, j], out[..., j, i] = -np.sin(angle), np.sin(angle)
    return out


def zxy(angles: np.ndarray) -> np.ndarray:
    """What a BVH reader makes of ``Zrotation Xrotation Yrotation`` angles ``(..., 3)`` (radians)."""
    return about("z", angles[..., 0]) @ about("x", angles[..., 1]) @ about("y", angles[..., 2])


@pytest.fixture(scope="module")
def mannequin() -> BodyModel:
    return load_body_model()


@pytest.fixture(scope="module")
def smplx_body(tmp_path_factory: pytest.TempPathFactory) -> BodyModel:
    return load_body_model(write_synthetic_model(tmp_path_factory.mktemp("body") / "SMPLX_NEUTRAL.npz", "smplx"))


@pytest.fixture(scope="module")
def gesture() -> Clip:
    return load_clip(GESTURE)


def moving_clip(frames: int = 40, *, seed: int = 0) -> Clip:
    """An AMASS-like (Z-up) clip at 60 fps that walks 1 m, turns 400 degrees about the vertical,
    bends the left knee from 0 to 130 degrees (through the Euler angles' 90), holds the left hip
    flexed at exactly 90 degrees (gimbal lock of Z-X-Y angles) and moves every finger."""
    rng = np.random.default_rng(seed)
    s = np.linspace(0.0, 1.0, frames)
    root_orient = wxyz_to_axis_angle_np(matrix_to_wxyz_np(about("z", np.radians(400) * s) @ about("x", np.pi / 2)))
    pose = np.tile(rng.normal(0.0, 0.2, 63), (frames, 1))
    pose[:, 0:3] = [-np.pi / 2, 0.0, 0.0]  # left hip (joint 1)
    pose[:, 9:12] = np.stack([np.radians(130) * s, 0 * s, 0 * s], 1)  # left knee (joint 4)
    hands = rng.normal(0.0, 0.3, 90) * (1 + np.sin(2 * np.pi * s))[:, None]
    trans = np.stack([s, 0.1 * np.sin(4 * np.pi * s), 0.9 + 0.02 * np.cos(4 * np.pi * s)], 1)
    f32 = np.float32
    return Clip(pose_body=pose.astype(f32), root_orient=root_orient.astype(f32), trans=trans.astype(f32),
                hands=hands.astype(f32), jaw=np.full((frames, 3), 0.1, f32), betas=rng.normal(0, 1, 10).astype(f32),
                fps=60.0, fps_assumed=False)


def body_joints(clip: Clip, body: BodyModel, skeleton: Skeleton) -> np.ndarray:
    """``(T, J, 3)`` the body model's own joints for ``clip``, turned and lifted as ``skeleton`` says
    the export turns and lifts them (Y up, on the floor)."""
    def tensor(x: np.ndarray | None) -> torch.Tensor | None:
        return None if x is None else torch.as_tensor(x, dtype=body.v_template.dtype)

    with torch.no_grad():
        out = body.forward(tensor(clip.pose_body), global_orient=tensor(clip.root_orient), transl=tensor(clip.trans),
                           betas=tensor(clip.betas), hand_pose=tensor(clip.hands),
                           jaw_pose=tensor(clip.jaw) if body.kind == "smplx" else None, vertices=False)
    return out.joints.double().numpy() @ skeleton.turn.T + [0.0, skeleton.lift, 0.0]


def write(tmp_path: Path, skeleton: Skeleton, name: str = "clip.bvh") -> Path:
    path = tmp_path / name
    path.write_bytes(bvh_bytes(skeleton))
    return path


CASES = {"gesture on the mannequin": ("gesture", "mannequin"), "moving on SMPL-X": ("moving", "smplx_body")}


@pytest.fixture(params=list(CASES), scope="module")
def case(request: pytest.FixtureRequest) -> tuple[Clip, BodyModel]:
    clip_name, body_name = CASES[request.param]
    clip = request.getfixturevalue("gesture") if clip_name == "gesture" else moving_clip()
    return clip, request.getfixturevalue(body_name)


# ---- bvhio ------------------------------------------------------------------------------------


def bvhio_world_positions(path: Path, frames: list[int]) -> tuple[list, np.ndarray]:
    """bvhio's joints in the file's order and its world positions ``(len(frames), J, 3)`` of them."""
    root = bvhio.readAsHierarchy(str(path))
    joints = [joint for joint, _, _ in root.layout()]
    positions = []
    for frame in frames:
        root.loadPose(frame)
        positions.append([list(joint.PositionWorld) for joint in joints])
    return joints, np.array(positions)


def test_bvhio_reads_the_joints_hierarchy_frames_and_motion(tmp_path, case):
    clip, body = case
    skeleton = clip_skeleton(clip, body)
    path = write(tmp_path, skeleton)
    frames = [0, clip.num_frames // 2, clip.num_frames - 1]
    joints, positions = bvhio_world_positions(path, frames)
    names = [joint.Name for joint in joints]
    assert sorted(names) == sorted(body.joint_names)
    parents = {joint.Name: joint.Parent.Name for joint in joints if joint.Parent is not None}
    assert parents == {n: body.joint_names[p] for n, p in zip(body.joint_names[1:], body.parents[1:].tolist())}
    header = bvhio.readAsBvh(str(path), loadKeyFrames=False)
    assert header.FrameCount == clip.num_frames
    assert header.FrameTime == pytest.approx(1 / clip.fps, rel=1e-12)
    order = [body.joint_names.index(n) for n in names]
    expected = body_joints(clip, body, skeleton)[frames][:, order]
    np.testing.assert_allclose(positions, expected, atol=TOLERANCE_M)
    np.testing.assert_allclose(positions, skeleton.world_positions[frames][:, order], atol=TOLERANCE_M)


def test_the_hierarchy_is_the_bodys_rest_t_pose_with_end_sites_along_the_leaf_bones(tmp_path, smplx_body):
    clip = moving_clip()
    skeleton = clip_skeleton(clip, smplx_body)
    path = write(tmp_path, skeleton)
    root = bvhio.readAsHierarchy(str(path))  # in its rest pose when read
    joints = {joint.Name: joint for joint, _, _ in root.layout()}
    rest = smplx_body.rest_joints(torch.as_tensor(clip.betas)).reshape(-1, 3).double().numpy()
    read_rest = np.array([list(joints[n].PositionWorld) for n in smplx_body.joint_names])
    np.testing.assert_allclose(read_rest, rest, atol=1e-5)
    assert np.abs(read_rest - body_joints(clip, smplx_body, skeleton)[0]).max() > 0.1  # not frame 0

    leaves = set(smplx_body.joint_names) - {smplx_body.joint_names[p] for p in smplx_body.parents[1:].tolist()}
    assert {"left_foot", "left_index3", "right_thumb3", "jaw", "left_eye"} <= leaves
    file_joints = {joint.Name: joint for joint, _, _ in bvhio.readAsBvh(str(path)).Root.layout()}
    for name in leaves:
        bone = skeleton.offsets[smplx_body.joint_names.index(name)]
        end = np.array(list(file_joints[name].EndSite))
        assert file_joints[name].Children == []
        assert end @ bone / (np.linalg.norm(end) * np.linalg.norm(bone)) > 0.9999, name
        assert 0 < np.linalg.norm(end) < np.linalg.norm(bone), name


def test_the_file_states_its_channel_order_and_the_exact_frame_time(gesture, mannequin):
    text = bvh_bytes(clip_skeleton(gesture, mannequin)).decode("ascii")
    channels = [line.split()[2:] for line in text.splitlines() if line.strip().startswith("CHANNELS")]
    assert channels[0] == list(ROOT_CHANNELS) == ["Xposition", "Yposition", "Zposition",
                                                  "Zrotation", "Xrotation", "Yrotation"]
    assert all(c == list(JOINT_CHANNELS) for c in channels[1:]) and len(channels) == mannequin.num_joints
    frame_time = next(line for line in text.splitlines() if line.startswith("Frame Time:")).split()[2]
    assert float(frame_time) == 1 / 30


def test_the_channels_are_continuous_through_90_degrees_and_full_turns(tmp_path, smplx_body):
    """Each frame's angles are the Euler solution nearest the previous frame's: the knee's X angle
    passes 90 degrees and the root's vertical angle 180 without a jump (the rotations, and so the
    positions checked above, are the same either way)."""
    path = write(tmp_path, clip_skeleton(moving_clip(), smplx_body))
    lines = path.read_text().splitlines()
    motion = np.array([line.split() for line in lines[lines.index("MOTION") + 3:]], dtype=float)
    names = [joint.Name for joint, _, _ in bvhio.readAsBvh(str(path), loadKeyFrames=False).Root.layout()]
    knee_x = motion[:, 3 + 3 * names.index("left_knee") + 1]
    root_y = motion[:, 5]
    assert np.abs(knee_x).max() == pytest.approx(130, abs=0.5) and np.ptp(root_y) == pytest.approx(400, abs=0.5)
    assert np.abs(np.diff(motion[:, 3:], axis=0)).max() < 15  # degrees per frame


def test_euler_angles_compose_back_to_the_rotation_at_and_near_gimbal_lock():
    rng = np.random.default_rng(0)
    near = np.pi / 2 - np.array([0.0, 1e-15, 1e-12, 1e-9, 1e-6, 1e-3])
    x = np.repeat(np.concatenate([near, -near]), 5)
    z, y = rng.uniform(-np.pi, np.pi, (2, len(x)))
    # Through quaternions, as products of matrices come: the entries that vanish at the lock carry
    # absolute (not relative) rounding errors, which angles read from them alone would magnify.
    locked = wxyz_to_matrix_np(matrix_to_wxyz_np(zxy(np.stack([z, x, y], 1))))
    half_turns = axis_angle_to_matrix_np(np.pi * np.eye(3))
    uniform = wxyz_to_matrix_np(rng.normal(size=(2000, 4)))
    rot = np.concatenate([uniform, locked, half_turns, np.eye(3)[None]])
    angles = matrix_to_euler_zxy(rot)
    np.testing.assert_allclose(zxy(angles), rot, rtol=0, atol=1e-9)
    assert np.all(np.abs(angles[:, 1]) <= np.pi / 2)


# ---- edge cases -------------------------------------------------------------------------------


def test_a_one_frame_clip(tmp_path, smplx_body):
    clip = moving_clip().frames(7, 8)
    skeleton = clip_skeleton(clip, smplx_body)
    path = write(tmp_path, skeleton)
    assert bvhio.readAsBvh(str(path), loadKeyFrames=False).FrameCount == 1
    joints, positions = bvhio_world_positions(path, [0])
    order = [smplx_body.joint_names.index(joint.Name) for joint in joints]
    np.testing.assert_allclose(positions[0], body_joints(clip, smplx_body, skeleton)[0][order], atol=TOLERANCE_M)


@pytest.mark.parametrize("body_name", ["mannequin", "smplx_body"])
def test_a_clip_without_trans_stands_on_the_floor_and_one_with_it_keeps_its_world(gesture, body_name, request):
    """Blender's and game engines' floor is y = 0: a clip whose pelvis is at the origin (no
    translation) would stand a metre under it. Its lowest vertex over the clip is put on it."""
    body = request.getfixturevalue(body_name)
    skeleton = clip_skeleton(gesture, body)
    with torch.no_grad():
        vertices = body.vertices(torch.as_tensor(gesture.pose_body, dtype=body.v_template.dtype),
                                 global_orient=torch.as_tensor(gesture.root_orient, dtype=body.v_template.dtype))
    heights = (vertices.double().numpy() @ skeleton.turn.T)[..., 1] + skeleton.lift
    assert abs(heights.min()) < 1e-6 and skeleton.lift > 0.5, (heights.min(), skeleton.lift)
    moved = dataclasses.replace(gesture, trans=np.tile([0.0, 0.0, 0.3], (gesture.num_frames, 1)).astype(np.float32))
    assert clip_skeleton(moved, body).lift == 0.0, "a clip with a translation has its own floor"


def test_a_clip_without_trans_keeps_the_root_at_the_bodys_rest_pelvis_lifted_onto_the_floor(tmp_path, smplx_body):
    clip = dataclasses.replace(moving_clip(), trans=None)
    skeleton = clip_skeleton(clip, smplx_body)
    path = write(tmp_path, skeleton)
    frames = list(range(clip.num_frames))
    joints, positions = bvhio_world_positions(path, frames)
    assert joints[0].Name == "pelvis"
    rest_pelvis = smplx_body.rest_joints(torch.as_tensor(clip.betas)).reshape(-1, 3)[0].double().numpy()
    lifted = skeleton.turn @ rest_pelvis + [0.0, skeleton.lift, 0.0]
    np.testing.assert_allclose(positions[:, 0], np.tile(lifted, (len(frames), 1)), atol=1e-5)
    order = [smplx_body.joint_names.index(joint.Name) for joint in joints]
    np.testing.assert_allclose(positions, body_joints(clip, smplx_body, skeleton)[:, order], atol=TOLERANCE_M)


@pytest.mark.parametrize(("field", "where"), [("pose_body", "frame 2, joint 'left_knee'"), ("trans", "frame 2"),
                                              ("hands", "frame 2, joint 'left_index1'")])
def test_nan_in_a_clip_is_refused_naming_the_frame(smplx_body, field, where):
    clip = moving_clip()
    bad = getattr(clip, field).copy()
    bad[2, {"pose_body": 9, "trans": 1, "hands": 0}[field]] = np.nan
    with pytest.raises(ValueError, match=f"NaN or Inf values .*{where}"):
        bvh_bytes(clip_skeleton(dataclasses.replace(clip, **{field: bad}), smplx_body))


def test_a_skeleton_the_file_cannot_hold_is_refused(gesture, mannequin):
    skeleton = clip_skeleton(gesture, mannequin)
    scaled = skeleton.local_rotations.copy()
    scaled[5, 3] *= 1.1
    names = ("pelvis hip", *skeleton.names[1:])
    for bad, problem in [(dict(local_rotations=scaled), "frame 5, joint 'spine1' is not a rotation"),
                         (dict(names=names), "white space"),
                         (dict(local_rotations=scaled[:0], root_positions=skeleton.root_positions[:0]), "T >= 1"),
                         (dict(fps=0.0), "fps")]:
        with pytest.raises(ValueError, match=problem):
            bvh_bytes(dataclasses.replace(skeleton, **bad))


# ---- Blender ----------------------------------------------------------------------------------

BLENDER_SCRIPT = r'''
"""Import each BVH of the spec with Blender's own importer and print what it made as one JSON line."""
import builtins
import json
import sys

import bpy
import io_anim_bvh.import_bvh


def importer_open(file, mode="r", *args, **kwargs):
    # Blender 3.4's importer opens the file in mode 'rU', which Python 3.11 (Debian's Blender
    # runs on it) removed; newer importers use 'r'. Only the mode is changed.
    return builtins.open(file, mode.replace("U", ""), *args, **kwargs)


results = []
for item in json.loads(open(sys.argv[sys.argv.index("--") + 1]).read()):
    bpy.ops.wm.read_factory_settings(use_empty=True)
    io_anim_bvh.import_bvh.open = importer_open
    bpy.ops.import_anim.bvh(filepath=item["path"], axis_forward="-Z", axis_up="Y", global_scale=1.0,
                            update_scene_fps=True, frame_start=1)
    arm, scene = bpy.context.object, bpy.context.scene
    action = arm.animation_data.action
    names = [bone.name for bone in arm.data.bones]
    heads = []
    for frame in item["frames"]:
        scene.frame_set(1 + frame)
        heads.append([list(arm.matrix_world @ arm.pose.bones[n].head) for n in names])
    results.append({
        "names": names,
        "fps": scene.render.fps / scene.render.fps_base,
        "keys": sorted({len(c.keyframe_points) for c in action.fcurves}),
        "key_frames": sorted({k.co[0] for c in action.fcurves for k in c.keyframe_points}),
        "rest": [list(arm.matrix_world @ bone.head_local) for bone in arm.data.bones],
        "heads": heads,
    })
print("''' + MARKER + r'''" + json.dumps(results))
'''


def run_blender(tmp_path: Path, spec: list[dict]) -> list[dict]:
    """Blender's importer's view of each file in ``spec`` (``path``, ``frames``)."""
    script, spec_path = tmp_path / "import_bvh.py", tmp_path / "spec.json"
    script.write_text(BLENDER_SCRIPT)
    spec_path.write_text(json.dumps(spec))
    proc = subprocess.run(["blender", "-b", "--factory-startup", "--python-exit-code", "1", "--python", str(script),
                           "--", str(spec_path)], capture_output=True, text=True, timeout=600)
    lines = [line for line in proc.stdout.splitlines() if line.startswith(MARKER)]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(lines[-1][len(MARKER):])


def blender_axes(positions: np.ndarray) -> np.ndarray:
    """Our Y-up ``(..., 3)`` as Blender's importer places it (forward -Z, up Y): ``(x, -z, y)``."""
    return np.stack([positions[..., 0], -positions[..., 2], positions[..., 1]], -1)


@pytest.mark.slow
def test_blender_imports_the_animation_where_the_body_model_puts_the_joints(tmp_path, gesture, mannequin, smplx_body):
    cases = [(gesture, mannequin), (moving_clip(), smplx_body), (moving_clip().frames(7, 8), smplx_body)]
    spec, expected = [], []
    for i, (clip, body) in enumerate(cases):
        skeleton = clip_skeleton(clip, body)
        frames = sorted({0, clip.num_frames // 2, clip.num_frames - 1})
        spec.append({"path": str(write(tmp_path, skeleton, f"clip{i}.bvh")), "frames": frames})
        expected.append((clip, body, skeleton, frames))
    for result, (clip, body, skeleton, frames) in zip(run_blender(tmp_path, spec), expected):
        assert sorted(result["names"]) == sorted(body.joint_names)
        assert result["fps"] == pytest.approx(clip.fps, rel=1e-9)
        assert result["keys"] == [clip.num_frames]
        assert result["key_frames"] == [float(1 + f) for f in range(clip.num_frames)]
        order = [body.joint_names.index(n) for n in result["names"]]
        np.testing.assert_allclose(result["rest"], blender_axes(skeleton.rest[order]), atol=1e-5)
        ours = blender_axes(body_joints(clip, body, skeleton)[frames][:, order])
        np.testing.assert_allclose(result["heads"], ours, atol=TOLERANCE_M)
