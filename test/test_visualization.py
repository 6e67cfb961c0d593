"""Gripper wireframes, score colours and the PNG overlay: geometry, projection and which pixels change."""

import numpy as np
import pytest
from PIL import Image

from graspnet_edge_ros.camera import CameraIntrinsics
from graspnet_edge_ros.errors import ConfigError, InputError
from graspnet_edge_ros.grasps import GraspGroup
from graspnet_edge_ros.visualization import (
    LEFT_FINGER,
    PALM,
    RIGHT_FINGER,
    SCORE_COLORMAP_RGB,
    STEM,
    draw_overlay,
    gripper_line_segments,
    project_segments,
    save_overlay,
    score_colors,
)

# A 640x480 camera with round numbers, so projections can be computed by hand.
SMALL_CAMERA = CameraIntrinsics(fx=500.0, fy=500.0, cx=320.0, cy=240.0, width=640, height=480)
BEST_RGB = np.round(SCORE_COLORMAP_RGB[-1] * 255)
WORST_RGB = np.round(SCORE_COLORMAP_RGB[0] * 255)

# Gripper axes as rotation columns (approach, closing, height), each a right-handed frame.
APPROACH_INTO_IMAGE = np.array([[0, 0, 1], [1, 0, 0], [0, 1, 0]], np.float32).T  # a=+z, c=+x, h=+y
APPROACH_RIGHTWARD = np.eye(3, dtype=np.float32)  # a=+x, c=+y (down in the image), h=+z


def one_grasp(rotation, translation, width, depth, score=0.5):
    return GraspGroup.from_parts([score], [width], [depth], [rotation], [translation])


def random_rotations(count, rng):
    q, r = np.linalg.qr(rng.normal(size=(count, 3, 3)))
    q *= np.sign(np.diagonal(r, axis1=1, axis2=2))[:, None, :]
    q[np.linalg.det(q) < 0, :, 2] *= -1  # proper rotations only
    return q


def grey_image(camera=SMALL_CAMERA, level=128):
    return np.full((camera.height, camera.width, 3), level, np.uint8)


def changed_pixels(before, after):
    """(H, W) bool, True where any channel differs."""
    return np.any(before != after, axis=2)


# ---------------------------------------------------------------------------------------------
# gripper_line_segments


def test_wireframe_ends_follow_the_gripper_model_for_arbitrary_poses():
    rng = np.random.default_rng(3)
    count = 7
    rotations = random_rotations(count, rng)
    translations = rng.uniform(-0.3, 0.3, (count, 3)) + [0, 0, 0.6]
    widths = rng.uniform(0.01, 0.1, count)
    depths = rng.choice([0.01, 0.02, 0.03, 0.04], count)
    grasps = GraspGroup.from_parts(rng.uniform(0, 1, count), widths, depths, rotations, translations)

    segments = gripper_line_segments(grasps)
    assert segments.shape == (count, 4, 2, 3) and segments.dtype == np.float32

    for i in range(count):
        approach, closing = rotations[i][:, 0], rotations[i][:, 1]
        t, half = translations[i], widths[i] / 2
        palm_centre = t - 0.02 * approach
        expected = {
            LEFT_FINGER: (palm_centre - half * closing, t + depths[i] * approach - half * closing),
            RIGHT_FINGER: (palm_centre + half * closing, t + depths[i] * approach + half * closing),
            PALM: (palm_centre - half * closing, palm_centre + half * closing),
            STEM: (palm_centre, t - 0.06 * approach),
        }
        for segment, (start, end) in expected.items():
            np.testing.assert_allclose(segments[i, segment, 0], start, atol=1e-6)
            np.testing.assert_allclose(segments[i, segment, 1], end, atol=1e-6)


def test_wireframe_honours_palm_offset_and_stem_length_and_handles_empty_groups():
    grasp = one_grasp(APPROACH_RIGHTWARD, [0.0, 0.0, 0.0], width=0.05, depth=0.03)
    segments = gripper_line_segments(grasp, finger_base_offset=0.01, stem_length=0.1)[0]
    np.testing.assert_allclose(segments[PALM], [[-0.01, -0.025, 0], [-0.01, 0.025, 0]], atol=1e-7)
    np.testing.assert_allclose(segments[STEM], [[-0.01, 0, 0], [-0.11, 0, 0]], atol=1e-7)
    np.testing.assert_allclose(segments[RIGHT_FINGER], [[-0.01, 0.025, 0], [0.03, 0.025, 0]], atol=1e-7)
    assert gripper_line_segments(GraspGroup.empty()).shape == (0, 4, 2, 3)
    with pytest.raises(InputError):
        gripper_line_segments(np.zeros((1, 17), np.float32))


# ---------------------------------------------------------------------------------------------
# project_segments


