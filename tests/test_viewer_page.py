"""The page beyond viser's widgets (viewer.page): the panel bar on one row with icons, and the
keyboard shortcuts, driven with real key presses in headless Chromium."""

from __future__ import annotations

import numpy as np
import pytest

from browser import click, gui_row, open_panel, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_the_panel_bar_is_one_row_of_icons_with_short_labels(viewer_tab):
    from viewer.panels import PANELS

    page, session = viewer_tab
    bar = gui_row(page, "Panel")
    buttons = bar.get_by_role("button")
    assert buttons.count() == len(PANELS)
    boxes = [buttons.nth(k).bounding_box() for k in range(len(PANELS))]
    assert max(b["y"] for b in boxes) - min(b["y"] for b in boxes) < 1, f"the bar wraps: {boxes}"
    panel_box = page.locator("div.mantine-Paper-root").filter(has=bar).first.bounding_box()
    assert boxes[-1]["x"] + boxes[-1]["width"] <= panel_box["x"] + panel_box["width"], "the bar spills out"
    icons = buttons.evaluate_all(
        "bs => bs.map(b => getComputedStyle(b.querySelector('.mantine-Button-label'), '::before').maskImage)")
    assert all(icon.startswith("url(") for icon in icons), icons
    assert not bar.get_by_text("Panel", exact=True).is_visible(), "no label column"
    # Each button opens its panel, and the open one is the filled one.
    open_panel(page, "Motion")
    assert session.active_panel.name == "motion"
    filled = buttons.evaluate_all("bs => bs.map(b => getComputedStyle(b).backgroundColor)")
    motion = [cls.name for cls in PANELS].index("motion")
    assert len({c for k, c in enumerate(filled) if k != motion}) == 1 and filled[motion] not in filled[:motion]


def test_keyboard_shortcuts_undo_redo_play_and_step(viewer_tab):
    page, session = viewer_tab
    open_panel(page, "Edit")
    bent = np.zeros(63, np.float32)
    bent[3 * 17 + 1] = -1.0  # the left elbow
    session.set_pose(bent, label="bend the elbow")
    undo = page.get_by_role("button", name="Undo")
    wait_until(lambda: undo.is_enabled(), what="Undo enabled in the page")
    page.evaluate("() => document.activeElement && document.activeElement.blur()")  # not typing in a box
    redo = page.get_by_role("button", name="Redo")
    page.keyboard.press("Control+z")
    wait_until(lambda: not session.pose.any(), what="Ctrl+Z to undo the bend")
    wait_until(lambda: redo.is_enabled(), what="Redo enabled in the page")  # the keys press enabled buttons only
    page.keyboard.press("Control+Shift+z")
    wait_until(lambda: np.allclose(session.pose, bent), what="Ctrl+Shift+Z to redo it")
    wait_until(lambda: undo.is_enabled(), what="Undo enabled in the page")
    page.keyboard.press("Control+z")
    wait_until(lambda: not session.pose.any(), what="undone again")
    wait_until(lambda: redo.is_enabled(), what="Redo enabled in the page")
    page.keyboard.press("Control+y")
    wait_until(lambda: np.allclose(session.pose, bent), what="Ctrl+Y to redo it")

    motion = session.panels["motion"]
    open_panel(page, "Motion")
    click(page.get_by_role("button", name="Load example clip"))
    wait_until(lambda: motion.clip is not None and not motion.timeline.disabled, timeout=60, what="the example clip")
    page.get_by_role("button", name="Play").wait_for(timeout=30_000)
    page.evaluate("() => document.activeElement && document.activeElement.blur()")
    page.keyboard.press("Space")
    wait_until(lambda: motion.player.playing, what="Space to play")
    page.keyboard.press("Space")
    wait_until(lambda: not motion.player.playing, what="Space to pause")
    shown = gui_row(page, "Frame").locator("input").first
    page.wait_for_timeout(500)  # the last frame the server sent has reached the page
    frame = int(shown.input_value())  # the slider steps from the value the page shows
    page.keyboard.press("ArrowRight")
    wait_until(lambda: int(motion.timeline.value) == frame + 1, what="Right to step a frame")
    wait_until(lambda: shown.input_value() == str(frame + 1), what="the page showing it")
    page.keyboard.press("ArrowLeft")
    wait_until(lambda: int(motion.timeline.value) == frame, what="Left to step back")
    # A space typed into a text box is text, not Play.
    box = page.locator("input.mantine-TextInput-input:visible").first  # the clip's Path box
    box.click()
    box.press("Space")
    page.wait_for_timeout(500)
    assert not motion.player.playing
