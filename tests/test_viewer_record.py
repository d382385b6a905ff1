"""Screenshots and recordings from the Export panel (issue: exports): what each frame of a
recording shows, its rate and size read back with PyAV and Pillow, the camera it is rendered from,
cancelling, forged values. Fake tabs whose "browser" answers a render request with an image that
encodes what is drawn; the real browser's renders are in the last tests."""

from __future__ import annotations

import io
import math
import threading
import time

import av
import numpy as np
import pytest
from fake_tab import press, send_as_the_browser, settle
from PIL import Image

from prior.exports.video import source_frames
from prior.files import asset_path
from viewer.page import PANEL_FRACTION
from viewer.panels.motion import EXAMPLE_CLIP
from viewer.recording import free_view

from browser import click, open_panel, wait_until


class Tab:
    """The fake tab's browser side: renders (an image whose grey level is ``shade()``) and downloads."""

    def __init__(self, session, shade, *, delay_s: float = 0.0) -> None:
        self.session, self.shade, self.delay_s = session, shade, delay_s
        self.renders: list[dict] = []
        self.downloads: dict[str, bytes] = {}
        session.client.get_render = self.get_render
        session.client.send_file_download = self.send_file_download

    def get_render(self, height, width, *, wxyz=None, position=None, fov=None, transport_format="jpeg", timeout=None):
        time.sleep(self.delay_s)
        self.renders.append({"size": (width, height), "wxyz": np.array(wxyz), "position": np.array(position),
                             "fov": fov, "format": transport_format})
        channels = 4 if transport_format == "png" else 3
        return np.full((height, width, channels), self.shade(), np.uint8)

    def send_file_download(self, name, data, save_immediately=False):
        self.downloads[name] = data


def motion_with_clip(session):
    session.activate("motion")
    motion = session.panels["motion"]
    motion.load_file(asset_path(EXAMPLE_CLIP))
    wait_until(lambda: motion.clip is not None, timeout=60, what="the clip")
    settle(session)
    session.activate("export")
    return motion, session.panels["export"]


def decoded(data: bytes) -> tuple[list[np.ndarray], av.video.stream.VideoStream]:
    container = av.open(io.BytesIO(data))
    stream = container.streams.video[0]
    return [f.to_ndarray(format="rgb24") for f in container.decode(stream)], stream


def test_each_frame_of_an_mp4_shows_its_frame_of_the_clip_at_the_chosen_rate(session):
    motion, export = motion_with_clip(session)
    tab = Tab(session, lambda: motion.frame)  # the 240-frame example: grey level = the frame shown
    export.recording_fps.value = 24.0
    press(session, export.record)
    settle(session)
    frames, stream = decoded(tab.downloads["clip.mp4"])
    expected = source_frames(240, 120.0, 24.0)  # 2 s at 24 fps: every fifth frame
    assert len(frames) == len(expected) == 48 and stream.average_rate == 24
    assert frames[0].shape == (480, 640, 3)
    shades = np.array([f.mean() for f in frames])
    assert np.abs(shades - expected).max() < 3, "a recorded frame shows another frame of the clip"
    assert {r["size"] for r in tab.renders} == {(640, 480)} and {r["format"] for r in tab.renders} == {"jpeg"}
    assert all(np.array_equal(r["position"], tab.renders[0]["position"]) for r in tab.renders), "the camera moved"


def test_a_gif_of_the_generation_trajectory_plays_from_noise_to_the_samples(session):
    session.activate("generate")
    generate = session.panels["generate"]
    generate.steps.value = 40
    press(session, generate.run)
    settle(session)
    assert generate.trajectory is not None
    session.activate("export")
    export = session.panels["export"]
    tab = Tab(session, lambda: round(200 * generate.t_shown))  # grey level = the diffusion time drawn
    export.recording_format.value = "gif"
    export.recording_fps.value = 5.0
    export.image_size.value = "1080x1080"
    press(session, export.record)
    settle(session)
    gif = Image.open(io.BytesIO(tab.downloads["trajectory.gif"]))
    assert gif.size == (1080, 1080) and gif.n_frames == 20, (gif.size, gif.n_frames)  # 4 s at 5 fps
    assert gif.info["duration"] == 200
    shades = []
    for k in range(gif.n_frames):
        gif.seek(k)
        shades.append(np.asarray(gif.convert("L")).mean())
    t = generate.t[source_frames(len(generate.t), len(generate.t) / 4.0, 5.0)]
    assert np.abs(np.array(shades) - np.rint(200 * t)).max() <= 1, (shades, t)
    assert shades[0] > 150 and shades[-1] < 10, "not noise (t near 1) to samples (t near 0)"


