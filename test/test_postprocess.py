"""Collision detector, NMS and filters: parity with straightforward ports, on the real scene."""
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from graspnet_edge_ros.errors import ConfigError
from graspnet_edge_ros.grasps import GraspGroup
from graspnet_edge_ros.model.views import generate_grasp_views, viewpoint_params_to_matrix
from graspnet_edge_ros.postprocess import collision
from graspnet_edge_ros.postprocess.collision import ModelFreeCollisionDetector, voxel_downsample
from graspnet_edge_ros.postprocess.filters import (
    apply_filters, approach_cone_filter, fit_table_plane, score_filter, table_height_filter,
    top_k_filter, width_filter)
from graspnet_edge_ros.postprocess.nms import grasp_nms

OFFICIAL_VOXEL = 0.01


def masked_cloud(scene) -> np.ndarray:
    """(N, 3) float32 camera-frame points of the workspace mask (official demo back-projection)."""
    depth, K = scene["depth"], scene["K"]
    rows, cols = np.nonzero(scene["workspace_mask"] & (depth > 0))
    z = depth[rows, cols] / scene["factor_depth"]
    x = (cols - K[0, 2]) * z / K[0, 0]
    y = (rows - K[1, 2]) * z / K[1, 1]
    return np.stack([x, y, z], axis=1).astype(np.float32)


def grasps_on_points(points, count, seed, approach_into_scene_only=False) -> GraspGroup:
    """Grasps centred on random scene points, with decode-style rotations and parameters."""
    rng = np.random.default_rng(seed)
    centers = points[rng.choice(len(points), count, replace=False)]
    views = generate_grasp_views(300)
    if approach_into_scene_only:
        views = views[views[:, 2] < -0.3]  # approach = -view, so these point away from the camera
    rotations = viewpoint_params_to_matrix(-views[rng.integers(0, len(views), count)],
                                           rng.integers(0, 12, count) * np.pi / 12)
    return GraspGroup.from_parts(scores=rng.random(count), widths=rng.uniform(0.01, 0.1, count),
                                 depths=rng.integers(1, 5, count) * 0.01, rotations=rotations,
                                 translations=centers)


def collision_reference(scene_points, grasps, voxel_size, approach_dist, collision_thresh,
                        finger_width=0.01, finger_length=0.06):
    """Official detect() written as a plain loop over grasps, each against all scene points."""
    approach_dist = max(approach_dist, finger_width)
    fl, fw = finger_length, finger_width
    ious = np.zeros((len(grasps), 5))
    for g in range(len(grasps)):
        row = grasps[g]
        h, w, d = row.heights, row.widths, row.depths  # (1,) float32, like the official (N,1)
        local = (scene_points - row.translations) @ row.rotations[0]
        x, y, z = local[:, 0], local[:, 1], local[:, 2]
        band = (z > -h / 2) & (z < h / 2)
        fingers_x = (x > d - fl) & (x < d)
        inside_outer_y = (y > -(w / 2 + fw)) & (y < w / 2 + fw)
        left = band & fingers_x & (y > -(w / 2 + fw)) & (y < -w / 2)
        right = band & fingers_x & (y < w / 2 + fw) & (y > w / 2)
        bottom = band & inside_outer_y & (x <= d - fl) & (x > d - fl - fw)
        shifting = band & inside_outer_y & (x <= d - fl - fw) & (x > d - fl - fw - approach_dist)
        finger_volume = h * fl * fw / voxel_size ** 3
        bottom_volume = h * (w + 2 * fw) * fw / voxel_size ** 3
        shifting_volume = h * (w + 2 * fw) * approach_dist / voxel_size ** 3
        total = finger_volume * 2 + bottom_volume + shifting_volume
        hits = [left | right | bottom | shifting, left, right, bottom, shifting]
        volumes = [total, finger_volume, finger_volume, bottom_volume, shifting_volume]
        ious[g] = [mask.sum() / (volume + 1e-6)[0] for mask, volume in zip(hits, volumes)]
    return ious[:, 0] > collision_thresh, ious


def nms_reference(grasps, translation_thresh=0.03, rotation_thresh=np.pi / 6):
    """graspnms as a per-grasp Python loop (stable score order)."""
    rows = grasps.array.astype(np.float64)[np.argsort(-grasps.scores, kind="stable")]
    removed = np.zeros(len(rows), bool)
    for i in range(len(rows)):
        if removed[i]:
            continue
        for j in range(i + 1, len(rows)):
            distance = np.linalg.norm(rows[i, 13:16] - rows[j, 13:16])
            trace = np.trace(rows[i, 4:13].reshape(3, 3) @ rows[j, 4:13].reshape(3, 3).T)
            angle = np.arccos((np.clip(trace, -1, 3) - 1) / 2)
            if distance < translation_thresh and angle < rotation_thresh:
                removed[j] = True
    return rows[~removed].astype(np.float32)


