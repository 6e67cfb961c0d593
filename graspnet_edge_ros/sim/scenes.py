"""Reproducible tabletop scenes in pybullet: objects dropped on a table, rendered like a RealSense.

World frame: z up, metres; the table top is the plane z = TABLE_TOP_Z, centred on the origin.
The table is a solid block down to the floor, because the space under a real desk is out of
reach for an arm mounted on it: a gripper pose below the top is a collision, not free space.

Cameras look at the table centre, obliquely (azimuth, elevation and distance drawn from the
seed) or straight down, with RealSense-D435-like colour intrinsics (f = 615 px at 640x480,
922.5 px at 1280x720: the same 42.6 deg vertical field of view). Images:

* colour: (H, W, 3) uint8 RGB from pybullet's CPU renderer;
* depth: (H, W) uint16 millimetres along the optical axis (0 = no depth), optionally with
  RealSense-like noise (sigma growing with z^2, 1 mm quantisation) and holes (at depth edges,
  where one of the stereo pair is occluded, plus sparse dropouts);
* labels: (H, W) int32 instance labels from the segmentation buffer: 0 = table/floor/background,
  1..N = the objects in ``SimScene.object_names`` order.

Assets come from ``pybullet_data`` (shipped in the pybullet wheel, zlib licence; see ASSET_NOTICE).
pybullet is imported lazily, so importing this module never needs it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from graspnet_edge_ros.camera import CameraIntrinsics
from graspnet_edge_ros.errors import ConfigError
from graspnet_edge_ros.sim._bullet import import_pybullet

TABLE_TOP_Z = 0.6
TABLE_SIZE_XY = (1.0, 0.8)
TABLE_RGBA = (0.72, 0.62, 0.48, 1.0)
DROP_HALF_EXTENT_M = 0.12          # objects are dropped within +-this of the table centre
RANDOM_URDF_SCALE = 0.7            # random_urdfs are ~10 cm blobs: 7 cm fits a 10 cm gripper
HOUSEHOLD_MAX_EXTENT_M = 0.08      # meshes without a URDF (toys) are scaled to this size
SETTLE_S = 1.5
TIME_STEP_S = 1.0 / 240.0
NEAR_M, FAR_M = 0.05, 4.0
FOCAL_PX_PER_ROW = 615.0 / 480.0   # RealSense D435 colour: fx = fy = 615 at 640x480
VIEWS = ("oblique", "topdown")
RESOLUTIONS = ((640, 480), (1280, 720))

OBJECT_SETS = ("mixed", "random", "household", "boxes")
ASSET_SOURCE = "pybullet_data (pybullet 3.2.7 wheel)"
ASSET_NOTICE = ("Object, plane and floor assets from pybullet_data, distributed in the pybullet wheel under "
                "the zlib licence (Bullet Physics SDK, Copyright (c) Erwin Coumans; see the wheel's "
                "LICENSE.txt). The assets used here (random_urdfs, objects/mug, duck_vhacd, lego, jenga, "
                "teddy_vhacd, toys meshes, plane) carry no licence file of their own.")

# name -> (path in pybullet_data, kind); "mesh" = an .obj without a usable URDF (scaled on load).
HOUSEHOLD_ASSETS = (
    ("mug", "objects/mug.urdf", "urdf"),
    ("duck", "duck_vhacd.urdf", "urdf"),
    ("lego", "lego/lego.urdf", "urdf"),
    ("jenga", "jenga/jenga.urdf", "urdf"),
    ("teddy", "teddy_vhacd.urdf", "urdf"),
    ("toy_cube", "toys/cube.obj", "mesh"),
    ("toy_cylinder", "toys/cylinder.obj", "mesh"),
    ("toy_prism", "toys/prism.obj", "mesh"),
)
OBJECT_COLOURS = ((0.85, 0.2, 0.2), (0.2, 0.6, 0.9), (0.95, 0.75, 0.1), (0.3, 0.75, 0.3),
                  (0.6, 0.35, 0.8), (0.95, 0.5, 0.2), (0.2, 0.8, 0.8), (0.5, 0.5, 0.55))


@dataclass(frozen=True)
class ObjectAsset:
    """One object to drop: a pybullet_data file (URDF or mesh) or a procedural box (kind "box")."""

    name: str
    path: str = ""
    kind: str = "urdf"
    scale: float = 0.0             # 0 = the asset's own size (meshes: HOUSEHOLD_MAX_EXTENT_M)
    box_size: tuple = ()


@dataclass
class SimScene:
    """One rendered view of a settled scene.

    Attributes:
        seed, view: what it was made from ("oblique" or "topdown").
        color: (H, W, 3) uint8 RGB. depth_mm: (H, W) uint16 mm, 0 = no depth.
        labels: (H, W) int32, 0 = table/background, i = object_names[i - 1].
        intrinsics: CameraIntrinsics of all three images.
        camera_pose: (4, 4) world <- camera optical frame (x right, y down, z forward).
        table_plane: [nx, ny, nz, d] in the camera frame, n.p + d = height above the table top
            (the convention of the ``table_plane`` parameter).
        object_names: asset name of each label. object_assets: the ObjectAsset of each label.
        noise: whether RealSense-like depth noise and holes were applied.
    """

    seed: int
    view: str
    color: np.ndarray
    depth_mm: np.ndarray
    labels: np.ndarray
    intrinsics: CameraIntrinsics
    camera_pose: np.ndarray
    table_plane: np.ndarray
    object_names: tuple = ()
    object_assets: tuple = ()
    noise: bool = False
    asset_source: str = ASSET_SOURCE

    @property
    def depth_m(self) -> np.ndarray:
        return self.depth_mm.astype(np.float32) * np.float32(0.001)


@dataclass(frozen=True)
class SceneOptions:
    object_set: str = "mixed"
    objects_per_scene: int = 6
    settle_s: float = SETTLE_S

    def __post_init__(self):
        check_object_set(self.object_set)
        if not 1 <= int(self.objects_per_scene) <= 30:
            raise ConfigError(f"objects_per_scene must be in 1..30, got {self.objects_per_scene}")


def check_object_set(name: str) -> None:
    if name not in OBJECT_SETS:
        raise ConfigError(f"unknown object set {name!r}; choose one of {', '.join(OBJECT_SETS)}")


def check_view(view: str) -> None:
    if view not in VIEWS:
        raise ConfigError(f"unknown view {view!r}; choose one of {', '.join(VIEWS)}")


def realsense_intrinsics(resolution) -> CameraIntrinsics:
    """Square pixels, f = 615 px per 480 rows, principal point at the image centre (pixel-index
    convention: pixel u spans [u - 0.5, u + 0.5], so the centre is (W - 1) / 2)."""
    width, height = (int(v) for v in resolution)
    if width < 16 or height < 16:
        raise ConfigError(f"resolution must be at least 16x16, got {width}x{height}")
    focal = FOCAL_PX_PER_ROW * height
    return CameraIntrinsics(focal, focal, (width - 1) / 2.0, (height - 1) / 2.0, width, height)


def camera_pose(view: str, seed: int) -> np.ndarray:
    """(4, 4) world <- optical frame of the scene's camera for ``view``."""
    check_view(view)
    target = np.array([0.0, 0.0, TABLE_TOP_Z])
    if view == "topdown":
        eye = target + np.array([0.0, 0.0, 0.6])
        up_hint = np.array([0.0, 1.0, 0.0])
    else:
        rng = np.random.default_rng([int(seed), 7])
        azimuth = rng.uniform(0.0, 2.0 * math.pi)
        elevation = math.radians(rng.uniform(40.0, 55.0))
        distance = rng.uniform(0.6, 0.75)
        eye = target + distance * np.array([math.cos(elevation) * math.cos(azimuth),
                                            math.cos(elevation) * math.sin(azimuth), math.sin(elevation)])
        up_hint = np.array([0.0, 0.0, 1.0])
    z_axis = (target - eye) / np.linalg.norm(target - eye)
    x_axis = np.cross(z_axis, up_hint)
    x_axis /= np.linalg.norm(x_axis)
    y_axis = np.cross(z_axis, x_axis)
    pose = np.eye(4)
    pose[:3, 0], pose[:3, 1], pose[:3, 2], pose[:3, 3] = x_axis, y_axis, z_axis, eye
    return pose


