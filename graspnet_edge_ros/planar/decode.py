"""Decoding planar-network output maps into ``PlanarGrasps`` (full-image pixels, best first).

The smoothing and peak search reproduce scikit-image's ``filters.gaussian`` (mode 'nearest',
truncate 4) and ``feature.peak_local_max`` semantics with scipy, which the original repositories
call at inference (GR-ConvNet: skumra/robotic-grasping ``post_process``/``detect_grasps``;
AFFGA-Net: liuchunsense/AFFGA-Net ``post_process_output``/``AFFGA.predict``).
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree
from scipy.special import expit

from graspnet_edge_ros.errors import InputError, ModelError
from graspnet_edge_ros.planar.types import PlanarGrasps

GRCONVNET_SIGMAS = {"quality": 2.0, "angle": 2.0, "width": 1.0}
AFFGA_SIGMA = 1.0


def gaussian_smooth(image: np.ndarray, sigma: float) -> np.ndarray:
    """``skimage.filters.gaussian(image, sigma, preserve_range=True)`` for a float 2-D map."""
    image = np.asarray(image)
    if image.dtype not in (np.float32, np.float64):
        image = image.astype(np.float64)
    return ndimage.gaussian_filter(image, sigma, mode="nearest", truncate=4.0)


def peak_local_max(image: np.ndarray, min_distance: int = 1, threshold_abs: float | None = None,
                   exclude_border: bool | int = True, num_peaks: int | None = None) -> np.ndarray:
    """(K, 2) int (row, col) of local maxima, strongest first: skimage's ``peak_local_max`` for 2-D
    images without labels/footprint/threshold_rel (p_norm inf).

    A peak equals the maximum of its (2*min_distance+1)^2 window (border values repeated) and
    exceeds ``threshold_abs`` (default: the image minimum). Peaks closer than ``exclude_border``
    pixels (True: min_distance) to the edge are dropped; a constant image has none. Equal peaks are
    ordered by raster position; with min_distance > 1 a peak strictly closer than min_distance
    (Chebyshev) to an already kept one is dropped; then the first ``num_peaks`` are kept.
    """
    image = np.asarray(image)
    if image.ndim != 2:
        raise InputError(f"peak_local_max expects a 2-D map, got shape {image.shape}")
    threshold = float(image.min()) if threshold_abs is None else threshold_abs
    border = (min_distance if exclude_border else 0) if isinstance(exclude_border, bool) else int(exclude_border)
    size = 2 * min_distance + 1
    if size == 1 or image.size == 1:
        mask = image > threshold
    else:
        mask = image == ndimage.maximum_filter(image, size=size, mode="nearest")
        if mask.all():
            mask[:] = False
        mask &= image > threshold
    if border:
        mask[:border] = False
        mask[-border:] = False
        mask[:, :border] = False
        mask[:, -border:] = False
    coords = np.argwhere(mask)
    coords = coords[np.argsort(-image[mask], kind="stable")]
    limit = len(coords) if num_peaks is None else max(0, int(num_peaks))
    if min_distance > 1 and len(coords) > 1:
        coords = _greedy_spacing(coords, min_distance, limit)
    return coords[:limit]


def _greedy_spacing(coords: np.ndarray, spacing: int, limit: int) -> np.ndarray:
    """Keep points in order, dropping any strictly closer than ``spacing`` (Chebyshev) to a kept one."""
    # Integer coordinates: distance < spacing  <=>  distance <= spacing - 0.5.
    neighbours = cKDTree(coords).query_ball_point(coords, r=spacing - 0.5, p=np.inf)
    rejected = np.zeros(len(coords), bool)
    kept: list[int] = []
    for index, close in enumerate(neighbours):
        if rejected[index]:
            continue
        kept.append(index)
        if len(kept) >= limit:
            break
        rejected[close] = True
    return coords[kept]


def decode_grconvnet(pos: np.ndarray, cos: np.ndarray, sin: np.ndarray, width: np.ndarray, *,
                     offset_rc: tuple[int, int], num_grasps: int, min_quality: float, min_distance_px: int,
                     width_scale: float, exclude_border: bool = True) -> PlanarGrasps:
    """GR-ConvNet maps (each S x S, any leading singleton dims) -> grasps in full-image pixels.

    As the original: angle = atan2(sin, cos)/2 in (-pi/2, pi/2], width x ``width_scale``, then
    Gaussian smoothing of quality (sigma 2), angle (2, after atan2) and width (1); peaks on quality.
    """
    quality = gaussian_smooth(np.squeeze(pos), GRCONVNET_SIGMAS["quality"])
    angle = gaussian_smooth(0.5 * np.arctan2(np.squeeze(sin), np.squeeze(cos)), GRCONVNET_SIGMAS["angle"])
    width_px = gaussian_smooth(np.squeeze(width) * width_scale, GRCONVNET_SIGMAS["width"])
    peaks = peak_local_max(quality, min_distance_px, min_quality, exclude_border, num_grasps)
    maps = {"quality": quality, "angle": angle, "width_px": width_px}
    return _grasps_at(peaks, quality, angle, width_px, offset_rc, maps)


def decode_affga(able_logits: np.ndarray, angle: np.ndarray, width_logits: np.ndarray, *, angle_bins: int,
                 offset_rc: tuple[int, int], num_grasps: int, min_quality: float, min_distance_px: int,
                 width_scale: float, exclude_border: bool = True) -> PlanarGrasps:
    """AFFGA-Net 2021 maps -> grasps in full-image pixels.

    ``angle`` is either the angle logits (K x S x S float) or the in-graph argmax map (S x S
    integer bins); ``angle_bins`` = K bins over [0, 2*pi). Confidence = sigmoid(able) smoothed
    (sigma 1), width = sigmoid(width) x ``width_scale`` smoothed (sigma 1), angle = bin / K * 2*pi
    (directional; a parallel gripper may use it mod pi).
    """
    confidence = gaussian_smooth(expit(np.asarray(np.squeeze(able_logits), np.float32)), AFFGA_SIGMA)
    width_px = gaussian_smooth(expit(np.asarray(np.squeeze(width_logits), np.float32)) * width_scale, AFFGA_SIGMA)
    angle = np.asarray(angle)
    if np.issubdtype(angle.dtype, np.integer):
        bins = angle.reshape(confidence.shape)
    else:
        logits = angle.reshape(-1, *confidence.shape)
        if logits.shape[0] != angle_bins:
            raise ModelError(f"angle map has {logits.shape[0]} channels, expected {angle_bins} bins")
        bins = np.argmax(logits, axis=0)
    angle_rad = bins.astype(np.float64) * (2.0 * np.pi / angle_bins)
    peaks = peak_local_max(confidence, min_distance_px, min_quality, exclude_border, num_grasps)
    maps = {"quality": confidence, "angle_bin": bins, "width_px": width_px}
    return _grasps_at(peaks, confidence, angle_rad, width_px, offset_rc, maps)


def _grasps_at(peaks: np.ndarray, quality: np.ndarray, angle: np.ndarray, width_px: np.ndarray,
               offset_rc: tuple[int, int], maps: dict) -> PlanarGrasps:
    rows, cols = peaks[:, 0], peaks[:, 1]
    return PlanarGrasps(rows=(rows + offset_rc[0]).astype(np.float64), cols=(cols + offset_rc[1]).astype(np.float64),
                        angles_rad=angle[rows, cols].astype(np.float64),
                        widths_px=width_px[rows, cols].astype(np.float64),
                        scores=quality[rows, cols].astype(np.float64),
                        extras={"crop_origin_rc": tuple(int(v) for v in offset_rc), **maps})
