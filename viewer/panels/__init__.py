"""The tabs of the viewer's control panel, one module each."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import Panel

if TYPE_CHECKING:
    from ..session import ClientSession


def build_panels(session: ClientSession) -> dict[str, Panel]:
    """Create every tab for a session, in display order; returns them by name."""
    from .complete import CompletePanel
    from .edit import EditPanel
    from .export import ExportPanel
    from .generate import GeneratePanel
    from .inspect import InspectPanel
    from .model import ModelPanel
    from .motion import MotionPanel

    tabs = session.gui.add_tab_group(order=1)
    panels: list[Panel] = [
        GeneratePanel(session, tabs.add_tab("Generate", icon="sparkles")),
        CompletePanel(session, tabs.add_tab("Complete", icon="puzzle")),
        EditPanel(session, tabs.add_tab("Edit", icon="hand-finger")),
        InspectPanel(session, tabs.add_tab("Inspect", icon="microscope")),
        MotionPanel(session, tabs.add_tab("Motion", icon="movie")),
        ExportPanel(session, tabs.add_tab("Export", icon="download")),
        ModelPanel(session, tabs.add_tab("Model", icon="settings")),
    ]
    return {panel.name: panel for panel in panels}


__all__ = ["Panel", "build_panels"]
