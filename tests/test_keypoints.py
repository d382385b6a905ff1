"""Keypoint readers: each format's file, built from one known 23-point skeleton, reads back as
exactly those points in our order (left and right differ, so a swap fails), with the format's
confidences; bad files are one-line errors naming the file; sequences sort, track and fill gaps."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from prior.errors import InputError
from prior.keypoints import (
    KEYPOINT_NAMES,
    Keypoints,
    from_mediapipe,
    load_keypoint_sequence,
    load_keypoints,
    save_keypoints,
)

# A person facing the camera in a 640 x 480 photo: their left side is on the image's right
# (larger x), and no two points share a position, so any misplaced point changes the result.
TRUTH_XY = {
    "nose": (320, 100), "left_eye": (331, 90), "right_eye": (309, 91), "left_ear": (343, 97),
    "right_ear": (297, 96), "left_shoulder": (371, 160), "right_shoulder": (269, 161),
    "left_elbow": (391, 230), "right_elbow": (250, 233), "left_wrist": (401, 301),
    "right_wrist": (238, 298), "left_hip": (352, 303), "right_hip": (289, 302),
    "left_knee": (356, 401), "right_knee": (284, 404), "left_ankle": (359, 452),
    "right_ankle": (281, 455), "left_big_toe": (377, 472), "left_small_toe": (367, 474),
    "left_heel": (353, 463), "right_big_toe": (263, 473), "right_small_toe": (273, 476),
    "right_heel": (287, 465),
}
TRUTH = np.array([TRUTH_XY[n] for n in KEYPOINT_NAMES], dtype=np.float64)  # (23, 2) pixels
TRUTH_CONF = np.round(0.52 + 0.02 * np.arange(23), 2)  # (23,) all different, all in 0..1
IMAGE = (640, 480)

# The formats' own orders, written out from their documentation (not taken from prior.keypoints).
BODY_25 = ["nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow",
           "left_wrist", "mid_hip", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
           "right_eye", "left_eye", "right_ear", "left_ear", "left_big_toe", "left_small_toe", "left_heel",
           "right_big_toe", "right_small_toe", "right_heel"]
OPENPOSE_COCO_18 = ["nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow",
                    "left_wrist", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
                    "right_eye", "left_eye", "right_ear", "left_ear"]
COCO_17 = list(KEYPOINT_NAMES[:17])
WHOLEBODY_FEET = ["left_big_toe", "left_small_toe", "left_heel", "right_big_toe", "right_small_toe", "right_heel"]
MEDIAPIPE_33 = ["nose", "left_eye_inner", "left_eye", "left_eye_outer", "right_eye_inner", "right_eye",
                "right_eye_outer", "left_ear", "right_ear", "mouth_left", "mouth_right", "left_shoulder",
                "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_pinky",
                "right_pinky", "left_index", "right_index", "left_thumb", "right_thumb", "left_hip", "right_hip",
                "left_knee", "right_knee", "left_ankle", "right_ankle", "left_heel", "right_heel",
                "left_foot_index", "right_foot_index"]
FEET = set(WHOLEBODY_FEET)


def source_points(names: list[str], *, xy: np.ndarray = TRUTH, conf: np.ndarray = TRUTH_CONF,
                  rename: dict[str, str] | None = None) -> np.ndarray:
    """``(K, 3)`` x, y, confidence in a format's order ``names``; points that are not ours (Neck,
    MidHip, MediaPipe's mouth and fingers) get a position and confidence of their own, which the
    reader must drop. ``rename`` maps a format's name to ours (foot_index -> big_toe)."""
    ours = {n: i for i, n in enumerate(KEYPOINT_NAMES)}
    rename = rename or {}
    out = []
    for k, name in enumerate(names):
        i = ours.get(rename.get(name, name))
        out.append([*xy[i], conf[i]] if i is not None else [1000.0 + k, 2000.0 + k, 0.93])
    return np.array(out)