@pytest.fixture(scope="module")
def scene_points(example_scene):
    return masked_cloud(example_scene)


@pytest.fixture(scope="module")
def detector(scene_points):
    return ModelFreeCollisionDetector(scene_points, voxel_size=OFFICIAL_VOXEL)


@pytest.mark.parametrize("dense_table", [True, False])
def test_voxel_downsample_equals_open3d_semantics_dict_port(scene_points, dense_table,
                                                            monkeypatch):
    if not dense_table:
        monkeypatch.setattr(collision, "_MAX_DENSE_VOXELS", 0)  # force the sorting path
    points = scene_points[::20]
    anchor = points.astype(np.float64).min(axis=0) - OFFICIAL_VOXEL / 2
    sums, counts = {}, {}
    for p in points.astype(np.float64):
        key = tuple(np.floor((p - anchor) / OFFICIAL_VOXEL).astype(int))
        sums[key] = sums.get(key, 0.0) + p
        counts[key] = counts.get(key, 0) + 1
    expected = np.array([sums[k] / counts[k] for k in sums])
    result = voxel_downsample(points, OFFICIAL_VOXEL)
    assert result.dtype == np.float64
    by_rows = lambda a: a[np.lexsort(a.T[::-1])]  # noqa: E731
    assert np.array_equal(by_rows(result), by_rows(expected))


def test_voxel_downsample_rejects_bad_voxel_and_drops_nan():
    with pytest.raises(ConfigError):
        voxel_downsample(np.zeros((4, 3)), 0.0)
    cloud = np.array([[0, 0, 0], [np.nan, 0, 0], [0.001, 0, 0]], np.float32)
    assert np.allclose(voxel_downsample(cloud, 0.01), [[0.0005, 0, 0]])
    assert voxel_downsample(np.zeros((0, 3)), 0.01).shape == (0, 3)


@pytest.mark.parametrize("approach_dist, collision_thresh", [(0.05, 0.01), (0.0, 0.05)])
def test_collision_equals_per_grasp_loop_on_real_scene(detector, scene_points, approach_dist,
                                                       collision_thresh):
    grasps = grasps_on_points(scene_points, 96, seed=1).concatenate(
        grasps_on_points(scene_points, 96, seed=2, approach_into_scene_only=True))
    mask, ious = detector.detect(grasps, approach_dist, collision_thresh, return_ious=True)
    expected_mask, expected_ious = collision_reference(
        detector.scene_points, grasps, OFFICIAL_VOXEL, approach_dist, collision_thresh)
    assert np.array_equal(ious, expected_ious)
    assert np.array_equal(mask, expected_mask)
    assert 0 < mask.sum() < len(mask)  # both outcomes occur, so the comparison means something


def box_of_points(lo, hi, spacing=0.002):
    axes = [np.arange(a, b + 1e-9, spacing) for a, b in zip(lo, hi)]
    return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)


def one_grasp(rotation=np.eye(3), center=(0, 0, 0), width=0.04, depth=0.02):
    return GraspGroup.from_parts([1.0], [width], [depth], [rotation], [center])


@pytest.fixture(scope="module")
def random_pose():
    rotation = Rotation.from_rotvec([0.4, -0.9, 0.3]).as_matrix()
    return rotation, np.array([0.1, -0.05, 0.6])


def posed(points, rotation, translation):
    return points @ rotation.T + translation


def test_finger_inside_dense_box_collides(random_pose):
    rotation, translation = random_pose
    # Left finger occupies x in (d - 0.06, d) = (-0.04, 0.02), y in (-0.03, -0.02), |z| < 0.01.
    box = box_of_points((-0.03, -0.032, -0.02), (0.01, -0.018, 0.02))
    detector = ModelFreeCollisionDetector(posed(box, rotation, translation), voxel_size=0.005)
    mask, ious = detector.detect(one_grasp(rotation, translation), return_ious=True)
    assert mask[0] and ious[0, 1] > 0.3 and ious[0, 2] == 0


