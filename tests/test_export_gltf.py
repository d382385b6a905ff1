"""glTF binary export: the file skins the body model's mesh into the body model's own linear blend
skinning at every key, for a reader that follows the glTF rules (a small one here), for the
Khronos validator and for Blender's importer; several skeletons are bodies side by side."""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from prior import load_body_model
from prior.data import Clip, load_clip
from prior.exports.gltf import glb_bytes, quaternions_xyzw
from prior.exports.skeleton import clip_skeleton
from prior.rotations import axis_angle_to_matrix_np, wxyz_to_matrix_np

from prior_helpers import DATA
from synthetic_body import write_synthetic_model

GESTURE = DATA / "gesture_clip.npz"
VALIDATOR_DIR = Path(os.environ.get("GLTF_VALIDATOR", "/opt/gltf-validator"))
Y_UP_TO_BLENDER = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
"""Blender's glTF importer: glTF +Y up becomes Blender +Z up, glTF +Z (forward) becomes -Y."""


@pytest.fixture(scope="module")
def body():
    return load_body_model()


@pytest.fixture(scope="module")
def smplx(tmp_path_factory):
    """A synthetic SMPL-X model (55 joints, pose correctives) in the real file layout."""
    return load_body_model(write_synthetic_model(tmp_path_factory.mktemp("smplx") / "SMPLX_NEUTRAL.npz", "smplx"))


@pytest.fixture(scope="module")
def gesture(body):
    clip = load_clip(GESTURE)
    return clip, glb_bytes([clip_skeleton(clip, body)], body)


def poses(count: int, *, seed: int = 0) -> list[Clip]:
    """``count`` one-frame clips of real poses, each turned and moved differently."""
    with np.load(DATA / "dposer_demo_poses.npz", allow_pickle=False) as f:
        pose_body = f["pose_body"][:count].astype(np.float32)
    rng = np.random.default_rng(seed)
    return [Clip(pose_body=p[None], root_orient=rng.normal(0, 0.4, (1, 3)).astype(np.float32),
                 trans=rng.normal(0, 0.3, (1, 3)).astype(np.float32)) for p in pose_body]


def model_vertices(body, clip: Clip, frames, *, skeleton=None) -> np.ndarray:
    """``(len(frames), V, 3)`` the body model's skinned vertices of ``clip``, turned Y up and lifted
    onto the floor as the export turns and lifts it (as ``skeleton`` does, default ``body``'s)."""
    def pick(x):
        return None if x is None else torch.as_tensor(x[frames])

    with torch.no_grad():
        out = body(pick(clip.pose_body), global_orient=pick(clip.root_orient), transl=pick(clip.trans),
                   hand_pose=pick(clip.hands) if body.has_hands else None,
                   jaw_pose=pick(clip.jaw) if body.kind == "smplx" else None,
                   betas=None if clip.betas is None else torch.as_tensor(clip.betas), vertices=True)
    skeleton = skeleton or clip_skeleton(clip, body)
    return out.vertices.double().numpy() @ skeleton.turn.T + [0.0, skeleton.lift, 0.0]


# ---- a small reader that follows the glTF 2.0 rules ------------------------------------------
def read_glb(data: bytes) -> tuple[dict, bytes]:
    """The JSON and binary chunks of a GLB, checking the container's header and alignment."""
    magic, version, length = struct.unpack_from("<4sII", data)
    assert (magic, version, length) == (b"glTF", 2, len(data))
    json_length, kind = struct.unpack_from("<I4s", data, 12)
    assert kind == b"JSON" and json_length % 4 == 0
    bin_length, kind = struct.unpack_from("<I4s", data, 20 + json_length)
    assert kind == b"BIN\0" and bin_length % 4 == 0 and 28 + json_length + bin_length == len(data)
    return json.loads(data[20:20 + json_length]), data[28 + json_length:]