def expected(have: set[str], *, conf: np.ndarray = TRUTH_CONF, xy: np.ndarray = TRUTH) -> tuple[np.ndarray, ...]:
    """Our ``(xy (23, 2), conf (23,))`` when only the points named in ``have`` are in the file."""
    mask = np.array([n in have for n in KEYPOINT_NAMES])
    return np.where(mask[:, None], xy, 0.0), np.where(mask, conf, 0.0)


def assert_points(kp: Keypoints, xy: np.ndarray, conf: np.ndarray) -> None:
    assert kp.xy.shape == (23, 2) and kp.conf.shape == (23,)
    assert kp.xy.dtype == np.float32 and kp.conf.dtype == np.float32
    np.testing.assert_allclose(kp.conf, conf, atol=1e-6)
    np.testing.assert_allclose(kp.xy, xy, atol=1e-3)


def write_json(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data))
    return path


def openpose(*people: np.ndarray) -> dict:
    return {"version": 1.3, "people": [{"person_id": [-1], "pose_keypoints_2d": p.reshape(-1).tolist(),
                                        "face_keypoints_2d": [], "hand_left_keypoints_2d": []} for p in people]}


def shifted(dx: float, dy: float = 0.0, scale: float = 1.0) -> np.ndarray:
    """The truth skeleton scaled about its first point and moved: another person."""
    return (TRUTH - TRUTH[0]) * scale + TRUTH[0] + [dx, dy]


# -- OpenPose -------------------------------------------------------------------------------------


def test_openpose_body_25_reads_every_point_in_our_order(tmp_path):
    f = write_json(tmp_path / "img_keypoints.json", openpose(source_points(BODY_25)))
    kp = load_keypoints(f)
    assert_points(kp, TRUTH, TRUTH_CONF)
    assert kp.source == str(f) and kp.image_size is None
    assert kp.xy[KEYPOINT_NAMES.index("left_wrist"), 0] > kp.xy[KEYPOINT_NAMES.index("right_wrist"), 0]


def test_openpose_coco_18_has_no_feet(tmp_path):
    f = write_json(tmp_path / "coco18.json", openpose(source_points(OPENPOSE_COCO_18)))
    assert_points(load_keypoints(f, image_size=IMAGE), *expected(set(COCO_17)))
    assert load_keypoints(f, image_size=IMAGE).image_size == IMAGE  # the file says nothing: the argument fills it


def test_openpose_zeros_are_points_not_found(tmp_path):
    pts = source_points(BODY_25)
    pts[BODY_25.index("left_knee")] = 0.0  # what OpenPose writes for a point it did not find
    pts[BODY_25.index("right_heel")] = 0.0
    f = write_json(tmp_path / "missing.json", openpose(pts))
    assert_points(load_keypoints(f), *expected(set(KEYPOINT_NAMES) - {"left_knee", "right_heel"}))


# -- COCO -----------------------------------------------------------------------------------------


def coco_annotation(flags: np.ndarray, *, image_id: int = 7, feet: bool = True, xy: np.ndarray = TRUTH) -> dict:
    """A COCO-WholeBody annotation of ``xy`` with visibility ``flags (23,)``; 0 flags zero the point as COCO does."""
    pts = np.column_stack([np.where(flags[:, None] > 0, xy, 0.0), flags])
    ann = {"id": 1, "image_id": image_id, "category_id": 1, "iscrowd": 0, "num_keypoints": int((flags > 0).sum()),
           "keypoints": pts[:17].reshape(-1).tolist(), "bbox": [230.0, 80.0, 180.0, 400.0], "area": 40000.0}
    if feet:
        ann |= {"foot_kpts": pts[17:].reshape(-1).tolist(), "foot_valid": True,
                "face_kpts": [0.0] * 204, "lefthand_kpts": [0.0] * 63}
    return ann