def test_known_grasps_project_onto_hand_computed_pixels():
    seen_from_behind = one_grasp(APPROACH_INTO_IMAGE, [0.0, 0.0, 0.5], width=0.08, depth=0.02)
    side_on = one_grasp(APPROACH_RIGHTWARD, [0.1, -0.05, 1.0], width=0.06, depth=0.03)
    segments = gripper_line_segments(seen_from_behind.concatenate(side_on))
    pixels, drawable = project_segments(segments.reshape(-1, 2, 3), SMALL_CAMERA)
    pixels = pixels.reshape(2, 4, 2, 2)
    assert drawable.all()

    # Grasp at z = 0.5 m approaching along +z: finger bases at z = 0.48 m, tips at 0.52 m, x = ±0.04 m.
    # u = 320 ± 500·0.04/0.48 = 320 ± 41.6667 (bases), 320 ± 500·0.04/0.52 = 320 ± 38.4615 (tips).
    np.testing.assert_allclose(pixels[0, LEFT_FINGER], [[278.3333, 240], [281.5385, 240]], atol=1e-3)
    np.testing.assert_allclose(pixels[0, RIGHT_FINGER], [[361.6667, 240], [358.4615, 240]], atol=1e-3)
    np.testing.assert_allclose(pixels[0, PALM], [[278.3333, 240], [361.6667, 240]], atol=1e-3)
    np.testing.assert_allclose(pixels[0, STEM], [[320, 240], [320, 240]], atol=1e-3)

    # Grasp at (0.1, −0.05, 1) approaching along +x, 500 px per metre at z = 1: fingers at
    # y = −0.05 ∓ 0.03 → v = 200 and 230, palm at x = 0.08 → u = 360, tips at x = 0.13 → u = 385.
    np.testing.assert_allclose(pixels[1, LEFT_FINGER], [[360, 200], [385, 200]], atol=1e-3)
    np.testing.assert_allclose(pixels[1, RIGHT_FINGER], [[360, 230], [385, 230]], atol=1e-3)
    np.testing.assert_allclose(pixels[1, PALM], [[360, 200], [360, 230]], atol=1e-3)
    np.testing.assert_allclose(pixels[1, STEM], [[360, 215], [340, 215]], atol=1e-3)


def test_projection_cuts_at_the_near_plane_and_drops_unusable_segments():
    segments = np.array([
        [[0.001, 0.0, -1.0], [0.001, 0.0, 1.0]],   # crosses the camera plane: cut at z = 0.01
        [[0.0, 0.0, -1.0], [0.1, 0.0, -0.5]],      # wholly behind the camera
        [[np.nan, 0.0, 1.0], [0.0, 0.0, 1.0]],     # not finite
        [[50.0, 0.0, 1.0], [60.0, 0.0, 1.0]],      # far outside the image
        [[-10.0, 0.0, 1.0], [10.0, 0.0, 1.0]],     # spans far beyond both sides: clipped to the band
    ])
    pixels, drawable = project_segments(segments, SMALL_CAMERA, near_plane=0.01)
    assert drawable.tolist() == [True, False, False, False, True]
    # u = 320 + 500·0.001/0.01 = 370 at the cut, 320 + 500·0.001/1 = 320.5 at the far end.
    np.testing.assert_allclose(pixels[0], [[370, 240], [320.5, 240]], atol=1e-6)
    # The guard band is one image size around the image: u in [−640, 1280].
    np.testing.assert_allclose(pixels[4], [[-640, 240], [1280, 240]], atol=1e-6)
    with pytest.raises(ConfigError):
        project_segments(segments, SMALL_CAMERA, near_plane=0.0)


# ---------------------------------------------------------------------------------------------
# score_colors


def test_score_colours_run_from_blue_to_red_and_clamp():
    scores = np.array([-0.5, 0.0, 0.5, 1.0, 1.7, np.nan])
    colours = score_colors(scores, vmin=0.0, vmax=1.0)
    assert colours.shape == (6, 3) and colours.dtype == np.float32
    assert colours.min() >= 0.0 and colours.max() <= 1.0
    np.testing.assert_allclose(colours[1], SCORE_COLORMAP_RGB[0], atol=1e-6)   # vmin → worst
    np.testing.assert_allclose(colours[3], SCORE_COLORMAP_RGB[-1], atol=1e-6)  # vmax → best
    np.testing.assert_allclose(colours[2], SCORE_COLORMAP_RGB[2], atol=1e-6)   # middle anchor
    np.testing.assert_array_equal(colours[0], colours[1])  # below vmin clamps
    np.testing.assert_array_equal(colours[4], colours[3])  # above vmax clamps
    np.testing.assert_array_equal(colours[5], colours[1])  # NaN counts as worst

    # Red minus blue rises strictly with the score: the scale has one direction.
    ramp = score_colors(np.linspace(0.0, 1.0, 50))
    assert np.all(np.diff(ramp[:, 0] - ramp[:, 2]) > 0)