def accessor(doc: dict, binary: bytes, index: int) -> np.ndarray:
    """``(count, components)`` float64 values of accessor ``index`` (normalized integers scaled)."""
    a = doc["accessors"][index]
    view = doc["bufferViews"][a["bufferView"]]
    dtype = np.dtype({5121: "<u1", 5123: "<u2", 5125: "<u4", 5126: "<f4"}[a["componentType"]])
    width = {"SCALAR": 1, "VEC3": 3, "VEC4": 4, "MAT4": 16}[a["type"]]
    start = view["byteOffset"] + a.get("byteOffset", 0)
    assert view["byteOffset"] % 4 == 0 and start % dtype.itemsize == 0
    assert a.get("byteOffset", 0) + a["count"] * width * dtype.itemsize <= view["byteLength"]
    values = np.frombuffer(binary, dtype, a["count"] * width, start).reshape(a["count"], width).astype(np.float64)
    return values / np.iinfo(dtype).max if a.get("normalized") else values


def world_transforms(doc: dict, binary: bytes, key: int) -> dict[int, np.ndarray]:
    """Every node's ``(4, 4)`` world transform at animation key ``key`` (nodes no channel moves
    keep their own translation and rotation)."""
    trs = {i: [np.array(n.get("translation", [0.0, 0.0, 0.0])), np.array(n.get("rotation", [0.0, 0.0, 0.0, 1.0]))]
           for i, n in enumerate(doc["nodes"])}
    animation = doc["animations"][0]
    for channel in animation["channels"]:
        values = accessor(doc, binary, animation["samplers"][channel["sampler"]]["output"])
        trs[channel["target"]["node"]][channel["target"]["path"] == "rotation"] = values[min(key, len(values) - 1)]
    world = {}

    def visit(node: int, parent: np.ndarray) -> None:
        local = np.eye(4)
        local[:3, :3] = wxyz_to_matrix_np(trs[node][1][[3, 0, 1, 2]])
        local[:3, 3] = trs[node][0]
        world[node] = parent @ local
        for child in doc["nodes"][node].get("children", []):
            visit(child, world[node])

    for root in doc["scenes"][doc["scene"]]["nodes"]:
        visit(root, np.eye(4))
    return world


def skinned_vertices(doc: dict, binary: bytes, key: int) -> list[np.ndarray]:
    """Each skinned mesh node's ``(V, 3)`` vertices at key ``key``, by glTF's skinning: the sum of
    weight * joint world transform * inverse bind matrix (the mesh node's own transform unused)."""
    world = world_transforms(doc, binary, key)
    out = []
    for node in doc["nodes"]:
        if "skin" not in node:
            continue
        skin = doc["skins"][node["skin"]]
        attributes = doc["meshes"][node["mesh"]]["primitives"][0]["attributes"]
        inverse_binds = accessor(doc, binary, skin["inverseBindMatrices"]).reshape(-1, 4, 4).transpose(0, 2, 1)
        joint_mats = np.stack([world[j] for j in skin["joints"]]) @ inverse_binds
        vertices, joints, weights = (accessor(doc, binary, attributes[name])
                                     for name in ("POSITION", "JOINTS_0", "WEIGHTS_0"))
        blend = np.einsum("vk,vkab->vab", weights, joint_mats[joints.astype(int)])
        out.append(np.einsum("vab,vb->va", blend[:, :3, :3], vertices) + blend[:, :3, 3])
    return out


