"""A tiny GraspNet-1Billion-layout dataset, generated from primitives (boxes, an upright cylinder).

Everything is computed analytically, nothing comes from the real dataset:

* depth: ray casting of the primitives and a 0.6 m table square with a pinhole camera (depth in
  mm, uint16 PNG; 0 where a ray hits nothing); label PNG: model index + 1 per pixel, 0 = table;
  meta.mat: poses (3, 4, n) object->camera float32, cls_indexes (1, n), intrinsic_matrix,
  factor_depth [[1000.]]; camera_poses.npy (F, 4, 4) camera f w.r.t. camera 0 and
  cam0_wrt_table.npy (4, 4), so cam0_wrt_table @ camera_poses[f] maps camera f to the table.
* grasp_label/OOO_labels.npz: points (Np, 3) on the surface, offsets (Np, 300, 12, 4, 3) =
  [angle k*pi/12, depth (d+1)*0.01, width], collision (all False), scores = the friction
  coefficient an antipodal grasp along the closing axis needs (tan of the angle between closing
  axis and contact normal, rounded up to 0.1 steps), -1 where the grasp is not antipodal, comes
  from inside the object, is deeper than the object, or closes across the contact face.
* collision_label/scene_XXXX/collision_labels.npz: arr_i True where the fingers or palm would
  pass below the table plane.
* tolerance/OOO_tolerance.npy: made by ``graspnet_edge_ros.train.tolerance`` (the code under test).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image

from graspnet_edge_ros.model.views import generate_grasp_views, viewpoint_params_to_matrix

NUM_VIEW, NUM_ANGLE, NUM_DEPTH = 300, 12, 4
TABLE_HALF_SIZE = 0.3


@dataclass(frozen=True)
class Primitive:
    kind: str                      # "box" (size = half extents) or "cylinder" (size = radius, half height, 0)
    size: tuple[float, float, float]

    @property
    def half_height(self) -> float:
        return self.size[2] if self.kind == "box" else self.size[1]


PRIMITIVES = {
    0: Primitive("box", (0.035, 0.022, 0.03)),
    1: Primitive("cylinder", (0.024, 0.045, 0.0)),
    2: Primitive("box", (0.026, 0.026, 0.018)),
}
# Model index -> (x, y, yaw) on the table per scene.
SCENE_OBJECTS = {
    0: {0: (-0.07, 0.02, 0.4), 1: (0.05, -0.04, 0.0), 2: (0.06, 0.08, -0.6)},
}


def look_at(position, target=(0.0, 0.0, 0.0)) -> np.ndarray:
    """(4, 4) camera-to-table pose of an optical frame (x right, y down, z forward) looking at target."""
    position = np.asarray(position, float)
    forward = np.asarray(target, float) - position
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    pose = np.eye(4)
    pose[:3, :3] = np.stack([right, down, forward], axis=1)
    pose[:3, 3] = position
    return pose


def object_pose(model: int, x: float, y: float, yaw: float) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    pose = np.eye(4)
    pose[:3, :3] = [[c, -s, 0], [s, c, 0], [0, 0, 1]]
    pose[:3, 3] = [x, y, PRIMITIVES[model].half_height]
    return pose


# -- rendering ------------------------------------------------------------------------------------

def _ray_hits(primitive: Primitive, origin: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """Ray parameter of the first hit per ray (inf = miss); origin (3,), directions (R, 3), object frame."""
    with np.errstate(divide="ignore", invalid="ignore"):
        if primitive.kind == "box":
            half = np.asarray(primitive.size)
            t1 = (-half - origin) / directions
            t2 = (half - origin) / directions
            near = np.nanmax(np.minimum(t1, t2), axis=1)
            far = np.nanmin(np.maximum(t1, t2), axis=1)
            return np.where((far >= near) & (near > 0), near, np.inf)
        radius, half_height, _ = primitive.size
        dx, dy, dz = directions.T
        a = dx * dx + dy * dy
        b = 2 * (origin[0] * dx + origin[1] * dy)
        c = origin[0] ** 2 + origin[1] ** 2 - radius ** 2
        disc = b * b - 4 * a * c
        t_side = (-b - np.sqrt(np.maximum(disc, 0))) / (2 * a)
        z_side = origin[2] + t_side * dz
        side = np.where((disc >= 0) & (np.abs(z_side) <= half_height) & (t_side > 0), t_side, np.inf)
        best = side
        for cap in (half_height, -half_height):
            t_cap = (cap - origin[2]) / dz
            x, y = origin[0] + t_cap * dx, origin[1] + t_cap * dy
            best = np.minimum(best, np.where((x * x + y * y <= radius ** 2) & (t_cap > 0), t_cap, np.inf))
        return best


def render(camera_pose: np.ndarray, objects: dict[int, np.ndarray], intrinsic: np.ndarray, width: int, height: int
           ) -> tuple[np.ndarray, np.ndarray]:
    """(depth uint16 mm, label uint8) of the table and objects seen from camera_pose (camera->table)."""
    u, v = np.meshgrid(np.arange(width), np.arange(height))
    rays = np.stack([(u - intrinsic[0, 2]) / intrinsic[0, 0], (v - intrinsic[1, 2]) / intrinsic[1, 1],
                     np.ones_like(u, dtype=float)], axis=-1).reshape(-1, 3)       # z = 1: t is the depth
    directions = rays @ camera_pose[:3, :3].T
    origin = camera_pose[:3, 3]
    with np.errstate(divide="ignore", invalid="ignore"):
        t_table = -origin[2] / directions[:, 2]
    hit = origin + t_table[:, None] * directions
    on_table = (t_table > 0) & (np.abs(hit[:, 0]) <= TABLE_HALF_SIZE) & (np.abs(hit[:, 1]) <= TABLE_HALF_SIZE)
    depth = np.where(on_table, t_table, np.inf)
    label = np.zeros(len(rays), dtype=np.uint8)
    for model, pose in objects.items():
        rot, trans = pose[:3, :3], pose[:3, 3]
        t = _ray_hits(PRIMITIVES[model], rot.T @ (origin - trans), directions @ rot)
        closer = t < depth
        depth = np.where(closer, t, depth)
        label[closer] = model + 1
    depth_mm = np.where(np.isfinite(depth), np.round(depth * 1000.0), 0).astype(np.uint16)
    return depth_mm.reshape(height, width), label.reshape(height, width)


# -- grasp labels ---------------------------------------------------------------------------------

def surface_points(primitive: Primitive, spacing: float = 0.012) -> tuple[np.ndarray, np.ndarray]:
    """(points, outward normals) on a grid over the primitive's surface, object frame."""
    points, normals = [], []
    if primitive.kind == "box":
        half = np.asarray(primitive.size)
        for axis in range(3):
            others = [a for a in range(3) if a != axis]
            grid = [np.arange(-half[a] + spacing / 2, half[a], spacing) for a in others]
            g0, g1 = np.meshgrid(*grid)
            for sign in (-1.0, 1.0):
                p = np.zeros((g0.size, 3))
                p[:, others[0]], p[:, others[1]], p[:, axis] = g0.ravel(), g1.ravel(), sign * half[axis]
                n = np.zeros_like(p)
                n[:, axis] = sign
                points.append(p)
                normals.append(n)
    else:
        radius, half_height, _ = primitive.size
        angles = np.arange(0, 2 * np.pi, spacing / radius)
        heights = np.arange(-half_height + spacing / 2, half_height, spacing)
        a, h = np.meshgrid(angles, heights)
        n = np.stack([np.cos(a.ravel()), np.sin(a.ravel()), np.zeros(a.size)], axis=1)
        points.append(n * radius + np.stack([np.zeros(a.size), np.zeros(a.size), h.ravel()], axis=1))
        normals.append(n)
        ring = np.arange(0.0, 2 * np.pi, 2 * np.pi / 8)
        for sign in (-1.0, 1.0):
            cap = np.stack([0.6 * radius * np.cos(ring), 0.6 * radius * np.sin(ring),
                            np.full(ring.size, sign * half_height)], axis=1)
            points.append(np.vstack([[0.0, 0.0, sign * half_height], cap]))
            normals.append(np.tile([0.0, 0.0, sign], (len(ring) + 1, 1)))
    return np.vstack(points).astype(np.float32), np.vstack(normals)