def choose_objects(seed: int, object_set: str, count: int, data_path: str | None = None) -> list[ObjectAsset]:
    """The seed's objects (reproducible; ``data_path`` = pybullet_data's folder, for random_urdfs)."""
    check_object_set(object_set)
    rng = np.random.default_rng([int(seed), 1])
    random_names = None
    if object_set in ("random", "mixed"):
        root = Path(data_path) / "random_urdfs"
        random_names = sorted(p.name for p in root.iterdir() if (p / f"{p.name}.urdf").is_file())
    assets = []
    for _ in range(count):
        kind = object_set if object_set != "mixed" else ("random" if rng.random() < 0.5 else "household")
        if kind == "random":
            name = random_names[int(rng.integers(len(random_names)))]
            assets.append(ObjectAsset(f"random_{name}", f"random_urdfs/{name}/{name}.urdf", "urdf",
                                      RANDOM_URDF_SCALE))
        elif kind == "household":
            name, path, asset_kind = HOUSEHOLD_ASSETS[int(rng.integers(len(HOUSEHOLD_ASSETS)))]
            assets.append(ObjectAsset(name, path, asset_kind))
        else:
            size = tuple(float(v) for v in rng.uniform([0.03, 0.03, 0.03], [0.07, 0.12, 0.09]))
            assets.append(ObjectAsset("box", kind="box", box_size=size))
    return assets


