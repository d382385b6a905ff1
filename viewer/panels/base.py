"""The panel contract: what a panel shows, what it exports and which files it takes.

A panel is one file in this package (a :class:`Panel` subclass) plus one line in
:data:`viewer.panels.PANELS`. The session talks to panels only through this contract: it never
reads a panel's attributes by name, and panels reach each other only through the session (its
current pose, mask and events).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from prior.data import Clip

if TYPE_CHECKING:
    import viser

    from ..session import ClientSession

Color = tuple[int, int, int]


@dataclass(frozen=True)
class ShownBody:
    """A body on screen, as exports and ``.viser`` recordings need it.

    ``pose_body: (63,)``, ``root_orient: (3,)``, ``transl: (3,)`` (metres) and ``betas: (NB,)``
    (None: the mean shape) are the body model's parameters; ``position`` and ``wxyz`` place the
    body's frame in the scene (Y up)."""

    name: str
    pose_body: np.ndarray
    root_orient: np.ndarray | None = None
    transl: np.ndarray | None = None
    betas: np.ndarray | None = None
    position: tuple[float, float, float] = (0.0, 0.0, 0.0)
    wxyz: tuple[float, float, float, float] = (1.0, 0.0, 0.0, 0.0)
    color: Color = (196, 160, 120)
    opacity: float | None = None


@dataclass(frozen=True)
class Timeline:
    """What a panel plays over time, for recordings: ``frames`` frames at ``fps`` (a clip's rate; a
    trajectory's replay rate), and ``draw(i)``, which shows frame ``i`` (display thread)."""

    what: str
    frames: int
    fps: float
    draw: Callable[[int], None]
    offscreen: Callable[..., Iterator[np.ndarray]] | None = None
    """``offscreen(body, width=, height=, fps=, cancel=, progress=)``: the same playback drawn by the
    server's CPU renderer (:mod:`prior.render`, as ``dposer render`` draws it), frames as it yields them."""


class Panel:
    """One tab of the control panel.

    Class attributes:
        name: the key the session knows the panel by.
        label: its name (the title of its controls); short_label (default: label) and icon (a
            Tabler icon name, as viser's): its button in the panel bar.
        stage: the scene group this panel shows while it is active (``"pose"``, ``"samples"``,
            ``"motion"``, ...), or None for a panel that leaves the scene as it is (Export, Model).
        file_kinds: kinds of files the app routes to this panel (``--clip`` is ``"motion"``).
        ground: whether the ground grid shows with its stage (not behind Fit's photo).

    Hooks, all called on the display thread or a GUI callback (never blocking on the model):
        on_show / on_hide: the panel was opened / another panel with a stage was opened (a panel
            without one, such as Export, leaves the scene and what is on it as it is).
        on_joint_click: a click on the main body's submesh of an SMPL-X joint while active.
        shown_bodies: the bodies this panel has on screen (for export and ``.viser``).
        shown_motion / playback: the clip it plays (animation exports) / what it plays over time
            (recordings: a clip, a generation trajectory), or None.
        extent: the X range (metres) its bodies occupy, for framing the camera; None while it shows nothing.
        view: its own camera view for framing (Fit: the photo's camera), or None for the front view of extent.
        rebuild: redraw bodies after a body-model switch.
        open_file: load a file of one of ``file_kinds``.
        uploads: its upload buttons and the most bytes each takes (refused as they arrive).
        keep / restore: its work as plain data when the tab closes, and drawing it again in the
            tab a reload of the same browser opens (None: nothing to bring back).
    """

    name: ClassVar[str] = "panel"
    label: ClassVar[str] = "Panel"
    short_label: ClassVar[str | None] = None
    icon: ClassVar[str] = "settings"
    stage: ClassVar[str | None] = None
    file_kinds: ClassVar[tuple[str, ...]] = ()
    ground: ClassVar[bool] = True

    def __init__(self, session: ClientSession, container: viser.GuiFolderHandle) -> None:
        self.session = session
        self.container = container

    @property
    def active(self) -> bool:
        """Open, or (a panel with a stage) on screen: its stage stays while Export or Model is open."""
        session = self.session
        return session.active_panel is self or (self.stage is not None and session.stage_panel is self)

    def on_show(self) -> None:
        """Called when the panel becomes active (its stage is already shown)."""

    def uploads(self) -> list[tuple[viser.GuiUploadButtonHandle, int]]:
        """``(upload button, the most bytes it takes)`` pairs (see :func:`viewer.uploads.limit_uploads`)."""
        return []

    def on_hide(self) -> None:
        """Called when another panel becomes active."""

    def on_joint_click(self, smplx_joint: int) -> None:
        """A click on the main body's submesh of SMPL-X joint ``smplx_joint`` (0..21)."""

    def shown_bodies(self) -> list[ShownBody]:
        return []

    def shown_motion(self) -> Clip | None:
        """The clip this panel plays on its stage (the selected body's), for animation exports;
        None when it shows still bodies (exported as :meth:`shown_bodies`)."""
        return None

    def playback(self) -> Timeline | None:
        """What a recording of this panel's stage plays (see :class:`Timeline`), or None."""
        return None

    def extent(self) -> tuple[float, float] | None:
        return None

    def view(self, aspect: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, float] | None:
        """``(position, look_at, up, vertical fov in radians)`` to frame this panel's stage with on a
        canvas of ``aspect`` (width / height), or None: the session's front view of :meth:`extent`."""
        return None

    def keep(self) -> object | None:
        """What a reload of the tab should bring back (arrays, numbers: no scene handles), or None."""
        return None

    def restore(self, kept: object) -> None:
        """Show what :meth:`keep` returned, in a new tab of the same browser."""

    def rebuild(self) -> None:
        """Drop bodies drawn with the old body model and redraw them with the new one."""

    def open_file(self, kind: str, path: Path) -> None:
        raise NotImplementedError(f"{type(self).__name__} takes no {kind} files")