def test_score_colours_default_to_the_range_of_the_scores():
    colours = score_colors([3.0, 7.0, 5.0])
    np.testing.assert_allclose(colours[0], SCORE_COLORMAP_RGB[0], atol=1e-6)
    np.testing.assert_allclose(colours[1], SCORE_COLORMAP_RGB[-1], atol=1e-6)
    np.testing.assert_allclose(colours[2], SCORE_COLORMAP_RGB[2], atol=1e-6)
    # One grasp (an empty range) is the best one there is.
    np.testing.assert_allclose(score_colors([0.1]), SCORE_COLORMAP_RGB[-1:], atol=1e-6)
    assert score_colors([]).shape == (0, 3)


# ---------------------------------------------------------------------------------------------
# draw_overlay


# Side-on grasp at z = 0.5 m (250 px per 0.5 m... i.e. 1000 px/m): palm at u = 300 from v = 190 to 290,
# fingers to u = 360 at v = 190 and 290, stem from (300, 240) to (260, 240).
SIDE_ON_TRANSLATION = [0.0, 0.0, 0.5]
SIDE_ON_BOX = (260, 190, 360, 290)  # u_min, v_min, u_max, v_max of the wireframe


def side_on_grasp(score=0.8, shift_u_px=0):
    return one_grasp(APPROACH_RIGHTWARD, [shift_u_px / 1000.0, 0.0, 0.5], width=0.1, depth=0.04, score=score)


def test_overlay_changes_pixels_only_around_the_projected_grasp():
    image = grey_image()
    image.setflags(write=False)
    overlay = draw_overlay(image, side_on_grasp(), SMALL_CAMERA, show_legend=False)
    assert overlay.shape == image.shape and overlay.dtype == np.uint8

    changed = changed_pixels(image, overlay)
    rows, cols = np.nonzero(changed)
    # Lines, outlines and the rank label ("1", placed beyond the fingertips) stay near the wireframe.
    u_min, v_min, u_max, v_max = SIDE_ON_BOX
    assert cols.min() >= u_min - 10 and rows.min() >= v_min - 10
    assert cols.max() <= u_max + 40 and rows.max() <= v_max + 10
    # Every segment is drawn: its midpoint carries the best colour (the only grasp is the best).
    for u, v in [(330, 190), (330, 290), (300, 240), (280, 240)]:
        np.testing.assert_allclose(overlay[v, u], BEST_RGB, atol=2)
    # The inside of the gripper, away from every line, keeps the image.
    assert not changed[225:256, 315:346].any()
    # The label "1" is white text right of the fingertip line (u = 360) at mid height.
    label_box = overlay[230:251, 362:395]
    assert np.any(label_box.min(axis=2) > 230)


def test_overlay_on_the_example_scene_touches_only_the_grasp_and_the_legend(example_scene):
    color = example_scene["color"]
    height, width = color.shape[:2]
    camera = CameraIntrinsics.from_matrix(example_scene["K"], width, height)
    # A grasp on the scene surface at pixel (700, 450), approaching straight into the image.
    u, v = 700, 450
    z = example_scene["depth"][v, u] / example_scene["factor_depth"]
    assert z > 0.2
    point = [(u - camera.cx) * z / camera.fx, (v - camera.cy) * z / camera.fy, z]
    grasp = one_grasp(APPROACH_INTO_IMAGE, point, width=0.08, depth=0.03, score=0.9)

    pixels, _ = project_segments(gripper_line_segments(grasp).reshape(-1, 2, 3), camera)
    pixels = pixels.reshape(4, 2, 2)
    u_min, v_min = pixels[..., 0].min(), pixels[..., 1].min()
    u_max, v_max = pixels[..., 0].max(), pixels[..., 1].max()

    without_legend = changed_pixels(color, draw_overlay(color, grasp, camera, show_legend=False))
    rows, cols = np.nonzero(without_legend)
    assert without_legend.sum() > 200
    # The label sits above the horizontal gripper line here (seen along the approach).
    assert cols.min() >= u_min - 12 and cols.max() <= u_max + 12
    assert rows.min() >= v_min - 45 and rows.max() <= v_max + 12
    palm_middle_u, palm_middle_v = np.round(pixels[PALM].mean(axis=0)).astype(int)
    assert without_legend[palm_middle_v, palm_middle_u]

    with_legend = changed_pixels(color, draw_overlay(color, grasp, camera))
    legend = with_legend & ~without_legend
    legend_rows, legend_cols = np.nonzero(legend)
    assert legend.sum() > 1000
    assert legend_rows.max() < 150 and legend_cols.max() < 600  # a box in the top-left corner
    far_away = np.ones_like(with_legend)
    far_away[: 150, : 600] = False
    far_away[int(v_min) - 60: int(v_max) + 60, int(u_min) - 60: int(u_max) + 60] = False
    assert not with_legend[far_away].any()


