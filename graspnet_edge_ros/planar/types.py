"""Planar (4-DoF, image-space) grasps: the contract between planar networks and the 6-DoF lifting.

Every planar model (GR-ConvNet, SGDN/AFFGA-Net) decodes its output maps into ``PlanarGrasps`` in
the pixel coordinates of the *full input image* (crop/resize already undone), so the lifting stage
(`planar.lifting`) never needs to know which network produced them.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from graspnet_edge_ros.errors import InputError

PLANAR_MODEL_TYPES = ("grconvnet", "affga")


@dataclass(frozen=True)
class PlanarGrasps:
    """K planar grasps, best first.

    Attributes:
        rows, cols: grasp centre (v, u) in full-image pixels (float; sub-pixel allowed).
        angles_rad: jaw closing-axis angle, anticlockwise *on screen* from the image +u axis, so the
            closing direction in pixels is (du, dv) = (cos a, -sin a). A parallel gripper is
            symmetric under a -> a + pi; any branch is accepted.
        widths_px: gripper opening in full-image pixels.
        scores: network quality / confidence of each grasp.
    """

    rows: np.ndarray
    cols: np.ndarray
    angles_rad: np.ndarray
    widths_px: np.ndarray
    scores: np.ndarray
    extras: dict = field(default_factory=dict)   # per-model diagnostics (e.g. the decoded maps)

    def __post_init__(self) -> None:
        n = len(np.asarray(self.rows))
        for name in ("cols", "angles_rad", "widths_px", "scores"):
            if len(np.asarray(getattr(self, name))) != n:
                raise InputError(f"PlanarGrasps.{name} has {len(getattr(self, name))} entries, rows has {n}")

    def __len__(self) -> int:
        return len(np.asarray(self.rows))

    @classmethod
    def empty(cls) -> "PlanarGrasps":
        zero = np.zeros(0, np.float64)
        return cls(zero, zero, zero, zero, zero)
