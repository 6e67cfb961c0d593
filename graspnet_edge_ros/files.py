"""File readers and output-path checks shared by the CLI, the X5 kit, bags and training.

Every reader maps what can go wrong with a file (missing, unreadable, wrong shape or type) to the
typed errors, so the edges (CLI, node) can print one line instead of a traceback.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from graspnet_edge_ros.errors import ConfigError, InputError


# ------------------------------------------------------------------------------ output paths
def check_output_file(path, option: str) -> Path:
    """``path`` can be written as a file: ConfigError naming ``option`` otherwise (checked before any work).

    Missing parent directories are created (as writing would); an existing file is left untouched.
    """
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{option} {path} is a directory; give a file name")
    parent = _creatable_directory(path.parent, option)
    if path.exists():
        if not os.access(path, os.W_OK):
            raise ConfigError(f"{option} {path} is not writable")
        return path
    _probe_write(path, f"{option} {path}: cannot create a file in {parent}")
    return path


def check_output_directory(path, option: str) -> Path:
    """``path`` is or can become a writable directory; ConfigError naming ``option`` otherwise."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{option} {path} exists and is not a directory")
    _creatable_directory(path, option)
    _probe_write(path / f".graspnet_edge_write_test_{os.getpid()}", f"{option} {path}: cannot write there")
    return path


def _probe_write(probe: Path, failure: str) -> None:
    """Create and remove ``probe``: the only reliable write test (read-only mounts, /proc, permissions)."""
    try:
        with open(probe, "x"):
            pass
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"{failure} ({exc.strerror or exc})") from exc


def _creatable_directory(directory: Path, option: str) -> Path:
    existing = directory
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"{option}: {existing} is a file, not a directory")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{option}: cannot create directory {directory} ({exc.strerror or exc})") from exc
    return directory


# ------------------------------------------------------------------------------------ inputs
def load_points(path) -> np.ndarray:
    """(N, 3) float32 points from .npy, or from .npz holding one array (or one named 'points')."""
    try:
        loaded = np.load(path)
        if isinstance(loaded, np.lib.npyio.NpzFile):
            with loaded:
                names = list(loaded.files)
                if "points" in names:
                    loaded = loaded["points"]
                elif len(names) == 1:
                    loaded = loaded[names[0]]
                else:
                    raise InputError(f"{path}: an .npz with several arrays needs one named 'points' "
                                     f"(has {names})")
        points = np.asarray(loaded)
    except InputError:  # already says what is wrong (InputError is a ValueError too)
        raise
    except (OSError, ValueError, EOFError) as exc:  # EOFError: an empty file
        raise InputError(f"cannot read points {path}: {exc or 'empty file'}") from exc
    if points.dtype.kind not in "fiu":
        raise InputError(f"{path}: points must be numbers, got dtype {points.dtype}")
    if points.ndim == 3 and points.shape[0] == 1:
        points = points[0]
    if points.ndim != 2 or points.shape[1] != 3:
        raise InputError(f"{path}: expected an (N, 3) array of camera-frame metres, got {points.shape}")
    if not np.isfinite(points).all():
        raise InputError(f"{path}: points contain NaN or inf")
    return points.astype(np.float32)