def test_overlay_ranks_by_score_draws_best_on_top_and_respects_max_grasps():
    image = grey_image()
    # Same pose twice, worst first: after ranking, the best must be drawn last, on top.
    stacked = side_on_grasp(score=0.1).concatenate(side_on_grasp(score=0.9))
    overlay = draw_overlay(image, stacked, SMALL_CAMERA, show_legend=False)
    np.testing.assert_allclose(overlay[190, 330], BEST_RGB, atol=2)

    # Two grasps side by side; only the best one is drawn with max_grasps=1.
    left, right = side_on_grasp(score=0.2, shift_u_px=-150), side_on_grasp(score=0.7, shift_u_px=150)
    both = draw_overlay(image, left.concatenate(right), SMALL_CAMERA, show_legend=False)
    np.testing.assert_allclose(both[190, 180], WORST_RGB, atol=2)  # left finger middle of the worse
    np.testing.assert_allclose(both[190, 480], BEST_RGB, atol=2)
    best_only = draw_overlay(image, left.concatenate(right), SMALL_CAMERA, max_grasps=1, show_legend=False)
    assert not changed_pixels(image, best_only)[:, :300].any()
    np.testing.assert_allclose(best_only[190, 480], BEST_RGB, atol=2)

    # The best grasp has a white halo beside its line; the other only a dark outline.
    best_column = both[178:203, 480].astype(int)
    worse_column = both[178:203, 180].astype(int)
    assert np.any(best_column.min(axis=1) > 230)
    assert not np.any(worse_column.min(axis=1) > 230)
    assert np.any(worse_column.max(axis=1) < 40)


def test_overlay_ignores_grasps_behind_the_camera_and_empty_groups():
    image = grey_image()
    behind = one_grasp(APPROACH_RIGHTWARD, [0.0, 0.0, -0.5], width=0.1, depth=0.04)
    np.testing.assert_array_equal(draw_overlay(image, behind, SMALL_CAMERA, show_legend=False), image)
    np.testing.assert_array_equal(draw_overlay(image, GraspGroup.empty(), SMALL_CAMERA, show_legend=False), image)
    # The legend still says there are none.
    assert changed_pixels(image, draw_overlay(image, GraspGroup.empty(), SMALL_CAMERA))[:60, :300].any()


def test_overlay_rejects_images_that_do_not_match_the_camera():
    grasp = side_on_grasp()
    with pytest.raises(InputError, match="640x480"):
        draw_overlay(np.zeros((480, 641, 3), np.uint8), grasp, SMALL_CAMERA)
    with pytest.raises(InputError):
        draw_overlay(np.zeros((480, 640), np.uint8), grasp, SMALL_CAMERA)
    with pytest.raises(InputError):
        draw_overlay(np.zeros((480, 640, 3), np.float32), grasp, SMALL_CAMERA)
    with pytest.raises(InputError):
        draw_overlay(grey_image(), grasp.array, SMALL_CAMERA)
    with pytest.raises(ConfigError):
        draw_overlay(grey_image(), grasp, SMALL_CAMERA, max_grasps=-1)
    with pytest.raises(ConfigError):
        draw_overlay(grey_image(), grasp, SMALL_CAMERA, line_width=0)


def test_save_overlay_writes_the_drawn_png(tmp_path):
    path = tmp_path / "overlay.png"
    returned = save_overlay(path, grey_image(), side_on_grasp(), SMALL_CAMERA)
    with Image.open(path) as written:
        assert written.format == "PNG"
        np.testing.assert_array_equal(np.asarray(written.convert("RGB")), returned)
    assert changed_pixels(grey_image(), returned).any()


@pytest.mark.parametrize("supersample", [1, 2, 3])
def test_lines_are_centred_on_their_projected_pixel_at_any_supersampling(supersample):
    # The palm line projects onto column u = 300 exactly: the drawn profile across it is mirror
    # symmetric about that column (a half-pixel slip in the supersampled grid breaks the symmetry).
    overlay = draw_overlay(grey_image(), side_on_grasp(), SMALL_CAMERA, show_legend=False, supersample=supersample)
    profile = overlay[215, 300 - 12: 300 + 13].astype(int)
    np.testing.assert_array_equal(profile, profile[::-1])
    np.testing.assert_allclose(profile[12], BEST_RGB, atol=2)
    assert np.any(profile != 128)
