"""Undo/redo of the edited pose: a list of ``pose_body: (63,)`` snapshots and a cursor."""

from __future__ import annotations

import numpy as np


class History:
    """Snapshots of the current pose; :meth:`push` after every committed change."""

    def __init__(self, initial: np.ndarray, *, limit: int = 200) -> None:
        self._states: list[np.ndarray] = [np.array(initial, np.float32)]
        self._labels: list[str] = ["start"]
        self._cursor = 0
        self._limit = limit

    @property
    def current(self) -> np.ndarray:
        return self._states[self._cursor].copy()

    @property
    def label(self) -> str:
        return self._labels[self._cursor]

    def push(self, pose_body: np.ndarray, label: str) -> None:
        """Record a new state after the current one (dropping any redo states)."""
        pose_body = np.array(pose_body, np.float32)
        if np.array_equal(pose_body, self._states[self._cursor]):
            return
        del self._states[self._cursor + 1 :], self._labels[self._cursor + 1 :]
        self._states.append(pose_body)
        self._labels.append(label)
        if len(self._states) > self._limit:
            del self._states[0], self._labels[0]
        self._cursor = len(self._states) - 1

    @property
    def can_undo(self) -> bool:
        return self._cursor > 0

    @property
    def can_redo(self) -> bool:
        return self._cursor < len(self._states) - 1

    def undo(self) -> np.ndarray:
        if self.can_undo:
            self._cursor -= 1
        return self.current

    def redo(self) -> np.ndarray:
        if self.can_redo:
            self._cursor += 1
        return self.current

    def __len__(self) -> int:
        return len(self._states)