def read_color(path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (OSError, ValueError, EOFError, SyntaxError, Image.DecompressionBombError) as exc:
        raise InputError(f"cannot read colour image {path}: {exc or 'empty file'}") from exc


def read_depth(path) -> tuple[np.ndarray, str]:
    """Depth PNG (uint16 units, '16UC1') or .npy (float32 metres, '32FC1')."""
    from PIL import Image

    from graspnet_edge_ros.camera import integer_depth_as_uint16

    path = Path(path)
    try:
        if path.suffix == ".npy":
            depth = np.load(path)
        else:
            with Image.open(path) as image:
                depth = np.asarray(image)
    except (OSError, ValueError, EOFError, SyntaxError, Image.DecompressionBombError) as exc:
        raise InputError(f"cannot read depth image {path}: {exc or 'empty file'}") from exc
    if depth.ndim == 3 and depth.shape[2] == 1:
        depth = depth[:, :, 0]
    if depth.ndim != 2 or min(depth.shape) == 0:
        raise InputError(f"{path}: depth must be an (H, W) image, got shape {depth.shape}")
    if path.suffix == ".npy":
        if depth.dtype.kind != "f":
            raise InputError(f"{path}: .npy depth must be float metres, got {depth.dtype}")
        return depth.astype(np.float32), "32FC1"
    if depth.dtype.kind not in "iu" or depth.dtype.itemsize < 2:
        raise InputError(f"{path}: depth PNG must be 16-bit (got {depth.dtype}); use .npy for float metres")
    # A 32-bit PNG/TIFF is accepted only if every value fits 16 bits: never wrapped.
    return integer_depth_as_uint16(depth, f"{path.name} (16UC1)"), "16UC1"


def read_labels(path) -> np.ndarray:
    """Instance-label image (8/16/32-bit single-channel PNG/TIFF or integer .npy), 0 = background."""
    from PIL import Image

    path = Path(path)
    try:
        if path.suffix == ".npy":
            labels = np.load(path, allow_pickle=False)
        else:
            with Image.open(path) as image:
                if image.mode not in ("L", "I", "I;16", "I;16B", "I;16L", "P"):
                    raise InputError(f"{path}: object mask must be a single-channel label image, got mode "
                                     f"{image.mode} (8, 16 or 32-bit integers, 0 = background)")
                labels = np.asarray(image)
    except InputError:  # already says what is wrong (InputError is a ValueError too)
        raise
    # EOFError: an empty or truncated .npy/PNG; SyntaxError: a broken PNG chunk.
    except (OSError, ValueError, EOFError, SyntaxError, Image.DecompressionBombError) as exc:
        raise InputError(f"cannot read object mask {path}: {exc or 'empty file'}") from exc
    if labels.dtype == bool or not np.issubdtype(labels.dtype, np.integer):
        raise InputError(f"{path}: object mask must hold integer labels, got {labels.dtype}")
    return labels


def read_intrinsics(shape, intrinsics: str | None = None, camera_info=None):
    """(CameraIntrinsics, metres per depth unit or None) for an (H, W) image.

    Args:
        intrinsics: "fx,fy,cx,cy" (the CLI's --intrinsics), or None.
        camera_info: a YAML/JSON CameraInfo-like file or a GraspNet meta.mat, used without ``intrinsics``.
    """
    from graspnet_edge_ros.camera import CameraIntrinsics

    height, width = shape
    if intrinsics:
        try:
            fx, fy, cx, cy = (float(v) for v in intrinsics.split(","))
        except ValueError as exc:
            raise ConfigError(f"--intrinsics needs fx,fy,cx,cy, got {intrinsics!r}") from exc
        return CameraIntrinsics(fx, fy, cx, cy, width, height), None
    if not camera_info:
        raise ConfigError("give --intrinsics fx,fy,cx,cy or --camera-info FILE")
    path = Path(camera_info)
    if not path.is_file():
        raise InputError(f"camera info file not found: {path}")
    if path.suffix == ".mat":
        return _intrinsics_from_mat(path, width, height)
    import yaml

    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"cannot read camera info {path}: {first}") from exc
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a mapping with 'k', 'K' or 'camera_matrix.data', "
                         f"got {type(data).__name__}")
    camera_matrix = data.get("camera_matrix")
    matrix = data.get("k", data.get("K", camera_matrix.get("data") if isinstance(camera_matrix, dict) else None))
    if matrix is None:
        raise InputError(f"{path}: no 'k', 'K' or 'camera_matrix.data' entry")
    return CameraIntrinsics.from_matrix(_matrix_3x3(matrix, path),
                                        _image_size(data, ("width", "image_width"), width, path),
                                        _image_size(data, ("height", "image_height"), height, path)), None


def _matrix_3x3(values, source) -> np.ndarray:
    try:
        matrix = np.asarray(values, dtype=float)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{source}: camera matrix must be 9 numbers, got {values!r}") from exc
    if matrix.size != 9:
        raise InputError(f"{source}: camera matrix must be 9 numbers (3x3), got {matrix.size}")
    return matrix.reshape(3, 3)


def _image_size(data: dict, keys: tuple, default: int, source) -> int:
    value = next((data[key] for key in keys if key in data), default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not float(value).is_integer() \
            or not 0 < value < 1_000_000:
        raise InputError(f"{source}: {keys[0]} must be a positive integer, got {value!r}")
    return int(value)


def _intrinsics_from_mat(path: Path, width: int, height: int):
    """(CameraIntrinsics, metres per depth unit or None) from a GraspNet meta.mat."""
    import scipy.io

    from graspnet_edge_ros.camera import CameraIntrinsics

    try:
        meta = scipy.io.loadmat(path)
    except Exception as exc:  # scipy raises ValueError, TypeError, MatReadError, ... for foreign files
        raise InputError(f"cannot read {path} as a .mat file: {type(exc).__name__}: {exc}") from exc
    if "intrinsic_matrix" not in meta:
        raise InputError(f"{path}: no 'intrinsic_matrix' entry (has {sorted(k for k in meta if not k.startswith('__'))})")
    intrinsics = CameraIntrinsics.from_matrix(_matrix_3x3(meta["intrinsic_matrix"], path), width, height)
    if "factor_depth" not in meta:
        return intrinsics, None
    factor = np.asarray(meta["factor_depth"]).ravel()
    try:
        value = float(factor[0]) if factor.size == 1 else math.nan
    except (TypeError, ValueError):
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise InputError(f"{path}: factor_depth must be one positive number (depth units per metre), "
                         f"got {factor.tolist()}")
    return intrinsics, 1.0 / value
