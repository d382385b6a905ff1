"""Recording speed: 240 frames at 640x480 from a headless-Chromium tab (software WebGL).

    python benchmarks/bench_recording.py [--frames 240] [--formats mp4 gif] [--renderers browser offscreen]
                                         [--viewport 1280x800]

The viewer on the shipped prior, one tab (1280x800), the Motion panel's example clip (240 frames at
120 fps) recorded at 120 fps, so every frame of the clip is one frame of the file, the way the
Export panel's Record button does it (``viewer.recording.record``: draw a frame, have the tab
render it, encode), or with Renderer offscreen (``viewer.recording.record_offscreen``: the server's
CPU renderer, no browser). Target (issue: exports): 240 frames under 60 s on this CPU.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=240)
    parser.add_argument("--formats", nargs="+", default=["mp4", "gif"])
    parser.add_argument("--renderers", nargs="+", default=["browser", "offscreen"])
    parser.add_argument("--viewport", default="1280x800", help="the browser window (its canvas is rendered too)")
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    import viewer.recording as recording
    from prior.files import asset_path
    from viewer.app import ViewerApp
    from viewer.panels.motion import EXAMPLE_CLIP

    from browser import CHROMIUM_ARGS, chromium_path, wait_until

    app = ViewerApp(port=0, verbose=False)
    rows = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
            width, height = (int(v) for v in args.viewport.split("x"))
            page = browser.new_page(viewport={"width": width, "height": height})
            page.goto(app.url)
            session = app.wait_for_session(60)
            motion = session.panels["motion"]
            session.activate("motion")
            motion.load_file(asset_path(EXAMPLE_CLIP))
            wait_until(lambda: motion.clip is not None, timeout=120, what="the clip")
            time.sleep(3)
            timeline = motion.playback()
            frames = min(args.frames, timeline.frames)
            timeline = type(timeline)(timeline.what, frames, timeline.fps, timeline.draw)
            ctx = type("Ctx", (), {"cancel": threading.Event(), "report": staticmethod(lambda p: None)})()
            for renderer in args.renderers:
                for fmt in args.formats:
                    t0 = time.perf_counter()
                    if renderer == "browser":
                        data = recording.record(ctx, session.client, session.pacer, timeline, width=640, height=480,
                                                fps=timeline.fps, suffix="." + fmt)
                    else:  # the whole clip: the offscreen renderer frames all of it
                        data = recording.record_offscreen(ctx, app.resources.body, motion.playback(), width=640,
                                                          height=480, fps=timeline.fps, suffix="." + fmt)
                    seconds = time.perf_counter() - t0
                    count = frames if renderer == "browser" else motion.clip.num_frames
                    rows.append((renderer, fmt, count, seconds, len(data) / 1e6))
            browser.close()
    finally:
        app.stop()
    print("| renderer | format | frames | time (s) | fps | size (MB) | target (240 frames < 60 s) |")
    print("|---|---|---|---|---|---|---|")
    for renderer, fmt, frames, seconds, mb in rows:
        print(f"| {renderer} | {fmt} | {frames} | {seconds:.1f} | {frames / seconds:.1f} | {mb:.2f} | "
              f"{'ok' if seconds * 240 / frames < 60 else 'MISSED'} |")


if __name__ == "__main__":
    main()