def gripper_frames() -> np.ndarray:
    """(V, A, 3, 3) rotations f(-view, angle), object frame (columns: approach, closing, height)."""
    views = generate_grasp_views(NUM_VIEW)
    angles = np.arange(NUM_ANGLE) * np.pi / NUM_ANGLE
    towards = np.repeat(-views, NUM_ANGLE, axis=0)
    return viewpoint_params_to_matrix(towards, np.tile(angles, NUM_VIEW)).reshape(NUM_VIEW, NUM_ANGLE, 3, 3)


def _exit_distance(primitive: Primitive, points: np.ndarray, approach: np.ndarray) -> np.ndarray:
    """How far a ray from each surface point along each approach stays inside the primitive (>= 0)."""
    if primitive.kind == "box":
        half = np.asarray(primitive.size)
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(approach[None] > 0, (half - points[:, None, None]), (-half - points[:, None, None])) / approach[None]
        return np.clip(np.nanmin(np.where(np.isfinite(t), t, np.inf), axis=-1), 0, None)
    radius, half_height, _ = primitive.size
    p = points[:, None, None]
    d = approach[None]
    a = d[..., 0] ** 2 + d[..., 1] ** 2
    b = 2 * (p[..., 0] * d[..., 0] + p[..., 1] * d[..., 1])
    c = p[..., 0] ** 2 + p[..., 1] ** 2 - radius ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        t_side = np.where(a > 1e-12, (-b + np.sqrt(np.maximum(b * b - 4 * a * c, 0))) / (2 * a), np.inf)
        t_cap = np.where(d[..., 2] > 0, half_height - p[..., 2], -half_height - p[..., 2]) / d[..., 2]
    return np.clip(np.minimum(t_side, np.where(np.isfinite(t_cap), t_cap, np.inf)), 0, None)