def test_the_offscreen_renderer_records_the_clip_without_the_browser(session):
    """Renderer offscreen: the clip drawn on the server's CPU, as ``dposer render`` draws it."""
    from prior.render import render_frames

    motion, export = motion_with_clip(session)
    tab = Tab(session, lambda: 0)
    export.renderer.value = "offscreen"
    export.recording_fps.value = 10.0
    press(session, export.record)
    settle(session)
    assert tab.renders == [], "the browser was asked to render"
    frames, stream = decoded(tab.downloads["clip.mp4"])
    assert len(frames) == 20 and frames[0].shape == (480, 640, 3) and stream.average_rate == 10
    expected = list(render_frames(session.app.resources.body, motion.clip, width=640, height=480, fps=10.0))
    for got, want in zip(frames, expected):  # H.264 at crf 18: a few levels off
        assert np.abs(got.astype(int) - want).mean() < 3
    assert np.abs(frames[0].astype(int) - frames[-1]).mean() > 0.5, "the body did not move"


def test_the_offscreen_renderer_records_the_trajectory_and_stops_at_cancel(session):
    session.activate("generate")
    generate = session.panels["generate"]
    generate.steps.value = 40
    press(session, generate.run)
    settle(session)
    session.activate("export")
    export = session.panels["export"]
    tab = Tab(session, lambda: 0)
    export.renderer.value = "offscreen"
    export.recording_format.value = "gif"
    export.recording_fps.value = 5.0
    press(session, export.record)
    settle(session)
    assert Image.open(io.BytesIO(tab.downloads["trajectory.gif"])).n_frames == 20 and tab.renders == []
    export.recording_fps.value = 60.0
    export.save_file("trajectory.gif", session.client)
    wait_until(lambda: (job := session.app.worker.job_of(session)) is not None and job.progress is not None
               and job.progress.step >= 3, timeout=60, what="the offscreen recording under way")
    session.cancel_job()
    settle(session)
    assert list(session.app.export_dir.iterdir()) == [], "a cancelled recording left a file"
    assert session.notifications[-1][0] == "Recording cancelled", session.notifications[-1]


def test_a_screenshot_is_a_png_of_the_view_beside_the_panel(session):
    motion, export = motion_with_clip(session)
    tab = Tab(session, lambda: 7)
    export.image_size.value = "1280x720"
    press(session, export.screenshot)
    settle(session)
    image = Image.open(io.BytesIO(tab.downloads["screenshot.png"]))
    assert image.format == "PNG" and image.size == (1280, 720) and image.mode == "RGBA"
    render = tab.renders[0]
    camera = session.client.camera
    # Moved left (camera's +x is world +x here) by the panel's share of the view at the look-at point.
    view_w = 2 * np.linalg.norm(camera.position - camera.look_at) * math.tan(camera.fov / 2) * camera.aspect
    assert np.allclose(render["position"], camera.position - [0.5 * PANEL_FRACTION * view_w, 0, 0])
    assert render["format"] == "png" and render["fov"] == pytest.approx(camera.fov)


def test_a_narrow_image_widens_the_view_to_hold_what_the_user_sees():
    from types import SimpleNamespace

    camera = SimpleNamespace(wxyz=np.array([0.0, 1.0, 0.0, 0.0]), position=np.array([0.0, 1.0, 5.0]),
                             look_at=np.array([0.0, 1.0, 0.0]), fov=math.radians(50), aspect=1.6)
    seen = 1.6 * (1 - PANEL_FRACTION)
    square = free_view(camera, 1.0)
    assert math.tan(square.fov / 2) == pytest.approx(math.tan(math.radians(25)) * seen)
    assert free_view(camera, 16 / 9).fov == pytest.approx(camera.fov), "a wider image keeps the user's field of view"