def test_grasp_in_empty_space_is_free(random_pose):
    rotation, translation = random_pose
    far_box = box_of_points((0.3, 0.3, 0.3), (0.4, 0.4, 0.4))
    detector = ModelFreeCollisionDetector(posed(far_box, rotation, translation), voxel_size=0.005)
    mask, ious = detector.detect(one_grasp(rotation, translation), return_ious=True)
    assert not mask[0] and not ious.any()


@pytest.mark.parametrize("half_thickness, collides", [(0.012, False), (0.026, True)])
def test_thin_object_between_fingers(random_pose, half_thickness, collides):
    rotation, translation = random_pose
    # A plate between the jaws (|y| < w/2 = 0.02), reaching beyond the fingertips.
    plate = box_of_points((-0.03, -half_thickness, -0.03), (0.06, half_thickness, 0.03))
    detector = ModelFreeCollisionDetector(posed(plate, rotation, translation), voxel_size=0.005)
    assert detector.detect(one_grasp(rotation, translation))[0] == collides


def test_collision_skip_empty_and_invalid_inputs(detector, scene_points):
    grasps = grasps_on_points(scene_points, 8, seed=3)
    assert not detector.detect(grasps, collision_thresh=0.0).any()
    assert detector.detect(GraspGroup.empty()).shape == (0,)
    empty_scene = ModelFreeCollisionDetector(np.zeros((0, 3), np.float32))
    assert not empty_scene.detect(grasps).any()
    broken = grasps.array.copy()
    broken[0, 13] = np.nan
    broken[1, 4:13] = 0.0  # zero rotation
    mask = detector.detect(GraspGroup(broken))
    assert mask[0] and mask[1]
    with pytest.raises(ConfigError):
        ModelFreeCollisionDetector(scene_points[:10], finger_width=-0.01)


def clustered_grasps(scene_points, count=600, seed=4) -> GraspGroup:
    """Many grasps around few seeds, with few rotations: lots of near-duplicates to suppress."""
    rng = np.random.default_rng(seed)
    grasps = grasps_on_points(scene_points[rng.choice(len(scene_points), 5000)], 60, seed)
    picks = rng.integers(0, len(grasps), count)
    rows = grasps.array[picks].copy()
    rows[:, 13:16] += rng.normal(0, 0.015, (count, 3))
    rows[:, 0] = rng.integers(0, 50, count) / 50.0  # many equal scores: exercises tie order
    return GraspGroup(rows)


def test_nms_equals_loop_reference_and_leaves_no_close_pairs(scene_points):
    grasps = clustered_grasps(scene_points)
    survivors = grasp_nms(grasps)
    assert np.array_equal(survivors.array, nms_reference(grasps))
    assert 10 < len(survivors) < len(grasps) / 2
    assert np.all(np.diff(survivors.scores) <= 0)
    rows = survivors.array.astype(np.float64)
    distances = np.linalg.norm(rows[:, None, 13:16] - rows[None, :, 13:16], axis=-1)
    traces = np.einsum("ik,jk->ij", rows[:, 4:13], rows[:, 4:13])
    angles = np.arccos((np.clip(traces, -1, 3) - 1) / 2)
    close = (distances < 0.03) & (angles < np.pi / 6)
    np.fill_diagonal(close, False)
    assert not close.any()


def test_nms_greedy_order_and_stable_ties():
    rotation = np.eye(3)
    grasps = GraspGroup.from_parts([0.5, 0.9, 0.7, 0.9], 0.05, 0.02, [rotation] * 4,
                                   [[0.05, 0, 0], [0, 0, 0], [0.025, 0, 0], [0, 0, 0]],
                                   object_ids=[1, 2, 3, 4])
    # Visiting order id 2, 4 (tie: input order), 3, 1. Id 2 deletes its duplicate 4 and id 3;
    # id 1 is 0.05 m from id 2, and the deleted id 3 no longer suppresses it.
    survivors = grasp_nms(grasps)
    assert survivors.object_ids.tolist() == [2, 1]
    rotated = Rotation.from_euler("z", 45, degrees=True).as_matrix()
    grasps = GraspGroup.from_parts([0.9, 0.8], 0.05, 0.02, [rotation, rotated],
                                   [[0, 0, 0], [0, 0, 0]])
    assert len(grasp_nms(grasps)) == 2  # same place, 45 degrees apart: both kept
    assert len(grasp_nms(GraspGroup.empty())) == 0