class SimWorld:
    """A pybullet DIRECT client with the floor and the table; objects get labels 1..N in order.

    Use as a context manager (or call close()). Not thread-safe; one per process is typical.
    """

    def __init__(self):
        self.p, data = import_pybullet()
        self.data_path = data.getDataPath()
        self.client = self.p.connect(self.p.DIRECT)
        self.objects: list[int] = []            # body ids, label = index + 1
        self.object_assets: list[ObjectAsset] = []
        self.object_colours: list = []
        self.settled: list | None = None         # (asset, colour, position, orientation) per object
        self.reset()

    # -- lifetime -------------------------------------------------------------------------------
    def close(self) -> None:
        if self.client is not None and self.p.isConnected(self.client):
            self.p.disconnect(self.client)
        self.client = None

    def __enter__(self) -> "SimWorld":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def reset(self) -> None:
        p, c = self.p, self.client
        p.resetSimulation(physicsClientId=c)
        p.setAdditionalSearchPath(self.data_path, physicsClientId=c)
        p.setGravity(0, 0, -9.81, physicsClientId=c)
        p.setTimeStep(TIME_STEP_S, physicsClientId=c)
        self.floor = p.loadURDF("plane.urdf", physicsClientId=c)
        half = [TABLE_SIZE_XY[0] / 2, TABLE_SIZE_XY[1] / 2, TABLE_TOP_Z / 2]
        shape = p.createCollisionShape(p.GEOM_BOX, halfExtents=half, physicsClientId=c)
        visual = p.createVisualShape(p.GEOM_BOX, halfExtents=half, rgbaColor=TABLE_RGBA, physicsClientId=c)
        self.table = p.createMultiBody(0, shape, visual, [0, 0, TABLE_TOP_Z / 2], physicsClientId=c)
        p.changeDynamics(self.table, -1, lateralFriction=1.0, physicsClientId=c)
        self.objects, self.object_assets, self.object_colours = [], [], []

    # -- building -------------------------------------------------------------------------------
    def add_object(self, asset: ObjectAsset, position, orientation_xyzw=(0, 0, 0, 1), colour=None) -> int:
        p, c = self.p, self.client
        if asset.kind == "box":
            half = [v / 2 for v in asset.box_size]
            shape = p.createCollisionShape(p.GEOM_BOX, halfExtents=half, physicsClientId=c)
            visual = p.createVisualShape(p.GEOM_BOX, halfExtents=half,
                                         rgbaColor=list(colour or (0.8, 0.3, 0.2)) + [1.0], physicsClientId=c)
            body = p.createMultiBody(0.1, shape, visual, position, orientation_xyzw, physicsClientId=c)
            p.changeDynamics(body, -1, lateralFriction=1.0, physicsClientId=c)
        elif asset.kind == "mesh":
            scale = [asset.scale or _mesh_scale(Path(self.data_path) / asset.path)] * 3
            shape = p.createCollisionShape(p.GEOM_MESH, fileName=asset.path, meshScale=scale, physicsClientId=c)
            visual = p.createVisualShape(p.GEOM_MESH, fileName=asset.path, meshScale=scale,
                                         rgbaColor=list(colour or (0.5, 0.5, 0.5)) + [1.0], physicsClientId=c)
            body = p.createMultiBody(0.1, shape, visual, position, orientation_xyzw, physicsClientId=c)
            p.changeDynamics(body, -1, lateralFriction=1.0, physicsClientId=c)
        else:
            body = p.loadURDF(asset.path, position, orientation_xyzw, globalScaling=asset.scale or 1.0,
                              physicsClientId=c)
            if colour is not None and asset.path.startswith("random_urdfs"):
                p.changeVisualShape(body, -1, rgbaColor=list(colour) + [1.0], physicsClientId=c)
        self.objects.append(body)
        self.object_assets.append(asset)
        self.object_colours.append(colour)
        return body

    def step(self, seconds: float) -> None:
        for _ in range(max(1, int(round(seconds / TIME_STEP_S)))):
            self.p.stepSimulation(physicsClientId=self.client)

    def remove_fallen_objects(self) -> None:
        """Objects that rolled off the table are removed (the labels stay 1..N, in order)."""
        kept, kept_assets, kept_colours = [], [], []
        for body, asset, colour in zip(self.objects, self.object_assets, self.object_colours):
            position = self.p.getBasePositionAndOrientation(body, physicsClientId=self.client)[0]
            if position[2] < TABLE_TOP_Z - 0.01 or max(abs(position[0]), abs(position[1])) > 0.45:
                self.p.removeBody(body, physicsClientId=self.client)
            else:
                kept.append(body)
                kept_assets.append(asset)
                kept_colours.append(colour)
        self.objects, self.object_assets, self.object_colours = kept, kept_assets, kept_colours

    def save_settled(self) -> None:
        """Remember every object's pose; restore_settled() rebuilds the world from it."""
        self.settled = []
        for body, asset, colour in zip(self.objects, self.object_assets, self.object_colours):
            position, orientation = self.p.getBasePositionAndOrientation(body, physicsClientId=self.client)
            self.settled.append((asset, colour, position, orientation))

    def restore_settled(self) -> None:
        """A fresh simulation with the objects at their saved poses, at rest.

        Rebuilt rather than pybullet's restoreState: after a grasp, contact caches survive a
        restoreState and the same grasp then ends differently (measured: up to 1.5 cm, and some
        outcomes flipped). A rebuilt world gives the same result for the same grasp every time.
        """
        if self.settled is None:
            raise RuntimeError("save_settled() first")
        settled = self.settled
        self.reset()
        for asset, colour, position, orientation in settled:
            body = self.add_object(asset, position, orientation, colour)
            # The saved pose is the inertial frame's (getBasePositionAndOrientation); loadURDF places
            # the link frame, which differs for URDFs with an inertial origin (e.g. the teddy).
            self.p.resetBasePositionAndOrientation(body, position, orientation, physicsClientId=self.client)
        self.settled = settled

    def object_positions(self) -> np.ndarray:
        return np.array([self.p.getBasePositionAndOrientation(b, physicsClientId=self.client)[0]
                         for b in self.objects]).reshape(-1, 3)

    def label_of_body(self, body: int) -> int:
        return self.objects.index(body) + 1 if body in self.objects else 0

    # -- rendering ------------------------------------------------------------------------------
    def render(self, view: str, seed: int, resolution=(640, 480), noise: bool = False) -> SimScene:
        """Render the current state from the seed's camera for ``view``."""
        p, c = self.p, self.client
        intrinsics = realsense_intrinsics(resolution)
        pose = camera_pose(view, seed)
        eye, z_axis, y_axis = pose[:3, 3], pose[:3, 2], pose[:3, 1]
        view_matrix = p.computeViewMatrix(eye.tolist(), (eye + z_axis).tolist(), (-y_axis).tolist(),
                                          physicsClientId=c)
        fov_deg = math.degrees(2.0 * math.atan(intrinsics.height / 2.0 / intrinsics.fy))
        projection = p.computeProjectionMatrixFOV(fov_deg, intrinsics.width / intrinsics.height, NEAR_M, FAR_M,
                                                  physicsClientId=c)
        _, _, rgba, depth_buffer, segmentation = p.getCameraImage(
            intrinsics.width, intrinsics.height, view_matrix, projection, renderer=p.ER_TINY_RENDERER,
            physicsClientId=c)
        rgba = np.asarray(rgba, np.uint8).reshape(intrinsics.height, intrinsics.width, 4)
        depth_buffer = np.asarray(depth_buffer, np.float64).reshape(intrinsics.height, intrinsics.width)
        depth_m = FAR_M * NEAR_M / (FAR_M - (FAR_M - NEAR_M) * depth_buffer)
        depth_m[depth_buffer >= 1.0] = 0.0
        segmentation = np.asarray(segmentation, np.int64).reshape(intrinsics.height, intrinsics.width)
        labels = np.zeros(segmentation.shape, np.int32)
        for label, body in enumerate(self.objects, start=1):
            labels[segmentation == body] = label
        if noise:
            depth_m = realsense_depth_noise(depth_m, np.random.default_rng([int(seed), 3, VIEWS.index(view)]))
        depth_mm = np.clip(np.round(depth_m * 1000.0), 0, 65535).astype(np.uint16)
        rotation, origin = pose[:3, :3], pose[:3, 3]
        normal_cam = rotation.T @ np.array([0.0, 0.0, 1.0])
        # height above the table = n_w . (R x + t) - TABLE_TOP_Z = n_cam . x + (t_z - TABLE_TOP_Z)
        plane = np.append(normal_cam, origin[2] - TABLE_TOP_Z)
        return SimScene(int(seed), view, np.ascontiguousarray(rgba[:, :, :3]), depth_mm, labels, intrinsics,
                        pose, plane, tuple(a.name for a in self.object_assets), tuple(self.object_assets),
                        bool(noise))


