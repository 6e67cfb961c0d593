"""GraspNet-1Billion training data: the official directory layout and graspnet-baseline's loader.

Layout (spec §9.1; only the files training reads are required)::

    ROOT/scenes/scene_XXXX/object_id_list.txt
    ROOT/scenes/scene_XXXX/{realsense,kinect}/{depth,label}/FFFF.png, meta/FFFF.mat,
                                              camera_poses.npy, cam0_wrt_table.npy
    ROOT/grasp_label/OOO_labels.npz          points, offsets, scores (collision unused)
    ROOT/collision_label/scene_XXXX/collision_labels.npz   arr_i per meta cls_indexes position
    ROOT/tolerance/OOO_tolerance.npy         from ``python -m graspnet_edge_ros.train.tolerance``

Per frame (``dataset/graspnet_dataset.py``, train: remove_outlier, remove_invisible, augment):
depth -> organised cloud; workspace = foreground box (table frame) grown by 2 cm, strict;
sample num_points (official replacement rule); objectness = seg > 0; per object (index 18
skipped, < 50 sampled points skipped): drop label points >= 1 cm from the object's sampled
points, keep min(max(Np/4, 300), Np) at random, zero score and tolerance where the scene
collision label is set; augment: flip x with p = 0.5, rotate about the camera x axis by
U(-30°, 30°), the poses with the cloud.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.spatial import cKDTree
from torch.utils.data import Dataset

from graspnet_edge_ros.camera import CameraIntrinsics, back_project, sample_indices
from graspnet_edge_ros.errors import ConfigError, InputError
from graspnet_edge_ros.train.tolerance import grasp_label_file, tolerance_file

CAMERAS = ("realsense", "kinect")
SKIPPED_OBJECT_INDEX = 18          # official load_grasp_labels: `if i == 18: continue` (model 018, label id 19)
MIN_OBJECT_POINTS = 50
VISIBLE_THRESHOLD_M = 0.01
WORKSPACE_OUTLIER_M = 0.02
MIN_LABEL_POINTS = 300


@dataclass(frozen=True)
class DatasetLayout:
    """Paths of one camera's data under a GraspNet-1Billion root."""

    root: Path
    camera: str
    tolerance_dir: Path

    @classmethod
    def create(cls, root: str | Path, camera: str, tolerance_dir: str | Path | None = None) -> "DatasetLayout":
        if camera not in CAMERAS:
            raise ConfigError(f"camera must be one of {CAMERAS}, got {camera!r}")
        root = Path(root)
        if not root.is_dir():
            raise InputError(f"dataset root not found: {root}")
        return cls(root, camera, Path(tolerance_dir) if tolerance_dir else root / "tolerance")

    def scene_dir(self, scene: int) -> Path:
        return self.root / "scenes" / f"scene_{scene:04d}"

    def camera_dir(self, scene: int) -> Path:
        return self.scene_dir(scene) / self.camera

    def frame_file(self, scene: int, kind: str, frame: int) -> Path:
        suffix = ".mat" if kind == "meta" else ".png"
        return self.camera_dir(scene) / kind / f"{frame:04d}{suffix}"

    def collision_file(self, scene: int) -> Path:
        return self.root / "collision_label" / f"scene_{scene:04d}" / "collision_labels.npz"

    def object_list_file(self, scene: int) -> Path:
        return self.scene_dir(scene) / "object_id_list.txt"

    def grasp_label_file(self, object_index: int) -> Path:
        return grasp_label_file(self.root, object_index)

    def tolerance_file(self, object_index: int) -> Path:
        return tolerance_file(self.tolerance_dir, object_index)


def scene_object_indices(layout: DatasetLayout, scene: int) -> list[int]:
    """0-based model indices of ``object_id_list.txt``."""
    path = layout.object_list_file(scene)
    try:
        return [int(line) for line in path.read_text().split()]
    except ValueError as exc:
        raise InputError(f"{path}: expected one integer object id per line ({exc})") from exc