def coco_flags() -> np.ndarray:
    flags = np.full(23, 2.0)
    flags[[KEYPOINT_NAMES.index("left_elbow"), KEYPOINT_NAMES.index("right_small_toe")]] = 1  # occluded
    flags[[KEYPOINT_NAMES.index("right_ear"), KEYPOINT_NAMES.index("left_heel")]] = 0  # not labelled
    return flags


def test_coco_wholebody_file_reads_flags_feet_and_image_size(tmp_path):
    flags = coco_flags()
    data = {"info": {}, "categories": [{"id": 1, "name": "person"}],
            "images": [{"id": 3, "width": 1920, "height": 1080, "file_name": "a.jpg"},
                       {"id": 7, "width": IMAGE[0], "height": IMAGE[1], "file_name": "b.jpg"}],
            "annotations": [coco_annotation(flags)]}
    kp = load_keypoints(write_json(tmp_path / "person_keypoints.json", data))
    conf = np.select([flags == 2, flags == 1], [1.0, 0.5], 0.0)  # v=2 visible: 1, v=1 occluded: 0.5, v=0: unseen
    assert_points(kp, np.where(conf[:, None] > 0, TRUTH, 0.0), conf)
    assert kp.image_size == IMAGE  # the annotation's image, not the file's first


def test_coco_annotation_alone_or_in_a_list_without_feet(tmp_path):
    flags = np.full(23, 2.0)
    ann = coco_annotation(flags, feet=False)
    for name, data in [("one.json", ann), ("list.json", [ann])]:
        kp = load_keypoints(write_json(tmp_path / name, data))
        assert_points(kp, *expected(set(COCO_17), conf=np.ones(23)))
        assert kp.image_size is None


def test_coco_results_format_reads_scores(tmp_path):
    pts = source_points(COCO_17)
    result = {"image_id": 7, "category_id": 1, "keypoints": pts.reshape(-1).tolist(), "score": 0.8}
    assert_points(load_keypoints(write_json(tmp_path / "results.json", [result])), *expected(set(COCO_17)))


# -- MMPose / ViTPose -----------------------------------------------------------------------------


def mmpose_instance(names: list[str], count: int, *, xy: np.ndarray = TRUTH, bbox: object = None) -> dict:
    """An MMPose instance with ``count`` points, our ``names`` first and random others (face, hands) after."""
    pts = source_points(names, xy=xy)
    extra = np.random.default_rng(0).uniform([0, 0, 0.9], [640, 480, 1.0], size=(count - len(names), 3))
    pts = np.concatenate([pts, extra])
    inst = {"keypoints": pts[:, :2].tolist(), "keypoint_scores": pts[:, 2].tolist()}
    if bbox is not None:
        inst |= {"bbox": bbox, "bbox_score": 0.97}
    return inst


def test_mmpose_17_points(tmp_path):
    f = write_json(tmp_path / "vitpose.json", [mmpose_instance(COCO_17, 17, bbox=[[230, 80, 410, 480]])])
    assert_points(load_keypoints(f), *expected(set(COCO_17)))


def test_mmpose_133_wholebody_ignores_face_and_hands(tmp_path):
    f = write_json(tmp_path / "wholebody.json", [mmpose_instance(COCO_17 + WHOLEBODY_FEET, 133)])
    assert_points(load_keypoints(f), TRUTH, TRUTH_CONF)


def test_mmpose_demo_and_inferencer_wrappers(tmp_path):
    inst = mmpose_instance(COCO_17 + WHOLEBODY_FEET, 133, bbox=[230, 80, 410, 480])
    demo = {"meta_info": {"dataset_name": "coco_wholebody"}, "instance_info": [inst]}
    assert_points(load_keypoints(write_json(tmp_path / "demo.json", demo)), TRUTH, TRUTH_CONF)
    inferencer = {"predictions": [[inst]], "visualization": []}
    assert_points(load_keypoints(write_json(tmp_path / "infer.json", inferencer)), TRUTH, TRUTH_CONF)