def grasp_labels(primitive: Primitive, frames: np.ndarray) -> dict[str, np.ndarray]:
    """Official ``XXX_labels.npz`` arrays of one primitive."""
    points, normals = surface_points(primitive)
    approach, closing = frames[..., 0], frames[..., 1]                      # (V, A, 3)
    if primitive.kind == "box":
        contact_axis = np.argmax(np.abs(closing), axis=-1)                   # the faces the jaws touch
        cos_contact = np.take_along_axis(np.abs(closing), contact_axis[..., None], -1)[..., 0]
        half_span = np.asarray(primitive.size)[contact_axis]
    else:
        radius, half_height, _ = primitive.size
        axial = np.abs(closing[..., 2])
        radial = axial < 0.7
        cos_contact = np.where(radial, np.sqrt(1 - axial ** 2), axial)
        half_span = np.where(radial, radius, half_height)
    tan_contact = np.sqrt(np.clip(1 - cos_contact ** 2, 0, None)) / cos_contact
    width = 2 * half_span / cos_contact + 0.01                                 # (V, A)
    friction = np.clip(np.ceil(tan_contact * 10 - 1e-6) / 10, 0.1, None)
    from_outside = np.einsum("pk,vak->pva", normals, approach) <= -0.5       # approaches against the normal
    not_across_contact = np.abs(np.einsum("pk,vak->pva", normals, closing)) < 0.5
    inside_depth = _exit_distance(primitive, points.astype(float), approach)  # (Np, V, A)
    depths = (np.arange(NUM_DEPTH) + 1) * 0.01
    valid = ((tan_contact <= 1.0)[None, ..., None] & from_outside[..., None] & not_across_contact[..., None]
             & (depths <= inside_depth[..., None] + 1e-9))
    scores = np.where(valid, friction[None, ..., None], -1.0).astype(np.float32)
    offsets = np.empty(scores.shape + (3,), np.float32)
    offsets[..., 0] = (np.arange(NUM_ANGLE) * np.pi / NUM_ANGLE)[None, None, :, None]
    offsets[..., 1] = depths[None, None, None, :]
    offsets[..., 2] = width[None, ..., None]
    return {"points": points, "offsets": offsets, "collision": np.zeros(scores.shape, bool), "scores": scores}


