"""The one grasp array type: graspnetAPI's 17-float row layout.

Row = [score, width, height, depth, R00, R01, R02, R10, R11, R12, R20, R21, R22, tx, ty, tz, object_id].
R (row-major 3x3) has the gripper axes as *columns*, in GraspNet's frame convention:
x = approach (into the object), y = jaw closing direction, z = finger "height" direction.
t is the grasp point (camera frame, metres); the fingertips reach ``depth`` beyond it along +x.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np

from graspnet_edge_ros.errors import InputError

GRASP_ROW_SIZE = 17
SCORE = 0
WIDTH = 1
HEIGHT = 2
DEPTH = 3
ROTATION = slice(4, 13)
TRANSLATION = slice(13, 16)
OBJECT_ID = 16
# The rows are float32: integers above 2**24 are not exact there (16777217 would become 16777216),
# so object ids beyond this are refused rather than silently merged.
MAX_OBJECT_ID = 2**24


class GraspGroup:
    """An immutable-by-convention (N, 17) float32 array of grasps with named views.

    Operations return a new group; the underlying array is never changed in place.

    Examples:
        >>> g = GraspGroup.empty(); len(g)
        0
    """

    __slots__ = ("array",)

    def __init__(self, array: np.ndarray | None = None):
        if array is None:
            array = np.zeros((0, GRASP_ROW_SIZE), np.float32)
        array = np.asarray(array, dtype=np.float32)
        if array.ndim != 2 or array.shape[1] != GRASP_ROW_SIZE:
            raise InputError(f"grasp array must be (N, {GRASP_ROW_SIZE}), got {array.shape}")
        self.array = array

    @classmethod
    def empty(cls) -> "GraspGroup":
        return cls(np.zeros((0, GRASP_ROW_SIZE), np.float32))

    @classmethod
    def from_parts(cls, scores, widths, depths, rotations, translations,
                   heights=0.02, object_ids=-1) -> "GraspGroup":
        """Build rows from per-grasp arrays: rotations (N,3,3), translations (N,3)."""
        rotations = np.asarray(rotations, np.float32).reshape(-1, 9)
        n = rotations.shape[0]
        rows = np.empty((n, GRASP_ROW_SIZE), np.float32)
        rows[:, SCORE] = scores
        rows[:, WIDTH] = widths
        rows[:, HEIGHT] = heights
        rows[:, DEPTH] = depths
        rows[:, ROTATION] = rotations
        rows[:, TRANSLATION] = np.asarray(translations, np.float32).reshape(n, 3)
        rows[:, OBJECT_ID] = object_ids
        return cls(rows)

    def __len__(self) -> int:
        return self.array.shape[0]

    def __getitem__(self, index) -> "GraspGroup":
        rows = self.array[index]
        return GraspGroup(rows.reshape(-1, GRASP_ROW_SIZE))

    def __iter__(self) -> Iterator[np.ndarray]:
        return iter(self.array)

    def __repr__(self) -> str:
        return f"GraspGroup({len(self)} grasps)"

    @property
    def scores(self) -> np.ndarray:
        """(N,) float32."""
        return self.array[:, SCORE]

    @property
    def widths(self) -> np.ndarray:
        """(N,) float32, jaw opening in metres."""
        return self.array[:, WIDTH]

    @property
    def heights(self) -> np.ndarray:
        return self.array[:, HEIGHT]

    @property
    def depths(self) -> np.ndarray:
        """(N,) float32, how far the fingertips reach beyond the grasp point, metres."""
        return self.array[:, DEPTH]

    @property
    def rotations(self) -> np.ndarray:
        """(N, 3, 3) float32; columns are the approach, closing and height axes (camera frame)."""
        return self.array[:, ROTATION].reshape(-1, 3, 3)

    @property
    def translations(self) -> np.ndarray:
        """(N, 3) float32 grasp points, metres."""
        return self.array[:, TRANSLATION]

    @property
    def approaches(self) -> np.ndarray:
        """(N, 3) unit approach vectors (first rotation column)."""
        return self.rotations[:, :, 0]

    @property
    def object_ids(self) -> np.ndarray:
        return self.array[:, OBJECT_ID]

    def sorted_by_score(self) -> "GraspGroup":
        """A new group in descending score order (stable for equal scores)."""
        order = np.argsort(-self.scores, kind="stable")
        return GraspGroup(self.array[order])

    def concatenate(self, other: "GraspGroup") -> "GraspGroup":
        return GraspGroup(np.concatenate([self.array, other.array], axis=0))

    def save_npy(self, path) -> None:
        np.save(path, self.array)

    @classmethod
    def load_npy(cls, path) -> "GraspGroup":
        return cls(np.load(path))
