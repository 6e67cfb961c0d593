"""Ahead-of-time compilation of the runtime's numba kernels (``graspnet-edge warmup``).

Every kernel is ``@njit(cache=True, nogil=True)``: compiled once per signature and stored on disk, in
``__pycache__`` beside its module (or under ``NUMBA_CACHE_DIR``; numba falls back to the user's
cache directory when the package directory is read-only). ``load_kernels`` calls each kernel
through the same public functions and dtypes the pipeline uses, on a small synthetic table-top
scene, so after it has run once (at set-up: ``scripts/setup_env.sh``, or ``graspnet-edge warmup``
after ``pip install`` / ``colcon build`` on a board) a fresh process only loads kernels from the
cache. ``GraspDetector`` calls it at construction, so that loading happens before the first frame.
"""
from __future__ import annotations

import importlib
import sys
import threading
import time
from dataclasses import dataclass

import numpy as np

# The modules that hold the runtime's kernels (imported by load_kernels and kernel_dispatchers).
KERNEL_MODULES = (
    "graspnet_edge_ros.camera",
    "graspnet_edge_ros.geometry.native",
    "graspnet_edge_ros.geometry.native_grid",
    "graspnet_edge_ros.geometry.native_crop",
    "graspnet_edge_ros.support_plane",
    "graspnet_edge_ros.postprocess.collision",
    "graspnet_edge_ros.postprocess.nms",
)


@dataclass(frozen=True)
class KernelStats:
    """Numba cache counters summed over every kernel of KERNEL_MODULES in this process."""

    kernels: int         # dispatchers found
    signatures: int      # compiled or loaded signatures
    cache_hits: int      # signatures loaded from the on-disk cache
    cache_misses: int    # signatures compiled (not found in, or stale in, the cache)


def kernel_dispatchers() -> dict[str, object]:
    """{"module.function": numba dispatcher} of every jitted function of KERNEL_MODULES and of any
    other module of the package imported so far (so a kernel missing from the list is still seen)."""
    from numba.core.dispatcher import Dispatcher

    names = set(KERNEL_MODULES) | {name for name in list(sys.modules) if name.startswith("graspnet_edge_ros.")}
    found = {}
    for name in sorted(names):
        module = importlib.import_module(name) if name in KERNEL_MODULES else sys.modules.get(name)
        for attribute, value in list(vars(module).items()) if module is not None else ():
            if isinstance(value, Dispatcher) and getattr(value.py_func, "__module__", None) == name:
                found[f"{name}.{attribute}"] = value
    return found


def kernel_stats() -> KernelStats:
    dispatchers = kernel_dispatchers().values()
    return KernelStats(len(dispatchers), sum(len(d.overloads) for d in dispatchers),
                       sum(sum(d.stats.cache_hits.values()) for d in dispatchers),
                       sum(sum(d.stats.cache_misses.values()) for d in dispatchers))


def load_kernels() -> KernelStats:
    """Compile, or load from the on-disk cache, every kernel the pipeline runs, for its signatures.

    Runs each stage's public function on a synthetic 96x128 table-top frame with one box: the
    camera step (with and without a mask), the support-plane fit and band test, the geometry
    operators (the grasp head's crop pooling included), the collision check (cropped and
    whole-scene) and NMS. Takes a few ms per kernel
    from the cache; about 20-40 s (x86) when everything compiles.
    """
    from graspnet_edge_ros.camera import Workspace, sample_cloud, select_workspace
    from graspnet_edge_ros.geometry import native, native_crop
    from graspnet_edge_ros.grasps import GraspGroup
    from graspnet_edge_ros.postprocess.collision import ModelFreeCollisionDetector
    from graspnet_edge_ros.postprocess.nms import grasp_nms
    from graspnet_edge_ros.support_plane import fit_support_plane

    depth, intrinsics = synthetic_tabletop(96, 128)
    mask = np.zeros(depth.shape, bool)
    mask[16:80, 16:112] = True
    selection = select_workspace(depth, intrinsics, None, None, 0.0, 3.0)
    select_workspace(depth, intrinsics, None, Workspace(mask=mask), 0.0, 3.0)
    plane = fit_support_plane(selection.cloud)
    keep = plane.in_band(selection.cloud, 0.005, 0.3, 0.02)
    cloud = sample_cloud(selection.subset(keep), 256, 0).cloud
    native.warmup()
    native_crop.warmup()
    grasps = _grasps_over(cloud)
    plane.in_band(grasps.translations, 0.005, 0.3, 0.02)
    ModelFreeCollisionDetector(cloud, crop_to=grasps).detect(grasps)
    ModelFreeCollisionDetector(cloud).detect(grasps)
    grasp_nms(grasps)
    return kernel_stats()


