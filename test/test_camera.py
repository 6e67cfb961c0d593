"""Camera stage on the real graspnet-baseline example scene: decoding, back-projection, sampling, bad input."""

import time
from types import SimpleNamespace

import numpy as np
import pytest

from graspnet_edge_ros.camera import (
    CameraIntrinsics,
    Workspace,
    back_project,
    decode_color,
    decode_depth,
    prepare_points,
    select_workspace,
)
from graspnet_edge_ros.errors import ConfigError, InputError

# graspnet_spec.md §7: statistics of the official demo on this very capture.
SPEC_VALID_MASKED_POINTS = 513_688
SPEC_Z_RANGE_M = (0.302, 1.59)


@pytest.fixture(scope="module")
def scene(example_scene):
    height, width = example_scene["depth"].shape
    intrinsics = CameraIntrinsics.from_matrix(example_scene["K"], width, height)
    depth_m = decode_depth(example_scene["depth"], "16UC1", 1.0 / example_scene["factor_depth"])
    return SimpleNamespace(**example_scene, intrinsics=intrinsics, depth_m=depth_m)


def official_demo_cloud(depth_raw, mask, K, factor_depth):
    """The demo's math written out independently: full-frame float64 meshgrid, then the mask."""
    height, width = depth_raw.shape
    u_grid, v_grid = np.meshgrid(np.arange(width), np.arange(height))
    z = depth_raw / factor_depth
    x = (u_grid - K[0, 2]) * z / K[0, 0]
    y = (v_grid - K[1, 2]) * z / K[1, 1]
    organised = np.stack([x, y, z], axis=-1)
    valid = mask & (depth_raw > 0)
    return organised[valid].astype(np.float32), valid


def test_masked_cloud_matches_official_demo_statistics(scene):
    prepared = prepare_points(scene.depth_m, scene.intrinsics, workspace=Workspace(mask=scene.workspace_mask), seed=0)
    reference, valid = official_demo_cloud(scene.depth, scene.workspace_mask, scene.K, scene.factor_depth)
    assert prepared.num_valid == reference.shape[0] == int(valid.sum()) == SPEC_VALID_MASKED_POINTS
    # Same row-major point order as the demo's cloud[mask], and the same coordinates.
    np.testing.assert_allclose(prepared.cloud, reference, rtol=2e-6, atol=1e-6)
    z = prepared.cloud[:, 2]
    assert z.min() == pytest.approx(SPEC_Z_RANGE_M[0], abs=1e-6)
    assert z.max() == pytest.approx(SPEC_Z_RANGE_M[1], abs=1e-6)
    assert prepared.cloud.dtype == np.float32 and prepared.sampled.dtype == np.float32
    assert prepared.sampled.shape == (20000, 3) and prepared.sampled_indices.dtype == np.int64
    assert prepared.colors is None


def test_colors_follow_their_points(scene):
    prepared = prepare_points(scene.depth_m, scene.intrinsics, color=scene.color,
                              workspace=Workspace(mask=scene.workspace_mask), num_points=500, seed=1)
    rows, cols = np.nonzero(scene.workspace_mask & (scene.depth > 0))
    np.testing.assert_array_equal(prepared.colors, scene.color[rows, cols])
    assert prepared.colors.dtype == np.uint8 and prepared.colors.shape == (prepared.num_valid, 3)


def numpy_selection(depth_m, intrinsics, mask, min_depth, max_depth):
    """The pixel selection and back-projection written with numpy alone (float32 throughout)."""
    d = depth_m
    with np.errstate(invalid="ignore"):
        keep = (d > np.float32(max(min_depth, 0.0))) & (d <= np.float32(max_depth)) & (d < np.inf)
    if mask is not None:
        keep &= mask != 0
    ids = np.flatnonzero(keep)
    rows, cols = np.divmod(ids, intrinsics.width)
    x_per_z = ((np.arange(intrinsics.width) - intrinsics.cx) / intrinsics.fx).astype(np.float32)
    y_per_z = ((np.arange(intrinsics.height) - intrinsics.cy) / intrinsics.fy).astype(np.float32)
    z = d.ravel()[ids]
    return ids, np.stack([z * x_per_z[cols], z * y_per_z[rows], z], axis=1)


