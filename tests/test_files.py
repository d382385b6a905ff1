"""File safety: shipped files found however the package is run, atomic writes that fail cleanly, checked reads."""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest

import prior.files
from prior.errors import InputError
from prior.files import atomic_write, checked_file, open_npz, save_npz, write_text_atomic

from prior_helpers import DATA

REPO = Path(__file__).resolve().parents[1]
PROBE = """
import sys
from prior.files import asset_path, default_checkpoint_path
# the editable install's import hook would map prior.assets to the repository, hiding the layout under test
assert not any("__editable__" in getattr(f, "__module__", "") for f in sys.meta_path), sys.meta_path
for path in (asset_path("gesture_clip.npz"), default_checkpoint_path()):
    print(path, path.is_file())
"""


def _shipped_folder(src: Path, dst: Path) -> None:
    """``dst`` a real folder of links to ``src``'s files (the checkpoint is 7 MB: linked, not copied)."""
    dst.mkdir(parents=True)
    for f in src.iterdir():
        if f.is_file():
            (dst / f.name).symlink_to(f)


def _probe(root: Path) -> list[tuple[Path, bool]]:
    """Run :data:`PROBE` with only ``root`` and the third-party packages importable (``-S``: no site
    hooks, so no editable-install finder); the printed (path, exists) pairs."""
    third_party = {sysconfig.get_paths()[k] for k in ("purelib", "platlib")}
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(root), *sorted(third_party)]))
    out = subprocess.run(
        [sys.executable, "-S", "-c", PROBE], cwd=root, env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    rows = [line.rsplit(" ", 1) for line in out.stdout.splitlines()]
    return [(Path(path), flag == "True") for path, flag in rows]


def test_shipped_files_from_a_source_checkout_on_pythonpath(tmp_path: Path) -> None:
    shutil.copytree(REPO / "prior", tmp_path / "prior", ignore=shutil.ignore_patterns("__pycache__"))
    _shipped_folder(REPO / "assets", tmp_path / "assets")
    _shipped_folder(REPO / "checkpoints", tmp_path / "checkpoints")
    (clip, clip_found), (ckpt, ckpt_found) = _probe(tmp_path)
    assert clip == tmp_path / "assets" / "gesture_clip.npz" and clip_found
    assert ckpt == tmp_path / "checkpoints" / prior.files.DEFAULT_CHECKPOINT and ckpt_found


def test_shipped_files_from_an_installed_package(tmp_path: Path) -> None:
    # A wheel puts the packages prior.assets and prior.checkpoints inside prior/.
    shutil.copytree(REPO / "prior", tmp_path / "prior", ignore=shutil.ignore_patterns("__pycache__"))
    _shipped_folder(REPO / "assets", tmp_path / "prior" / "assets")
    _shipped_folder(REPO / "checkpoints", tmp_path / "prior" / "checkpoints")
    (clip, clip_found), (ckpt, ckpt_found) = _probe(tmp_path)
    assert clip == tmp_path / "prior" / "assets" / "gesture_clip.npz" and clip_found
    assert ckpt == tmp_path / "prior" / "checkpoints" / prior.files.DEFAULT_CHECKPOINT and ckpt_found


def test_shipped_files_here() -> None:
    assert prior.files.asset_path("gesture_clip.npz").is_file()
    assert prior.files.default_checkpoint_path().is_file()


# ---- atomic writes ----------------------------------------------------------------------------


class _BrokenDisk:
    """A file object that writes the first ``limit`` bytes, then fails as a full disk does."""

    def __init__(self, f, limit: int) -> None:
        self._f, self._left = f, limit

    def write(self, data) -> int:
        if len(data) > self._left:
            self._f.write(data[: self._left])
            self._f.flush()
            raise OSError(28, "No space left on device")
        self._left -= len(data)
        return self._f.write(data)

    def __getattr__(self, name: str):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self._f.close()


@pytest.fixture
def full_disk(monkeypatch: pytest.MonkeyPatch):
    """Files opened by :func:`atomic_write` fail after 100 bytes."""
    real = os.fdopen
    monkeypatch.setattr(prior.files.os, "fdopen", lambda fd, mode: _BrokenDisk(real(fd, mode), 100))


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp_file(tmp_path: Path, full_disk) -> None:
    path = tmp_path / "out.npz"
    path.write_bytes(b"old contents")
    with pytest.raises(OSError, match="No space left"):
        save_npz(path, {"x": np.arange(1000.0)})
    assert path.read_bytes() == b"old contents"
    assert [p.name for p in tmp_path.iterdir()] == ["out.npz"]
    with pytest.raises(OSError, match="No space left"):
        write_text_atomic(tmp_path / "new.json", "x" * 1000)
    assert [p.name for p in tmp_path.iterdir()] == ["out.npz"]


def test_an_error_inside_the_block_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "out.txt"
    path.write_text("old")
    with pytest.raises(RuntimeError), atomic_write(path, "w") as f:
        f.write("half of the new")
        raise RuntimeError
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_atomic_writes_create_folders_and_replace_with_usual_permissions(tmp_path: Path) -> None:
    path = save_npz(tmp_path / "a" / "b" / "out.npz", {"x": np.arange(3)})
    with np.load(path) as data:
        assert data["x"].tolist() == [0, 1, 2]
    assert write_text_atomic(path, "text").read_text() == "text"
    mask = os.umask(0)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask
    assert [p.name for p in path.parent.iterdir()] == ["out.npz"]


# ---- checked reads ----------------------------------------------------------------------------


def test_checked_file_names_the_problem(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        checked_file(tmp_path / "missing.npz", max_bytes=10)
    with pytest.raises(InputError, match="not a file"):
        checked_file(tmp_path, max_bytes=10)
    (tmp_path / "empty").touch()
    with pytest.raises(InputError, match="empty file"):
        checked_file(tmp_path / "empty", max_bytes=10)
    (tmp_path / "big").write_bytes(b"x" * 11)
    with pytest.raises(InputError, match="over the 0 MiB limit"):
        checked_file(tmp_path / "big", max_bytes=10)


def test_open_npz_refuses_pickles_and_archives_that_unpack_too_far(tmp_path: Path) -> None:
    np.savez(tmp_path / "obj.npz", a=np.array([{"x": 1}], dtype=object))
    with open_npz(tmp_path / "obj.npz", max_bytes=2**20) as archive, pytest.raises(InputError, match="pickled"):
        archive.raw("a")
    np.savez_compressed(tmp_path / "zeros.npz", a=np.zeros(2**20))  # 8 MiB of zeros, a few kB on disk
    assert (tmp_path / "zeros.npz").stat().st_size < 2**20
    with pytest.raises(InputError, match="unpacks to 8 MiB"), open_npz(tmp_path / "zeros.npz", max_bytes=2**20):
        pass


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (np.zeros((2, 63), "timedelta64[s]"), "timedelta64"),  # a subtype of np.signedinteger
        (np.full((2, 63), 1e300), "do not fit float32"),  # finite in float64, Inf once cast
        (np.full((2, 63), -4e38), "do not fit float32"),
        (np.full((2, 63), 1e20), "holds values up to 1e+20 (axis-angles must be within ±100 rad)"),  # finite
        (np.full((2, 63), -101.0), "holds values up to 101 (axis-angles must be within ±100 rad)"),
    ],
    ids=["timedelta", "1e300", "-4e38", "1e20", "-101"],
)
def test_checked_floats_refuses_what_is_not_a_finite_float32(value, fragment) -> None:
    with pytest.raises(InputError, match="'pose_body'") as err:
        prior.files.checked_floats(value, "pose_body", Path("in.npz"), 63, bound=prior.files.ANGLES)
    assert fragment in str(err.value) and str(err.value).startswith("in.npz: ")


