"""Grasp visualisation: gripper wireframes, score colours and the PNG overlay people look at first.

ROS-free (numpy + Pillow only). The wireframe is shared: the ROS node turns it into RViz
LINE_LIST markers and :func:`draw_overlay` projects it onto the colour image.

Gripper model (graspnetAPI ``plot_gripper_pro_max``, graspnet_spec.md §8.3), reduced to lines in
the gripper frame (x = approach, y = closing, z = height; metres, origin = grasp point):

* left / right finger: from (−finger_base_offset, ∓w/2, 0) to (+depth, ∓w/2, 0)
* palm: from (−finger_base_offset, −w/2, 0) to (−finger_base_offset, +w/2, 0)
* stem: from (−finger_base_offset, 0, 0) to (−finger_base_offset − stem_length, 0, 0)

The official boxes are 4 mm thick and sit just outside ±w/2; a line model keeps the centre lines.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from graspnet_edge_ros import compat
from graspnet_edge_ros.camera import CameraIntrinsics
from graspnet_edge_ros.errors import ConfigError, InputError
from graspnet_edge_ros.grasps import GraspGroup

# Segment order along axis 1 of gripper_line_segments(); each segment is (start, end).
LEFT_FINGER, RIGHT_FINGER, PALM, STEM = range(4)
SEGMENTS_PER_GRIPPER = 4
SEGMENT_NAMES = ("left_finger", "right_finger", "palm", "stem")

# ColorBrewer RdYlBu (5 classes), worst → best: blue, light blue, pale yellow, orange, red.
# Hue changes monotonically and every step is distinguishable, including for red-green colour
# blindness; red = best also matches the official Open3D view (red = high score).
SCORE_COLORMAP_RGB = np.array(
    [[44, 123, 182], [171, 217, 233], [255, 255, 191], [253, 174, 97], [215, 25, 28]],
    dtype=np.float64,
) / 255.0

# graspnetAPI: the palm's inner face lies depth_base = 0.02 m behind the grasp point, tail 0.04 m long.
DEFAULT_FINGER_BASE_OFFSET = 0.02
DEFAULT_STEM_LENGTH = 0.04

_OUTLINE_RGBA = (15, 15, 15, 255)
_HIGHLIGHT_RGBA = (255, 255, 255, 255)
_LEGEND_BACKGROUND_RGBA = (0, 0, 0, 170)


def gripper_line_segments(
    grasps: GraspGroup,
    finger_base_offset: float = DEFAULT_FINGER_BASE_OFFSET,
    stem_length: float = DEFAULT_STEM_LENGTH,
) -> np.ndarray:
    """Each grasp's gripper as line segments, in the frame of the grasps (camera frame, metres).

    Args:
        grasps: N grasps; width and depth of each grasp size its gripper.
        finger_base_offset: distance of the palm line behind the grasp point along −approach, metres
            (graspnetAPI depth_base = 0.02).
        stem_length: length of the approach stem behind the palm, metres (graspnetAPI tail 0.04).

    Returns:
        (N, 4, 2, 3) float32: segment index LEFT_FINGER, RIGHT_FINGER, PALM, STEM; then (start, end);
        then xyz. Fingers run base → tip, the palm left → right, the stem palm → tail end.
        Left is the −closing side.
    """
    if not isinstance(grasps, GraspGroup):
        raise InputError(f"grasps must be a GraspGroup, got {type(grasps).__name__}")
    count = len(grasps)
    half_width = grasps.widths.astype(np.float64) / 2.0
    depth = grasps.depths.astype(np.float64)
    palm_x = np.full(count, -float(finger_base_offset))
    tail_x = palm_x - float(stem_length)
    zeros = np.zeros(count)

    # Gripper-frame (x, y) of every segment end; z is 0 throughout (a flat wireframe).
    local = np.zeros((count, SEGMENTS_PER_GRIPPER, 2, 3), dtype=np.float64)
    local[:, LEFT_FINGER, 0, :2] = np.stack([palm_x, -half_width], axis=1)
    local[:, LEFT_FINGER, 1, :2] = np.stack([depth, -half_width], axis=1)
    local[:, RIGHT_FINGER, 0, :2] = np.stack([palm_x, half_width], axis=1)
    local[:, RIGHT_FINGER, 1, :2] = np.stack([depth, half_width], axis=1)
    local[:, PALM, 0, :2] = np.stack([palm_x, -half_width], axis=1)
    local[:, PALM, 1, :2] = np.stack([palm_x, half_width], axis=1)
    local[:, STEM, 0, :2] = np.stack([palm_x, zeros], axis=1)
    local[:, STEM, 1, :2] = np.stack([tail_x, zeros], axis=1)

    rotations = grasps.rotations.astype(np.float64)  # columns = gripper axes in the grasp frame
    translations = grasps.translations.astype(np.float64)
    world = np.einsum("nij,nlej->nlei", rotations, local) + translations[:, None, None, :]
    return world.astype(np.float32)


def score_colors(scores, vmin: float | None = None, vmax: float | None = None) -> np.ndarray:
    """Map scores to RGB with SCORE_COLORMAP_RGB: vmin (or below) → blue, vmax (or above) → red.

    Args:
        scores: (N,) scores, any real values (GraspNet scores can exceed 1).
        vmin, vmax: the colour range; None = the smallest / largest finite score. When the range is
            empty (a single grasp, equal scores) every grasp gets the best colour.

    Returns:
        (N, 3) float32 RGB in [0, 1]. NaN scores get the worst colour.
    """
    values = np.asarray(scores, dtype=np.float64).reshape(-1)
    finite = values[np.isfinite(values)]
    low = float(vmin) if vmin is not None else (float(finite.min()) if finite.size else 0.0)
    high = float(vmax) if vmax is not None else (float(finite.max()) if finite.size else 1.0)
    span = high - low
    with np.errstate(invalid="ignore"):
        position = (values - low) / span if span > 0 else np.where(np.isnan(values), 0.0, 1.0)
    position = np.clip(np.nan_to_num(position, nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0)
    anchors = np.linspace(0.0, 1.0, SCORE_COLORMAP_RGB.shape[0])
    rgb = np.stack([np.interp(position, anchors, SCORE_COLORMAP_RGB[:, c]) for c in range(3)], axis=1)
    return rgb.astype(np.float32)


def project_segments(
    segments: np.ndarray, intrinsics: CameraIntrinsics, near_plane: float = 0.01
) -> tuple[np.ndarray, np.ndarray]:
    """Pinhole projection of 3-D segments, clipped to a near plane and to a guard band around the image.

    Args:
        segments: (M, 2, 3) segment ends in the camera optical frame (x right, y down, z forward), metres.
        intrinsics: the camera.
        near_plane: segments are cut where z < near_plane (metres, > 0); wholly nearer ones are dropped.

    Returns:
        pixels: (M, 2, 2) float64 (u = column, v = row) of the clipped ends; pixel centres are integers,
            as in camera.back_project.
        drawable: (M,) bool, False for segments behind the near plane, non-finite, or entirely more
            than one image size outside the image. Their pixels are undefined.
    """
    points = np.asarray(segments, dtype=np.float64).reshape(-1, 2, 3)
    if not near_plane > 0:
        raise ConfigError(f"near_plane must be > 0 m, got {near_plane}")
    start, end = points[:, 0].copy(), points[:, 1].copy()
    drawable = np.all(np.isfinite(points), axis=(1, 2))
    drawable &= (start[:, 2] >= near_plane) | (end[:, 2] >= near_plane)

    # Move the end that lies in front of the near plane onto it (linear along the 3-D segment).
    with np.errstate(invalid="ignore", divide="ignore"):
        for near_end, far_end in ((start, end), (end, start)):
            cut = drawable & (near_end[:, 2] < near_plane)
            fraction = (near_plane - near_end[cut, 2]) / (far_end[cut, 2] - near_end[cut, 2])
            near_end[cut] = near_end[cut] + fraction[:, None] * (far_end[cut] - near_end[cut])
            near_end[cut, 2] = near_plane  # exact, against rounding

    pixels = np.zeros((points.shape[0], 2, 2), dtype=np.float64)
    for index, end_point in enumerate((start, end)):
        z = np.where(drawable, end_point[:, 2], 1.0)
        pixels[:, index, 0] = intrinsics.fx * end_point[:, 0] / z + intrinsics.cx
        pixels[:, index, 1] = intrinsics.fy * end_point[:, 1] / z + intrinsics.cy
    # Undrawable segments get (0, 0) so the clipping below sees no NaN.
    pixels[~drawable] = 0.0

    # A segment that just crossed the near plane can reach 1e6 px; Pillow's rasteriser is slow and
    # overflow-prone there, so clip to a band one image size wide around the image (Liang-Barsky).
    bounds = (-intrinsics.width, 2.0 * intrinsics.width, -intrinsics.height, 2.0 * intrinsics.height)
    pixels, inside = _clip_to_rectangle(pixels, *bounds)
    return pixels, drawable & inside


def draw_overlay(
    color: np.ndarray,
    grasps: GraspGroup,
    intrinsics: CameraIntrinsics,
    max_grasps: int = 50,
    line_width: int = 3,
    *,
    show_legend: bool = True,
    supersample: int = 2,
    near_plane: float = 0.01,
) -> np.ndarray:
    """Draw the best grasps as gripper wireframes on the colour image.

    The grasps are ranked by score (stable, so an already sorted group keeps its order); the best
    ``max_grasps`` are drawn worst first so better ones lie on top, coloured by score_colors over the
    drawn scores, each line over a dark outline so it reads on any background. The best grasp is
    thicker with a white halo. Each grasp is labelled with its rank (1 = best) beyond its fingertips,
    and a legend in the top-left corner gives the count, the best score and the colour scale.

    Args:
        color: (H, W, 3) uint8 RGB image; H, W must equal intrinsics.height, intrinsics.width.
        grasps: grasps in that camera's optical frame, metres.
        intrinsics: the colour camera.
        max_grasps: how many of the best grasps to draw (≥ 0).
        line_width: coloured line width of an ordinary grasp, pixels (≥ 1).
        show_legend: draw the legend box (top-left corner).
        supersample: lines are rendered at this scale and averaged down for smooth edges (1 = off).
        near_plane: metres; wireframe parts nearer than this to the camera are cut off.

    Returns:
        (H, W, 3) uint8 RGB, a new array. Pixels away from the drawn grasps, their labels and the
        legend are exactly the input's.

    Raises:
        InputError: color is not (H, W, 3) uint8 of the intrinsics' size, or grasps is not a GraspGroup.
        ConfigError: max_grasps < 0, line_width < 1 or supersample < 1.
    """
    image = np.asarray(color)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise InputError(f"overlay needs an (H, W, 3) uint8 RGB image, got {image.shape} {image.dtype}")
    if image.shape[:2] != (intrinsics.height, intrinsics.width):
        raise InputError(
            f"colour image is {image.shape[1]}x{image.shape[0]} but the intrinsics describe "
            f"{intrinsics.width}x{intrinsics.height}"
        )
    if not isinstance(grasps, GraspGroup):
        raise InputError(f"grasps must be a GraspGroup, got {type(grasps).__name__}")
    if int(max_grasps) < 0:
        raise ConfigError(f"max_grasps must be >= 0, got {max_grasps}")
    if int(line_width) < 1:
        raise ConfigError(f"line_width must be >= 1 pixel, got {line_width}")
    if int(supersample) < 1:
        raise ConfigError(f"supersample must be >= 1, got {supersample}")

    shown = grasps.sorted_by_score()[: int(max_grasps)]
    count = len(shown)
    height, width = image.shape[:2]
    canvas = Image.fromarray(image, "RGB").convert("RGBA")
    fonts = _fonts_for(height, width)

    if count:
        segments = gripper_line_segments(shown)
        pixels, drawable = project_segments(segments.reshape(-1, 2, 3), intrinsics, near_plane)
        pixels = pixels.reshape(count, SEGMENTS_PER_GRIPPER, 2, 2)
        drawable = drawable.reshape(count, SEGMENTS_PER_GRIPPER)
        rgb = np.round(score_colors(shown.scores) * 255).astype(np.uint8)
        drawn = _draw_wireframes(pixels, drawable, rgb, (width, height), int(line_width), int(supersample))
        if drawn is not None:
            lines, corner = drawn
            canvas.alpha_composite(lines, dest=corner)
        _draw_rank_labels(canvas, shown, intrinsics, pixels, drawable, fonts, near_plane, int(line_width))
    if show_legend:
        canvas = _draw_legend(canvas, shown, len(grasps), fonts)
    return np.asarray(canvas.convert("RGB"), dtype=np.uint8).copy()


def save_overlay(path, color: np.ndarray, grasps: GraspGroup, intrinsics: CameraIntrinsics, **kwargs) -> np.ndarray:
    """Draw the overlay (arguments as draw_overlay) and write it to ``path`` as PNG.

    Returns:
        (H, W, 3) uint8 RGB, the image written.
    """
    overlay = draw_overlay(color, grasps, intrinsics, **kwargs)
    Image.fromarray(overlay, "RGB").save(Path(path), format="PNG")
    return overlay


# --------------------------------------------------------------------------------------------------
# Drawing helpers


class _Fonts:
    """Label and legend fonts sized to the image (Pillow's bundled scalable font: no system fonts).

    Sizes are kept as attributes of their own: they are the pixel heights asked for.
    """

    def __init__(self, height: int, width: int):
        self.title_size = max(12, round(min(height, width) / 40))  # 18 px on 720p
        self.small_size = max(10, round(self.title_size * 0.75))
        self.rank_size = max(11, round(self.title_size * 0.8))
        self.top_rank_size = max(13, round(self.title_size * 1.1))
        self.title = compat.load_default_font(self.title_size)
        self.small = compat.load_default_font(self.small_size)
        self.rank = compat.load_default_font(self.rank_size)
        self.top_rank = compat.load_default_font(self.top_rank_size)
        self.stroke = max(2, round(self.title_size / 7))


@lru_cache(maxsize=8)
def _fonts_for(height: int, width: int) -> _Fonts:
    # Loading the fonts costs more than drawing a frame's labels; a stream keeps one image size.
    return _Fonts(height, width)


def _draw_wireframes(pixels, drawable, rgb, size, line_width, scale):
    """All wireframes on a transparent RGBA layer, worst first, rendered at ``scale``.

    Returns (layer, (left, top)): the layer covers only the wireframes' bounding box within the
    (W, H) image, since supersampling the whole frame costs ~10x more on 720p; None if nothing
    falls inside the image.
    """
    width, height = size
    outline = max(1, round(line_width / 2))
    widest = line_width + 2 + 2 * (outline + 2)  # the top grasp's outer stroke, see below
    ends = pixels[drawable]
    if ends.size == 0:
        return None
    pad = widest / 2.0 + 2.0
    left = int(max(0, np.floor(ends[..., 0].min() - pad)))
    top = int(max(0, np.floor(ends[..., 1].min() - pad)))
    right = int(min(width, np.ceil(ends[..., 0].max() + pad) + 1))
    bottom = int(min(height, np.ceil(ends[..., 1].max() + pad) + 1))
    if right <= left or bottom <= top:
        return None

    layer = Image.new("RGBA", ((right - left) * scale, (bottom - top) * scale), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    # A 1x pixel centre u maps to the centre of its scale x scale block: scale*u + (scale-1)/2.
    scaled = (pixels - np.array([left, top], dtype=np.float64)) * scale + (scale - 1) / 2.0
    for rank in range(pixels.shape[0] - 1, -1, -1):
        if rank == 0:
            core = line_width + 2
            layers = [(core + 2 * (outline + 2), _OUTLINE_RGBA), (core + 4, _HIGHLIGHT_RGBA)]
        else:
            core = line_width
            layers = [(core + 2 * outline, _OUTLINE_RGBA)]
        layers.append((core, (*(int(c) for c in rgb[rank]), 255)))
        # Outline first for the whole gripper, then its colour: the gripper's own outline never
        # hides its colour, while a better grasp's outline separates it from the ones beneath.
        for stroke_width, fill in layers:
            for segment in np.flatnonzero(drawable[rank]):
                _round_capped_line(draw, scaled[rank, segment], stroke_width * scale, fill)
    if scale > 1:
        # BOX averages each scale x scale block; Pillow premultiplies alpha when resizing RGBA,
        # so edges fade to transparent instead of to black.
        layer = layer.resize((right - left, bottom - top), compat.RESAMPLE_BOX)
    return layer, (left, top)


def _round_capped_line(draw: ImageDraw.ImageDraw, ends: np.ndarray, stroke_width: float, fill) -> None:
    """A line with round caps, so the finger/palm/stem joints close without notches."""
    (x0, y0), (x1, y1) = ends
    stroke = max(1, int(round(stroke_width)))
    draw.line([(x0, y0), (x1, y1)], fill=fill, width=stroke)
    radius = stroke / 2.0
    if stroke > 2:
        for x, y in ((x0, y0), (x1, y1)):
            draw.ellipse([x - radius + 0.5, y - radius + 0.5, x + radius - 0.5, y + radius - 0.5], fill=fill)


def _draw_rank_labels(canvas, shown, intrinsics, pixels, drawable, fonts, near_plane, line_width) -> None:
    """Rank numbers (1 = best) just beyond each visible gripper's fingertips, worst first."""
    draw = ImageDraw.Draw(canvas)
    centres = shown.translations.astype(np.float64)
    approaches = shown.approaches.astype(np.float64)
    tip_centres = centres + shown.depths[:, None].astype(np.float64) * approaches
    palm_centres = centres - DEFAULT_FINGER_BASE_OFFSET * approaches
    centre_segments = np.stack([palm_centres, tip_centres], axis=1)  # palm → tips, (N, 2, 3)
    centre_pixels, centre_ok = project_segments(centre_segments, intrinsics, near_plane)
    for rank in range(len(shown) - 1, -1, -1):
        if not (drawable[rank].any() and centre_ok[rank] and shown.translations[rank, 2] >= near_plane):
            continue
        palm_uv, tip_uv = centre_pixels[rank]
        font, font_size = (fonts.top_rank, fonts.top_rank_size) if rank == 0 else (fonts.rank, fonts.rank_size)
        offset = font_size * 0.9 + line_width
        # Step off the fingertip line at a right angle to the projected palm line (the tip line is
        # parallel to it), towards where the fingers point: beyond the tips, clear of the wireframe.
        # Seen along the approach (top-down grasps) the fingers point nowhere; then go upwards.
        approach_uv = tip_uv - palm_uv
        palm_line = pixels[rank, PALM, 1] - pixels[rank, PALM, 0]
        direction = np.array([palm_line[1], -palm_line[0]])
        if not drawable[rank, PALM] or float(np.hypot(*direction)) < 2.0:
            direction = approach_uv
        elif float(np.hypot(*approach_uv)) > 2.0:
            direction = direction if direction @ approach_uv >= 0 else -direction
        else:
            direction = -direction if direction[1] > 0 else direction
        length = float(np.hypot(*direction))
        step = direction / length if length > 1e-6 else np.array([0.0, -1.0])
        x, y = tip_uv + step * offset
        if not (0 <= x < canvas.width and 0 <= y < canvas.height):
            continue
        compat.draw_text(draw, (x, y), str(rank + 1), font, anchor="mm", fill=(255, 255, 255, 255),
                         stroke_width=fonts.stroke, stroke_fill=(0, 0, 0, 255))


def _draw_legend(canvas: Image.Image, shown: GraspGroup, total: int, fonts: _Fonts) -> Image.Image:
    """Title ("N grasps, best score s") and, when there are grasps, the colour bar, top-left."""
    count = len(shown)
    if count == 0:
        title = "0 grasps" if total == 0 else f"0 of {total} grasps drawn"
    else:
        drawn = f"{count} grasps" if count == total else f"{count} of {total} grasps"
        title = f"{drawn}, best score {float(shown.scores[0]):.3f} (#1, white halo)"
    margin = max(4, fonts.title_size // 2)
    probe = ImageDraw.Draw(canvas)
    left, top, right, bottom = compat.text_bbox(probe, (0, 0), title, fonts.title)
    title_height = bottom - top
    content_width = right - left
    content_height = title_height
    if count:
        # Colour bar row: "low [ramp] high", the ramp spanning the scores actually drawn.
        scores = shown.scores.astype(np.float64)
        low_text, high_text = f"{np.nanmin(scores):.2f}", f"{np.nanmax(scores):.2f}"
        low_width = int(np.ceil(compat.text_length(probe, low_text, fonts.small)))
        high_width = int(np.ceil(compat.text_length(probe, high_text, fonts.small)))
        bar_height = max(8, fonts.small_size)
        bar_width = max(120, content_width - low_width - high_width - 2 * margin)
        content_width = max(content_width, low_width + high_width + bar_width + 2 * margin)
        content_height += margin + bar_height
    box_width = min(content_width + 2 * margin, canvas.width - margin)
    box_height = min(content_height + 2 * margin, canvas.height - margin)
    if box_width <= 0 or box_height <= 0:
        return canvas

    # A layer of the box's size, composited at (margin, margin): semi-transparent background.
    layer = Image.new("RGBA", (box_width, box_height), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    draw.rounded_rectangle([0, 0, box_width - 1, box_height - 1], radius=margin // 2, fill=_LEGEND_BACKGROUND_RGBA)
    white = (255, 255, 255, 255)
    draw.text((margin - left, margin - top), title, font=fonts.title, fill=white)
    if count:
        bar_top = margin + title_height + margin
        bar_middle = bar_top + bar_height / 2
        compat.draw_text(draw, (margin, bar_middle), low_text, fonts.small, anchor="lm", fill=white)
        bar_left = margin + low_width + margin // 2
        ramp = np.round(score_colors(np.linspace(0.0, 1.0, bar_width), 0.0, 1.0) * 255).astype(np.uint8)
        ramp_rgba = np.concatenate([ramp, np.full((bar_width, 1), 255, np.uint8)], axis=1)
        layer.paste(Image.fromarray(np.ascontiguousarray(np.repeat(ramp_rgba[None], bar_height, axis=0)), "RGBA"),
                    (bar_left, bar_top))
        compat.draw_text(draw, (bar_left + bar_width + margin // 2, bar_middle), high_text, fonts.small,
                         anchor="lm", fill=white)
    canvas.alpha_composite(layer, dest=(margin, margin))
    return canvas


def _clip_to_rectangle(pixels, u_min, u_max, v_min, v_max) -> tuple[np.ndarray, np.ndarray]:
    """Liang-Barsky clip of (M, 2, 2) segments to a rectangle; returns clipped ends and a keep mask."""
    start = pixels[:, 0]
    delta = pixels[:, 1] - start
    t_enter = np.zeros(pixels.shape[0])
    t_leave = np.ones(pixels.shape[0])
    keep = np.ones(pixels.shape[0], dtype=bool)
    for p, q in (
        (-delta[:, 0], start[:, 0] - u_min), (delta[:, 0], u_max - start[:, 0]),
        (-delta[:, 1], start[:, 1] - v_min), (delta[:, 1], v_max - start[:, 1]),
    ):
        parallel = p == 0
        keep &= ~(parallel & (q < 0))
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(parallel, 0.0, q / np.where(parallel, 1.0, p))
        t_enter = np.where(~parallel & (p < 0), np.maximum(t_enter, ratio), t_enter)
        t_leave = np.where(~parallel & (p > 0), np.minimum(t_leave, ratio), t_leave)
    keep &= t_enter <= t_leave
    clipped = np.stack([start + t_enter[:, None] * delta, start + t_leave[:, None] * delta], axis=1)
    return np.where(keep[:, None, None], clipped, pixels), keep


__all__ = [
    "LEFT_FINGER", "RIGHT_FINGER", "PALM", "STEM", "SEGMENTS_PER_GRIPPER", "SEGMENT_NAMES",
    "SCORE_COLORMAP_RGB", "DEFAULT_FINGER_BASE_OFFSET", "DEFAULT_STEM_LENGTH",
    "gripper_line_segments", "score_colors", "project_segments",
    "draw_overlay", "save_overlay",
]
