"""graspnet_edge_ros.compat: the fallbacks for old SciPy/Pillow give what the modern calls give.

The fallback branches are forced with monkeypatch next to the modern ones here; `make
test-jammy-deps` also runs this file (and the pose and overlay tests) with Ubuntu 22.04's real
SciPy 1.8 and Pillow 9.0 on Python 3.10, where the fallbacks are the only branch.
"""
import re
from pathlib import Path

import numpy as np
import PIL
import pytest
import scipy
from PIL import Image, ImageDraw, ImageFont
from scipy.spatial.transform import Rotation

from graspnet_edge_ros import compat

REPO_ROOT = Path(__file__).resolve().parent.parent


def _version(text: str) -> tuple[int, int]:
    major, minor = re.match(r"(\d+)\.(\d+)", text).groups()
    return int(major), int(minor)


def test_feature_detection_matches_the_installed_versions():
    assert compat.SCIPY_HAS_CANONICAL_QUAT == (_version(scipy.__version__) >= (1, 11))
    assert compat.PILLOW_DEFAULT_FONT_HAS_SIZE == (_version(PIL.__version__) >= (10, 1))
    assert compat.PILLOW_MEASURES_BITMAP_FONTS == (_version(PIL.__version__) >= (9, 2))


# ------------------------------------------------------------------------------------- quaternions

# (input xyzw, SciPy's canonical choice): w decides, then the first nonzero of x, y, z when w == 0
SIGN_CASES = [
    ([0.1, 0.2, 0.3, -0.9], [-0.1, -0.2, -0.3, 0.9]),
    ([-0.1, 0.2, 0.3, 0.9], [-0.1, 0.2, 0.3, 0.9]),
    ([-1.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]),
    ([0.0, -0.6, 0.8, 0.0], [0.0, 0.6, -0.8, 0.0]),
    ([0.0, 0.6, -0.8, 0.0], [0.0, 0.6, -0.8, 0.0]),
    ([0.0, 0.0, -1.0, 0.0], [0.0, 0.0, 1.0, 0.0]),
    ([0.6, -0.8, 0.0, 0.0], [0.6, -0.8, 0.0, 0.0]),
]


@pytest.mark.parametrize("quaternion, expected", SIGN_CASES)
def test_canonical_sign_rule_is_scipys(quaternion, expected):
    np.testing.assert_array_equal(compat.canonical_quaternions(np.array([quaternion])), [expected])
    if compat.SCIPY_HAS_CANONICAL_QUAT:
        np.testing.assert_allclose(Rotation.from_quat(quaternion).as_quat(canonical=True),
                                   np.asarray(expected) / np.linalg.norm(expected), atol=1e-12)


def _rotations_with_edge_cases(seed=3):
    random = Rotation.random(200, random_state=seed).as_matrix()
    half_turns = Rotation.from_rotvec(np.pi * np.array(
        [[1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0.6, -0.8], [-0.6, 0.8, 0], [0.48, -0.6, 0.64]])).as_matrix()
    return np.concatenate([random, half_turns, np.eye(3)[None]])