def test_width_filter_rejects_without_clamping():
    widths = np.array([0.005, 0.03, 0.085, 0.095, 0.12], np.float32)
    grasps = GraspGroup.from_parts(np.ones(5), widths, 0.02, [np.eye(3)] * 5, np.zeros((5, 3)))
    result = width_filter(grasps, max_width=0.1, margin=0.01, min_width=0.01)
    assert result.keep.tolist() == [False, True, True, False, False]
    outcome = apply_filters(grasps, [result])
    assert np.array_equal(outcome.grasps.widths, widths[1:3])
    assert outcome.rejected == {"width": 3}
    with pytest.raises(ConfigError):
        width_filter(grasps, max_width=0.05, margin=0.05, min_width=0.01)


def test_approach_cone_score_and_top_k():
    angles = np.radians([0, 20, 40, 90, 180])
    approaches = np.stack([np.sin(angles), np.zeros(5), np.cos(angles)], axis=1)
    rotations = viewpoint_params_to_matrix(approaches, np.zeros(5))
    grasps = GraspGroup.from_parts([0.3, 0.9, 0.3, 0.1, 0.8], 0.05, 0.02, rotations,
                                   np.zeros((5, 3)))
    cone = approach_cone_filter(grasps, direction=[0, 0, 2], max_angle=np.radians(30))
    assert cone.keep.tolist() == [True, True, False, False, False]
    assert score_filter(grasps, 0.3).keep.tolist() == [True, True, True, False, True]
    assert top_k_filter(grasps, 3).keep.tolist() == [True, True, False, False, True]
    outcome = apply_filters(grasps, [score_filter(grasps, 0.3), cone])
    assert outcome.rejected == {"score": 1, "approach_cone": 2}
    assert outcome.keep.tolist() == [True, True, False, False, False]
    with pytest.raises(ConfigError):
        approach_cone_filter(grasps, direction=[0, 0, 0], max_angle=0.5)


@pytest.fixture(scope="module")
def table_plane(scene_points):
    return fit_table_plane(scene_points)


def test_fitted_table_plane_faces_camera_and_is_deterministic(scene_points, table_plane):
    normal, offset = table_plane
    assert np.isclose(np.linalg.norm(normal), 1.0) and offset > 0
    assert normal @ [0, 0, -1] > np.cos(np.radians(45))  # roughly towards the camera
    heights = scene_points @ normal + offset
    assert np.mean(np.abs(heights) < 0.01) > 0.3  # the table is the dominant surface
    assert np.mean(heights < -0.02) < 0.01        # hardly anything lies below it
    again = fit_table_plane(scene_points)
    assert np.array_equal(again[0], normal) and again[1] == offset


def test_table_filter_rejects_grasps_below_the_table(scene_points, table_plane):
    normal, offset = table_plane
    heights = scene_points @ normal + offset
    rng = np.random.default_rng(5)
    on_table = scene_points[rng.choice(np.flatnonzero(np.abs(heights) < 0.003), 20)]
    on_objects = scene_points[rng.choice(np.flatnonzero(heights > 0.08), 20)]
    centers = np.concatenate([on_table - 0.02 * normal, on_objects, on_table + 0.01 * normal])
    top_down = viewpoint_params_to_matrix(np.tile(-normal, (60, 1)), np.zeros(60))
    grasps = GraspGroup.from_parts(np.ones(60), 0.05, 0.03, top_down, centers)
    fingertips = table_height_filter(grasps, normal, offset, min_height=0.005)
    assert fingertips.keep.tolist() == [False] * 20 + [True] * 20 + [False] * 20
    # The centre 1 cm above the table passes, but the tips 3 cm deeper would not.
    center = table_height_filter(grasps, normal, offset, min_height=0.005, point="center")
    assert center.keep.tolist() == [False] * 20 + [True] * 40


def test_nms_equals_the_official_compiled_grasp_nms_on_real_grasps(split_model_dir, example_cloud):
    """Against graspnetAPI's own NMS (grasp_nms, the compiled package GraspGroup.nms() calls)."""
    import grasp_nms as grasp_nms_official
    from graspnet_edge_ros.postprocess.decode import decode_grasps
    from graspnet_edge_ros.runtime.graspnet_runner import load_graspnet_runner

    grasps = decode_grasps(load_graspnet_runner(split_model_dir)(example_cloud.sampled))
    assert len(grasps) > 100 and len(np.unique(grasps.scores)) == len(grasps)   # no ties to order
    ours = grasp_nms(grasps, 0.03, np.pi / 6)
    official = grasp_nms_official.nms_grasp(grasps.array.astype(np.float64), 0.03, 30.0 / 180.0 * np.pi)
    assert 0 < len(ours) < len(grasps)
    np.testing.assert_array_equal(ours.array, official.astype(np.float32))
