"""File names are data: a checkpoint or clip named like HTML shows as text in every tab and runs
nothing (viser renders markdown with raw HTML allowed). In headless Chromium."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from browser import open_panel, set_gui_number, upload_file, wait_until

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
    with urllib.request.urlopen(viewer_app.url, timeout=10) as own:
        assert own.status == 200


def test_only_the_printed_address_with_its_token_opens_the_viewer(chromium):
    """The installed `dposer-view` on all addresses: a page without the token (or with a wrong
    one) gets 403 and no session; the printed address loads the viewer and its websocket (which
    carries the token by the cookie that first load set)."""
    import urllib.error
    import urllib.request

    from browser import VIEWPORT, ViewerProcess

    viewer = ViewerProcess("--host", "0.0.0.0")
    try:
        base, _, token = viewer.url.partition("/?token=")
        assert len(token) >= 20, viewer.url
        for url in (base + "/", f"{base}/?token={token[:-1]}x", base + "/index.html"):
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(url, timeout=10)
            assert refused.value.code == 403, url
        page = chromium.new_page(viewport=VIEWPORT)
        try:
            page.goto(base + "/")
            page.get_by_text("needs its access token").wait_for(timeout=30_000)
            page.goto(viewer.url)
            page.get_by_role("button", name="Frame view").wait_for(timeout=60_000)  # the websocket got in
        finally:
            page.close()
    finally:
        viewer.stop()
    assert "anyone given the address above can use the viewer" in viewer.log()


def test_an_oversized_upload_is_refused_as_it_starts(chromium, viewer_app, tmp_path, monkeypatch):
    """viser buffers a whole upload before the button hears of it (a 600 MB upload peaked at
    1.6 GB): the declared size is checked when the transfer starts, so none of it is kept."""
    import viewer.panels.motion

    from conftest import open_tab

    monkeypatch.setattr(viewer.panels.motion, "MAX_CLIP_BYTES", 2**20)  # read when a tab opens
    context, page, session = open_tab(chromium, viewer_app)
    try:
        motion = session.panels["motion"]
        before = motion.clip
        big = tmp_path / "big.npz"
        big.write_bytes(b"PK\x03\x04" + bytes(6 * 2**20))
        open_panel(page, "Motion")
        upload_file(page, "Upload clip", big)
        wait_until(lambda: any(title == "Upload refused" for title, _ in session.notifications), timeout=30,
                   what=lambda: f"the refusal (notifications {session.notifications})")
        message = next(body for title, body in session.notifications if title == "Upload refused")
        assert message.startswith("big.npz: ") and "6 MiB, more than the 1 MiB limit" in message, message
        page.get_by_text("Upload refused").first.wait_for(timeout=10_000)
        assert not session.gui._current_file_upload_states, "the refused upload is still buffered"
        assert motion.clip is before and not any(t == "Cannot load clip" for t, _ in session.notifications)
    finally:
        context.close()


def test_a_client_that_sends_more_than_it_declared_is_cut_off(viewer_tab):
    """A page script can declare a small upload and send large parts: the transfer is dropped as
    soon as more arrived than it declared, and the button never hears of it."""
    import asyncio

    from viser._messages import FileTransferPart, FileTransferStartUpload

    page, session = viewer_tab
    motion = session.panels["motion"]
    before = motion.clip
    connection = session.gui._websock_interface
    loop = session.app.server._websock_server._background_event_loop
    client_id = session.client.client_id

    def send(message) -> None:  # what viser runs for the message from this tab's browser
        asyncio.run_coroutine_threadsafe(connection._handle_incoming_message(client_id, message),
                                         loop).result(timeout=10)

    uuid = motion.upload._impl.uuid
    send(FileTransferStartUpload(uuid, "lie", "lie.npz", "application/octet-stream", part_count=1000, size_bytes=1000))
    assert "lie" in session.gui._current_file_upload_states
    send(FileTransferPart(uuid, "lie", 0, bytes(2**20)))
    assert "lie" not in session.gui._current_file_upload_states, "more than declared is still buffered"
    send(FileTransferPart(uuid, "lie", 1, bytes(2**20)))
    assert "lie" not in session.gui._current_file_upload_states
    wait_until(lambda: any(t == "Upload refused" and body.startswith("lie.npz: ") for t, body in session.notifications),
               what="the refusal")
    assert motion.clip is before


def test_save_writes_only_into_the_export_folder(viewer_tab, tmp_path):
    """A page once overwrote any file the server user could write through "Save to path". Save
    now takes a file name, written into the app's export folder; a path is refused."""
    from browser import click, gui_row

    page, session = viewer_tab
    folder = session.app.export_dir
    outside = tmp_path / "victim.txt"
    outside.write_text("keep me")
    open_panel(page, "Export")
    box = gui_row(page, "File name").locator("input").first
    for name in (str(outside.with_suffix(".npz")), "../victim.npz", "sub/x.npz", ".hidden.npz", "poses.txt"):
        session.notifications.clear()
        box.fill(name)
        box.press("Enter")
        wait_until(lambda: session.panels["export"].file_name.value == name, what="the name on the server")
        click(page.get_by_role("button", name="Save to export folder"))
        wait_until(lambda: any(t == "Cannot save" for t, _ in session.notifications), timeout=30,
                   what=lambda: f"the refusal of {name!r} (notifications {session.notifications})")
    assert outside.read_text() == "keep me" and not outside.with_suffix(".npz").exists()
    assert not (folder.parent / "victim.npz").exists()
    box.fill("my pose.npz")
    box.press("Enter")
    wait_until(lambda: session.panels["export"].file_name.value == "my pose.npz", what="the name on the server")
    click(page.get_by_role("button", name="Save to export folder"))
    wait_until(lambda: (folder / "my pose.npz").exists(), timeout=60, what="the saved file in the export folder")
    with np.load(folder / "my pose.npz", allow_pickle=False) as data:
        assert data["pose_body"].shape == (1, 63)
    assert sorted(p.name for p in folder.iterdir()) == ["my pose.npz"], "only the file itself (no temporary files)"


