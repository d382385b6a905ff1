"""The Export panel's animation export: the clip on the Motion stage (the selected body's), or the
still bodies on screen, written by ``prior.exports`` as the CLI writes them (fake tab, no browser;
the browser's download is in test_viewer_e2e)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from fake_tab import settle

from prior.data import Clip
from prior.exports import export_bytes
from prior.files import asset_path
from viewer.panels.motion import EXAMPLE_CLIP

from browser import wait_until


def hands_of(session) -> np.ndarray:
    return session.app.resources.body.hand_mean.numpy().astype(np.float32)


@pytest.mark.parametrize("fmt", ["bvh", "glb", "npz"])
def test_the_clip_on_the_motion_stage_exports_as_an_animation(session, fmt):
    session.activate("motion")
    motion = session.panels["motion"]
    motion.load_file(asset_path(EXAMPLE_CLIP))
    wait_until(lambda: "clip_loaded" in session.timings, timeout=60, what="the clip")
    settle(session)
    session.activate("export")
    assert session.stage_panel is motion and motion.shown_motion() is motion.clip
    data = session.panels["export"].export_bytes("animation", mesh_format=fmt)
    clip = dataclasses.replace(motion.clip, hands=np.repeat(hands_of(session)[None], motion.clip.num_frames, 0))
    assert data == export_bytes([clip], session.app.resources.body, "." + fmt)


def test_still_bodies_export_side_by_side_and_the_saved_file_is_complete(session):
    session.activate("edit")
    pose = np.random.default_rng(0).normal(0, 0.2, 63).astype(np.float32)
    session.set_pose(pose, label="test pose")
    settle(session)
    session.activate("export")
    export = session.panels["export"]
    clip = Clip(pose_body=pose[None], root_orient=np.zeros((1, 3), np.float32), hands=hands_of(session)[None])
    assert export.export_bytes("animation", mesh_format="glb") == export_bytes([clip], session.app.resources.body,
                                                                               ".glb")
    export.save_file("pose.bvh")
    saved = session.app.export_dir / "pose.bvh"
    wait_until(lambda: saved.exists(), timeout=60, what="the saved BVH")
    assert saved.read_bytes() == export_bytes([clip], session.app.resources.body, ".bvh")
    assert not list(session.app.export_dir.glob(".*")), "a temporary file was left behind"