def test_checked_floats_takes_real_numbers_as_float32() -> None:
    anything = prior.files.Bound(math.inf, "numbers")
    for value in (np.ones((2, 63), np.float16), np.ones((2, 63), np.int64), np.ones((2, 63), np.uint8),
                  np.full((2, 63), 3e38), np.ones((2, 21, 3), np.float64)):
        out = prior.files.checked_floats(value, "pose_body", Path("in.npz"), 63, bound=anything)
        assert out.dtype == np.float32 and out.shape == (2, 63) and np.isfinite(out).all()
    edge = np.full((2, 63), 100.0)
    edge[0, 0] = -100.0
    assert prior.files.checked_floats(edge, "pose_body", Path("in.npz"), 63, bound=prior.files.ANGLES).min() == -100


# ---- npz reads are bounded by what the members hold, checked before numpy allocates -------------------


def test_npz_headers_give_shape_and_dtype_without_reading_the_data(tmp_path: Path) -> None:
    import io
    import zipfile

    path = save_npz(tmp_path / "a.npz", {"x": np.zeros((5, 63), np.float32), "s": np.array(30.0)})
    with zipfile.ZipFile(path, "a") as z:  # a version 2.0 header, as np.save writes for huge headers
        out = io.BytesIO()
        np.lib.format.write_array(out, np.arange(6, dtype=np.int16).reshape(2, 3), version=(2, 0))
        z.writestr("v2.npy", out.getvalue())
        z.writestr("junk.npy", b"not an array at all")
    with open_npz(path, max_bytes=2**20) as archive:
        assert archive.shape("x") == (5, 63) and archive.dtype("x") == np.float32
        assert archive.shape("s") == () and archive.dtype("s") == np.float64
        assert archive.shape("v2") == (2, 3) and archive.raw("v2").tolist() == [[0, 1, 2], [3, 4, 5]]
        for read in (archive.shape, archive.raw):  # numpy returned the member's bytes here, not an array
            with pytest.raises(InputError, match=r"a.npz: 'junk' is not a readable .npy array \(.*magic"):
                read("junk")


