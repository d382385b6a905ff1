"""dposer-view fairness: one tab's Complete while another tab runs a long generation.

    python benchmarks/bench_fairness.py [--ckpt PATH] [--repeats 5]

Two headless-Chromium tabs on one viewer (the shipped prior unless ``--ckpt``). Tab B asks for a
completion (left leg, 5 hypotheses) and the time to its first streamed update is measured, first
with the server idle, then while tab A generates 16 samples x 1000 steps. Both jobs are started
server-side the way their buttons start them (the panel's ``start``), so the numbers are the
scheduler's, not the page's click latency. Target: busy <= 2 x idle (issue 12).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def first_update_ms(session) -> float:
    """Start tab ``session``'s completion; milliseconds from its start to its first streamed update."""
    from browser import wait_until

    panel = session.panels["complete"]
    for key in ("complete_first_update", "complete_done"):
        session.timings.pop(key, None)
    panel.start()
    wait_until(lambda: "complete_done" in session.timings, timeout=300, what="completion")
    return 1000 * (session.timings["complete_first_update"] - session.timings["complete_clicked"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", type=Path, default=None, help="default: the shipped prior, as plain dposer-view")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    from viewer.app import ViewerApp

    from browser import CHROMIUM_ARGS, VIEWPORT, chromium_path, wait_until

    app = ViewerApp(ckpt=args.ckpt, port=0, verbose=False)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
            tabs = []
            for _ in range(2):
                known = {id(s) for s in app.all_sessions()}
                browser.new_page(viewport=VIEWPORT).goto(app.url)
                tabs.append(wait_until(lambda: next((s for s in app.all_sessions() if id(s) not in known), None),
                                       timeout=60, what="a tab's session"))
            tab_a, tab_b = tabs
            wait_until(lambda: app.resources.prior is not None, timeout=120, what="the prior")
            app.worker.wait_idle(120)
            complete = tab_b.panels["complete"]
            complete.set_parts(["left_leg"])
            complete.num.value = 5
            first_update_ms(tab_b)  # ghosts created once, as a user's first click does
            idle = [first_update_ms(tab_b) for _ in range(args.repeats)]

            generate = tab_a.panels["generate"]
            generate.num.value, generate.steps.value = 16, 1000
            busy, gen_seconds = [], []
            for _ in range(args.repeats):
                tab_a.timings.pop("generate_done", None)
                generate.start()
                wait_until(lambda: "generate_first_update" in tab_a.timings
                           and tab_a.timings["generate_first_update"] > tab_a.timings["generate_clicked"],
                           timeout=120, what="the generation under way")
                time.sleep(0.5)
                busy.append(first_update_ms(tab_b))
                assert "generate_done" not in tab_a.timings, "the generation ended before the completion: too short"
                wait_until(lambda: "generate_done" in tab_a.timings, timeout=600, what="the generation")
                gen_seconds.append(tab_a.timings["generate_done"] - tab_a.timings["generate_clicked"])
            browser.close()
    finally:
        app.stop()

    idle_ms, busy_ms = float(np.median(idle)), float(np.median(busy))
    rows = [
        ("tab B: Complete -> first streamed update, server idle (ms, median)", f"{idle_ms:.0f}", ""),
        ("tab B: the same while tab A generates 16 x 1000 (ms, median)", f"{busy_ms:.0f}", "<= 2 x idle"),
        ("ratio busy / idle", f"{busy_ms / idle_ms:.2f}", "<= 2"),
        ("tab B: worst while busy (ms)", f"{max(busy):.0f}", ""),
        ("tab A: 16 x 1000 generation, sharing with B (s, median)", f"{np.median(gen_seconds):.1f}", ""),
    ]
    print("\n| measure | value | target |\n|---|---|---|")
    for name, value, target in rows:
        print(f"| {name} | {value} | {target} |")


if __name__ == "__main__":
    main()