def test_fallback_quaternions_equal_the_modern_ones(monkeypatch):
    from graspnet_edge_ros.poses import quaternions_xyzw

    matrices = _rotations_with_edge_cases()
    native = quaternions_xyzw(matrices)
    monkeypatch.setattr(compat, "SCIPY_HAS_CANONICAL_QUAT", False)
    fallback = quaternions_xyzw(matrices)
    np.testing.assert_allclose(fallback, native, atol=1e-12)
    # canonical (w >= 0), unit, and the same rotations
    assert (fallback[:, 3] >= 0).all()
    np.testing.assert_allclose(np.linalg.norm(fallback, axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(Rotation.from_quat(fallback).as_matrix(), matrices, atol=1e-9)
    # without the fallback half of SciPy's raw output would have w < 0 here
    raw = Rotation.from_matrix(matrices).as_quat()
    flipped = (raw[:, 3] < 0) | ((raw[:, 3] == 0) & (raw[:, 0] < 0))
    assert flipped.any()
    np.testing.assert_allclose(fallback[flipped], -raw[flipped], atol=1e-12)


# ------------------------------------------------------------------------------------------- fonts

def test_default_font_with_and_without_size(monkeypatch):
    font = compat.load_default_font(24)
    if compat.PILLOW_DEFAULT_FONT_HAS_SIZE:
        assert isinstance(font, ImageFont.FreeTypeFont) and font.size == 24
        assert _text_height(font) >= 16
    monkeypatch.setattr(compat, "PILLOW_DEFAULT_FONT_HAS_SIZE", False)
    fixed = compat.load_default_font(24)  # Pillow's size-less default: ~11 px, the size is not honoured
    assert type(fixed) is type(ImageFont.load_default())
    assert 6 <= _text_height(fixed) < 16


def _text_height(font) -> int:
    image = Image.new("RGB", (200, 60))
    compat.draw_text(ImageDraw.Draw(image), (2, 2), "Grasp 0.93", font, fill=(255, 255, 255))
    left, top, right, bottom = _ink_box(image)
    return bottom - top + 1


def _ink_box(image: Image.Image):
    """(left, top, right, bottom) of the non-black pixels of an RGB image, inclusive."""
    rows, cols = np.nonzero(np.asarray(image).any(axis=2))
    return cols.min(), rows.min(), cols.max(), rows.max()


@pytest.mark.parametrize("anchor", ["mm", "lm", "la", "rb"])
def test_bitmap_font_is_placed_by_its_anchor_and_measured_like_pillow(monkeypatch, anchor):
    """The bitmap font (Pillow's default before 10.1): Pillow ignores anchors with it, compat
    places it by its measured box; measured by Pillow (>= 9.2) or by getsize (before)."""
    bitmap = ImageFont.load_default_imagefont() if compat.PILLOW_DEFAULT_FONT_HAS_SIZE else ImageFont.load_default()
    text, xy = "12 grasps", (60, 30)

    def render():
        image = Image.new("RGB", (120, 60))
        compat.draw_text(ImageDraw.Draw(image), xy, text, bitmap, anchor=anchor, fill=(255, 255, 255))
        probe = ImageDraw.Draw(image)
        return _ink_box(image), compat.text_bbox(probe, (0, 0), text, bitmap), compat.text_length(probe, text, bitmap)

    ink, bbox, length = render()
    if compat.PILLOW_MEASURES_BITMAP_FONTS:  # also through the old-Pillow measuring branch
        monkeypatch.setattr(compat, "PILLOW_MEASURES_BITMAP_FONTS", False)
        if not hasattr(bitmap, "getsize"):  # Pillow >= 10 dropped getsize: the same measure from getbbox
            monkeypatch.setattr(type(bitmap), "getsize", lambda self, t: tuple(self.getbbox(t)[2:]), raising=False)
        assert render() == (ink, bbox, length)
    left, top, right, bottom = ink
    width, height = bbox[2] - bbox[0], bbox[3] - bbox[1]
    assert bbox[:2] == (0, 0) and 30 < width < 80 and 6 < height < 16 and length == width
    # the ink lies inside the box the anchor puts at xy
    box_left = xy[0] - {"l": 0, "m": width / 2, "r": width}[anchor[0]]
    box_top = xy[1] - {"a": 0, "m": height / 2, "b": height}[anchor[1]]
    assert box_left - 1 <= left <= box_left + 2 and right <= box_left + width + 1
    assert box_top - 1 <= top and bottom <= box_top + height + 1


def test_overlay_with_every_fallback_draws_the_legend_and_labels(monkeypatch, example_scene):
    from graspnet_edge_ros import visualization
    from graspnet_edge_ros.camera import CameraIntrinsics
    from graspnet_edge_ros.grasps import GraspGroup

    color = example_scene["color"]
    intrinsics = CameraIntrinsics.from_matrix(example_scene["K"], color.shape[1], color.shape[0])
    rows = np.zeros((2, 17), np.float32)
    rows[:, 0] = [0.9, 0.4]
    rows[:, 1:4] = [0.06, 0.02, 0.02]
    rows[:, 4:13] = np.eye(3)[[2, 0, 1]].T.reshape(-1)  # approach along camera +z
    rows[:, 13:16] = [[0.0, 0.0, 0.5], [0.1, 0.05, 0.5]]
    rows[:, 16] = -1
    grasps = GraspGroup(rows)
    for name in ("PILLOW_DEFAULT_FONT_HAS_SIZE", "PILLOW_MEASURES_BITMAP_FONTS"):
        monkeypatch.setattr(compat, name, False)
    if not hasattr(ImageFont.ImageFont, "getsize"):
        monkeypatch.setattr(ImageFont.ImageFont, "getsize", lambda self, t: self.getbbox(t)[2:], raising=False)
    visualization._fonts_for.cache_clear()
    try:
        overlay = visualization.draw_overlay(color, grasps, intrinsics)
    finally:
        visualization._fonts_for.cache_clear()
    changed = np.any(overlay != color, axis=2)
    # the legend box (from (margin, margin), margin >= 4 px) and something around each grasp centre
    assert changed[:4, :].sum() == 0 and changed[12:20, 12:100].mean() > 0.9
    for x, y, z in rows[:, 13:16]:
        u = int(round(intrinsics.fx * x / z + intrinsics.cx))
        v = int(round(intrinsics.fy * y / z + intrinsics.cy))
        assert changed[v - 40:v + 40, u - 40:u + 40].any()


# ------------------------------------------------------------------------------------------ floors

def test_setup_floors_are_the_versions_make_test_jammy_deps_runs():
    """setup.py's floors for the libraries with fallbacks are what test-jammy-deps installs."""
    setup_text = (REPO_ROOT / "setup.py").read_text()
    floors = dict(re.findall(r'"(numpy|scipy|pillow)>=([0-9.]+)"', setup_text))
    pins = dict(re.findall(r"^(numpy|scipy|pillow)==([0-9.]+)$",
                           (REPO_ROOT / "requirements-jammy-deps.txt").read_text(), re.M))
    assert set(floors) == set(pins) == {"numpy", "scipy", "pillow"}
    for name, floor in floors.items():
        assert _version(pins[name]) == _version(floor), name
