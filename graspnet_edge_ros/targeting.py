"""Object targeting: instance labels for grasps, and grasps on chosen objects only.

The label image comes from any instance segmentation aligned to the colour image (YOLO-seg,
SAM, a simulator): one integer per pixel, 0 = background. A grasp's ``object_id`` is the label
under its grasp point (the point GraspNet grasps at, on the object's surface), -1 where there is
none. Collision checking still uses the whole scene; targeting only decides which grasps are kept
and where the model's input is sampled more densely.
"""
from __future__ import annotations

import numpy as np

from graspnet_edge_ros.camera import CameraIntrinsics
from graspnet_edge_ros.errors import InputError
from graspnet_edge_ros.grasps import MAX_OBJECT_ID, GraspGroup

LABEL_ENCODINGS = ("mono8", "8UC1", "mono16", "16UC1", "16SC1", "32SC1")
NO_OBJECT = -1


def check_labels(labels, shape: tuple[int, int]) -> np.ndarray:
    """(H, W) int64 labels of an instance image, or InputError saying what is wrong with it."""
    labels = np.asarray(labels)
    if labels.ndim == 3 and labels.shape[2] == 1:
        labels = labels[:, :, 0]
    if labels.ndim != 2:
        raise InputError(f"object mask must be a single-channel (H, W) label image, got shape {labels.shape}")
    if labels.shape != tuple(shape):
        raise InputError(f"object mask is {labels.shape[1]}x{labels.shape[0]}, the depth image "
                         f"{shape[1]}x{shape[0]}: it must be aligned to the colour/depth image")
    if labels.dtype == bool or not np.issubdtype(labels.dtype, np.integer):
        raise InputError(f"object mask must hold integer labels ({'/'.join(LABEL_ENCODINGS)}), got {labels.dtype}")
    labels = labels.astype(np.int64, copy=False)
    if labels.size and labels.min() < 0:
        raise InputError(f"object mask has negative labels (min {labels.min()}); 0 is background, objects are > 0")
    if labels.size and labels.max() > MAX_OBJECT_ID:
        raise InputError(f"object mask has labels above {MAX_OBJECT_ID} (2^24; max {labels.max()}): object ids are "
                         "stored as float32 and would be corrupted; renumber the instances from 1")
    return labels


def present_labels(labels: np.ndarray) -> list[int]:
    """Sorted object labels (> 0) present in a label image."""
    values = np.unique(labels)
    return [int(v) for v in values if v > 0]


def grasp_object_ids(grasps: GraspGroup, labels: np.ndarray, intrinsics: CameraIntrinsics) -> np.ndarray:
    """(N,) int64: the label under each grasp point (projected into the image), -1 where none."""
    points = grasps.translations.astype(np.float64)
    ids = np.full(len(grasps), NO_OBJECT, np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = points[:, 2]
        cols = np.rint(intrinsics.fx * points[:, 0] / z + intrinsics.cx)
        rows = np.rint(intrinsics.fy * points[:, 1] / z + intrinsics.cy)
        inside = (z > 0) & (cols >= 0) & (cols < labels.shape[1]) & (rows >= 0) & (rows < labels.shape[0])
    found = labels[rows[inside].astype(np.int64), cols[inside].astype(np.int64)]
    ids[inside] = np.where(found > 0, found, NO_OBJECT)
    return ids


def with_object_ids(grasps: GraspGroup, object_ids: np.ndarray) -> GraspGroup:
    """A copy of ``grasps`` with the object_id column set."""
    from graspnet_edge_ros.grasps import OBJECT_ID

    array = grasps.array.copy()
    array[:, OBJECT_ID] = object_ids
    return GraspGroup(array)
