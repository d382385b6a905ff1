"""Driving dposer-view in headless Chromium: launching, waiting on state, projecting, pixels."""

from __future__ import annotations

import io
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-quic",
]
VIEWPORT = {"width": 1280, "height": 800}
BODY_RGB = (196, 160, 120)  # viewer.body_handle.BODY_COLOR
BODY_BOX = (380, 80, 900, 700)  # where a standing, framed body is drawn in a 1280x800 tab


def chromium_path() -> str:
    """The Debian chromium binary (CI installs it; see .ci/run)."""
    path = CHROMIUM if os.path.exists(CHROMIUM) else shutil.which("chromium")
    if path is None:
        raise RuntimeError("chromium is not installed: apt-get install -y chromium")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(
    predicate: Callable[[], Any], *, timeout: float = 30.0, what: str | Callable[[], str] = "condition"
) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail with ``what`` (text, or a callable
    giving the state at failure) after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what() if callable(what) else what}")
        time.sleep(0.05)


class ViewerProcess:
    """The installed ``dposer-view`` console script running as a subprocess on a free port."""

    def __init__(self, *args: str, exe: str | Path | None = None, cwd: str | Path | None = None) -> None:
        exe = exe or shutil.which("dposer-view")
        cmd = [str(exe)] if exe else [sys.executable, "-m", "viewer.app"]
        self.port = free_port()
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            [*cmd, "--port", str(self.port), *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            cwd=cwd,
        )
        self.output: list[str] = []
        self.url = self._wait_for_url()

    def _wait_for_url(self, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                raise AssertionError("dposer-view exited before printing its URL:\n" + "".join(self.output))
            self.output.append(line)
            found = re.search(r"dposer-view running at (http://[\w.\-\[\]:]+:\d+(?:/\?token=[\w\-]+)?)", line)
            if found:
                self.url_printed = time.perf_counter()
                return found.group(1)
        raise AssertionError("dposer-view printed no URL:\n" + "".join(self.output))

    def log(self) -> str:
        """Everything the process printed so far (after it stopped: all of it)."""
        if self.proc.poll() is not None and self.proc.stdout is not None:
            self.output.append(self.proc.stdout.read())
        return "".join(self.output)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def project(camera: Any, point: np.ndarray, size: tuple[int, int]) -> tuple[float, float]:
    """Pixel coordinates of a world ``point`` as the client's ``camera`` sees it on a canvas of
    ``size = (width, height)`` (pinhole, vertical field of view ``camera.fov``)."""
    pos, look, up = np.asarray(camera.position), np.asarray(camera.look_at), np.asarray(camera.up_direction)
    forward = (look - pos) / np.linalg.norm(look - pos)
    right = np.cross(forward, up)
    right /= np.linalg.norm(right)
    true_up = np.cross(right, forward)
    d = np.asarray(point) - pos
    x, y, z = d @ right, d @ true_up, d @ forward
    tan = math.tan(0.5 * float(camera.fov))
    width, height = size
    ndc_x, ndc_y = x / (z * tan * width / height), y / (z * tan)
    return (ndc_x + 1) / 2 * width, (1 - ndc_y) / 2 * height


def screenshot_array(page: Any) -> np.ndarray:
    """The page as an ``(H, W, 3)`` uint8 array."""
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(page.screenshot())).convert("RGB"))


def hue_of(color: tuple[int, int, int]) -> float:
    """Hue in degrees (0..360) of an RGB colour."""
    import colorsys

    return 360.0 * colorsys.rgb_to_hsv(*(c / 255.0 for c in color))[0]


def colour_fraction(image: np.ndarray, color: tuple[int, int, int], *, hue_tol: float = 9.0, min_sat: float = 0.12,
                    box: tuple[int, int, int, int] | None = None) -> float:
    """Fraction of pixels (inside ``box = (x0, y0, x1, y1)``) whose hue is within ``hue_tol``
    degrees of ``color``'s and whose saturation is at least ``min_sat``: lighting changes a
    surface's brightness and saturation much more than its hue; the grey grid and the white
    background have no saturation."""
    if box is not None:
        x0, y0, x1, y1 = box
        image = image[y0:y1, x0:x1]
    px = image.reshape(-1, 3).astype(np.float64) / 255.0
    hi, lo = px.max(1), px.min(1)
    sat = np.where(hi > 0, (hi - lo) / np.maximum(hi, 1e-9), 0.0)
    r, g, b = px.T
    delta = np.maximum(hi - lo, 1e-9)
    hue = np.where(hi == r, ((g - b) / delta) % 6, np.where(hi == g, (b - r) / delta + 2, (r - g) / delta + 4)) * 60.0
    dist = np.abs((hue - hue_of(color) + 180.0) % 360.0 - 180.0)
    return float(((dist < hue_tol) & (sat >= min_sat)).mean())


def upload_file(page: Any, button_label: str, path: str | Path) -> None:
    """Click a viser upload button and hand it ``path`` through the file chooser."""
    with page.expect_file_chooser() as chooser:
        click(page.get_by_role("button", name=button_label))
    chooser.value.set_files(str(path))


def gui_row(page: Any, label: str) -> Any:
    """The control-panel row whose label is ``label`` (the innermost row holding it)."""
    return page.locator("div.mantine-Flex-root", has=page.get_by_text(label, exact=True)).last


def set_gui_number(page: Any, label: str, value: float) -> None:
    """Type ``value`` into the number box of the slider or number input labelled ``label``."""
    box = gui_row(page, label).locator("input.mantine-NumberInput-input").first
    box.fill(str(value))
    box.press("Enter")


def click(locator: Any) -> None:
    """Click a control once it is visible and enabled in the page.

    Playwright's full actionability wait (the element must stay still over consecutive animation
    frames and be the hit target) takes 10-20 s per click here while the page renders WebGL in
    software on a busy 2-core machine; visibility is what matters for these controls. A
    force-click on a button the server has enabled but the page has not yet is silently lost, so
    the enabled state is waited for explicitly.
    """
    try:
        locator.first.wait_for(state="visible", timeout=30_000)
        wait_until(lambda: locator.first.is_enabled(), what=f"{locator} enabled in the page")
        locator.first.click(force=True, timeout=30_000)
    except Exception as exc:
        errors = getattr(locator.page, "errors", [])
        raise AssertionError(f"cannot click {locator}: {exc}; page errors: {errors[:3]}") from None


def open_panel(page: Any, label: str) -> None:
    """Click panel ``label`` (its full name) in the panel bar; wait until the page shows it open."""
    from viewer.panels import PANELS

    index = next(k for k, cls in enumerate(PANELS) if cls.label == label)
    bar = gui_row(page, "Panel")
    click(bar.get_by_role("button", name=PANELS[index].short_label or label, exact=True))
    page.locator(f'style[data-active-panel="{index}"]').wait_for(state="attached", timeout=30_000)


def save_shot(page: Any, name: str) -> None:
    """Keep a screenshot of ``page`` to look at by hand, as ``$DPOSER_SHOTS/name`` (not kept when unset)."""
    folder = os.environ.get("DPOSER_SHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / name), timeout=120_000)
