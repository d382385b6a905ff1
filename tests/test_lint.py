"""The code passes the linter configured in pyproject.toml (ruff: pyflakes, pycodestyle, import order)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_ruff_finds_nothing():
    run = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", str(REPO)], capture_output=True,
                         text=True, cwd=REPO)
    assert run.returncode == 0, run.stdout + run.stderr


CONTROLS = {"add_button", "add_button_group", "add_checkbox", "add_dropdown", "add_multi_slider", "add_number",
            "add_rgb", "add_slider", "add_text", "add_upload_button", "add_vector2", "add_vector3"}


def test_every_control_in_the_viewer_has_a_tooltip():
    """Each button, slider, box and dropdown the viewer adds says what it does on hover (``hint=``)."""
    import ast

    missing = []
    for path in sorted((REPO / "viewer").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in CONTROLS
                    and not any(k.arg == "hint" for k in node.keywords)):
                missing.append(f"{path.relative_to(REPO)}:{node.lineno} {node.func.attr}")
    assert not missing, "controls without a hint: " + ", ".join(missing)
