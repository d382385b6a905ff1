"""Shared pytest fixtures. Real data lives in ``shared/`` beside the repository."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared"
DATA = SHARED / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``shared/data``: real AMASS-derived poses and clips (see its README)."""
    if not DATA.is_dir():
        pytest.fail(f"real test data not found at {DATA}")
    return DATA


# -- dposer-view in a real browser (tests/test_viewer_e2e.py) ------------------------------------
CONFORMANCE_CKPT = SHARED / "conformance" / "dposer_official_format_random.pth"


@pytest.fixture(scope="session")
def chromium():
    """Headless Debian Chromium driven by Playwright (one browser for the whole run)."""
    from playwright.sync_api import sync_playwright

    from browser import CHROMIUM_ARGS, chromium_path

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def viewer_app(tmp_path_factory):
    """The viewer app in this process on a free port (its per-tab state can be inspected); its
    export folder is a fresh temporary one."""
    from viewer.app import ViewerApp

    if not CONFORMANCE_CKPT.is_file():
        pytest.fail(f"conformance checkpoint not found at {CONFORMANCE_CKPT}")
    app = ViewerApp(ckpt=CONFORMANCE_CKPT, port=0, export_dir=tmp_path_factory.mktemp("exports"),
                    read_dir=tmp_path_factory.getbasetemp(), verbose=False)  # tests type paths of their tmp files
    yield app
    app.stop()


def open_tab(chromium, app):
    """``(context, page, session)``: a new browser tab on ``app`` and its server-side session."""
    from browser import VIEWPORT, wait_until

    known = {id(s) for s in app.all_sessions()}
    context = chromium.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.errors = []  # uncaught exceptions in the viewer's JavaScript, for failure messages
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))
    page.goto(app.url)
    session = wait_until(lambda: next((s for s in app.all_sessions() if id(s) not in known), None), timeout=60,
                         what="the tab's session")
    wait_until(lambda: app.resources.prior is not None, timeout=60, what="the prior to load")
    page.get_by_role("button", name="Frame view").wait_for(timeout=60_000)
    wait_until(lambda: "framed" in session.timings, timeout=60, what="the first framing of the camera")
    return context, page, session


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """The viewer on the shipped prior with no tab connected, for tabs without a browser
    (``tests/fake_tab.py``). Not a browser test's app: fake tabs draw into the server's scene,
    which every real tab would see."""
    from viewer.app import ViewerApp

    from browser import wait_until

    app = ViewerApp(port=0, verbose=False, export_dir=tmp_path_factory.mktemp("exports"))
    wait_until(lambda: app.resources.prior is not None, timeout=60, what="the prior to load")
    yield app
    app.stop()


@pytest.fixture
def session(app):
    """A fresh tab of ``app`` without a browser (:func:`fake_tab.fake_session`)."""
    from fake_tab import fake_session

    session = fake_session(app)
    yield session
    session.close()


@pytest.fixture
def viewer_tab(chromium, viewer_app):
    """``(page, session)``: a fresh browser tab on ``viewer_app`` (its own session: tests do not
    depend on each other's state) and its server-side session."""
    context, page, session = open_tab(chromium, viewer_app)
    yield page, session
    context.close()
