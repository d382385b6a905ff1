"""Jobs as the user sees them in the browser: each tab's progress bar, time left and Cancel, and
one tab's long job not holding up another tab (see viewer.worker's lanes)."""

from __future__ import annotations

import re

import pytest

from browser import click, open_panel, save_shot, set_gui_number, wait_until
from conftest import open_tab

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def start_long_generation(page, session) -> None:
    """16 samples x 1000 steps through the page: seconds of work on this CPU."""
    panel = session.panels["generate"]
    open_panel(page, "Generate")
    set_gui_number(page, "Samples", 16)
    set_gui_number(page, "Steps", 1000)
    wait_until(lambda: panel.num.value == 16 and panel.steps.value == 1000, what="the generation settings")
    click(page.get_by_role("button", name="Generate", exact=True))


def test_a_tab_sees_its_own_job_and_its_completion_runs_during_another_tabs_generation(chromium, viewer_app):
    context_a, page_a, tab_a = open_tab(chromium, viewer_app)
    context_b, page_b, tab_b = open_tab(chromium, viewer_app)
    try:
        complete = tab_b.panels["complete"]
        open_panel(page_b, "Complete")
        click(page_b.get_by_text("left arm", exact=True))
        wait_until(lambda: tab_b.mask == {12, 15, 17, 19}, what="B's left arm masked")
        page_b.get_by_role("button", name="Complete", exact=True).wait_for(timeout=30_000)
        start_long_generation(page_a, tab_a)
        # Tab A: a progress bar, a Cancel button, and the status line with its steps and time left.
        wait_until(lambda: tab_a.job_bar.visible and tab_a.job_bar.value > 0, timeout=60, what="A's progress bar")
        wait_until(lambda: re.search(r"\*\*job\*\* generate \d+/1000, (\d+ min )?\d+ s left", tab_a.status.content),
                   what=lambda: f"A's steps and time left in its status line: {tab_a.status.content}")
        wait_until(lambda: tab_a.job_cancel.visible and tab_a.job_cancel.label == "Cancel generate",
                   what="A's Cancel button")
        # Tab B is idle and says so: the other tab's job is not its job.
        assert "**job** idle" in tab_b.status.content and not tab_b.job_bar.visible
        # B's completion runs while A's generation goes on, between its steps. (Started at once and as
        # its button does: waiting on the page of this software-rendered browser, or a click in its
        # second tab, can take longer than the whole generation. The page's Cancel button is the
        # next test's.)
        complete.start()
        wait_until(lambda: "complete_first_update" in tab_b.timings, timeout=120, what="B's first update")
        ta, tb = dict(tab_a.timings), dict(tab_b.timings)
        events = ", ".join(f"{k} {t - ta['generate_clicked']:+.2f} s" for k, t in
                           sorted({**ta, **tb}.items(), key=lambda kv: kv[1]) if t >= ta["generate_clicked"])
        assert tb["complete_clicked"] < ta.get("generate_done", float("inf")), f"clicked too late to tell: {events}"
        assert tb["complete_first_update"] < ta.get("generate_done", float("inf")), (
            f"B's completion waited for A's generation: {events}")
        wait_until(lambda: complete.done, timeout=120, what="B's completion")
        wait_until(lambda: not tab_b.job_cancel.visible, what="B's Cancel gone once its job is done")
    finally:
        context_a.close()
        context_b.close()


def test_cancel_stops_the_tabs_job_and_says_so(viewer_tab):
    """The bar and Cancel of any job that streams steps (one that never ends by itself, so the
    click cannot come too late: the real tasks stop at their cancel flag the same way)."""
    import time

    import torch

    from prior.errors import Cancelled
    from prior.progress import Progress

    page, session = viewer_tab

    def endless(ctx):
        for step in range(1, 10**6):
            if ctx.cancel.is_set():
                raise Cancelled("cancelled")
            time.sleep(0.05)
            ctx.report(Progress("denoise", step, 10**6, 0.5, torch.zeros(1, 63)))

    session.submit("denoise", endless, needs_prior=False)
    wait_until(lambda: session.job_bar.visible, timeout=60, what="the progress bar")
    cancel = page.get_by_role("button", name="Cancel denoise")
    cancel.wait_for(timeout=30_000)
    save_shot(page, "job_progress.png")
    click(cancel)
    wait_until(lambda: session.app.worker.job_of(session) is None, timeout=30, what="the job to stop")
    wait_until(lambda: not session.job_cancel.visible and "**job** idle" in session.status.content,
               what="the bar and Cancel gone")
    assert any(title == "Denoise cancelled" for title, _ in session.notifications)
    page.get_by_text("Denoise cancelled").first.wait_for(timeout=30_000)


def test_a_model_loaded_in_one_tab_is_announced_in_the_others(chromium, viewer_app):
    context_a, page_a, tab_a = open_tab(chromium, viewer_app)
    context_b, page_b, tab_b = open_tab(chromium, viewer_app)
    try:
        viewer_app.switch_body(None, requester=tab_a)  # what the Model panel's button does
        wait_until(lambda: any(t == "Body model changed in another tab" for t, _ in tab_b.notifications),
                   timeout=60, what="B told of A's body model")
        assert any(t == "Body model loaded" for t, _ in tab_a.notifications)
        wait_until(lambda: "(loaded in another tab)" in tab_b.status.content, what="B's status line")
        assert "(loaded in another tab)" not in tab_a.status.content
        page_b.get_by_text("Body model changed in another tab").first.wait_for(timeout=30_000)
    finally:
        context_a.close()
        context_b.close()
