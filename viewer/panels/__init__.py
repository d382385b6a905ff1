"""The viewer's panels, one module each; :data:`PANELS` lists them in the panel bar's order.

A new panel is one module with a :class:`~viewer.panels.base.Panel` subclass plus one line here.
"""

from __future__ import annotations

from .base import Panel, ShownBody
from .complete import CompletePanel
from .edit import EditPanel
from .export import ExportPanel
from .fit import FitPanel
from .generate import GeneratePanel
from .inspect import InspectPanel
from .model import ModelPanel
from .motion import MotionPanel

PANELS: tuple[type[Panel], ...] = (
    GeneratePanel,
    CompletePanel,
    EditPanel,
    InspectPanel,
    MotionPanel,
    FitPanel,
    ExportPanel,
    ModelPanel,
)

__all__ = ["PANELS", "Panel", "ShownBody"]