def test_mmpose_scores_above_one_are_clipped(tmp_path):
    inst = mmpose_instance(COCO_17, 17)
    inst["keypoint_scores"][0] = 1.07  # heatmap maxima run over 1
    kp = load_keypoints(write_json(tmp_path / "over.json", [inst]))
    assert kp.conf[0] == 1.0


# -- MediaPipe ------------------------------------------------------------------------------------


def mediapipe_pixels(*, low: str | None = None) -> np.ndarray:
    """``(33, 4)`` x, y (pixels), z, visibility of the truth, ``low`` made barely visible (0.3)."""
    pts = source_points(MEDIAPIPE_33, rename={"left_foot_index": "left_big_toe", "right_foot_index": "right_big_toe"})
    if low is not None:
        pts[MEDIAPIPE_33.index(low), 2] = 0.3
    return np.column_stack([pts[:, :2], np.linspace(-0.2, 0.2, 33), pts[:, 2]])


MEDIAPIPE_HAS = set(KEYPOINT_NAMES) - {"left_small_toe", "right_small_toe"}


def landmark_dicts(pixels: np.ndarray, size: tuple[int, int]) -> list[dict]:
    return [{"x": x / size[0], "y": y / size[1], "z": z, "visibility": v, "presence": 0.99} for x, y, z, v in pixels]


def test_mediapipe_normalised_json_with_image_size(tmp_path):
    pixels = mediapipe_pixels(low="right_knee")
    f = write_json(tmp_path / "mp.json", landmark_dicts(pixels, IMAGE))
    kp = load_keypoints(f, image_size=IMAGE)
    assert_points(kp, *expected(MEDIAPIPE_HAS - {"right_knee"}))  # visibility 0.3 < 0.5: not seen
    assert kp.image_size == IMAGE


def test_mediapipe_json_with_its_own_size(tmp_path):
    data = {"landmarks": landmark_dicts(mediapipe_pixels(), IMAGE), "image_width": IMAGE[0], "image_height": IMAGE[1]}
    kp = load_keypoints(write_json(tmp_path / "mp.json", data))
    assert_points(kp, *expected(MEDIAPIPE_HAS))
    assert kp.image_size == IMAGE


@pytest.mark.parametrize("columns", [3, 4])
def test_from_mediapipe_pixels_drops_low_visibility(columns):
    pixels = mediapipe_pixels(low="left_wrist")
    arr = pixels if columns == 4 else pixels[:, [0, 1, 3]]
    kp = from_mediapipe(arr, image_size=IMAGE, source="blazepose")
    assert_points(kp, *expected(MEDIAPIPE_HAS - {"left_wrist"}))
    assert kp.image_size == IMAGE and kp.source == "blazepose"
    assert_points(from_mediapipe(arr, min_visibility=0.2), *expected(MEDIAPIPE_HAS, conf=np.where(
        np.array(KEYPOINT_NAMES) == "left_wrist", 0.3, TRUTH_CONF)))


def test_from_mediapipe_refuses_wrong_shape():
    with pytest.raises(InputError, match=r"^detector: MediaPipe landmarks must be .*, got \(17, 4\)"):
        from_mediapipe(np.zeros((17, 4)), source="detector")


# -- our .npz, and the other layouts an .npz may hold ---------------------------------------------


@pytest.mark.parametrize("names, have", [
    (list(KEYPOINT_NAMES), set(KEYPOINT_NAMES)),
    (COCO_17, set(COCO_17)),
    (BODY_25, set(KEYPOINT_NAMES)),
    (COCO_17 + WHOLEBODY_FEET + ["face"] * 110, set(KEYPOINT_NAMES)),
])
def test_npz_layouts_by_point_count(tmp_path, names, have):
    f = tmp_path / "kp.npz"
    np.savez(f, keypoints=source_points(names).astype(np.float32))
    assert_points(load_keypoints(f), *expected(have))


