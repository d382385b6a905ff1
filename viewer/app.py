"""`dposer-view` entry point."""

from __future__ import annotations

import sys


def main() -> None:
    print("dposer-view: viewer not built yet (see the viewer issue); the `dposer` batch CLI works.", file=sys.stderr)
    sys.exit(1)
