"""The wheel as a user installs it: `pip install .` into a fresh venv, run from another folder.

The venv sees the machine's packages (torch, viser, smplx, ...: nothing is downloaded) but not
this checkout: the checkout's editable install is shadowed inside the venv, so a module missing
from the wheel fails here as it fails for a user.
"""

from __future__ import annotations

import re
import shutil
import site
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

from browser import BODY_RGB, VIEWPORT, ViewerProcess, click, colour_fraction, screenshot_array, wait_until

REPO = Path(__file__).resolve().parents[1]


def test_every_package_of_the_source_tree_is_in_the_wheel_list():
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {
        ".".join(init.parent.relative_to(REPO).parts)
        for top in ("prior", "viewer")
        for init in (REPO / top).rglob("__init__.py")
        if "__pycache__" not in init.parts
    }
    assert found - listed == set(), f"packages missing from pyproject's [tool.setuptools] packages: {found - listed}"


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    """A fresh venv with the wheel built from this checkout installed (``--no-deps``)."""
    root = tmp_path_factory.mktemp("wheel")
    # Built from a copy: setuptools' build/ folder in the checkout could carry stale modules.
    source = root / "source"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
        ".git", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".ruff_cache", "runs"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(root / "dist"), str(source)], check=True, cwd=root)
    wheel = next((root / "dist").glob("dposer_view-*.whl"))
    env = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(env)], check=True)
    py = env / "bin" / "python"
    venv_site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                                    check=True, capture_output=True, text=True).stdout.strip())
    for system_site in site.getsitepackages():  # hide an editable install of this checkout
        for finder in Path(system_site).glob("__editable___dposer_view*_finder.py"):
            (venv_site / finder.name).write_text("def install():\n    pass\n")
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True)
    return env


def test_the_wheel_imports_from_the_venv_not_the_checkout(venv, tmp_path):
    out = subprocess.run(
        [str(venv / "bin" / "python"), "-c",
         "import prior, viewer.panels, prior.assets; print(prior.__file__); print(viewer.panels.__file__)"],
        cwd=tmp_path, capture_output=True, text=True,
    )
    assert out.returncode == 0, out.stderr
    for line in out.stdout.split():
        assert Path(line).is_relative_to(venv), f"{line} is not the installed wheel's"


def test_installed_fit_finds_the_person_with_the_shipped_detector(venv, tmp_path):
    # The BlazePose models and the Gaussian baseline ship inside the wheel (package data, not the checkout).
    out = tmp_path / "fit.npz"
    photo = REPO / "tests" / "data" / "astronaut.png"
    run = subprocess.run([str(venv / "bin" / "dposer"), "fit", "--image", str(photo), "--prior", "gaussian",
                          "--seed", "0", "--out", str(out)], cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "keypoints detected" in run.stderr
    with np.load(out, allow_pickle=False) as data:
        assert (data["keypoints"][0, :, 2] > 0).sum() >= 5 and np.isfinite(data["pose_body"]).all()


def test_installed_cli_generates_from_another_folder(venv, tmp_path):
    out = tmp_path / "samples.npz"
    run = subprocess.run([str(venv / "bin" / "dposer"), "generate", "--num", "3", "--steps", "20", "--seed", "0",
                          "--out", str(out)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    with np.load(out, allow_pickle=False) as data:
        assert data["pose_body"].shape == (3, 63) and np.isfinite(data["pose_body"]).all()
    bad = subprocess.run([str(venv / "bin" / "dposer"), "complete", "--poses", str(tmp_path / "none.npz"),
                          "--part", "left_leg", "--out", str(tmp_path / "x.npz")], cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "none.npz" in bad.stderr and not (tmp_path / "x.npz").exists()


def test_installed_cli_exports_the_generated_samples_for_blender(venv, tmp_path):
    """The exporters ship in the wheel (``prior.exports``): the samples as bodies side by side in a GLB."""
    samples, out = tmp_path / "samples.npz", tmp_path / "samples.glb"
    np.savez(samples, pose_body=np.zeros((2, 63), np.float32))
    run = subprocess.run([str(venv / "bin" / "dposer"), "export", "--poses", str(samples), "--out", str(out)],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert out.read_bytes()[:4] == b"glTF" and "2 poses" in run.stderr


def test_installed_cli_renders_a_clip_to_an_mp4(venv, tmp_path):
    """The renderer and the video encoder (PyAV, a dependency) work from the wheel: a real clip, read back."""
    import av

    out = tmp_path / "clip.mp4"
    clip = Path(__file__).resolve().parents[2] / "shared" / "data" / "gesture_clip.npz"
    run = subprocess.run([str(venv / "bin" / "dposer"), "render", str(clip), "--out", str(out), "--fps", "10",
                          "--width", "320", "--height", "240"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
    seconds = 240 / 30  # the file has no frame rate: 30 fps is assumed, so its 240 frames last 8 s
    assert frames == seconds * 10 and (stream.width, stream.height) == (320, 240), frames


@pytest.mark.browser
def test_installed_viewer_draws_the_body_and_its_panels(venv, chromium, tmp_path):
    viewer = ViewerProcess(exe=venv / "bin" / "dposer-view", cwd=tmp_path)
    try:
        page = chromium.new_page(viewport=VIEWPORT)
        page.goto(viewer.url)
        click(page.get_by_role("button", name=re.compile("Complete")).first)  # the panels were built
        page.get_by_role("button", name="Clear mask").wait_for(timeout=60_000)
        wait_until(lambda: colour_fraction(screenshot_array(page), BODY_RGB) > 0.02, timeout=60,
                   what="the body drawn by the installed viewer")
        page.close()
    finally:
        viewer.stop()
    log = viewer.log()
    assert "Error" not in log and "Traceback" not in log, log