def test_npz_mediapipe_pixels_read_like_from_mediapipe(tmp_path):
    pixels = mediapipe_pixels(low="nose")
    np.savez(tmp_path / "mp.npz", keypoints=pixels[:, [0, 1, 3]])
    assert_points(load_keypoints(tmp_path / "mp.npz"), *expected(MEDIAPIPE_HAS - {"nose"}))


def test_save_keypoints_round_trip(tmp_path):
    xy, conf = expected(set(KEYPOINT_NAMES) - {"left_ear"})
    kp = Keypoints(xy.astype(np.float32), conf.astype(np.float32), IMAGE, "x")
    back = load_keypoints(save_keypoints(kp, tmp_path / "ours.kp"))  # content, not the name, says .npz
    assert_points(back, xy, conf)
    assert back.image_size == IMAGE
    seq = Keypoints(np.stack([kp.xy, kp.xy + 5]), np.stack([kp.conf, kp.conf]), None)
    back = load_keypoint_sequence(save_keypoints(seq, tmp_path / "seq.npz"))
    np.testing.assert_allclose(back.xy[1], np.where(conf[:, None] > 0, xy + 5, 0.0), atol=1e-4)
    assert back.num_frames == 2 and back.image_size is None


# -- choosing the person --------------------------------------------------------------------------


def test_largest_person_by_default_and_person_index(tmp_path):
    small, big = source_points(BODY_25, xy=shifted(-200, scale=0.5)), source_points(BODY_25, xy=shifted(150))
    f = write_json(tmp_path / "two.json", openpose(small, big))
    assert_points(load_keypoints(f), shifted(150), TRUTH_CONF)
    assert_points(load_keypoints(f, person=0), shifted(-200, scale=0.5), TRUTH_CONF)
    with pytest.raises(InputError) as err:
        load_keypoints(f, person=3)
    assert str(err.value) == f"{f}: person 3 requested, the file has 2 people"


def test_largest_by_the_files_bounding_box(tmp_path):
    # points of the first are spread wider, but the detector's boxes say the second is bigger
    a = mmpose_instance(COCO_17, 17, xy=shifted(0, scale=1.5), bbox=[[0, 0, 50, 50]])
    b = mmpose_instance(COCO_17, 17, xy=shifted(10), bbox=[[0, 0, 300, 450]])
    kp = load_keypoints(write_json(tmp_path / "boxes.json", [a, b]))
    assert_points(kp, *expected(set(COCO_17), xy=shifted(10)))


# -- errors: one line, naming the file ------------------------------------------------------------


def body25_flat(n: int = 75) -> list[float]:
    return source_points(BODY_25).reshape(-1)[:n].tolist()


NAN_PERSON = body25_flat()
NAN_PERSON[4] = float("nan")
NEGATIVE = body25_flat()
NEGATIVE[5] = -0.2
HUGE = body25_flat()
HUGE[3] = 1e20  # finite, but no photo is that wide: the fit's error would be inf
BAD_FLAGS = coco_annotation(np.full(23, 2.0), feet=False)
BAD_FLAGS["keypoints"][2] = 3

