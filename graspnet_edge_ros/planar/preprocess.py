"""Input preparation of the planar networks: crop window, depth hole filling, training normalisation.

GR-ConvNet (skumra/robotic-grasping): channels [depth, R, G, B]; depth in metres minus its mean,
clipped to [-1, 1] (training, ``DepthImage.normalise``) or the camera path's metres / 255 minus the
mean (``image.Image.normalise`` applied to depth, no clip); RGB / 255 minus one scalar mean.
AFFGA-Net 2021 (liuchunsense/AFFGA-Net): BGR / 255 minus one scalar mean over the crop (training
and the Python demo), or the TensorRT sample's (value - per-channel Caffe mean) / 255.
Both take an un-resized square crop, by default centred in the image (the camera path).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from graspnet_edge_ros.errors import ConfigError, InputError

DEPTH_NORMALISATIONS = ("training", "camera")
COLOR_NORMALISATIONS = ("training", "tensorrt")
TENSORRT_BGR_MEANS = np.array([102.9801, 115.9465, 122.7717], np.float32)


@dataclass(frozen=True)
class CropWindow:
    """A size x size window whose top-left corner is (top, left) in full-image pixels."""

    top: int
    left: int
    size: int

    @property
    def slices(self) -> tuple[slice, slice]:
        return slice(self.top, self.top + self.size), slice(self.left, self.left + self.size)


def crop_window(image_shape: tuple[int, ...], size: int, center_rc: tuple[float, float] | None = None) -> CropWindow:
    """Square crop of ``size`` centred on ``center_rc`` (default: the image centre, as the camera
    paths of both repositories), shifted to stay inside the image.

    Raises:
        InputError: the image is smaller than the crop.
    """
    height, width = int(image_shape[0]), int(image_shape[1])
    if height < size or width < size:
        raise InputError(f"image {height}x{width} is smaller than the network's {size}x{size} crop")
    if center_rc is None:
        # Integer division exactly as the originals: (480-224)//2 = 128, (640-224)//2 = 208.
        return CropWindow((height - size) // 2, (width - size) // 2, size)
    row, col = (float(v) for v in center_rc)
    if not (np.isfinite(row) and np.isfinite(col)):
        raise InputError(f"crop centre must be finite (row, col), got {center_rc}")
    top = int(np.clip(round(row - size / 2), 0, height - size))
    left = int(np.clip(round(col - size / 2), 0, width - size))
    return CropWindow(top, left, size)


def crop_center_from_mask(mask: np.ndarray) -> tuple[float, float]:
    """Centre (row, col) of the bounding box of a non-zero workspace mask; InputError when empty."""
    rows, cols = np.nonzero(np.asarray(mask))
    if len(rows) == 0:
        raise InputError("workspace mask is empty: no crop centre")
    return (rows.min() + rows.max()) / 2.0, (cols.min() + cols.max()) / 2.0


def fill_depth_holes(depth_m: np.ndarray) -> np.ndarray:
    """Copy of ``depth_m`` with holes (0, negative, NaN, inf) set to the nearest valid pixel's depth.

    Stands in for the OpenCV Navier-Stokes inpainting of the training data (GG-CNN/GR-ConvNet
    Cornell depth, AFFGA) without an OpenCV dependency: a hole must not read as "1 m closer than its
    neighbours" after mean subtraction.

    Raises:
        InputError: no valid depth at all.
    """
    depth = np.asarray(depth_m, dtype=np.float32)
    with np.errstate(invalid="ignore"):
        holes = ~(np.isfinite(depth) & (depth > 0))
    if not holes.any():
        return depth.copy()
    if holes.all():
        raise InputError("no valid depth (all zero/NaN) in the network's crop window")
    nearest = ndimage.distance_transform_edt(holes, return_distances=False, return_indices=True)
    return depth[tuple(nearest)]


def normalise_depth(depth_m: np.ndarray, mode: str = "training") -> np.ndarray:
    """GR-ConvNet depth channel from hole-free metres: "training" (minus mean, clip +-1) or "camera"
    (/255 minus mean)."""
    depth = np.asarray(depth_m, dtype=np.float32)
    if mode == "training":
        return np.clip(depth - depth.mean(), -1.0, 1.0)
    if mode == "camera":
        scaled = depth / np.float32(255.0)
        return scaled - scaled.mean()
    raise ConfigError(f"depth normalisation must be one of {DEPTH_NORMALISATIONS}, got {mode!r}")


def normalise_color(color: np.ndarray) -> np.ndarray:
    """(S, S, 3) uint8 -> (3, S, S) float32: / 255 minus one scalar mean over all pixels and channels."""
    scaled = np.asarray(color, dtype=np.float32) / np.float32(255.0)
    return np.ascontiguousarray((scaled - scaled.mean()).transpose(2, 0, 1))


def grconvnet_input(color_rgb: np.ndarray | None, depth_m: np.ndarray | None, window: CropWindow,
                    input_channels: int, depth_mode: str = "training") -> np.ndarray:
    """(1, C, S, S) float32 for GR-ConvNet: C = 1 depth, 3 RGB, or 4 [depth, R, G, B]."""
    planes = []
    if input_channels in (1, 4):
        planes.append(normalise_depth(fill_depth_holes(depth_m[window.slices]), depth_mode)[None])
    if input_channels in (3, 4):
        planes.append(normalise_color(color_rgb[window.slices]))
    if not planes:
        raise InputError(f"GR-ConvNet with {input_channels} input channels is not a known layout (1, 3 or 4)")
    return np.concatenate(planes, axis=0)[None].astype(np.float32, copy=False)


def affga_input(color_rgb: np.ndarray, window: CropWindow, normalisation: str = "training") -> np.ndarray:
    """(1, 3, S, S) float32 BGR for AFFGA-Net 2021 from an RGB image."""
    bgr = np.asarray(color_rgb[window.slices])[..., ::-1]
    if normalisation == "training":
        planes = normalise_color(bgr)
    elif normalisation == "tensorrt":
        planes = ((bgr.astype(np.float32) - TENSORRT_BGR_MEANS) / np.float32(255.0)).transpose(2, 0, 1)
    else:
        raise ConfigError(f"colour normalisation must be one of {COLOR_NORMALISATIONS}, got {normalisation!r}")
    return np.ascontiguousarray(planes, dtype=np.float32)[None]
