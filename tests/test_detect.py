"""The BlazePose detector (prior/detect.py): a real photo, no person, and files that are not photos."""

from __future__ import annotations

import struct
import threading
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from prior.detect import Detection, Roi, blazepose, crop, detect_keypoints, detection_roi, load_image, ssd_anchors
from prior.errors import InputError
from prior.keypoints import KEYPOINT_NAMES, Keypoints

ASTRONAUT = Path(__file__).parent / "data" / "astronaut.png"  # 512x512, NASA, public domain (data/README.md)


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return load_image(ASTRONAUT)


@pytest.fixture(scope="module")
def astronaut_points(astronaut) -> Keypoints:
    return detect_keypoints(astronaut, source=ASTRONAUT.name)


def _point(kp: Keypoints, name: str) -> np.ndarray:
    i = KEYPOINT_NAMES.index(name)
    assert kp.conf[i] > 0, f"{name} not seen"
    return kp.xy[i]


def test_astronaut_face_and_shoulders(astronaut, astronaut_points):
    kp = astronaut_points
    assert astronaut.shape == (512, 512, 3)
    assert kp.image_size == (512, 512) and kp.source == "astronaut.png"
    # Where they are in the photo (checked by eye): nose tip ~(224, 126), eyes ~(200, 103) and
    # ~(246, 104), the suit's shoulders ~(95, 235) and ~(320, 255).
    nose = _point(kp, "nose")
    assert 210 < nose[0] < 240 and 115 < nose[1] < 140
    for side in ("left", "right"):
        eye = _point(kp, f"{side}_eye")
        assert 185 < eye[0] < 265 and 90 < eye[1] < 125
        ear = _point(kp, f"{side}_ear")
        assert 170 < ear[0] < 285 and 90 < ear[1] < 140
    # She faces the camera: her left is on the image's right.
    assert _point(kp, "left_eye")[0] > nose[0] > _point(kp, "right_eye")[0]
    assert _point(kp, "left_ear")[0] > _point(kp, "left_eye")[0]
    assert _point(kp, "right_ear")[0] < _point(kp, "right_eye")[0]
    left, right = _point(kp, "left_shoulder"), _point(kp, "right_shoulder")
    assert 270 < left[0] < 360 and 200 < left[1] < 300
    assert 60 < right[0] < 150 and 200 < right[1] < 300


def test_astronaut_below_the_waist_not_seen(astronaut_points):
    """An upper-body photo: BlazePose still places the hips, legs and feet (outside the photo),
    but with visibilities under 0.1, so none of them is seen; the wrists are out of frame too and
    her left elbow is behind the helmet she holds (visibility ~0.3)."""
    kp = astronaut_points
    hidden = [n for n in KEYPOINT_NAMES if n.split("_", 1)[-1] in
              ("hip", "knee", "ankle", "big_toe", "small_toe", "heel", "wrist")] + ["left_elbow"]
    seen = [n for n in hidden if kp.conf[KEYPOINT_NAMES.index(n)] > 0]
    assert seen == []
    # Her right elbow, at the photo's left edge, is borderline (~0.7); if seen it is there.
    i = KEYPOINT_NAMES.index("right_elbow")
    if kp.conf[i] > 0:
        assert kp.xy[i][0] < 130 and kp.xy[i][1] > 330


def test_min_visibility_drops_more(astronaut):
    strict = detect_keypoints(astronaut, min_visibility=0.99)
    loose = detect_keypoints(astronaut, min_visibility=0.5)
    assert 0 < strict.seen.sum() <= loose.seen.sum()


def test_turned_photo_gives_the_same_face(astronaut):
    """The landmark crop turns with the body: the photo turned a quarter gives the same face points."""
    upright = blazepose().landmarks(astronaut)
    turned = blazepose().landmarks(np.ascontiguousarray(np.rot90(astronaut, k=-1)))  # clockwise: (x, y) -> (512 - y, x)
    assert upright is not None and turned is not None
    back = np.column_stack([turned[:, 1], 512 - turned[:, 0]])
    face = slice(0, 11)
    assert np.abs(back[face] - upright[face, :2]).max() < 15


def test_letterboxed_photo_gives_the_same_face(astronaut):
    wide = np.full((512, 900, 3), 128, np.uint8)
    wide[:, 300:812] = astronaut
    upright = blazepose().landmarks(astronaut)
    padded = blazepose().landmarks(wide)
    assert padded is not None
    assert np.abs(padded[:11, :2] - [300, 0] - upright[:11, :2]).max() < 15


def test_threads_share_the_model(astronaut):
    reference = blazepose().landmarks(astronaut)
    results, errors = [], []

    def work():
        try:
            results.append(blazepose().landmarks(astronaut))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(results) == 4
    for r in results:
        np.testing.assert_array_equal(r, reference)


def test_no_person():
    for image in (np.full((480, 640, 3), 128, np.uint8), np.zeros((1, 1, 3), np.uint8)):
        with pytest.raises(InputError, match=r"^blank\.png: no person found in the photo$"):
            detect_keypoints(image, source="blank.png")