def build_scene(world: SimWorld, seed: int, options: SceneOptions = SceneOptions()) -> None:
    """Drop the seed's objects on the table of a freshly reset ``world`` and let them settle."""
    world.reset()
    rng = np.random.default_rng([int(seed), 2])
    assets = choose_objects(seed, options.object_set, options.objects_per_scene, world.data_path)
    for index, asset in enumerate(assets):
        xy = rng.uniform(-DROP_HALF_EXTENT_M, DROP_HALF_EXTENT_M, 2)
        # Staggered heights: no two objects start interpenetrating.
        position = [float(xy[0]), float(xy[1]), TABLE_TOP_Z + 0.08 + 0.1 * index]
        quaternion = world.p.getQuaternionFromEuler(rng.uniform(-math.pi, math.pi, 3).tolist())
        colour = OBJECT_COLOURS[int(rng.integers(len(OBJECT_COLOURS)))]
        world.add_object(asset, position, quaternion, colour)
    world.step(options.settle_s + 0.1 * len(assets))
    world.remove_fallen_objects()


def render_scene(seed: int, view: str = "oblique", resolution=(640, 480), object_set: str = "mixed",
                 objects_per_scene: int = 6, noise: bool = False) -> SimScene:
    """Build, settle and render one scene (see SimScene). Same arguments -> identical arrays.

    Example:
        >>> scene = render_scene(3, view="oblique", resolution=(640, 480))  # doctest: +SKIP
        >>> scene.labels.max(), scene.depth_mm.dtype, scene.intrinsics.fx  # doctest: +SKIP
    """
    check_view(view)
    options = SceneOptions(object_set, objects_per_scene)
    with SimWorld() as world:
        build_scene(world, seed, options)
        return world.render(view, seed, resolution, noise)