def table_collision(points: np.ndarray, frames: np.ndarray, pose_in_table: np.ndarray) -> np.ndarray:
    """(Np, V, A, D) True where fingertips or the palm (2 cm behind the point) go below the table."""
    table_points = points @ pose_in_table[:3, :3].T + pose_in_table[:3, 3]
    approach_z = (frames[..., 0] @ pose_in_table[:3, :3].T)[..., 2]           # (V, A)
    depths = (np.arange(NUM_DEPTH) + 1) * 0.01
    tip_z = table_points[:, 2, None, None, None] + approach_z[None, ..., None] * depths
    palm_z = table_points[:, 2, None, None] - 0.02 * approach_z[None]
    return (tip_z < 0) | (palm_z < 0)[..., None]


# -- the dataset ----------------------------------------------------------------------------------

def write_dataset(root: Path, camera: str = "realsense", num_frames: int = 2, width: int = 320, height: int = 240,
                  scenes: dict[int, dict[int, tuple[float, float, float]]] | None = None) -> Path:
    """Write the dataset (labels, scenes, tolerance via the package's generator) under root."""
    from graspnet_edge_ros.train.tolerance import main as tolerance_main

    root = Path(root)
    scenes = scenes or SCENE_OBJECTS
    intrinsic = np.array([[300.0, 0, width / 2], [0, 300.0, height / 2], [0, 0, 1]])
    frames = gripper_frames()
    models = sorted({m for objects in scenes.values() for m in objects})
    (root / "grasp_label").mkdir(parents=True, exist_ok=True)
    labels = {}
    for model in models:
        labels[model] = grasp_labels(PRIMITIVES[model], frames)
        np.savez_compressed(root / "grasp_label" / f"{model:03d}_labels.npz", **labels[model])
    for scene, placements in scenes.items():
        scene_dir = root / "scenes" / f"scene_{scene:04d}"
        camera_dir = scene_dir / camera
        for kind in ("rgb", "depth", "label", "meta"):
            (camera_dir / kind).mkdir(parents=True, exist_ok=True)
        (scene_dir / "object_id_list.txt").write_text("".join(f"{m}\n" for m in placements))
        np.save(scene_dir / "rs_wrt_kn.npy", np.eye(4))
        in_table = {m: object_pose(m, *placement) for m, placement in placements.items()}
        camera_in_table = [look_at((0.1 * np.sin(0.5 * f), -0.32 + 0.03 * f, 0.42)) for f in range(num_frames)]
        cam0_wrt_table = camera_in_table[0]
        camera_poses = np.stack([np.linalg.inv(cam0_wrt_table) @ pose for pose in camera_in_table])
        np.save(camera_dir / "cam0_wrt_table.npy", cam0_wrt_table)
        np.save(camera_dir / "camera_poses.npy", camera_poses)
        np.save(camera_dir / "camK.npy", intrinsic)
        for frame, pose in enumerate(camera_in_table):
            depth, label = render(pose, in_table, intrinsic, width, height)
            Image.fromarray(depth).save(camera_dir / "depth" / f"{frame:04d}.png")
            Image.fromarray(label).save(camera_dir / "label" / f"{frame:04d}.png")
            rgb = np.stack([label * 70, np.full_like(label, 120), (depth // 8).astype(np.uint8)], axis=-1)
            Image.fromarray(rgb.astype(np.uint8)).save(camera_dir / "rgb" / f"{frame:04d}.png")
            to_camera = np.linalg.inv(pose)
            poses = np.stack([(to_camera @ in_table[m])[:3] for m in placements], axis=-1).astype(np.float32)
            scipy.io.savemat(camera_dir / "meta" / f"{frame:04d}.mat", {
                "poses": poses, "cls_indexes": np.array([[m + 1 for m in placements]]),
                "intrinsic_matrix": intrinsic, "factor_depth": np.array([[1000.0]])})
        collision_dir = root / "collision_label" / f"scene_{scene:04d}"
        collision_dir.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(collision_dir / "collision_labels.npz", **{
            f"arr_{i}": table_collision(labels[m]["points"], frames, in_table[m]) for i, m in enumerate(placements)})
    code = tolerance_main(["--dataset-root", str(root), "--objects", ",".join(str(m) for m in models)])
    if code != 0:
        raise RuntimeError(f"tolerance generator failed with exit code {code}")
    return root