def check_dataset(layout: DatasetLayout, scenes: list[int], frames: list[int], remove_outlier: bool = True) -> None:
    """Raise InputError naming the first file training needs that is missing."""
    def require(path: Path, hint: str = "") -> None:
        if not path.is_file():
            raise InputError(f"incomplete dataset: missing {path}{hint}")

    objects: set[int] = set()
    for scene in scenes:
        require(layout.object_list_file(scene))
        objects.update(scene_object_indices(layout, scene))
        require(layout.collision_file(scene))
        if remove_outlier:
            require(layout.camera_dir(scene) / "camera_poses.npy")
            require(layout.camera_dir(scene) / "cam0_wrt_table.npy")
        for frame in frames:
            for kind in ("depth", "label", "meta"):
                require(layout.frame_file(scene, kind, frame))
    for index in sorted(objects - {SKIPPED_OBJECT_INDEX}):
        require(layout.grasp_label_file(index))
        require(layout.tolerance_file(index),
                f" (generate it: python -m graspnet_edge_ros.train.tolerance --dataset-root {layout.root})")


class GraspLabelStore:
    """Per-object grasp labels (points, offsets, scores, tolerance) as float32, loaded once.

    Call ``preload`` before DataLoader workers fork to share the arrays copy-on-write, as the
    official loader does (it loads every object up front).
    """

    def __init__(self, layout: DatasetLayout):
        self.layout = layout
        self._cache: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}

    def preload(self, object_indices) -> None:
        for index in object_indices:
            self.get(index)

    def get(self, object_index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        if object_index not in self._cache:
            self._cache[object_index] = self._load(object_index)
        return self._cache[object_index]

    def _load(self, object_index: int):
        label_path = self.layout.grasp_label_file(object_index)
        tolerance_path = self.layout.tolerance_file(object_index)
        try:
            with np.load(label_path) as label:
                points = label["points"].astype(np.float32)
                offsets = label["offsets"].astype(np.float32)
                scores = label["scores"].astype(np.float32)
            tolerance = np.load(tolerance_path).astype(np.float32)
        except (OSError, ValueError, KeyError) as exc:
            raise InputError(f"cannot read labels of object {object_index:03d} "
                             f"({label_path}, {tolerance_path}): {exc}") from exc
        count = len(points)
        if (points.shape != (count, 3) or scores.ndim != 4 or scores.shape[0] != count
                or offsets.shape != scores.shape + (3,) or tolerance.shape != scores.shape):
            raise InputError(
                f"object {object_index:03d}: inconsistent label shapes points {points.shape}, offsets "
                f"{offsets.shape}, scores {scores.shape}, tolerance {tolerance.shape} (expected (Np,3), "
                f"(Np,V,A,D,3), (Np,V,A,D), (Np,V,A,D))")
        return points, offsets, scores, tolerance


def workspace_mask(cloud: np.ndarray, seg: np.ndarray, trans: np.ndarray, outlier: float = WORKSPACE_OUTLIER_M
                   ) -> np.ndarray:
    """Official ``get_workspace_mask``: (H, W, 3) camera cloud -> (H, W) bool inside the grown foreground box.

    ``trans`` (4, 4) maps camera to table coordinates (cam0_wrt_table @ camera_poses[frame]).
    """
    height, width = seg.shape
    points = cloud.reshape(-1, 3) @ trans[:3, :3].T + trans[:3, 3]
    foreground = points[seg.reshape(-1) > 0]
    if len(foreground) == 0:
        return np.zeros((height, width), dtype=bool)
    low, high = foreground.min(axis=0) - outlier, foreground.max(axis=0) + outlier
    inside = np.all((points > low) & (points < high), axis=1)
    return inside.reshape(height, width)


def visible_label_points(object_cloud: np.ndarray, label_points: np.ndarray, pose: np.ndarray,
                         threshold: float = VISIBLE_THRESHOLD_M) -> np.ndarray:
    """Official ``remove_invisible_grasp_points``: (Np,) bool, nearest object point closer than threshold."""
    if len(object_cloud) == 0:
        return np.zeros(len(label_points), dtype=bool)
    camera_points = label_points @ pose[:3, :3].T + pose[:3, 3]
    distance, _ = cKDTree(object_cloud).query(camera_points, k=1)
    return distance < threshold


def augment(points: np.ndarray, poses: list[np.ndarray], rng: np.random.Generator
            ) -> tuple[np.ndarray, list[np.ndarray]]:
    """Official ``augment_data``: flip x with p = 0.5, then rotate about camera x by U(-30°, 30°)."""
    transform = np.eye(3)
    if rng.random() > 0.5:
        transform = np.diag([-1.0, 1.0, 1.0])
    angle = rng.random() * np.pi / 3 - np.pi / 6
    c, s = np.cos(angle), np.sin(angle)
    transform = np.array([[1, 0, 0], [0, c, -s], [0, s, c]]) @ transform
    points = (points @ transform.T).astype(np.float32)
    poses = [(transform @ pose).astype(np.float32) for pose in poses]
    return points, poses


class GraspNetDataset(Dataset):
    """One item per (scene, frame); see the module docstring for the processing.

    Randomness comes from ``numpy.random.default_rng((seed, epoch, index))``: reproducible,
    independent of worker count and rank, different every epoch (call ``set_epoch``).
    """

    def __init__(self, layout: DatasetLayout, scenes: list[int], frames: list[int], num_points: int = 20000,
                 remove_outlier: bool = True, remove_invisible: bool = True, augment: bool = True,
                 seed: int = 0, labels: GraspLabelStore | None = None):
        if num_points < 1:
            raise ConfigError(f"num_points must be >= 1, got {num_points}")
        check_dataset(layout, scenes, frames, remove_outlier)
        self.layout, self.num_points, self.seed = layout, int(num_points), int(seed)
        self.remove_outlier, self.remove_invisible, self.augment = remove_outlier, remove_invisible, augment
        self.items = [(scene, frame) for scene in scenes for frame in frames]
        self.labels = labels or GraspLabelStore(layout)
        self.object_indices = sorted({i for s in scenes for i in scene_object_indices(layout, s)}
                                     - {SKIPPED_OBJECT_INDEX})
        self.epoch = 0
        self._collision: dict[int, dict[int, np.ndarray]] = {}

    def __len__(self) -> int:
        return len(self.items)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def collision_labels(self, scene: int) -> dict[int, np.ndarray]:
        if scene not in self._collision:
            path = self.layout.collision_file(scene)
            try:
                with np.load(path) as data:
                    self._collision[scene] = {i: data[f"arr_{i}"].astype(bool) for i in range(len(data.files))}
            except (OSError, ValueError, KeyError) as exc:
                raise InputError(f"cannot read collision labels {path}: {exc}") from exc
        return self._collision[scene]

    def _read_frame(self, scene: int, frame: int):
        from PIL import Image
        from scipy.io import loadmat

        depth_path = self.layout.frame_file(scene, "depth", frame)
        label_path = self.layout.frame_file(scene, "label", frame)
        meta_path = self.layout.frame_file(scene, "meta", frame)
        try:
            with Image.open(depth_path) as image:
                depth = np.array(image)
            with Image.open(label_path) as image:
                seg = np.array(image)
            meta = loadmat(meta_path)
            cls_indexes = meta["cls_indexes"].flatten().astype(np.int32)
            poses = np.asarray(meta["poses"], dtype=np.float32).reshape(3, 4, -1)
            intrinsic = np.asarray(meta["intrinsic_matrix"], dtype=np.float64)
            factor_depth = float(np.asarray(meta["factor_depth"]).reshape(-1)[0])
        except (OSError, ValueError, KeyError) as exc:
            raise InputError(f"cannot read frame {frame:04d} of scene {scene:04d} "
                             f"({depth_path.parent.parent}): {type(exc).__name__}: {exc}") from exc
        if depth.shape != seg.shape or depth.ndim != 2:
            raise InputError(f"{depth_path}: depth {depth.shape} and label {seg.shape} must be equal (H, W) images")
        if poses.shape[2] != len(cls_indexes):
            raise InputError(f"{meta_path}: {poses.shape[2]} poses for {len(cls_indexes)} cls_indexes")
        return depth, seg, cls_indexes, poses, intrinsic, factor_depth

    def __getitem__(self, index: int) -> dict:
        scene, frame = self.items[index]
        rng = np.random.default_rng((self.seed, self.epoch, index))
        depth, seg, cls_indexes, poses, intrinsic, factor_depth = self._read_frame(scene, frame)
        height, width = depth.shape
        intrinsics = CameraIntrinsics.from_matrix(intrinsic, width, height)
        cloud = back_project(depth.astype(np.float32) / factor_depth, intrinsics)
        mask = depth > 0
        if self.remove_outlier:
            camera_dir = self.layout.camera_dir(scene)
            trans = np.load(camera_dir / "cam0_wrt_table.npy") @ np.load(camera_dir / "camera_poses.npy")[frame]
            mask &= workspace_mask(cloud, seg, trans)
        if not mask.any():
            raise InputError(f"scene {scene:04d} frame {frame:04d}: no valid depth inside the workspace")
        cloud_masked, seg_masked = cloud[mask], seg[mask]
        chosen = sample_indices(len(cloud_masked), self.num_points, rng)
        cloud_sampled, seg_sampled = cloud_masked[chosen], seg_masked[chosen]

        collision = self.collision_labels(scene)
        object_poses, grasp_points, grasp_offsets, grasp_scores, grasp_tolerance = [], [], [], [], []
        for i, obj_id in enumerate(cls_indexes):                     # obj_id = model index + 1
            object_index = int(obj_id) - 1
            if object_index == SKIPPED_OBJECT_INDEX or object_index not in self.object_indices:
                continue
            on_object = seg_sampled == obj_id
            if on_object.sum() < MIN_OBJECT_POINTS:
                continue
            points, offsets, scores, tolerance = self.labels.get(object_index)
            if i not in collision or collision[i].shape != scores.shape:
                raise InputError(f"{self.layout.collision_file(scene)}: arr_{i} missing or not shaped "
                                 f"{scores.shape} like the labels of object {object_index:03d}")
            pose = poses[:, :, i]
            object_collision = collision[i]
            if self.remove_invisible:
                visible = visible_label_points(cloud_sampled[on_object], points, pose)
                points, offsets, scores = points[visible], offsets[visible], scores[visible]
                tolerance, object_collision = tolerance[visible], object_collision[visible]
            if len(points) == 0:
                continue
            keep = rng.choice(len(points), min(max(len(points) // 4, MIN_LABEL_POINTS), len(points)), replace=False)
            colliding = object_collision[keep]
            object_poses.append(pose)
            grasp_points.append(points[keep])
            grasp_offsets.append(offsets[keep])
            grasp_scores.append(np.where(colliding, 0.0, scores[keep]).astype(np.float32))
            grasp_tolerance.append(np.where(colliding, 0.0, tolerance[keep]).astype(np.float32))
        if self.augment:
            cloud_sampled, object_poses = augment(cloud_sampled, object_poses, rng)
        return {
            "point_clouds": cloud_sampled.astype(np.float32),
            "objectness_label": (seg_sampled > 0).astype(np.int64),
            "object_poses_list": object_poses,
            "grasp_points_list": grasp_points,
            "grasp_offsets_list": grasp_offsets,
            "grasp_labels_list": grasp_scores,
            "grasp_tolerance_list": grasp_tolerance,
        }


LIST_KEYS = ("object_poses_list", "grasp_points_list", "grasp_offsets_list", "grasp_labels_list",
             "grasp_tolerance_list")


def collate(batch: list[dict]) -> dict:
    """Stack the fixed-size arrays; per-object arrays stay lists (per item) of tensors."""
    out = {key: torch.from_numpy(np.stack([item[key] for item in batch])) for key in ("point_clouds", "objectness_label")}
    for key in LIST_KEYS:
        out[key] = [[torch.from_numpy(np.ascontiguousarray(a)) for a in item[key]] for item in batch]
    return out
