"""What every panel shares: a tab of GUI controls and, optionally, bodies in the scene."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..session import ClientSession


class Panel:
    """A tab's controls and scene objects. ``rebuild`` re-creates bodies after a body-model
    switch; ``x_range`` says which stretch of the X axis (metres) its bodies occupy."""

    name = "panel"

    def __init__(self, session: ClientSession) -> None:
        self.session = session

    def rebuild(self) -> None:
        """Drop bodies drawn with the old body model and redraw them with the new one."""

    def x_range(self) -> tuple[float, float]:
        return (0.0, 0.0)


def row_positions(count: int, spacing_m: float) -> list[float]:
    """X positions (metres) of ``count`` bodies side by side, centred on 0."""
    return [(k - (count - 1) / 2) * spacing_m for k in range(count)]
