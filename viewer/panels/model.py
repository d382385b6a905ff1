"""Model tab: switch the checkpoint and the body model without restarting; display options."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import viser

from prior.errors import InputError

from ..uploads import MAX_BODY_MODEL_BYTES, MAX_CHECKPOINT_BYTES
from .base import Panel

if TYPE_CHECKING:
    from ..session import ClientSession


class ModelPanel(Panel):
    """The prior and body are shared by every tab: switching here switches them for all."""

    name = "model"
    label = "Model"
    icon = "settings"

    def __init__(self, session: ClientSession, container: viser.GuiFolderHandle) -> None:
        super().__init__(session, container)
        gui = session.gui
        with container:
            with gui.add_folder("Prior checkpoint"):
                self.ckpt_path = gui.add_text("Path", initial_value="",
                                              hint="DPoser .pth, DPoser-X .ckpt or dposer-view .safetensors; "
                                                   f"empty = the shipped default. {session.app.read_folder.describe()}")
                self.ckpt_load = gui.add_button("Load checkpoint", icon=viser.Icon.FOLDER_OPEN,
                                                hint="Load the checkpoint named in Path, for every tab")
                self.ckpt_upload = gui.add_upload_button(
                    "Upload checkpoint", icon=viser.Icon.UPLOAD,
                    hint="A checkpoint file from this computer, for every tab (read as data: no code in it runs)")
            with gui.add_folder("Body model"):
                self.body_path = gui.add_text("Path", initial_value="",
                                              hint="SMPL-X / SMPL-H / SMPL .npz or a folder; empty = the mannequin. "
                                                   f"{session.app.read_folder.describe()}")
                self.body_load = gui.add_button("Load body model", icon=viser.Icon.FOLDER_OPEN,
                                                hint="Load the body model named in Path, for every tab")
                self.body_upload = gui.add_upload_button(
                    "Upload body model", icon=viser.Icon.UPLOAD, mime_type=".npz",
                    hint="An SMPL-X / SMPL-H / SMPL .npz from this computer, for every tab")
            with gui.add_folder("Display"):
                self.skeleton = gui.add_checkbox("Skeleton", initial_value=False,
                                                 hint="Draw the bones as lines over the body")
                self.joints = gui.add_checkbox("Joints", initial_value=False,
                                               hint="Draw the joints as points over the body")
        app = session.app
        self.ckpt_load.on_click(lambda _: self._load_typed(self.ckpt_path.value, app.switch_prior))
        self.body_load.on_click(lambda _: self._load_typed(self.body_path.value, app.switch_body))
        # The load job writes an upload to a temporary file, reads it and deletes it.
        self.ckpt_upload.on_upload(lambda _: app.switch_prior(requester=session, upload=self.ckpt_upload.value))
        self.body_upload.on_upload(lambda _: app.switch_body(requester=session, upload=self.body_upload.value))
        self.skeleton.on_update(lambda _: self._display())
        self.joints.on_update(lambda _: self._display())

    def uploads(self) -> list[tuple[viser.GuiUploadButtonHandle, int]]:
        return [(self.ckpt_upload, MAX_CHECKPOINT_BYTES), (self.body_upload, MAX_BODY_MODEL_BYTES)]

    def _load_typed(self, text: str, switch: Callable[..., None]) -> None:
        """Load the file a path box names (empty: the shipped default) for every tab."""
        try:
            path = self.session.typed_path(text)
        except InputError as exc:
            self.session.notify("Cannot load", str(exc), error=True)
            return
        switch(path, requester=self.session)

    def _display(self) -> None:
        session = self.session
        session.show_skeleton, session.show_joints = bool(self.skeleton.value), bool(self.joints.value)
        session.pacer.post("main", session.apply_pose)