def test_not_an_rgb_image():
    with pytest.raises(InputError, match="uint8 RGB"):
        detect_keypoints(np.zeros((64, 64), np.uint8))
    with pytest.raises(InputError, match="uint8 RGB"):
        detect_keypoints(np.zeros((64, 64, 3), np.float32))
    with pytest.raises(InputError, match="no pixels"):
        detect_keypoints(np.zeros((0, 64, 3), np.uint8))


# ----------------------------------------------------------------------------------------------
# Pieces of the pipeline


def test_anchors():
    anchors = ssd_anchors()
    assert anchors.shape == (2254, 2)  # 28*28*2 + 14*14*2 + 7*7*6
    np.testing.assert_allclose(anchors[:4], [[0.5 / 28, 0.5 / 28]] * 2 + [[1.5 / 28, 0.5 / 28]] * 2)
    np.testing.assert_allclose(anchors[-1], [6.5 / 7, 6.5 / 7])


def test_roi_turns_the_body_upright():
    def roi(head):
        points = np.array([[100.0, 200.0], head, [0, 0], [0, 0]])
        return detection_roi(Detection(0.9, np.zeros(4), points))

    upright = roi([100.0, 100.0])  # head straight above the hips
    assert upright.rotation == pytest.approx(0) and upright.size == pytest.approx(250)
    for head in ([200.0, 200.0], [100.0, 300.0], [30.0, 130.0]):
        r = roi(head)
        top = r.to_image(np.array([0.5, 0.0]))  # the crop's top centre lies towards the head
        direction = (np.array(head) - [100, 200]) / np.linalg.norm(np.array(head) - [100, 200])
        np.testing.assert_allclose(top, [100, 200] + direction * r.size / 2, atol=1e-6)


def test_crop_samples_the_right_pixels():
    image = np.zeros((40, 60, 3), np.uint8)
    image[10:20, 30:40] = 255  # a white square centred on (35, 15)
    inside = crop(image, Roi(np.array([35.0, 15.0]), 8.0, 0.3), 8, border="zero")
    assert inside.min() == pytest.approx(255)
    outside = crop(image, Roi(np.array([-50.0, -50.0]), 10.0, 0.0), 4, border="zero")
    assert outside.max() == 0
    edge = crop(image, Roi(np.array([35.0, -30.0]), 4.0, 0.0), 4, border="replicate")
    assert edge.max() == 0  # the top row, repeated
    whole = crop(image, Roi(np.array([30.0, 20.0]), 60.0, 0.0), 6, border="zero")  # 10x box filter
    assert whole[2, 3].mean() == pytest.approx(255, abs=1)  # the cell over the square (x 30..40, y 10..20)
    assert whole[0, 0].max() == 0 and whole[5, 5].max() == 0  # outside the photo: black


# ----------------------------------------------------------------------------------------------
# load_image


def _png(width: int, height: int, idat: bytes = zlib.compress(b"\0" * 10)) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.mark.parametrize(
    ("name", "data", "problem"),
    [
        ("notes.png", b"these are my notes, not a photo\n", "not an image"),
        ("cut.png", ASTRONAUT.read_bytes()[:20_000], "truncated"),
        ("bomb.png", _png(100_000, 100_000), "10000 megapixels, over the 50 megapixel limit"),
        ("huge.png", _png(10_000, 6_000), "10000x6000 (60 megapixels), over the 50 megapixel limit"),
        ("short.png", _png(64, 64), "truncated"),
        ("zero.png", _png(0, 0), "not an image"),
        ("empty.png", b"", "empty file"),
    ],
)
def test_bad_image_files(tmp_path, name, data, problem):
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(InputError) as info:
        load_image(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and problem in message and "\n" not in message


def test_image_file_limits(tmp_path):
    with pytest.raises(InputError, match="over the 0 MiB limit"):
        load_image(ASTRONAUT, max_bytes=1000)
    with pytest.raises(InputError, match="512x512"):
        load_image(ASTRONAUT, max_pixels=100_000)
    with pytest.raises(InputError, match="no such file"):
        load_image(tmp_path / "missing.jpg")


def test_orientation_transparency_and_16_bit(tmp_path):
    im = Image.new("RGB", (40, 20), (200, 10, 10))
    exif = im.getexif()
    exif[0x0112] = 6  # shown turned a quarter clockwise
    im.save(tmp_path / "turned.jpg", exif=exif)
    assert load_image(tmp_path / "turned.jpg").shape == (40, 20, 3)

    rgba = Image.new("RGBA", (8, 6), (0, 0, 0, 0))
    rgba.putpixel((0, 0), (0, 0, 255, 255))
    rgba.save(tmp_path / "clear.png")
    pixels = load_image(tmp_path / "clear.png")
    assert pixels.shape == (6, 8, 3) and pixels.dtype == np.uint8
    assert tuple(pixels[0, 0]) == (0, 0, 255) and tuple(pixels[5, 7]) == (255, 255, 255)
    assert pixels.flags.writeable

    Image.fromarray(np.full((4, 4), 40_000, np.uint16)).save(tmp_path / "grey16.png")  # Pillow's RGB would clip it
    assert tuple(load_image(tmp_path / "grey16.png")[0, 0]) == (156, 156, 156)
