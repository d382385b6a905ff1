"""dposer-view speed: startup, pose streaming to a headless browser, click-to-first-update latency.

    python benchmarks/bench_viewer.py [--ckpt PATH] [--seconds 5]

Runs what plain ``dposer-view`` runs (the shipped prior, the mannequin body) unless ``--ckpt``.

Prints a markdown table. Streaming is measured end to end: the server poses bodies as fast as the
pacer lets it and a round trip through the browser (viser's local_storage.get_item) after the last
update proves the browser received and applied every message before it. Server CPU per update is
the display thread's CPU time per frame (FK, quaternions, queuing the bone messages).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def startup_seconds(ckpt: Path | None) -> float:
    """Seconds from launching the ``dposer-view`` console script to its URL line."""
    from browser import free_port

    args = [sys.executable, "-m", "viewer.app", "--port", str(free_port())]
    if ckpt is not None:
        args += ["--ckpt", str(ckpt)]
    start = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    try:
        for line in proc.stdout:
            if re.search(r"dposer-view running at http", line):
                return time.perf_counter() - start
        raise RuntimeError("dposer-view exited without printing its URL")
    finally:
        proc.terminate()
        proc.wait()


def stream(session, bodies, seconds: float) -> tuple[float, float]:
    """Pose ``bodies`` with fresh random poses through the session's pacer for ``seconds``.

    Returns ``(updates per second received by the browser, server CPU ms per update)``; the CPU
    time is the display thread's for whole frames: FK, then sending the frame's bone messages."""
    rig = session.rig
    rng = np.random.default_rng(0)
    poses = rng.normal(0.0, 0.3, (64, len(bodies), 63)).astype(np.float32)
    count = [0]

    def draw(k: int) -> None:
        rig_pose = rig.pose(poses[k % len(poses)])
        for i, body in enumerate(bodies):
            body.set_pose(rig_pose.row(i))
        count[0] += 1

    start, cpu0, frames0 = time.perf_counter(), session.pacer.frame_cpu_s, session.pacer.frames
    k = 0
    while time.perf_counter() - start < seconds:
        session.pacer.post("bench", lambda k=k: draw(k))
        k += 1
        time.sleep(0.002)
    while not session.pacer.idle():
        time.sleep(0.001)
    session.client.local_storage.get_item("dposer-view-bench", timeout=120)  # ordered after every bone message
    elapsed = time.perf_counter() - start
    cpu_s = session.pacer.frame_cpu_s - cpu0
    return count[0] / elapsed, 1000.0 * cpu_s / max(session.pacer.frames - frames0, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", type=Path, default=None, help="default: the shipped prior, as plain dposer-view")
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    from viewer.app import ViewerApp
    from viewer.body_handle import BodyHandle

    from browser import CHROMIUM_ARGS, VIEWPORT, chromium_path, open_panel, wait_until

    rows = [("startup to URL printed (console script, s)", f"{startup_seconds(args.ckpt):.2f}", "< 5")]
    app = ViewerApp(ckpt=args.ckpt, port=0, verbose=False)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
            page = browser.new_page(viewport=VIEWPORT)
            page.goto(app.url)
            session = app.wait_for_session(60)
            wait_until(lambda: app.resources.prior is not None, timeout=120, what="the prior")
            app.worker.wait_idle(120)

            rate, cpu_ms = stream(session, [session.main], args.seconds)
            rows.append(("streaming, 1 body (updates/s received by the browser)", f"{rate:.1f}", ">= 30"))
            rows.append(("server CPU per update, 1 body (ms)", f"{cpu_ms:.2f}", "< 5"))
            ghosts = [BodyHandle(session.scene, f"/pose/bench/{k}", session.rig, opacity=0.3) for k in range(10)]
            rate, cpu_ms = stream(session, [session.main, *ghosts], args.seconds)
            rows.append(("streaming, body + 10 ghosts (updates/s)", f"{rate:.1f}", ">= 20"))
            rows.append(("server CPU per update, body + 10 ghosts (ms)", f"{cpu_ms:.2f}", "< 5"))
            for ghost in ghosts:
                ghost.visible = False

            # Click "Complete" in the page; time until the first streamed hypotheses are drawn.
            complete = session.panels["complete"]
            complete.set_parts(["left_leg"])
            open_panel(page, "Complete")
            latencies = []
            for _ in range(4):
                session.timings.pop("complete_first_update", None)
                session.timings.pop("complete_done", None)
                page.get_by_role("button", name="Complete", exact=True).click(force=True)
                wait_until(lambda: "complete_done" in session.timings, timeout=120, what="completion")
                t = session.timings
                latencies.append(1000 * (t["complete_first_update"] - t["complete_clicked"]))
            rows.append(("click Complete -> first streamed update, first click (ms; ghosts created)",
                         f"{latencies[0]:.0f}", "< 150"))
            rows.append(("click Complete -> first streamed update, later clicks (ms, median of 3)",
                         f"{np.median(latencies[1:]):.0f}", "< 150"))
            browser.close()
    finally:
        app.stop()

    print("\n| measure | value | target |\n|---|---|---|")
    for name, value, target in rows:
        print(f"| {name} | {value} | {target} |")


if __name__ == "__main__":
    main()