def realsense_depth_noise(depth_m: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """RealSense-like depth: z-dependent noise, 1 mm steps, holes at depth edges and sparse dropouts.

    sigma(z) = 0.0015 * z^2 m (about 0.5 mm at 0.6 m, the D435's sub-1 % RMS error near range);
    a pixel whose 5x5 neighbourhood spans more than 2 cm of depth loses its value with probability
    0.6 (stereo occlusion / edge flying pixels); 0.3 % of the other pixels drop out at random.
    """
    from scipy.ndimage import maximum_filter, minimum_filter

    valid = depth_m > 0
    noisy = depth_m + rng.normal(0.0, 1.0, depth_m.shape) * 0.0015 * depth_m ** 2
    filled = np.where(valid, depth_m, np.nan)
    span = maximum_filter(np.nan_to_num(filled, nan=0.0), size=5) - minimum_filter(
        np.nan_to_num(filled, nan=FAR_M), size=5)
    holes = (span > 0.02) & (rng.random(depth_m.shape) < 0.6)
    holes |= rng.random(depth_m.shape) < 0.003
    noisy[holes | ~valid] = 0.0
    return np.maximum(noisy, 0.0)


def _mesh_scale(path: Path) -> float:
    """Scale that makes an .obj mesh's largest extent HOUSEHOLD_MAX_EXTENT_M."""
    vertices = [line.split()[1:4] for line in path.read_text().splitlines() if line.startswith("v ")]
    extent = np.ptp(np.asarray(vertices, np.float64), axis=0).max()
    return HOUSEHOLD_MAX_EXTENT_M / extent