# ---- fast tests --------------------------------------------------------------------------------
def test_the_file_skins_to_the_body_models_vertices_at_every_checked_key(body, gesture):
    clip, data = gesture
    doc, binary = read_glb(data)
    frames = [0, clip.num_frames // 2, clip.num_frames - 1]
    expected = model_vertices(body, clip, frames)
    for k, frame in enumerate(frames):
        (vertices,) = skinned_vertices(doc, binary, frame)
        assert np.abs(vertices - expected[k]).max() < 1e-5  # metres
    animation = doc["animations"][0]
    seconds = accessor(doc, binary, animation["samplers"][0]["input"])[:, 0]
    np.testing.assert_allclose(seconds, np.arange(clip.num_frames) / clip.fps, atol=1e-6)
    assert len(animation["channels"]) == body.num_joints + 1  # a rotation per joint, the root's translation
    assert {s["interpolation"] for s in animation["samplers"]} == {"LINEAR"}


def test_the_rest_pose_is_the_mesh_at_the_clips_betas_with_unit_weights(body):
    clip = dataclasses.replace(poses(1)[0], betas=np.linspace(-1.5, 1.5, 10).astype(np.float32))
    doc, binary = read_glb(glb_bytes([clip_skeleton(clip, body)], body, betas=clip.betas))
    attributes = doc["meshes"][0]["primitives"][0]["attributes"]
    with torch.no_grad():
        rest = body.rest_vertices(torch.as_tensor(clip.betas)).double().numpy()
    np.testing.assert_allclose(accessor(doc, binary, attributes["POSITION"]), rest, atol=1e-6)
    np.testing.assert_allclose(accessor(doc, binary, attributes["WEIGHTS_0"]).sum(1), 1.0, atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(accessor(doc, binary, attributes["NORMAL"]), axis=1), 1.0, atol=1e-6)
    root_nodes = set(doc["scenes"][0]["nodes"])
    assert all(i in root_nodes for i, n in enumerate(doc["nodes"]) if "mesh" in n)  # never under a joint
    assert not any("rotation" in n for n in doc["nodes"])  # identity at rest
    (vertices,) = skinned_vertices(doc, binary, 0)
    assert np.abs(vertices - model_vertices(body, clip, [0])[0]).max() < 1e-5


def test_two_skeletons_are_two_skinned_bodies_side_by_side_sharing_one_mesh(body):
    clips = poses(2)
    doc, binary = read_glb(glb_bytes([clip_skeleton(c, body) for c in clips], body, spacing_m=1.5))
    assert len(doc["skins"]) == 2 and len(doc["animations"]) == 1 and len(doc["meshes"]) == 1
    assert len([n for n in doc["nodes"] if "skin" in n]) == 2
    assert not set(doc["skins"][0]["joints"]) & set(doc["skins"][1]["joints"])
    for i, vertices in enumerate(skinned_vertices(doc, binary, 0)):
        expected = model_vertices(body, clips[i], [0])[0] + [1.5 * i, 0.0, 0.0]
        assert np.abs(vertices - expected).max() < 1e-5


def test_smplx_is_written_as_its_skinning_without_pose_correctives(smplx):
    body = smplx
    assert body.posedirs is not None
    rng = np.random.default_rng(1)
    clip = Clip(pose_body=rng.normal(0, 0.3, (3, 63)).astype(np.float32), root_orient=np.zeros((3, 3), np.float32),
                hands=rng.normal(0, 0.3, (3, 90)).astype(np.float32), jaw=rng.normal(0, 0.2, (3, 3)).astype(np.float32),
                betas=np.ones(10, np.float32), fps=24.0)
    doc, binary = read_glb(glb_bytes([clip_skeleton(clip, body)], body, betas=clip.betas))
    assert len(doc["skins"][0]["joints"]) == 55
    no_correctives = copy.deepcopy(body)
    no_correctives.posedirs = None
    (vertices,) = skinned_vertices(doc, binary, 2)
    exported = clip_skeleton(clip, body)
    assert np.abs(vertices - model_vertices(no_correctives, clip, [2], skeleton=exported)[0]).max() < 1e-5
    assert np.abs(vertices - model_vertices(body, clip, [2])[0]).max() > 1e-3  # the correctives are what is missing


def test_quaternions_stay_on_one_side_so_keys_interpolate_the_short_way():
    angles = np.linspace(0, 3 * np.pi, 40)  # one and a half turns about a tilted axis
    axis = np.array([1.0, 2.0, 2.0]) / 3.0
    rotations = axis_angle_to_matrix_np(angles[:, None, None] * axis)  # (T, 1, 3, 3)
    q = quaternions_xyzw(rotations).astype(np.float64)
    assert (np.sum(q[1:] * q[:-1], -1) > 0).all() and q[0, 0, 3] > 0
    np.testing.assert_allclose(wxyz_to_matrix_np(q[..., [3, 0, 1, 2]]), rotations, atol=1e-6)


def bad_inputs(body, smplx):
    skeleton = clip_skeleton(poses(1)[0], body)
    nan = skeleton.local_rotations.copy()
    nan[0, 3, 0, 0] = np.nan
    shaped = clip_skeleton(dataclasses.replace(poses(1)[0], betas=np.full(10, 2.0, np.float32)), body)
    empty = dataclasses.replace(skeleton, local_rotations=nan[:0], root_positions=skeleton.root_positions[:0])
    return {
        "nothing": (lambda: glb_bytes([], body), "no skeleton"),
        "another body": (lambda: glb_bytes([clip_skeleton(poses(1)[0], smplx)], body), "not the mannequin"),
        "other betas": (lambda: glb_bytes([shaped], body), "betas"),
        "nan": (lambda: glb_bytes([dataclasses.replace(skeleton, local_rotations=nan)], body), "NaN"),
        "no frames": (lambda: glb_bytes([empty], body), "T >= 1"),
        "fps": (lambda: glb_bytes([dataclasses.replace(skeleton, fps=0.0)], body), "frame rate"),
        "spacing": (lambda: glb_bytes([skeleton], body, spacing_m=float("inf")), "spacing_m"),
        "betas shape": (lambda: glb_bytes([skeleton], body, betas=np.zeros((2, 10))), "betas"),
    }


@pytest.mark.parametrize("case", ["nothing", "another body", "other betas", "nan", "no frames", "fps", "spacing",
                                  "betas shape"])
def test_bad_input_is_a_value_error_naming_the_problem(body, smplx, case):
    call, fragment = bad_inputs(body, smplx)[case]
    with pytest.raises(ValueError, match=fragment):
        call()


# ---- real readers --------------------------------------------------------------------------------
VALIDATE_JS = """
const validator = require(process.argv[2]);
const bytes = new Uint8Array(require('fs').readFileSync(process.argv[3]));
validator.validateBytes(bytes, {maxIssues: 0}).then(
    (report) => console.log(JSON.stringify(report.issues)),
    (error) => { console.error(String(error)); process.exit(1); });
"""


def validate(data: bytes, tmp_path: Path) -> dict:
    """The Khronos glTF validator's issues (``numErrors``, ``numWarnings``, ``messages``) for ``data``."""
    package = VALIDATOR_DIR / "node_modules" / "gltf-validator"
    assert package.is_dir(), f"gltf-validator is not installed: npm install --prefix {VALIDATOR_DIR} gltf-validator"
    (tmp_path / "validate.js").write_text(VALIDATE_JS)
    (tmp_path / "file.glb").write_bytes(data)
    proc = subprocess.run(["node", tmp_path / "validate.js", package, tmp_path / "file.glb"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.slow
def test_the_khronos_validator_finds_no_errors(body, smplx, gesture, tmp_path):
    files = {
        "gesture clip": gesture[1],
        "three poses": glb_bytes([clip_skeleton(c, body) for c in poses(3)], body),
        "smplx clip": glb_bytes([clip_skeleton(dataclasses.replace(c, betas=np.ones(10, np.float32)), smplx)
                                 for c in poses(1)], smplx, betas=np.ones(10)),
    }
    for name, data in files.items():
        issues = validate(data, tmp_path)
        print(f"gltf-validator, {name}: {issues['numErrors']} errors, {issues['numWarnings']} warnings "
              f"{[m['code'] for m in issues['messages']]}")
        assert issues["numErrors"] == 0, (name, issues["messages"])


BLENDER_SCRIPT = """
import json, sys
import bpy
import numpy as np
np.bool = bool  # Blender 3.4's glTF importer still names np.bool, which numpy 1.24 removed
glb, out, fps, *frames = sys.argv[sys.argv.index("--") + 1:]
bpy.ops.wm.read_factory_settings(use_empty=True)
scene = bpy.context.scene
rate = float(fps)  # glTF keys are in seconds; the importer puts them on frames at the scene's rate
scene.render.fps = round(rate)
scene.render.fps_base = scene.render.fps / rate
bpy.ops.import_scene.gltf(filepath=glb)
meshes = sorted((o for o in scene.objects if o.type == "MESH"), key=lambda o: o.name)
armatures = sorted((o for o in scene.objects if o.type == "ARMATURE"), key=lambda o: o.name)
arrays = {}
for frame in map(int, frames):
    scene.frame_set(frame)
    graph = bpy.context.evaluated_depsgraph_get()
    for o in meshes:
        evaluated = o.evaluated_get(graph)
        mesh = evaluated.to_mesh()
        co = np.empty(3 * len(mesh.vertices), np.float64)
        mesh.vertices.foreach_get("co", co)
        world = np.array(evaluated.matrix_world)
        arrays[f"{o.name}/{frame}"] = co.reshape(-1, 3) @ world[:3, :3].T + world[:3, 3]
        evaluated.to_mesh_clear()
    for a in armatures:
        evaluated = a.evaluated_get(graph)
        arrays[f"{a.name}/{frame}"] = np.array([list(evaluated.matrix_world @ b.head) for b in evaluated.pose.bones])
np.savez(out, **arrays)
summary = {"fps": scene.render.fps / scene.render.fps_base, "meshes": [o.name for o in meshes],
           "armatures": {a.name: {"bones": [b.name for b in a.pose.bones],
                                  "frame_range": list(a.animation_data.action.frame_range)} for a in armatures}}
print("GLTF_RESULT " + json.dumps(summary))
"""


def blender_import(data: bytes, fps: float, frames: list[int], tmp_path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    """Import ``data`` in headless Blender at ``fps``: a summary (fps, mesh and armature names,
    bones, each armature's action frame range) and, per frame, every evaluated mesh's world
    vertices and every armature's posed bone heads (Blender's Z-up world)."""
    blender = shutil.which("blender")
    assert blender, "Blender is not installed (apt-get install blender python3-numpy)"
    (tmp_path / "import.py").write_text(BLENDER_SCRIPT)
    (tmp_path / "file.glb").write_bytes(data)
    out = tmp_path / "import.npz"
    # Blender's embedded Python takes its prefix from the first python3 on PATH: a pyenv's or a
    # virtualenv's would hide the system numpy its glTF importer needs, so only system folders.
    path = os.pathsep.join([str(Path(blender).parent), "/usr/bin", "/bin"])
    proc = subprocess.run([blender, "-b", "--factory-startup", "--python-exit-code", "1", "--python",
                           tmp_path / "import.py", "--", tmp_path / "file.glb", out, str(fps), *map(str, frames)],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "PATH": path})
    lines = [line for line in proc.stdout.splitlines() if line.startswith("GLTF_RESULT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    with np.load(out) as arrays:
        return json.loads(lines[0].removeprefix("GLTF_RESULT ")), dict(arrays)


def blender_joints(skeleton, bones: list[str], frame: int) -> np.ndarray:
    """The skeleton's joints at ``frame`` in Blender's world, in the armature's bone order."""
    order = [skeleton.names.index(name) for name in bones]
    return skeleton.world_positions[frame, order] @ Y_UP_TO_BLENDER.T


@pytest.mark.slow
def test_blender_imports_the_clip_as_the_body_models_skinning(body, gesture, tmp_path):
    clip, data = gesture
    frames = [0, clip.num_frames // 2, clip.num_frames - 1]
    summary, arrays = blender_import(data, clip.fps, frames, tmp_path)
    assert summary["fps"] == clip.fps
    assert summary["meshes"] == ["body_0_mesh"]
    (armature,) = summary["armatures"].values()
    assert armature["frame_range"] == [0.0, clip.num_frames - 1.0]
    assert sorted(armature["bones"]) == sorted(body.joint_names)
    expected = model_vertices(body, clip, frames) @ Y_UP_TO_BLENDER.T
    skeleton = clip_skeleton(clip, body)
    for k, frame in enumerate(frames):
        assert np.abs(arrays[f"body_0_mesh/{frame}"] - expected[k]).max() < 1e-3  # metres
        heads = blender_joints(skeleton, armature["bones"], frame)
        assert np.abs(arrays[f"body_0/{frame}"] - heads).max() < 1e-3


@pytest.mark.slow
def test_blender_imports_two_skeletons_as_two_bodies_side_by_side(body, tmp_path):
    clips = poses(2)
    skeletons = [clip_skeleton(c, body) for c in clips]
    summary, arrays = blender_import(glb_bytes(skeletons, body, spacing_m=1.5), 30.0, [0], tmp_path)
    assert summary["meshes"] == ["body_0_mesh", "body_1_mesh"]
    assert sorted(summary["armatures"]) == ["body_0", "body_1"]
    for i, (clip, skeleton) in enumerate(zip(clips, skeletons)):
        shift = np.array([1.5 * i, 0.0, 0.0])  # glTF +X is Blender's +X
        expected = model_vertices(body, clip, [0])[0] @ Y_UP_TO_BLENDER.T + shift
        assert np.abs(arrays[f"body_{i}_mesh/0"] - expected).max() < 1e-3
        heads = blender_joints(skeleton, summary["armatures"][f"body_{i}"]["bones"], 0) + shift
        assert np.abs(arrays[f"body_{i}/0"] - heads).max() < 1e-3
