"""Body models: our torch FK/LBS against each backend's own implementation, files, part labels."""

from __future__ import annotations

import ast
import importlib
import json
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import smplx
import torch
from mannequin import Mannequin

from prior import load_body_model as lazy_load_body_model
from prior.body import (
    JOINT_NAMES,
    BodyModel,
    load_body_model,
    smplx_labels_from_segmentation,
)
from prior.errors import InputError
from prior.parts import PARTS, SMPLX_JOINT_NAMES, SMPLX_PARENTS
from prior.rotations import axis_angle_to_matrix

from synthetic_body import synthetic_model_arrays, write_synthetic_model

F64 = torch.float64


def random_inputs(batch: int, *, seed: int, hands: bool = True, num_betas: int = 10) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)

    def randn(*shape: int, scale: float) -> torch.Tensor:
        return scale * torch.randn(*shape, generator=g, dtype=F64)

    out = {
        "body_pose": randn(batch, 63, scale=0.5),
        "global_orient": randn(batch, 3, scale=1.0),
        "transl": randn(batch, 3, scale=0.5),
        "betas": randn(batch, num_betas, scale=1.0),
    }
    if hands:
        out["hand_pose"] = randn(batch, 90, scale=0.4)
    return out


# ---- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mannequin_body() -> BodyModel:
    return load_body_model(dtype=F64)


