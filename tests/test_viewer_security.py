"""File names are data: a checkpoint or clip named like HTML shows as text in every tab and runs
nothing (viser renders markdown with raw HTML allowed). In headless Chromium."""

from __future__ import annotations

import numpy as np
import pytest

from browser import open_panel, upload_file, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# What an attacker names a file (no "/" can be in a name; the entity stands for it in srcdoc).
NAME = '<iframe srcdoc="<script>parent.__pwned=1<&#47;script>"> [link](javascript:parent.__pwned=2)'
SHOWN = '<iframe srcdoc="<script>'  # the start of the name, as the page must show it


def assert_nothing_ran(page) -> None:
    assert page.evaluate("() => window.__pwned === undefined"), "script from a file name ran in the tab"
    assert page.locator("iframe").count() == 0, "a file name became an <iframe> element"
    assert page.locator("a[href^='javascript']").count() == 0, "a file name became a link"


def shown_as_text(page) -> None:
    """The name reaches the page (as text, or as markup that ran), then nothing ran."""
    wait_until(lambda: page.get_by_text(SHOWN, exact=False).count() > 0
               or not page.evaluate("() => window.__pwned === undefined")
               or page.locator("iframe").count() > 0, timeout=30, what="the name in the page")
    assert_nothing_ran(page)
    assert page.get_by_text(SHOWN, exact=False).count() > 0, "the name is not shown as text"


def test_a_checkpoint_named_like_html_is_shown_as_text(viewer_tab, chromium, viewer_app, tmp_path):
    from prior.checkpoint import save_prior

    from conftest import open_tab
    from prior_helpers import small_random_prior

    page, session = viewer_tab
    path = save_prior(small_random_prior(), tmp_path / f"{NAME}.safetensors")
    open_panel(page, "Model")
    upload_file(page, "Upload checkpoint", path)
    wait_until(lambda: "srcdoc" in session.app.resources.prior_label and "srcdoc" in session.status.content,
               timeout=60, what="the uploaded prior in the status line")
    shown_as_text(page)
    context, later, _ = open_tab(chromium, viewer_app)  # a tab opened later shows the same line
    try:
        shown_as_text(later)
    finally:
        context.close()


def test_a_clip_named_like_html_is_shown_as_text(viewer_tab, tmp_path):
    from prior.files import asset_path

    page, session = viewer_tab
    motion = session.panels["motion"]
    with np.load(asset_path("gesture_clip.npz"), allow_pickle=False) as data:
        path = tmp_path / f"{NAME}.npz"
        np.savez(path, pose_body=data["pose_body"][:20], root_orient=data["root_orient"][:20])
    open_panel(page, "Motion")
    upload_file(page, "Upload clip", path)
    wait_until(lambda: motion.clip is not None and "srcdoc" in motion.info.content, timeout=60, what="the clip")
    shown_as_text(page)


def send_as_the_browser(session, handle, **updates) -> None:
    """What viser runs for a GuiUpdateMessage from this tab's browser (any values a page script
    could put in it), on the server's event loop."""
    import asyncio

    from viser._messages import GuiUpdateMessage

    loop = session.app.server._websock_server._background_event_loop
    message = GuiUpdateMessage(handle._impl.uuid, updates)
    asyncio.run_coroutine_threadsafe(session.gui._handle_gui_updates(session.client.client_id, message),
                                     loop).result(timeout=10)


def test_values_out_of_range_from_the_browser_are_clamped(viewer_tab):
    """Samples = 3000 (the slider stops at 16) once took the server to 9 GB: the panel reads every
    value that sizes work within its own bounds, whatever the message says."""
    page, session = viewer_tab
    gen = session.panels["generate"]
    open_panel(page, "Generate")
    send_as_the_browser(session, gen.num, value=3000)
    send_as_the_browser(session, gen.steps, value=2)
    send_as_the_browser(session, gen.seed, value=1e30)
    wait_until(lambda: gen.num.value == 3000 and gen.steps.value == 2, what="the forged values on the server")
    from browser import click

    click(page.get_by_role("button", name="Generate", exact=True))
    wait_until(lambda: "generate_done" in session.timings, timeout=120, what="generation")
    assert gen.trajectory.shape == (10, 16, 63), "16 samples and 10 steps at most"


def test_a_page_from_another_origin_cannot_drive_the_viewer(chromium, viewer_app, tmp_path):
    """A page served from elsewhere (here: another port of this machine) opens the viewer's
    websocket as viser's own client does: it is refused, and no session starts. So is a page
    loaded under a foreign host name (DNS rebinding). The viewer's own page still connects."""
    import functools
    import http.server
    import threading
    import urllib.error
    import urllib.request

    import viser

    from browser import VIEWPORT

    port = viewer_app.port
    (tmp_path / "index.html").write_text(f"""<script>
      window.result = "pending";
      const ws = new WebSocket("ws://127.0.0.1:{port}", ["viser-v{viser.__version__}"]);
      ws.onopen = () => {{ window.result = "open"; }};
      ws.onclose = () => {{ if (window.result === "pending") window.result = "refused"; }};
    </script>""")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    attacker = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=attacker.serve_forever, daemon=True).start()
    before = {id(s) for s in viewer_app.all_sessions()}
    page = chromium.new_page(viewport=VIEWPORT)
    try:
        page.goto(f"http://127.0.0.1:{attacker.server_address[1]}/index.html")
        wait_until(lambda: page.evaluate("() => window.result") != "pending", timeout=30, what="the handshake")
        assert page.evaluate("() => window.result") == "refused", "another site's page got a viewer session"
        assert {id(s) for s in viewer_app.all_sessions()} <= before, "a session started for that page"
    finally:
        page.close()
        attacker.shutdown()
    rebinding = urllib.request.Request(f"http://127.0.0.1:{port}/", headers={"Host": f"attacker.example:{port}"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(rebinding, timeout=10)
    assert refused.value.code == 403
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as own:
        assert own.status == 200