def test_typed_paths_are_read_only_inside_the_read_folder(viewer_tab, tmp_path):
    """A page typed any server path into "Load path" (with --host 0.0.0.0 the page may be anyone's):
    typed paths now resolve in the app's read folder, and a path outside it is refused by name."""
    import os

    from browser import click, gui_row

    page, session = viewer_tab
    root = session.app.read_folder.root
    outside = tmp_path.parent.parent.parent  # above the test run's temporary folder
    escape = tmp_path / "escape"
    os.symlink("/etc", escape)  # a link inside the folder that leads out of it
    open_panel(page, "Model")
    box = gui_row(page, "Path").locator("input").first  # the last "Path": the body model's
    for typed in (str(outside / "model.npz"), "../../../../x.npz", f"{escape}/passwd.npz", "~nosuchuser/x.npz"):
        session.notifications.clear()
        box.fill(typed)
        box.press("Enter")
        wait_until(lambda: session.panels["model"].body_path.value == typed, what="the path on the server")
        click(page.get_by_role("button", name="Load body model"))
        wait_until(lambda: any(t == "Cannot load" for t, _ in session.notifications), timeout=30,
                   what=lambda: f"the refusal of {typed!r} (notifications {session.notifications})")
        message = next(b for t, b in session.notifications if t == "Cannot load")
        assert ("outside the folder the viewer reads from" in message and str(root) in message) or (
            typed.startswith("~") and message == "~nosuchuser/x.npz: no such user"), message
    page.get_by_text("outside the folder the viewer reads from", exact=False).first.wait_for(timeout=30_000)
    # Inside the folder, a relative path resolves there and the message names the file in full.
    (tmp_path / "junk.npz").write_bytes(b"not a body model")
    typed = str((tmp_path / "junk.npz").relative_to(root))
    session.notifications.clear()
    box.fill(typed)
    box.press("Enter")
    wait_until(lambda: session.panels["model"].body_path.value == typed, what="the path on the server")
    click(page.get_by_role("button", name="Load body model"))
    wait_until(lambda: any(t == "Cannot load body model" for t, _ in session.notifications), timeout=60,
               what=lambda: f"the load's answer (notifications {session.notifications})")
    message = next(b for t, b in session.notifications if t == "Cannot load body model")
    assert message.startswith(str(tmp_path / "junk.npz")), message


def test_a_read_folder_resolves_typed_paths(tmp_path):
    from prior.errors import InputError
    from viewer.paths import ReadFolder

    (tmp_path / "in").mkdir()
    folder = ReadFolder.at(tmp_path / "in")
    assert folder.resolve("a/b.npz") == tmp_path / "in" / "a" / "b.npz"
    assert folder.resolve(str(tmp_path / "in" / "c.npz")) == tmp_path / "in" / "c.npz"
    for typed in ("../x.npz", str(tmp_path / "x.npz"), "~/x.npz", "", "~nosuchuser/x"):
        with pytest.raises(InputError):
            folder.resolve(typed)
    assert ReadFolder.at(tmp_path / "in", anywhere=True).resolve("../x.npz") == tmp_path / "x.npz"


def test_a_closed_tab_frees_its_session(chromium, viewer_app):
    """A tab's state (its clip, bodies, GUI callbacks) is a web of references: once freed only
    whenever the collector happened to run, and the last tab's never (the worker kept its last
    job). Three rounds of "load a big clip, close the tab" took the server from 291 to 3731 MB."""
    import weakref

    from prior.files import asset_path

    from conftest import open_tab

    context, page, session = open_tab(chromium, viewer_app)
    motion = session.panels["motion"]
    motion.load_file(asset_path("gesture_clip.npz"))
    wait_until(lambda m=motion: m.clip is not None, timeout=60, what="the clip")
    freed = weakref.ref(session)
    del session, motion  # before Playwright's next call: it keeps the calling frames (and their locals)
    context.close()
    wait_until(lambda: freed() is None, timeout=30, what="the closed tab's session to be freed")


def test_a_prior_that_outputs_nan_is_reported_not_drawn(viewer_tab):
    """Weights that are finite but huge (x1e30) turned every sample into NaN without a word. The
    loader now refuses such files; should a prior still produce NaN, the tab says so and draws
    nothing of it."""
    from browser import click
    from prior_helpers import small_random_prior

    page, session = viewer_tab
    app = session.app
    broken = small_random_prior()
    with torch.no_grad():
        for p in broken.net.parameters():
            p.mul_(1e30)
    kept = app.resources.prior
    app.resources.prior = broken
    try:
        gen = session.panels["generate"]
        open_panel(page, "Generate")
        set_gui_number(page, "Steps", 10)
        wait_until(lambda: gen.steps.value == 10, what="10 steps on the server")
        click(page.get_by_role("button", name="Generate", exact=True))
        wait_until(lambda: any(t == "Generate failed" and "NaN or Inf" in body for t, body in session.notifications),
                   timeout=120, what=lambda: f"the refusal (notifications {session.notifications})")
        page.get_by_text("Generate failed").first.wait_for(timeout=10_000)
        assert "generate_done" not in session.timings, "the NaN samples were shown"
    finally:
        app.resources.prior = kept