_loaded_lock = threading.Lock()
_loaded = False


def ensure_kernels_loaded() -> None:
    """``load_kernels`` once per process (later calls return at once).

    Never fails a detector for it: should the synthetic scene stop suiting a stage (a library error),
    the kernels it did not reach compile or load on first use, as without this call, and
    test_warmup's zero-miss check names the gap.
    """
    global _loaded
    from graspnet_edge_ros.errors import GraspNetEdgeError

    with _loaded_lock:
        if not _loaded:
            _loaded = True
            try:
                load_kernels()
            except GraspNetEdgeError:
                pass


def synthetic_tabletop(height: int, width: int):
    """(depth (H, W) float32 m, intrinsics): a plane 0.6 m away with a 8 cm box in the middle."""
    from graspnet_edge_ros.camera import CameraIntrinsics

    intrinsics = CameraIntrinsics(fx=width, fy=width, cx=width / 2, cy=height / 2, width=width, height=height)
    depth = np.full((height, width), 0.6, np.float32)
    depth[height // 3:2 * height // 3, width // 3:2 * width // 3] = 0.52
    depth[0, :4] = 0.0  # a few invalid pixels, as in any real frame
    return depth, intrinsics


def _grasps_over(cloud: np.ndarray) -> "GraspGroup":
    """A few top-down grasps around the box centre (some colliding, some free, two NMS twins)."""
    from graspnet_edge_ros.grasps import GraspGroup

    centre = cloud[np.argmin(cloud[:, 2])]
    down = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]])  # approach +z (into the view)
    offsets = np.array([[0, 0, 0], [0.001, 0, 0], [0.05, 0, 0], [0, 0.05, 0]], np.float64)
    count = len(offsets)
    return GraspGroup.from_parts(np.linspace(0.9, 0.6, count), [0.05] * count, [0.02] * count,
                                 [down] * count, centre + offsets)


def main(model: str | None = None, num_threads: int = 0, stream=sys.stdout) -> int:
    """``graspnet-edge warmup``: fill the kernel cache; with a model, also load it and run one frame."""
    if model:
        from pathlib import Path

        from graspnet_edge_ros.errors import ModelFormatError

        if not Path(model).exists():  # before minutes of compiling on a board
            raise ModelFormatError(f"model not found: {model}")
    global _loaded
    start = time.perf_counter()
    with _loaded_lock:  # the detector built below must not run the synthetic scene a second time
        stats = load_kernels()
        _loaded = True
    elapsed = time.perf_counter() - start
    print(f"numba kernels: {stats.kernels} kernels, {stats.signatures} signatures: {stats.cache_misses} compiled, "
          f"{stats.cache_hits} loaded from the cache in {elapsed:.1f} s", file=stream)
    if stats.signatures:
        dispatcher = next(iter(kernel_dispatchers().values()))
        print(f"kernel cache: {dispatcher.stats.cache_path} (and beside each kernel module)", file=stream)
    if model:
        from graspnet_edge_ros.config import DetectorConfig
        from graspnet_edge_ros.pipeline import GraspDetector

        start = time.perf_counter()
        detector = GraspDetector(DetectorConfig.from_flat(model_path=str(model), num_threads=num_threads))
        loaded = time.perf_counter() - start
        depth, intrinsics = synthetic_tabletop(240, 320)
        result = detector.detect(None, depth, "32FC1", intrinsics)
        if result.status == "error":
            from graspnet_edge_ros.errors import ModelError

            raise ModelError(f"{model}: a synthetic frame failed: {result.reason}")
        print(f"model {detector.model_id}: loaded in {loaded:.1f} s, one synthetic frame "
              f"{sum(v for k, v in result.timings_ms.items() if '.' not in k):.0f} ms ({result.status})", file=stream)
    return 0