def test_a_cancelled_recording_saves_nothing_and_says_so(session):
    motion, export = motion_with_clip(session)
    tab = Tab(session, lambda: motion.frame, delay_s=0.05)
    export.recording_fps.value = 60.0
    export.save_file("clip.mp4", session.client)
    wait_until(lambda: len(tab.renders) >= 5, timeout=60, what="the recording under way")
    session.cancel_job()
    settle(session)
    assert len(tab.renders) < 120, "the recording ran on after Cancel"
    assert list(session.app.export_dir.iterdir()) == [], "a cancelled recording left a file"
    assert any(title == "Recording cancelled" for title, _ in session.notifications), session.notifications


def test_forged_sizes_and_formats_are_refused_and_nothing_records_without_a_timeline(session):
    motion, export = motion_with_clip(session)
    tab = Tab(session, lambda: 0)
    send_as_the_browser(session, export.image_size, value="99999x99999")
    press(session, export.record)
    settle(session)
    assert "image size '99999x99999' is not one of" in session.notifications[-1][1]
    export.image_size.value = "640x480"
    send_as_the_browser(session, export.recording_format, value="avi")
    press(session, export.record)
    settle(session)
    assert "is not one of mp4, gif" in session.notifications[-1][1] and export.recording_format.value == "mp4"
    send_as_the_browser(session, export.renderer, value="gpu")
    press(session, export.record)
    settle(session)
    assert "is not one of browser, offscreen" in session.notifications[-1][1] and export.renderer.value == "browser"
    send_as_the_browser(session, export.recording_fps, value=1e6)
    press(session, export.record)
    settle(session)
    frames, stream = decoded(tab.downloads["clip.mp4"])
    assert stream.average_rate == 60 and len(frames) == 120, "fps not kept within the control's 1..60"
    session.activate("edit")
    session.activate("export")
    press(session, export.record)
    settle(session)
    assert session.notifications[-1][1].startswith("nothing to record")
    assert "Record plays:** nothing to record" in export.what.content


def test_a_tab_that_stops_drawing_ends_the_recording_with_a_message(session, monkeypatch):
    motion, export = motion_with_clip(session)
    Tab(session, lambda: 0)
    stalled = threading.Event()
    monkeypatch.setattr(session.pacer, "draw_and_wait", lambda *a, **k: stalled.is_set() or False)
    press(session, export.record)
    settle(session)
    assert "did not draw the next frame in time" in session.notifications[-1][1]


# -- the real browser renders ---------------------------------------------------------------------
@pytest.mark.browser
def test_the_page_records_the_clip_and_takes_a_screenshot(viewer_tab, tmp_path):
    page, session = viewer_tab
    open_panel(page, "Motion")
    click(page.get_by_role("button", name="Load example clip"))
    wait_until(lambda: session.panels["motion"].clip is not None, timeout=120, what="the clip")
    open_panel(page, "Export")
    page.get_by_text("the clip, 240 frames at 120 fps").wait_for(timeout=30_000)
    session.panels["export"].recording_fps.value = 5.0  # 10 frames: the browser's software WebGL is slow here
    with page.expect_download(timeout=300_000) as download:
        click(page.get_by_role("button", name="Record"))
    path = tmp_path / download.value.suggested_filename
    download.value.save_as(path)
    frames, stream = decoded(path.read_bytes())
    assert path.name == "clip.mp4" and len(frames) == 10 and frames[0].shape == (480, 640, 3)
    assert stream.average_rate == 5
    Image.fromarray(frames[0]).save(tmp_path / "first.png")
    warm = [np.mean(f[..., 0].astype(int) - f[..., 2] > 30) for f in frames]  # the tan body; the ground is grey
    assert min(warm) > 0.02, f"the body is not in every frame: {warm}"
    assert np.abs(frames[0].astype(int) - frames[-1].astype(int)).mean() > 1, "the body did not move"
    with page.expect_download(timeout=60_000) as download:
        click(page.get_by_role("button", name="Screenshot (.png)"))
    shot = Image.open(io.BytesIO(download.value.path().read_bytes()))
    assert shot.format == "PNG" and shot.size == (640, 480)