ERRORS = {
    "bad_json": ('{"people": [', "not valid JSON"),
    "74_numbers": (json.dumps({"people": [{"pose_keypoints_2d": body25_flat(74)}]}),
                   "has 74 numbers, expected a flat list of 75 numbers (BODY_25) or 54"),
    "nan": (json.dumps({"people": [{"pose_keypoints_2d": NAN_PERSON}]}), "NaN or Infinity"),
    "negative": (json.dumps({"people": [{"pose_keypoints_2d": NEGATIVE}]}), "negative confidence"),
    "huge": (json.dumps({"people": [{"pose_keypoints_2d": HUGE}]}), "holds values up to 1e+20 (pixel coordinates"),
    "text_numbers": (json.dumps({"people": [{"pose_keypoints_2d": ["1"] * 75}]}), "holds text, expected numbers"),
    "no_people": (json.dumps({"version": 1.3, "people": []}), "no person"),
    "all_unseen": (json.dumps({"people": [{"pose_keypoints_2d": [0.0] * 75}]}), "1 person but no seen point"),
    "unknown": (json.dumps({"skeleton": [[1, 2]], "joints": 3}), "not a keypoint format this reads"),
    "mediapipe_no_size": (json.dumps(landmark_dicts(mediapipe_pixels(), IMAGE)), "pass image_size"),
    "mediapipe_pixels": (json.dumps({"landmarks": landmark_dicts(mediapipe_pixels(), (1, 1)),  # pixels, not 0..1
                                     "image_width": 640, "image_height": 480}), "expected MediaPipe's normalised"),
    "coco_flag": (json.dumps([BAD_FLAGS]), "visibility 3 at point 0"),
    "mmpose_scores": (json.dumps([{"keypoints": [[1, 2]] * 17, "keypoint_scores": [0.5] * 16}]),
                      "[0].keypoint_scores has shape (16,), expected (17,)"),
    "several_frames": (json.dumps({"frames": [openpose(), openpose()]}), "holds 2 frames"),
    "not_utf8": (b"\xff\xfe\x00\xd8garbage", None),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_bad_files_are_one_line_errors_naming_the_file(tmp_path, case):
    content, problem = ERRORS[case]
    f = tmp_path / f"{case}.json"
    f.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(InputError) as err:
        load_keypoints(f)
    message = str(err.value)
    assert message.startswith(f"{f}: ") and "\n" not in message, message
    if problem is not None:
        assert problem in message, message


def test_image_size_disagreeing_with_the_file(tmp_path):
    data = {"landmarks": landmark_dicts(mediapipe_pixels(), IMAGE), "image_width": IMAGE[0], "image_height": IMAGE[1]}
    f = write_json(tmp_path / "mp.json", data)
    with pytest.raises(InputError, match=r"the image is 640x480, but image_size says 1280x720"):
        load_keypoints(f, image_size=(1280, 720))


def test_size_limit_and_forced_format(tmp_path):
    f = write_json(tmp_path / "op.json", openpose(source_points(BODY_25)))
    with pytest.raises(InputError, match="over the 0 MiB limit"):
        load_keypoints(f, max_bytes=100)
    wrong = r"op.json: the file is an object with keys 'version', 'people', expected a COCO"
    with pytest.raises(InputError, match=wrong):
        load_keypoints(f, format="coco")
    with pytest.raises(InputError, match="unknown keypoint format 'yaml'"):
        load_keypoints(f, format="yaml")


def test_npz_wrong_shape(tmp_path):
    np.savez(tmp_path / "bad.npz", keypoints=np.zeros((24, 3)))
    with pytest.raises(InputError, match=r"bad.npz: 'keypoints' has shape \(24, 3\), expected"):
        load_keypoints(tmp_path / "bad.npz")


# -- sequences ------------------------------------------------------------------------------------


def test_folder_in_natural_order_with_an_empty_frame(tmp_path):
    folder = tmp_path / "video"
    folder.mkdir()
    for t in (1, 2, 10):  # plain sorting would put frame_10 before frame_2
        write_json(folder / f"frame_{t}_keypoints.json", openpose(source_points(BODY_25, xy=shifted(t))))
    write_json(folder / "frame_3_keypoints.json", openpose())  # nobody in frame 3
    (folder / "._frame_4_keypoints.json").write_bytes(b"\x00\x05\x16\x07")  # a macOS companion file
    (folder / "notes.txt").write_text("not a frame")
    seq = load_keypoint_sequence(folder)
    assert seq.xy.shape == (4, 23, 2) and seq.conf.shape == (4, 23) and seq.source == str(folder)
    for t, dx in enumerate([1, 2, None, 10]):
        if dx is None:
            assert not seq.conf[t].any() and not seq.xy[t].any()
        else:
            assert_points(seq.frame(t), shifted(dx), TRUTH_CONF)


def test_frames_json_and_list_of_openpose_frames(tmp_path):
    frames = [openpose(source_points(BODY_25, xy=shifted(t))) for t in range(3)]
    for name, data in [("frames.json", {"frames": frames}), ("list.json", frames)]:
        seq = load_keypoint_sequence(write_json(tmp_path / name, data))
        assert seq.num_frames == 3
        np.testing.assert_allclose(seq.xy[:, 0, 0], TRUTH[0, 0] + np.arange(3), atol=1e-3)


def test_list_of_files_keeps_its_order_and_mmpose_video(tmp_path):
    a = write_json(tmp_path / "a.json", [mmpose_instance(COCO_17, 17, xy=shifted(5))])
    b = write_json(tmp_path / "b.json", [mmpose_instance(COCO_17, 17, xy=shifted(9))])
    seq = load_keypoint_sequence([b, a])
    np.testing.assert_allclose(seq.xy[:, 0, 0], TRUTH[0, 0] + np.array([9, 5]), atol=1e-3)
    video = {"meta_info": {}, "instance_info": [{"frame_id": t, "instances": [mmpose_instance(COCO_17, 17)]}
                                                for t in range(4)]}
    seq = load_keypoint_sequence(write_json(tmp_path / "video.json", video))
    assert seq.num_frames == 4
    assert_points(seq.frame(3), *expected(set(COCO_17)))


def test_tracking_keeps_the_person_when_a_bigger_stranger_appears(tmp_path):
    me = [source_points(BODY_25, xy=shifted(-150 + 4 * t, scale=0.6)) for t in range(3)]
    stranger = source_points(BODY_25, xy=shifted(160, scale=1.2))
    frames = [openpose(me[0]), openpose(stranger, me[1]), openpose(me[2], stranger)]
    f = write_json(tmp_path / "frames.json", {"frames": frames})
    seq = load_keypoint_sequence(f)
    for t in range(3):
        assert_points(seq.frame(t), shifted(-150 + 4 * t, scale=0.6), TRUTH_CONF)
    untracked = load_keypoint_sequence(f, track=False)  # each frame's largest: the stranger takes over
    assert_points(untracked.frame(1), shifted(160, scale=1.2), TRUTH_CONF)


def test_sequence_person_index_starts_the_track(tmp_path):
    frames = [openpose(source_points(BODY_25, xy=shifted(-150)), source_points(BODY_25, xy=shifted(150))),
              openpose(source_points(BODY_25, xy=shifted(152)), source_points(BODY_25, xy=shifted(-148)))]
    seq = load_keypoint_sequence(write_json(tmp_path / "two.json", frames), person=0)
    np.testing.assert_allclose(seq.xy[:, 0, 0], TRUTH[0, 0] + np.array([-150, -148]), atol=1e-3)


def test_sequence_errors(tmp_path):
    f = write_json(tmp_path / "empty.json", {"frames": [openpose(), openpose()]})
    with pytest.raises(InputError, match=rf"^{f}: none of the 2 frames has a person with a seen point$"):
        load_keypoint_sequence(f)
    many = write_json(tmp_path / "many.json", [openpose()] * 5)
    with pytest.raises(InputError, match=r"many.json: holds 5 frames, over the 3 limit"):
        load_keypoint_sequence(many, max_frames=3)
    folder = tmp_path / "none"
    folder.mkdir()
    with pytest.raises(InputError, match=r"none: no .json or .npz keypoint files"):
        load_keypoint_sequence(folder)
    bad = write_json(folder / "frame_2.json", {"people": [{"pose_keypoints_2d": [1.0] * 74}]})
    write_json(folder / "frame_1.json", openpose(source_points(BODY_25)))
    with pytest.raises(InputError) as err:
        load_keypoint_sequence(folder)
    assert str(err.value).startswith(f"{bad}: people[0].pose_keypoints_2d has 74 numbers")