@pytest.fixture(scope="module")
def model_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Synthetic SMPL-X (.npz, 300 + 100 shape/expression columns as in v1.1), SMPL-H (.npz, 16
    betas as AMASS's) and SMPL (.pkl) files."""
    folder = tmp_path_factory.mktemp("models")
    return {
        "smplx": write_synthetic_model(folder / "SMPLX_NEUTRAL.npz", "smplx", seed=1),
        "smplh": write_synthetic_model(folder / "SMPLH_NEUTRAL.npz", "smplh", seed=2),
        "smpl": write_synthetic_model(folder / "SMPL_NEUTRAL.pkl", "smpl", seed=3),
    }


@pytest.fixture(scope="module")
def smplx_arrays() -> dict[str, np.ndarray]:
    """A small synthetic SMPL-X (the v1.0 layout: 10 shape + 10 expression columns)."""
    return synthetic_model_arrays("smplx", num_shape=20)


def broken_file(path: Path, arrays: dict[str, np.ndarray], **changes: object) -> Path:
    """``arrays`` written to ``path`` with some keys replaced (``None`` removes the key)."""
    arrays = dict(arrays)
    for key, value in changes.items():
        if value is None:
            arrays.pop(key)
        else:
            arrays[key] = value  # type: ignore[assignment]
    np.savez(path, **arrays)
    return path


# ---- the mannequin against mannequin-x's own numpy --------------------------------------------


@pytest.mark.parametrize("shaped", [False, True])
def test_mannequin_fk_and_skinning_match_mannequin_x(mannequin_body: BodyModel, shaped: bool) -> None:
    batch = 6
    x = random_inputs(batch, seed=1 + shaped)
    betas = x["betas"][0] if shaped else torch.zeros(10, dtype=F64)
    reference = Mannequin("wooden", flat_hand_mean=True, shape=betas.numpy().astype(np.float32))
    pose = {
        "body_pose": x["body_pose"].numpy().reshape(batch, 21, 3),
        "hand_pose": x["hand_pose"].numpy().reshape(batch, 30, 3),
        "head_pose": np.zeros((batch, 3, 3)),
        # mannequin-x's pelvis_rotation is SMPL-X's global_orient (about the pelvis).
        "pelvis_rotation": x["global_orient"].numpy(),
        "global_translation": x["transl"].numpy(),
        "shape": np.broadcast_to(betas.numpy(), (batch, 10)),
    }
    transforms = reference.joint_transforms(pose)
    vertices = reference.vertices(pose)
    # Our layout drops mannequin-x's two fixed L_Hand / R_Hand joints.
    keep = [i for i, name in enumerate(reference.joint_names) if name not in ("L_Hand", "R_Hand")]

    out = mannequin_body(
        x["body_pose"], global_orient=x["global_orient"], transl=x["transl"], betas=betas, hand_pose=x["hand_pose"]
    )
    np.testing.assert_allclose(out.transforms.numpy(), transforms[:, keep], atol=1e-6)
    if shaped:
        # Mesh shape directions are a linearisation of mannequin-x's non-linear shape fit.
        error = np.linalg.norm(out.vertices.numpy() - vertices, axis=-1)
        assert error.mean() < 2e-4 and error.max() < 2e-3
    else:
        np.testing.assert_allclose(out.vertices.numpy(), vertices, atol=1e-6)


def test_mannequin_is_an_upright_smplx_sized_body(mannequin_body: BodyModel) -> None:
    joints = mannequin_body.rest_joints().numpy()
    verts = mannequin_body.rest_vertices().numpy()
    names = mannequin_body.joint_names
    assert joints[names.index("left_hip"), 0] > 0.03 > -0.03 > joints[names.index("right_hip"), 0]  # left is +x
    assert joints[names.index("head"), 1] > joints[names.index("neck"), 1] > joints[names.index("pelvis"), 1]
    height = verts[:, 1].max() - verts[:, 1].min()
    assert 1.5 < height < 1.9, height
    assert mannequin_body.faces.max() < mannequin_body.num_vertices
    torch.testing.assert_close(mannequin_body.skin_weights.sum(1), torch.ones(mannequin_body.num_vertices, dtype=F64))


# ---- SMPL-X / SMPL-H / SMPL files against the smplx package ------------------------------------


def smplx_reference(kind: str, path: Path, batch: int, num_betas: int) -> torch.nn.Module:
    common = {"model_path": str(path), "num_betas": num_betas, "batch_size": batch, "dtype": F64}
    if kind == "smplx":
        return smplx.SMPLX(ext="npz", use_pca=False, flat_hand_mean=True, num_expression_coeffs=10, **common)
    if kind == "smplh":
        return smplx.SMPLH(ext="npz", use_pca=False, flat_hand_mean=True, **common)
    return smplx.SMPL(**common)


@pytest.mark.parametrize("kind", ["smplx", "smplh", "smpl"])
def test_model_file_matches_smplx_forward(model_files: dict[str, Path], kind: str) -> None:
    batch, num_betas = 4, 10
    path = model_files[kind]
    body = load_body_model(path, num_betas=num_betas, allow_pickle=kind == "smpl", dtype=F64)
    assert body.kind == kind and body.source == str(path)
    assert body.num_joints == {"smplx": 55, "smplh": 52, "smpl": 24}[kind]
    reference = smplx_reference(kind, path, batch, num_betas)

    x = random_inputs(batch, seed=3, hands=kind != "smpl", num_betas=num_betas)
    ours_kwargs = dict(x)
    ref_kwargs = {k: x[k] for k in ("global_orient", "transl", "betas")}
    ref_kwargs["body_pose"] = x["body_pose"]
    if kind == "smpl":
        ref_kwargs["body_pose"] = torch.cat([x["body_pose"], torch.zeros(batch, 6, dtype=F64)], 1)
    else:
        ref_kwargs |= {"left_hand_pose": x["hand_pose"][:, :45], "right_hand_pose": x["hand_pose"][:, 45:]}
    if kind == "smplx":
        g = torch.Generator().manual_seed(9)
        face = {
            "jaw_pose": 0.2 * torch.randn(batch, 3, generator=g, dtype=F64),
            "expression": torch.randn(batch, 10, generator=g, dtype=F64),
        }
        ours_kwargs |= face
        ref_kwargs |= face

    ref = reference(**ref_kwargs)
    out = body(**ours_kwargs)
    torch.testing.assert_close(out.joints, ref.joints[:, : body.num_joints], atol=1e-6, rtol=0)
    torch.testing.assert_close(out.vertices, ref.vertices, atol=1e-6, rtol=0)
    torch.testing.assert_close(out.transforms[..., :3, 3], out.joints)


def test_smplx_file_uses_smplx_shape_and_expression_split(model_files: dict[str, Path]) -> None:
    body = load_body_model(model_files["smplx"], dtype=F64)
    assert body.num_betas == 16  # default: as many as AMASS fits
    assert body.num_expression == 100  # columns 300..399 of the v1.1 layout
    raw = np.load(model_files["smplx"], allow_pickle=False)["shapedirs"]
    np.testing.assert_array_equal(body.expr_dirs.numpy(), raw[:, :, 300:400])
    np.testing.assert_array_equal(body.shapedirs.numpy(), raw[:, :, :16])
    np.testing.assert_allclose(body.hand_mean.numpy()[:45], np.load(model_files["smplx"])["hands_meanl"])


@pytest.mark.parametrize("kind", ["mannequin", "smplx", "smplh", "smpl"])
def test_every_backend_starts_with_the_22_smplx_joints(model_files: dict[str, Path], kind: str) -> None:
    body = load_body_model(None if kind == "mannequin" else model_files[kind], allow_pickle=True)
    assert body.joint_names[:22] == SMPLX_JOINT_NAMES
    assert tuple(body.parents[:22].tolist()) == SMPLX_PARENTS
    assert body.joint_names == JOINT_NAMES[kind] and len(body.parents) == body.num_joints
    # The solvers' fast FK on those 22 joints is the full FK's first 22 joints (pose, root, shape).
    x = random_inputs(3, seed=5, hands=False, num_betas=body.num_betas)
    body = body.to(F64)
    args = {k: x[k] for k in ("global_orient", "transl", "betas")}
    fast = body.skeleton_joints(x["body_pose"].reshape(3, 1, 63), **{k: v[:, None] for k, v in args.items()})
    torch.testing.assert_close(fast[:, 0], body.joints(x["body_pose"], **args)[:, :22], atol=1e-10, rtol=0)


def test_pickle_model_files_need_an_explicit_opt_in(model_files: dict[str, Path]) -> None:
    with pytest.raises(InputError) as err:
        load_body_model(model_files["smpl"])
    assert str(err.value).startswith(f"{model_files['smpl']}: .pkl model files are Python pickles")


def test_model_folder_is_searched_like_smplx_does(model_files: dict[str, Path], tmp_path: Path) -> None:
    body = load_body_model(model_files["smplx"].parent)
    assert body.kind == "smplx"  # SMPL-X before SMPL-H in the same folder
    (tmp_path / "smplh" / "female").mkdir(parents=True)
    (tmp_path / "smplh" / "female" / "model.npz").write_bytes(model_files["smplh"].read_bytes())
    assert load_body_model(tmp_path, gender="female").kind == "smplh"  # AMASS's own layout
    with pytest.raises(InputError, match="no male SMPL-X/SMPL-H/SMPL model file here"):
        load_body_model(tmp_path, gender="male")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"v_template": np.zeros((5000, 3))}, "has 5000 vertices and 55 joints; expected SMPL-X (10475, 55)"),
        ({"weights": None}, "not an SMPL-X/SMPL-H/SMPL model: missing 'weights'"),
        ({"posedirs": np.zeros((10475, 3, 10))}, "'posedirs' has shape (10475, 3, 10), expected (10475, 3, 486)"),
        ({"J_regressor": np.zeros((55, 10))}, "'J_regressor' has shape (55, 10), expected (55, 10475)"),
        ({"v_template": np.full((10475, 3), np.nan)}, "'v_template' contains NaN or Inf"),
        ({"f": np.full((4, 3), 10475)}, "'f' indexes vertices outside 0..10474"),
        ({"kintree_table": np.zeros((2, 55), np.int64)}, "'kintree_table' does not have the SMPL-X body joints"),
        ({"kintree_table": np.array([[-1, 5] + [0] * 53, range(55)])}, "'kintree_table': joint 1 has parent 5"),
        ({"v_template": np.array([None] * 3, dtype=object)}, "contains pickled objects ('v_template')"),
    ],
)
def test_bad_model_files_name_the_file_and_the_problem(
    tmp_path: Path, smplx_arrays: dict[str, np.ndarray], changes: dict, message: str
) -> None:
    path = broken_file(tmp_path / "SMPLX_NEUTRAL.npz", smplx_arrays, **changes)
    with pytest.raises(InputError) as err:
        load_body_model(path)
    text = str(err.value)
    assert text.startswith(f"{path}: ") and "\n" not in text
    assert message in text


