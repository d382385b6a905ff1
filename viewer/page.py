"""What the page gets beyond viser's widgets: the panel bar's look and the keyboard shortcuts.

viser draws every control itself and has no keyboard events or icon buttons in a button group,
so each tab gets one HTML element (``gui.add_html``) holding:

- a style sheet that puts the panel bar on one row: each button an icon (the panel's Tabler
  icon, the same set viser uses) over a short label, the open panel's filled, no label column;
- a script (run once per page load) for the shortcuts people bring from Blender and aitviewer:
  Ctrl+Z / Ctrl+Shift+Z (or Ctrl+Y) click the visible Undo / Redo, Space the visible Play or
  Pause, Left / Right step the visible frame or timestep slider. Keys typed into a text or
  number box are left alone. The script only clicks the page's own controls, so every
  shortcut goes through the same server-side checks as a click.

The markup is built here from our own constants only (never from user text). It depends on
viser's DOM (a button group's ``label[for=uuid]`` and Mantine class names), which the browser
tests check (tests/test_viewer_page.py).
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Sequence

import viser
from viser._icons import svg_from_icon

SLIDERS_STEPPED = ("Frame", "Timestep t")  # sliders the arrow keys step, whichever is visible
SHORTCUTS = {
    "Ctrl+Z": "undo (Edit)",
    "Ctrl+Shift+Z / Ctrl+Y": "redo (Edit)",
    "Space": "play / pause (Motion, Generate)",
    "← / →": "previous / next frame or timestep",
}

_SCRIPT = """
if (!window.__dposerKeys) {
  window.__dposerKeys = true;
  const visible = (el) => el && el.offsetParent !== null;
  const press = (...names) => {
    const button = [...document.querySelectorAll("button")].find(
      (b) => visible(b) && !b.disabled && names.includes(b.textContent.trim()));
    if (button) button.click();
    return Boolean(button);
  };
  const step = (key) => {
    for (const label of document.querySelectorAll("label")) {
      if (!SLIDERS.includes(label.textContent.trim()) || !visible(label)) continue;
      const thumb = label.closest(".mantine-Flex-root").querySelector(".mantine-Slider-thumb");
      if (!thumb) continue;
      thumb.focus();
      thumb.dispatchEvent(new KeyboardEvent("keydown", {key, bubbles: true}));
      return true;
    }
    return false;
  };
  document.addEventListener("keydown", (e) => {
    if (e.target.closest && e.target.closest("input, textarea, select, [contenteditable=true]")) return;
    const key = e.key.toLowerCase(), mod = e.ctrlKey || e.metaKey;
    let done = false;
    if (mod && key === "z" && !e.shiftKey) done = press("Undo");
    else if (mod && (key === "y" || (key === "z" && e.shiftKey))) done = press("Redo");
    else if (!mod && key === " ") done = press("Play", "Pause", "Play trajectory");
    else if (!mod && (key === "arrowleft" || key === "arrowright")) {
      if (e.target.classList && e.target.classList.contains("mantine-Slider-thumb")) return;
      done = step(e.key);
    }
    if (done) e.preventDefault();
  }, true);
}
"""


PANEL_FRACTION = 0.25
"""The share of the canvas width the control panel covers, on the right."""


def _icon_url(icon: str) -> str:
    svg = svg_from_icon(icon)  # type: ignore[arg-type]
    return "data:image/svg+xml," + urllib.parse.quote(svg)


def page_markup(bar: viser.GuiButtonGroupHandle, icons: Sequence[str], active: int) -> str:
    """The style sheet and script for one tab, its panel bar ``bar`` with one Tabler ``icons``
    name per button and button ``active`` (0-based) open."""
    row = f'div:has(> div > p > label[for="{bar._impl.uuid}"])'
    rules = [
        f"{row} > div:first-child {{ display: none !important; }}",  # no "Panel" label column
        f"{row} .mantine-Flex-root {{ flex-wrap: nowrap !important; gap: 2px !important; }}",
        f"{row} button {{ min-width: 0 !important; height: auto !important; padding: 3px 0 2px !important; }}",
        f"{row} button .mantine-Button-label {{ flex-direction: column; font-size: 9.5px; line-height: 1.1;"
        " letter-spacing: -0.2px; }",
        f"{row} button .mantine-Button-label::before {{ content: ''; width: 16px; height: 16px; margin-bottom: 1px;"
        " background-color: currentColor; -webkit-mask: var(--icon) center / contain no-repeat;"
        " mask: var(--icon) center / contain no-repeat; }",
    ]
    for k, icon in enumerate(icons):
        rules.append(f"{row} button:nth-child({k + 1}) {{ --icon: url(\"{_icon_url(icon)}\"); }}")
    rules.append(f"{row} button:nth-child({active + 1}) {{ background: var(--mantine-primary-color-filled) !important;"
                 " color: var(--mantine-color-white) !important; }")
    script = f"const SLIDERS = {json.dumps(list(SLIDERS_STEPPED))};" + _SCRIPT
    handler = script.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;").replace(">", "&gt;")
    return (f'<style data-active-panel="{active}">{"".join(rules)}</style>'
            f'<img alt="" src="data:," style="display:none" onerror="{handler}">')
