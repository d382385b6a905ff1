"""File safety: shipped files found however the package is run, atomic writes that fail cleanly, checked reads."""

from __future__ import annotations

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