def test_unreadable_model_files(tmp_path: Path, model_files: dict[str, Path]) -> None:
    empty = tmp_path / "empty.npz"
    empty.touch()
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(model_files["smplh"].read_bytes()[:100_000])
    cases = {
        empty: "empty file",
        truncated: "not a valid .npz file (truncated or wrong format)",  # open_npz's words
        tmp_path / "missing.npz": "no such file or folder",
    }
    for path, message in cases.items():
        with pytest.raises(InputError, match=re.escape(message)) as err:
            load_body_model(path)
        assert str(err.value).startswith(str(path))
    garbage = tmp_path / "bad.pkl"
    garbage.write_bytes(b"not a pickle")
    with pytest.raises(InputError, match="not a readable SMPL-family .pkl file"):
        load_body_model(garbage, allow_pickle=True)


# ---- one interface ----------------------------------------------------------------------------


def _imported_names(module: str) -> dict[str, set[str]]:
    """Names that files in prior/, viewer/, tests/ and benchmarks/ import from ``module`` (absolute
    or relative imports), by importing file."""
    repo = Path(__file__).resolve().parents[1]
    short = module.rsplit(".", 1)[1]
    found: dict[str, set[str]] = {}
    for folder in ("prior", "viewer", "tests", "benchmarks"):
        for path in (repo / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.ImportFrom) and (
                    node.module == module or (node.level > 0 and node.module == short)
                ):
                    found.setdefault(str(path.relative_to(repo)), set()).update(a.name for a in node.names)
    return found