def test_selection_equals_the_numpy_formulation(scene):
    """The one-pass kernel keeps the same pixels, in order, with bit-identical points."""
    rng = np.random.default_rng(5)
    hostile = scene.depth_m.copy()
    for value in (np.nan, np.inf, -1.0):
        hostile[rng.random(hostile.shape) < 0.01] = value
    z = np.unique(scene.depth_m[scene.depth_m > 0])
    # Depth limits at pixel values (inclusive upper, exclusive lower), plain ones, and 0.7 (not a float32).
    limits = [(0.0, np.inf), (0.0, 3.0), (0.3, 0.7), (float(z[len(z) // 4]), float(z[3 * len(z) // 4]))]
    masks = [None, scene.workspace_mask, scene.workspace_mask.astype(np.uint8) * 255]
    for depth in (scene.depth_m, hostile):
        for mask in masks:
            for low, high in limits:
                workspace = None if mask is None else Workspace(mask=mask)
                selection = select_workspace(depth, scene.intrinsics, None, workspace, low, high)
                ids, points = numpy_selection(depth, scene.intrinsics, mask, low, high)
                np.testing.assert_array_equal(selection.pixel_ids, ids)
                np.testing.assert_array_equal(selection.cloud, points)
                with np.errstate(invalid="ignore"):
                    assert selection.num_valid_depth == int(((depth > 0) & (depth < np.inf)).sum())


def test_back_project_pixels_against_hand_formula(scene):
    organised = back_project(scene.depth_m, scene.intrinsics)
    assert organised.shape == (720, 1280, 3) and organised.dtype == np.float32
    fx, fy, cx, cy = scene.K[0, 0], scene.K[1, 1], scene.K[0, 2], scene.K[1, 2]
    rows, cols = np.nonzero(scene.depth > 0)
    for pick in (0, len(rows) // 3, len(rows) - 1):
        v, u = int(rows[pick]), int(cols[pick])
        z = int(scene.depth[v, u]) / scene.factor_depth
        expected = ((u - cx) * z / fx, (v - cy) * z / fy, z)
        assert organised[v, u] == pytest.approx(expected, rel=1e-6, abs=1e-6)
    v, u = np.argwhere(scene.depth == 0)[0]
    assert organised[v, u].tolist() == [0.0, 0.0, 0.0]


def test_depth_range_and_box_crop(scene):
    box = Workspace(mask=scene.workspace_mask, min_xyz=(-0.2, -0.2, 0.4), max_xyz=(0.2, 0.2, 0.8))
    prepared = prepare_points(scene.depth_m, scene.intrinsics, workspace=box, max_depth=0.7, seed=0)
    cloud = prepared.cloud
    assert 0 < prepared.num_valid < SPEC_VALID_MASKED_POINTS
    assert np.all(np.abs(cloud[:, :2]) <= 0.2) and cloud[:, 2].min() >= 0.4 and cloud[:, 2].max() <= 0.7


def test_sampling_is_reproducible_with_a_seed(scene):
    ws = Workspace(mask=scene.workspace_mask)
    first = prepare_points(scene.depth_m, scene.intrinsics, workspace=ws, seed=7)
    again = prepare_points(scene.depth_m, scene.intrinsics, workspace=ws, seed=7)
    other = prepare_points(scene.depth_m, scene.intrinsics, workspace=ws, seed=8)
    unseeded = prepare_points(scene.depth_m, scene.intrinsics, workspace=ws)
    np.testing.assert_array_equal(first.sampled_indices, again.sampled_indices)
    assert not np.array_equal(first.sampled_indices, other.sampled_indices)
    assert not np.array_equal(first.sampled_indices, unseeded.sampled_indices)
    # Enough points: drawn without replacement, and the sampled points are those cloud rows.
    assert np.unique(first.sampled_indices).size == 20000
    np.testing.assert_array_equal(first.sampled, first.cloud[first.sampled_indices])


def test_fewer_points_than_requested_keeps_all_then_draws_with_replacement(scene):
    small_mask = np.zeros_like(scene.workspace_mask)
    small_mask[300:310, 600:650] = True  # 500 pixels on the table, all with depth
    num_kept = int((small_mask & (scene.depth > 0)).sum())
    prepared = prepare_points(scene.depth_m, scene.intrinsics, workspace=Workspace(mask=small_mask),
                              num_points=2000, seed=3)
    assert prepared.num_valid == num_kept > 0
    indices = prepared.sampled_indices
    assert indices.shape == (2000,)
    np.testing.assert_array_equal(indices[:num_kept], np.arange(num_kept))
    extra = indices[num_kept:]
    assert extra.min() >= 0 and extra.max() < num_kept
    assert np.unique(extra).size < extra.size  # with replacement: 1500 draws from fewer values repeat


def test_prepare_points_is_fast_enough(scene):
    ws = Workspace(mask=scene.workspace_mask)
    timings = []
    for _ in range(5):
        start = time.perf_counter()
        prepare_points(scene.depth_m, scene.intrinsics, color=scene.color, workspace=ws, seed=0)
        timings.append(time.perf_counter() - start)
    assert min(timings) <= 0.030, f"best of 5: {min(timings) * 1e3:.1f} ms"


def test_decode_depth_encodings(scene):
    raw = scene.depth
    metres = decode_depth(raw, "16UC1")
    assert metres.dtype == np.float32
    np.testing.assert_allclose(metres, raw.astype(np.float64) / 1000.0, rtol=1e-6)
    np.testing.assert_array_equal(decode_depth(raw, "mono16"), metres)
    np.testing.assert_allclose(decode_depth(raw[..., None], "16UC1", depth_scale=0.0001), metres / 10, rtol=1e-6)
    floats = metres.copy()
    floats[0, :4] = [np.nan, np.inf, -1.0, -np.inf]
    decoded = decode_depth(floats, "32FC1")
    assert decoded[0, :4].tolist() == [0.0, 0.0, 0.0, 0.0]
    np.testing.assert_array_equal(decoded[1:], metres[1:])


def test_decode_color_encodings(scene):
    rgb = scene.color
    np.testing.assert_array_equal(decode_color(rgb, "rgb8"), rgb)
    np.testing.assert_array_equal(decode_color(rgb[:, :, ::-1], "bgr8"), rgb)
    alpha = np.full(rgb.shape[:2] + (1,), 255, np.uint8)
    np.testing.assert_array_equal(decode_color(np.concatenate([rgb, alpha], 2), "rgba8"), rgb)
    np.testing.assert_array_equal(decode_color(np.concatenate([rgb[:, :, ::-1], alpha], 2), "bgra8"), rgb)
    gray = decode_color(rgb[:, :, 1], "mono8")
    assert gray.shape == rgb.shape and np.array_equal(gray[:, :, 2], rgb[:, :, 1])


def test_intrinsics_from_camera_info(scene):
    k = scene.K.ravel().tolist()
    ros2 = CameraIntrinsics.from_camera_info(SimpleNamespace(k=k, width=1280, height=720))
    ros1 = CameraIntrinsics.from_camera_info(SimpleNamespace(K=k, width=1280, height=720))
    assert ros2 == ros1 == scene.intrinsics
    np.testing.assert_allclose(ros2.matrix, scene.K)


def _k_with(row=0, col=1, value=0.0):
    """A valid 640x480 camera matrix with one entry replaced."""
    k = np.array([[600.0, 0, 320], [0, 600.0, 240], [0, 0, 1]])
    k[row, col] = value
    return k


@pytest.mark.parametrize(
    "make, fragment",
    [
        (lambda: CameraIntrinsics.from_matrix(_k_with(0, 0, 0.0), 640, 480), "fx must be > 0"),
        (lambda: CameraIntrinsics.from_matrix(_k_with(1, 1, -5.0), 640, 480), "fy must be > 0"),
        (lambda: CameraIntrinsics.from_matrix(_k_with(0, 2, np.nan), 640, 480), "non-finite"),
        (lambda: CameraIntrinsics.from_matrix(_k_with(0, 2, 900.0), 640, 480), "cx=900.0"),
        (lambda: CameraIntrinsics.from_matrix(_k_with(), 0, 480), "width must be > 0"),
        (lambda: CameraIntrinsics.from_matrix(np.eye(2), 640, 480), "9 entries"),
        (lambda: CameraIntrinsics.from_camera_info(SimpleNamespace(k=[0.0] * 9, width=640, height=480)),
         "uncalibrated"),
    ],
)
def test_bad_intrinsics_raise_input_error(make, fragment):
    with pytest.raises(InputError, match=fragment):
        make()


def test_bad_frames_raise_input_error_naming_the_problem(scene):
    intrinsics, depth_m = scene.intrinsics, scene.depth_m
    with pytest.raises(InputError, match="'8UC1'"):
        decode_depth(scene.depth.astype(np.uint8), "8UC1")
    with pytest.raises(InputError, match="uint16"):
        decode_depth(depth_m, "16UC1")
    with pytest.raises(InputError, match="'yuv422'"):
        decode_color(scene.color, "yuv422")
    with pytest.raises(InputError, match="bgra8"):
        decode_color(scene.color, "bgra8")
    with pytest.raises(InputError, match="intrinsics describe"):
        prepare_points(depth_m[:, :640], intrinsics)
    with pytest.raises(InputError, match="colour image"):
        prepare_points(depth_m, intrinsics, color=scene.color[:360])
    with pytest.raises(InputError, match="workspace mask"):
        prepare_points(depth_m, intrinsics, workspace=Workspace(mask=scene.workspace_mask[:, :10]))
    with pytest.raises(InputError, match="float metres"):
        prepare_points(scene.depth, intrinsics)
    with pytest.raises(InputError, match="no valid depth"):
        prepare_points(decode_depth(np.zeros_like(scene.depth), "16UC1"), intrinsics)
    all_nan = np.full(depth_m.shape, np.nan, np.float32)
    with pytest.raises(InputError, match="no valid depth"):
        prepare_points(decode_depth(all_nan, "32FC1"), intrinsics)
    with pytest.raises(InputError, match="no valid depth"):
        prepare_points(all_nan, intrinsics)  # undecoded NaN depth is refused the same way
    with pytest.raises(InputError, match="workspace empty"):
        prepare_points(depth_m, intrinsics, workspace=Workspace(mask=np.zeros_like(scene.workspace_mask)))
    with pytest.raises(InputError, match="workspace empty"):
        prepare_points(depth_m, intrinsics, workspace=Workspace(min_xyz=(5, 5, 5), max_xyz=(6, 6, 6)))
    with pytest.raises(ConfigError, match="min_depth < max_depth"):
        prepare_points(depth_m, intrinsics, min_depth=1.0, max_depth=0.5)
    with pytest.raises(InputError, match="workspace empty"):
        prepare_points(depth_m, intrinsics, max_depth=SPEC_Z_RANGE_M[0] / 2, min_depth=0.0,
                       workspace=Workspace(mask=scene.workspace_mask))
