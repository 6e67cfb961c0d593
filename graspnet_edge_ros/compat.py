"""Fallbacks for older SciPy and Pillow (Ubuntu 22.04 / ROS 2 Humble ships SciPy 1.8, Pillow 9.0).

Every use of these library features in the package goes through here:

- ``Rotation.as_quat(canonical=True)`` needs SciPy >= 1.11; before that the sign is flipped here by
  SciPy's own rule.
- ``ImageFont.load_default(size=...)`` (Pillow's scalable bundled font) needs Pillow >= 10.1;
  before that the fixed-size bitmap font is used, whatever the size asked for.
- ``ImageDraw.textbbox``/``textlength`` and ``anchor=`` with that bitmap font need Pillow >= 9.2;
  before that the text size is measured with ``getsize`` and anchors are applied here.

Feature detection runs once at import; tests switch it off with monkeypatch to exercise the
fallbacks next to the modern code.
"""
from __future__ import annotations

import inspect

import numpy as np

# ------------------------------------------------------------------------------------------ SciPy


def _scipy_has_canonical() -> bool:
    from scipy.spatial.transform import Rotation

    try:  # SciPy < 1.11's Rotation is compiled: ask the method itself rather than its signature
        Rotation.identity().as_quat(canonical=True)
    except TypeError:
        return False
    return True


SCIPY_HAS_CANONICAL_QUAT = _scipy_has_canonical()


def canonical_quaternions(quaternions) -> np.ndarray:
    """(..., 4) xyzw quaternions -> the same rotations with SciPy's canonical sign.

    Of ``q`` and ``-q``, the one with ``w > 0``; when ``w == 0``, the one whose first nonzero of
    x, y, z is positive (SciPy's ``_quat_canonical``).
    """
    q = np.asarray(quaternions, dtype=np.float64)
    x, y, z, w = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    zero_w = w == 0
    zero_wx = zero_w & (x == 0)
    zero_wxy = zero_wx & (y == 0)
    flip = (w < 0) | (zero_w & (x < 0)) | (zero_wx & (y < 0)) | (zero_wxy & (z < 0))
    return np.where(flip[..., None], -q, q)


def rotation_as_canonical_quat(rotation) -> np.ndarray:
    """``rotation.as_quat(canonical=True)`` for a ``scipy.spatial.transform.Rotation``, on any SciPy."""
    if SCIPY_HAS_CANONICAL_QUAT:
        return rotation.as_quat(canonical=True)
    return canonical_quaternions(rotation.as_quat())


# ----------------------------------------------------------------------------------------- Pillow


def _pillow_default_font_has_size() -> bool:
    from PIL import ImageFont

    return "size" in inspect.signature(ImageFont.load_default).parameters


def _pillow_measures_bitmap_fonts() -> bool:
    """Pillow >= 9.2: the bitmap font has getbbox, so textbbox/textlength/anchor work with it."""
    from PIL import ImageFont

    return hasattr(ImageFont.ImageFont, "getbbox")


def _resample_box():
    from PIL import Image

    # Image.Resampling (Pillow >= 9.1); the module constant before (deprecated in 9.1-9.3)
    return Image.Resampling.BOX if hasattr(Image, "Resampling") else Image.BOX


RESAMPLE_BOX = _resample_box()
PILLOW_DEFAULT_FONT_HAS_SIZE = _pillow_default_font_has_size()
PILLOW_MEASURES_BITMAP_FONTS = _pillow_measures_bitmap_fonts()


def load_default_font(size: float):
    """Pillow's bundled scalable font at ``size`` px; before Pillow 10.1, its fixed bitmap font."""
    from PIL import ImageFont

    if PILLOW_DEFAULT_FONT_HAS_SIZE:
        return ImageFont.load_default(size=size)
    return ImageFont.load_default()


def _is_scalable(font) -> bool:
    from PIL import ImageFont

    return isinstance(font, ImageFont.FreeTypeFont)


def text_bbox(draw, xy, text: str, font) -> tuple[int, int, int, int]:
    """``draw.textbbox(xy, text, font=font)`` (left-top anchor), also for old Pillow's bitmap font."""
    if PILLOW_MEASURES_BITMAP_FONTS or _is_scalable(font):
        return tuple(int(v) for v in draw.textbbox(xy, text, font=font))
    width, height = font.getsize(text)
    return (int(xy[0]), int(xy[1]), int(xy[0]) + width, int(xy[1]) + height)


def text_length(draw, text: str, font) -> float:
    """``draw.textlength(text, font=font)``, also for old Pillow's bitmap font."""
    if PILLOW_MEASURES_BITMAP_FONTS or _is_scalable(font):
        return float(draw.textlength(text, font=font))
    return float(font.getsize(text)[0])


_ANCHOR_FRACTIONS = {"l": 0.0, "m": 0.5, "r": 1.0, "a": 0.0, "t": 0.0, "b": 1.0}


def draw_text(draw, xy, text: str, font, anchor: str = "la", **kwargs) -> None:
    """``draw.text(xy, text, font=font, anchor=anchor, ...)`` for any font.

    ``anchor``: two letters, l/m/r then a/t/m/b. Pillow ignores anchors with bitmap fonts (the
    default font before Pillow 10.1), so with those the text is placed from its measured box.
    """
    if _is_scalable(font):
        draw.text(xy, text, font=font, anchor=anchor, **kwargs)
        return
    left, top, right, bottom = text_bbox(draw, (0, 0), text, font)
    x = xy[0] - _ANCHOR_FRACTIONS[anchor[0]] * (right - left) - left
    y = xy[1] - _ANCHOR_FRACTIONS[anchor[1]] * (bottom - top) - top
    draw.text((round(x), round(y)), text, font=font, **kwargs)