@pytest.mark.parametrize("module", ["prior.body", "prior.data", "prior.files", "prior.rotations"])
def test_every_name_others_import_is_in_all(module: str) -> None:
    exported = set(importlib.import_module(module).__all__)
    missing = {path: sorted(names - exported) for path, names in _imported_names(module).items() if names - exported}
    assert not missing, f"imported from {module} but not in its __all__: {missing}"


def test_lazy_export_and_batch_shapes(mannequin_body: BodyModel) -> None:
    assert lazy_load_body_model is load_body_model
    pose = 0.3 * torch.randn(2, 3, 63, dtype=F64)
    out = mannequin_body(pose, betas=torch.zeros(10, dtype=F64))  # betas broadcast
    assert out.joints.shape == (2, 3, 52, 3)
    assert out.transforms.shape == (2, 3, 52, 4, 4)
    assert out.vertices.shape == (2, 3, mannequin_body.num_vertices, 3)
    torch.testing.assert_close(mannequin_body.joints(pose[0, 1]), out.joints[0, 1])  # unbatched (63,)
    torch.testing.assert_close(mannequin_body.joints(pose.reshape(2, 3, 21, 3)), out.joints)
    with pytest.raises(ValueError, match="body_pose must be"):
        mannequin_body.joints(torch.zeros(4, 62))
    with pytest.raises(ValueError, match="no jaw"):
        mannequin_body.joints(torch.zeros(4, 63), jaw_pose=torch.zeros(4, 3))


