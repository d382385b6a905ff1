"""Reloading the page keeps the tab's work (viewer.app keeps it under the browser's cookie), and
another browser does not get it. In headless Chromium."""

from __future__ import annotations

import numpy as np
import pytest

from browser import VIEWPORT, click, open_panel, wait_until
from conftest import open_tab

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def reload_tab(page, app, old):
    """Reload ``page``; its new session, once framed."""
    page.reload()
    session = wait_until(lambda: next((s for s in app.all_sessions() if s is not old and s.client.client_id
                                       > old.client.client_id), None), timeout=60, what="the reloaded tab's session")
    page.get_by_role("button", name="Frame view").wait_for(timeout=60_000)
    return session


def test_a_reload_keeps_the_pose_history_samples_and_clip(chromium, viewer_app):
    context, page, session = open_tab(chromium, viewer_app)
    try:
        bent = np.zeros(63, np.float32)
        bent[3 * 17 + 1] = -1.0
        session.set_pose(bent, label="bend the elbow")
        gen = session.panels["generate"]
        open_panel(page, "Generate")
        click(page.get_by_role("button", name="Generate", exact=True))
        wait_until(lambda: "generate_done" in session.timings, timeout=120, what="the samples")
        samples = gen.trajectory.copy()
        motion = session.panels["motion"]
        open_panel(page, "Motion")
        click(page.get_by_role("button", name="Load example clip"))
        wait_until(lambda: motion.clip is not None, timeout=60, what="the example clip")
        clip = motion.clip.pose_body.copy()

        again = reload_tab(page, viewer_app, session)
        wait_until(lambda: again.panels["motion"].clip is not None, timeout=60, what="the clip back")
        assert np.array_equal(again.panels["motion"].clip.pose_body, clip)
        assert again.active_panel.name == "motion"
        assert np.allclose(again.pose, bent) and again.history.can_undo
        again.undo()
        wait_until(lambda: not again.pose.any(), what="undo after the reload")
        regen = again.panels["generate"]
        wait_until(lambda: regen.trajectory is not None, timeout=60, what="the samples back")
        assert np.array_equal(regen.trajectory, samples)
        page.get_by_text("Work restored").first.wait_for(timeout=30_000)

        # Another browser (no cookie of this one) starts fresh.
        other = chromium.new_context(viewport=VIEWPORT)
        try:
            known = {id(s) for s in viewer_app.all_sessions()}
            other.new_page().goto(viewer_app.url)
            fresh = wait_until(lambda: next((s for s in viewer_app.all_sessions() if id(s) not in known), None),
                               timeout=60, what="the other browser's session")
            assert fresh.panels["motion"].clip is None and not fresh.pose.any() and not fresh.history.can_undo
        finally:
            other.close()
    finally:
        context.close()