def test_an_npy_header_that_declares_more_than_its_member_holds_is_refused(tmp_path: Path) -> None:
    """numpy allocates the shape an .npy header declares before it reads any data: a 260-byte file
    declaring 7 TiB raised MemoryError (no InputError, a traceback in the CLI), and one declaring
    1.9 GB allocated it. The header must fit in the member."""
    import zipfile

    from bounded_load import bounded_load, npy_header

    path = tmp_path / "forged.npz"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("huge.npy", npy_header((10**12 // 165, 165), "<f8") + bytes(16))
        z.writestr("big.npy", npy_header((3_000_000, 165)) + bytes(16))
    for key, declared in (("huge", "(6060606060, 165) of float64 (7629395 MiB)"),
                          ("big", "(3000000, 165) of float32 (1888 MiB)")):
        result = bounded_load(f"with prior.files.open_npz(path, max_bytes=2**20) as a:\n    a.raw({key!r})", path)
        assert result["outcome"] == (f"InputError: {path}: {key!r} declares shape {declared} but holds 16 bytes "
                                     "(truncated or forged)"), result


def test_a_member_that_inflates_past_its_declared_size_is_cut_there(tmp_path: Path) -> None:
    """open_npz's unpacked-size limit trusts each member's declared size. That holds: zipfile returns no
    more than a member's declared size, whatever its data inflates to (and checks the CRC there). A forger
    who also fixes the CRC gets a clean read of a few bytes whose .npy header declares 200 MB, which numpy
    allocated; the header must fit in the member."""
    import struct
    import zipfile
    import zlib

    from bounded_load import bounded_load, npy_header, write_zero_member

    path = tmp_path / "lying.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        write_zero_member(z, "pose_body.npy", (800_000, 63))  # 200 MB of zeros
    data = bytearray(path.read_bytes())
    central = data.rfind(b"PK\x01\x02")
    lie = 128 + 63 * 4  # declares one frame's worth
    crc = zlib.crc32(npy_header((800_000, 63)) + bytes(63 * 4))
    for size_at, crc_at in ((22, 14), (central + 24, central + 16)):  # local header, central directory
        struct.pack_into("<I", data, size_at, lie)
        struct.pack_into("<I", data, crc_at, crc)
    path.write_bytes(bytes(data))
    with zipfile.ZipFile(path) as z, z.open("pose_body.npy") as member:
        assert z.getinfo("pose_body.npy").file_size == lie
        assert len(member.read()) == lie  # a clean read, cut at the declared size
    result = bounded_load("with prior.files.open_npz(path, max_bytes=2**30) as a:\n    a.raw('pose_body')", path,
                          headroom=128 * 2**20)
    assert result["outcome"] == (f"InputError: {path}: 'pose_body' declares shape (800000, 63) of float32 (192 MiB) "
                                 "but holds 252 bytes (truncated or forged)"), result
    assert result["grew"] < 32 * 2**20, result


def test_an_npz_listing_too_many_members_is_refused_before_they_are_parsed(tmp_path: Path) -> None:
    """zipfile turns every central-directory entry into an object (~8x the bytes) before any check:
    the directory's declared size is limited first (and an error line lists only a few names)."""
    import zipfile

    path = tmp_path / "members.npz"
    with zipfile.ZipFile(path, "w") as z:
        for i in range(20_000):
            z.writestr(f"member_{i:013d}", b"")
    with pytest.raises(InputError) as err:
        with open_npz(path, max_bytes=2**30):
            pass
    assert str(err.value) == f"{path}: lists 1 MiB of members, over the 1 MiB limit (an .npz holds a few dozen arrays)"


def test_frame_rates_outside_1_to_1000_fps_are_refused(tmp_path: Path) -> None:
    for rate in (1e-300, 0.5, 1e6, float("inf")):
        path = save_npz(tmp_path / "r.npz", {"fps": np.array(rate)})
        with open_npz(path, max_bytes=2**20) as archive, pytest.raises(InputError) as err:
            archive.number("fps")
        assert str(err.value) == f"{path}: 'fps' is {rate}, expected a positive frame rate (1 to 1000 fps)"
    path = save_npz(tmp_path / "ok.npz", {"a": np.array(1), "b": np.array([1000.0]), "many": np.zeros(10**6)})
    with open_npz(path, max_bytes=2**24) as archive:
        assert (archive.number("a"), archive.number("b")) == (1.0, 1000.0)
        with pytest.raises(InputError, match=r"'many' is not a number \(shape \(1000000,\), dtype float64\)"):
            archive.number("many")


# ---- values no real data holds, refused by the readers the CLI and the viewer share ------------------


def test_the_shared_readers_refuse_huge_finite_values_by_name(tmp_path: Path) -> None:
    from prior.data import load_joints, load_motion, load_poses

    with np.load(prior.files.asset_path("gesture_clip.npz"), allow_pickle=False) as f:
        clip = {k: f[k] for k in f.files}
    cases = {  # file -> (arrays, the error after "<file>: ")
        "pose_body": ({"pose_body": np.full((3, 63), 1e20)}, "'pose_body' holds values up to 1e+20 (axis-angles "
                      "must be within ±100 rad)"),
        "amass": (clip | {"poses": np.full((3, 165), -1e20)}, "'poses' holds values up to 1e+20 (axis-angles must "
                  "be within ±100 rad)"),
        "trans": (clip | {"trans": np.full((len(clip["pose_body"]), 3), 2e4)}, "'trans' holds values up to 2e+04 "
                  "(positions must be within ±10000 m)"),
        "joints": ({"joints": np.where(np.arange(66).reshape(1, 22, 3) == 5, 1e20, np.nan)},
                   "'joints' holds values up to 1e+20 (positions must be within ±10000 m)"),
    }
    for name, (arrays, problem) in cases.items():
        path = save_npz(tmp_path / f"{name}.npz", arrays)
        with pytest.raises(InputError) as err:
            load_motion(path)  # the viewer's reader: load_clip or load_joints
        assert str(err.value) == f"{path}: {problem}"
    with pytest.raises(InputError, match=r"pose_body.npz: 'pose_body' holds values up to 1e\+20"):
        load_poses(tmp_path / "pose_body.npz")
    with pytest.raises(InputError, match=r"'trans' holds values up to 1e\+20"):
        load_joints(save_npz(tmp_path / "j.npz", {"joints": np.zeros((2, 22, 3)), "trans": np.full((2, 3), 1e20)}))


def test_real_data_is_well_inside_the_bounds() -> None:
    """The bounds are far from real data: AMASS train poses reach 6.3 rad, a whole-body set's root 9.5."""
    from prior.data import load_clip, load_poses

    assert 6 < np.abs(load_poses(DATA / "amass_body_poses.npz", key="train")).max() < prior.files.ANGLES.limit / 10
    whole_body = load_clip(DATA / "wholebody_poses.npz")
    assert 9 < np.abs(whole_body.root_orient).max() < prior.files.ANGLES.limit / 10


# ---- user paths ---------------------------------------------------------------------------------------


def test_an_unknown_user_in_a_path_is_one_line() -> None:
    import pwd

    from prior.body import load_body_model

    with pytest.raises(KeyError):
        pwd.getpwnam("nosuchuser")
    with pytest.raises(InputError) as err:
        prior.files.user_path("~nosuchuser/x.npz")
    assert str(err.value) == "~nosuchuser/x.npz: no such user"
    assert prior.files.user_path("~/x.npz") == Path.home() / "x.npz"
    with pytest.raises(InputError) as err:
        load_body_model("~nosuchuser/SMPLX_NEUTRAL.npz")
    assert str(err.value) == "~nosuchuser/SMPLX_NEUTRAL.npz: no such user"


# ---- output paths -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("a" * 300 + ".npz", "--out cannot be written (File name too long)"),
        ("b" * 245 + ".npz", "--out cannot be written: the file name is 263 bytes with the temporary file's suffix, "
                             "over the folder's limit of 255"),
        ("new/" + "b" * 245 + ".npz", "--out cannot be written: the file name is 263 bytes with the temporary "
                                      "file's suffix, over the folder's limit of 255"),
        ("new/" + "c" * 300 + "/x.npz", "--out cannot be written: a folder name of 300 bytes is over the limit of 255"),
    ],
    ids=["name", "temporary name", "temporary name in a new folder", "new folder"],
)
def test_check_writable_refuses_names_over_the_folders_limit(tmp_path: Path, name: str, problem: str) -> None:
    from prior.outputs import check_writable

    if os.pathconf(tmp_path, "PC_NAME_MAX") != 255:
        pytest.skip("the messages assume the usual 255-byte name limit")
    with pytest.raises(InputError) as err:
        check_writable(tmp_path / name, "--out")
    assert str(err.value) == f"{tmp_path / name}: {problem}"
    longest = tmp_path / "new" / ("d" * 237 + ".npz")  # its temporary file's name is 255 bytes: allowed
    assert check_writable(longest, "--out") == longest and save_npz(longest, {"x": np.zeros(1)}).is_file()
    assert sorted(p.name for p in longest.parent.iterdir()) == [longest.name]


def test_check_writable_refuses_a_folder_it_cannot_create_files_in(tmp_path: Path, monkeypatch) -> None:
    """A read-only folder for a user who is not root (root passes permission bits, so the refusal is
    simulated where the check creates its probe); /proc refuses even root."""
    import tempfile

    from prior.outputs import check_writable

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    with monkeypatch.context() as patched:
        patched.setattr(tempfile, "mkstemp", refuse)
        patched.setattr(tempfile, "mkdtemp", refuse)
        for path in (tmp_path / "x.npz", tmp_path / "new" / "x.npz"):
            with pytest.raises(InputError) as err:
                check_writable(path, "--out")
            assert str(err.value) == f"{path}: --out cannot be written (Permission denied)"
    if Path("/proc/self").exists():
        with pytest.raises(InputError, match=r"^/proc/x.npz: --out cannot be written \("):
            check_writable("/proc/x.npz", "--out")
    assert list(tmp_path.iterdir()) == []


def test_a_failed_atomic_write_names_the_target(tmp_path: Path, full_disk) -> None:
    """A failed write() names no file and a failed mkstemp the temporary one; the error names the target."""
    path = tmp_path / "out.npz"
    with pytest.raises(OSError) as err:
        save_npz(path, {"x": np.arange(1000.0)})
    assert (err.value.errno, err.value.filename) == (28, str(path))
    assert list(tmp_path.iterdir()) == []


# ---- size limits come before any read -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "name", "limit_mib"),
    [
        ("load_prior(path, device='cpu')", "big.pth", 2048),
        ("load_prior(path, device='cpu')", "big.safetensors", 2048),
        ("load_body_model(path)", "SMPLX_NEUTRAL.npz", 2048),
        ("load_body_model(path.rpartition('/')[0])", "SMPLX_NEUTRAL.npz", 2048),  # a folder holding it
        ("load_body_model(path, allow_pickle=True)", "SMPLX_NEUTRAL.pkl", 2048),
        ("load_motion(path)", "clip.npz", 1024),
    ],
    ids=["pth", "safetensors", "body npz", "body folder", "body pkl", "clip"],
)
def test_oversized_files_are_refused_before_they_are_read(tmp_path: Path, call: str, name: str, limit_mib: int):
    """A 3 GiB file (sparse: nothing is written to disk) is refused from its size, in a process
    whose memory barely grows."""
    from bounded_load import bounded_load

    path = tmp_path / name
    with path.open("wb") as f:
        f.write(b"PK\x03\x04")  # what a torch file or an .npz starts with
        f.truncate(3 * 2**30)
    result = bounded_load(call, path)
    assert result["outcome"] == f"InputError: {path}: file is 3072 MiB, over the {limit_mib} MiB limit", result
    assert result["grew"] < 32 * 2**20, result