def test_rest_pose_and_transforms(mannequin_body: BodyModel) -> None:
    betas = torch.randn(10, dtype=F64)
    out = mannequin_body(torch.zeros(1, 63, dtype=F64), betas=betas)
    rest = mannequin_body.rest_joints(betas)
    torch.testing.assert_close(out.joints[0], rest)
    torch.testing.assert_close(out.rotations[0], torch.eye(3, dtype=F64).expand(52, 3, 3))
    torch.testing.assert_close(out.vertices[0], mannequin_body.rest_vertices(betas))
    # A pure global rotation about the pelvis keeps the pelvis fixed and rotates the rest rigidly.
    orient = torch.tensor([[0.0, 1.2, 0.0]], dtype=F64)
    turned = mannequin_body.joints(torch.zeros(1, 63, dtype=F64), global_orient=orient, betas=betas)[0]
    rot = axis_angle_to_matrix(orient[0])
    torch.testing.assert_close(turned, (rest - rest[0]) @ rot.T + rest[0])


def test_viewer_skinning_contract(mannequin_body: BodyModel) -> None:
    """viser's skinned meshes: rest vertices, top-4 renormalised weights, bones posed by the
    joints' world transforms relative to their rest transforms, must give our vertices."""
    x = random_inputs(3, seed=5)
    out = mannequin_body(**x)
    indices, weights = mannequin_body.skin_topk(4)
    torch.testing.assert_close(weights.sum(1), torch.ones(mannequin_body.num_vertices, dtype=F64))
    rest_joints = mannequin_body.rest_joints(x["betas"])  # (B, J, 3)
    rest_verts = mannequin_body.rest_vertices(x["betas"])  # (B, V, 3)
    local = rest_verts[:, :, None] - rest_joints[:, indices]  # (B, V, 4, 3): vertex in each bone's rest frame
    rot = out.rotations[:, indices]  # (B, V, 4, 3, 3)
    posed = (rot @ local[..., None])[..., 0] + out.joints[:, indices]
    skinned = (posed * weights[None, :, :, None]).sum(2)
    # The mannequin has at most four influences per vertex, so top-4 skinning is exact.
    torch.testing.assert_close(skinned, out.vertices, atol=1e-6, rtol=0)


def test_sparse_and_dense_skinning_agree_with_gradients(mannequin_body: BodyModel) -> None:
    """One shape for the batch takes the sparse path, per-frame shapes the dense one."""
    x = random_inputs(3, seed=8)
    betas = x.pop("betas")[0]
    weights = torch.randn(3, mannequin_body.num_vertices, 3, dtype=F64)
    results = []
    for shape in (betas, betas.expand(3, 10)):
        pose = x["body_pose"].clone().requires_grad_()
        verts = mannequin_body.vertices(pose, betas=shape, **{k: v for k, v in x.items() if k != "body_pose"})
        (verts * weights).sum().backward()
        results.append((verts.detach(), pose.grad))
    torch.testing.assert_close(results[0][0], results[1][0], atol=1e-10, rtol=0)
    torch.testing.assert_close(results[0][1], results[1][1], atol=1e-8, rtol=1e-8)


def test_gradients_flow_to_pose_and_shape(mannequin_body: BodyModel) -> None:
    x = {k: v[:2].clone().requires_grad_() for k, v in random_inputs(2, seed=7).items()}
    x["body_pose"].data[0] = 0  # the rest pose is a common starting point for optimisation

    def joints(body_pose: torch.Tensor, betas: torch.Tensor) -> torch.Tensor:
        return mannequin_body.joints(body_pose, betas=betas, global_orient=x["global_orient"])[:, :22]

    assert torch.autograd.gradcheck(joints, (x["body_pose"], x["betas"]), eps=1e-6, atol=1e-5)
    verts = mannequin_body.vertices(x["body_pose"], betas=x["betas"])
    verts.sum().backward()
    assert torch.isfinite(x["body_pose"].grad).all() and x["betas"].grad.abs().sum() > 0


# ---- part labels ------------------------------------------------------------------------------


def test_smplx_label_asset_is_the_shared_segmentation(shared_data: Path, model_files: dict[str, Path]) -> None:
    with (shared_data / "smplx_vert_segmentation.json").open() as f:
        segmentation = json.load(f)
    expected = smplx_labels_from_segmentation(segmentation)
    body = load_body_model(model_files["smplx"])
    np.testing.assert_array_equal(body.vertex_labels.numpy(), expected)
    # Spot checks of the name mapping: a vertex only in 'leftForeArm' is the left elbow's.
    elsewhere = {i for name, indices in segmentation.items() if name != "leftForeArm" for i in indices}
    only = set(segmentation["leftForeArm"]) - elsewhere
    assert set(expected[sorted(only)]) == {SMPLX_JOINT_NAMES.index("left_elbow")}
    for part in PARTS:
        assert body.part_vertex_mask(part).sum() > 100, part


def test_mannequin_part_masks_lie_where_the_parts_are(mannequin_body: BodyModel) -> None:
    verts = mannequin_body.rest_vertices().numpy()
    center = {p: verts[mannequin_body.part_vertex_mask(p).numpy()].mean(0) for p in PARTS}
    counts = {p: int(mannequin_body.part_vertex_mask(p).sum()) for p in PARTS}
    assert all(count > 100 for count in counts.values()), counts
    assert counts["left_arm"] == counts["right_arm"] and counts["left_leg"] == counts["right_leg"]
    assert center["left_arm"][0] > 0.2 and center["right_arm"][0] < -0.2  # SMPL-X: left is +x
    assert center["left_leg"][0] > 0.03 and center["left_leg"][1] < center["trunk"][1]
    assert center["head"][1] > center["neck"][1] > center["trunk"][1] > center["legs"][1]
    assert abs(center["hands"][0]) < 0.01 and np.linalg.norm(center["left_arm"] - center["trunk"]) > 0.2
    arms = mannequin_body.part_vertex_mask("arms")
    assert torch.equal(arms, mannequin_body.part_vertex_mask("left_arm") | mannequin_body.part_vertex_mask("right_arm"))
    with pytest.raises(ValueError, match="unknown part"):
        mannequin_body.part_vertex_mask("tail")


def test_pickled_model_round_trip_matches_npz(model_files: dict[str, Path], tmp_path: Path) -> None:
    """The same arrays read from .pkl (opted in) and .npz give the same model."""
    with np.load(model_files["smplh"], allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files if k != "part2num"}
    pkl = tmp_path / "SMPLH_NEUTRAL.pkl"
    pkl.write_bytes(pickle.dumps(arrays))
    a = load_body_model(model_files["smplh"], dtype=F64)
    b = load_body_model(pkl, allow_pickle=True, dtype=F64)
    x = random_inputs(2, seed=11, num_betas=16)
    torch.testing.assert_close(a(**x).vertices, b(**x).vertices)


def test_a_model_file_that_unpacks_past_the_limit_is_refused_before_it_is_read(tmp_path: Path) -> None:
    """5 MB of compressed zeros unpacked to a 1.1 GB 'shapedirs' (read in full, then 'missing keys');
    model files are read by open_npz now, with a 1 GiB limit on what they unpack to, and each
    array's header must fit in its member."""
    import zipfile

    from bounded_load import bounded_load, npy_header, write_zero_member

    path = tmp_path / "SMPLX_NEUTRAL.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        write_zero_member(z, "shapedirs.npy", (10475, 3, 9000))  # 1078 MiB
    assert path.stat().st_size < 8 * 2**20
    result = bounded_load("load_body_model(path)", path, headroom=256 * 2**20)
    assert result["outcome"] == f"InputError: {path}: unpacks to 1079 MiB, over the 1024 MiB limit", result
    assert result["grew"] < 16 * 2**20, result
    forged = tmp_path / "forged.npz"  # a header that declares 1.2 GB over 16 stored bytes
    with zipfile.ZipFile(forged, "w") as z:
        z.writestr("v_template.npy", npy_header((100_000_000, 3)) + bytes(16))
    result = bounded_load("load_body_model(path)", forged, headroom=256 * 2**20)
    assert result["outcome"].startswith(f"InputError: {forged}: 'v_template' declares shape (100000000, 3)"), result
