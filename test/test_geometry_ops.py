"""Native (numba) and PyTorch geometric operators against brute-force references (spec §4).

Index outputs must match exactly, float outputs to 1e-6 (native and torch bit for bit).
"""
import io
import subprocess
import sys

import numpy as np
import pytest
import torch

import reference_ops as ref
from graspnet_edge_ros.errors import ConfigError, InputError
from graspnet_edge_ros.geometry import native, native_crop, torch_ops

HMAX = [0.01, 0.02, 0.03, 0.04]


# -- helpers --------------------------------------------------------------------------------------

def as_batch(*arrays):
    return tuple(torch.from_numpy(np.ascontiguousarray(a))[None] for a in arrays)


def torch_single(fn, *arrays, **kwargs):
    """Run a batched torch op on one cloud; numpy results without the batch axis."""
    out = fn(*as_batch(*arrays), **kwargs)
    if isinstance(out, tuple):
        return tuple(o[0].numpy() for o in out)
    return out[0].numpy()


def random_cloud(seed: int, n: int, near_origin_fraction: float = 0.0) -> np.ndarray:
    """(n, 3) float32 camera-like cloud (z 0.3..0.9 m); a fraction moved into the FPS skip ball."""
    rng = np.random.default_rng(seed)
    cloud = np.column_stack([rng.uniform(-0.3, 0.3, n), rng.uniform(-0.2, 0.2, n),
                             rng.uniform(0.3, 0.9, n)]).astype(np.float32)
    near = rng.random(n) < near_origin_fraction
    cloud[near] = rng.uniform(-0.015, 0.015, (near.sum(), 3)).astype(np.float32)
    return cloud


def approach_frames(towards: np.ndarray) -> np.ndarray:
    """(S, 3) approach vectors -> (S, 3, 3) float32 frames, columns [a, y0, a × y0] (angle 0),
    as batch_viewpoint_params_to_matrix builds them (spec §5.2)."""
    a = towards / np.linalg.norm(towards, axis=1, keepdims=True)
    y0 = np.column_stack([-a[:, 1], a[:, 0], np.zeros(len(a))])
    y0[np.linalg.norm(y0, axis=1) == 0] = [0.0, 1.0, 0.0]
    y0 /= np.linalg.norm(y0, axis=1, keepdims=True)
    return np.stack([a, y0, np.cross(a, y0)], axis=2).astype(np.float32)


def random_frames(seed: int, count: int) -> np.ndarray:
    return approach_frames(np.random.default_rng(seed).normal(size=(count, 3)))


@pytest.fixture(scope="module")
def example_cloud(example_scene) -> np.ndarray:
    """20000 points back-projected from the example depth inside the workspace mask (seed 0)."""
    depth, K = example_scene["depth"], example_scene["K"]
    rows, cols = np.nonzero(example_scene["workspace_mask"] & (depth > 0))
    z = depth[rows, cols] / example_scene["factor_depth"]
    cloud = np.column_stack([(cols - K[0, 2]) * z / K[0, 0], (rows - K[1, 2]) * z / K[1, 1], z])
    choice = np.random.default_rng(0).choice(len(cloud), 20000, replace=False)
    return cloud[choice].astype(np.float32)


@pytest.fixture(scope="module")
def example_fps(example_cloud) -> np.ndarray:
    return native.furthest_point_sample(example_cloud, 2048)


# -- furthest point sampling ----------------------------------------------------------------------

@pytest.mark.parametrize("seed,n,npoint,near", [(0, 1, 1, 0.0), (1, 7, 7, 0.3), (2, 200, 64, 0.05),
                                                (3, 1000, 300, 0.0), (4, 3000, 512, 0.1)])
def test_fps_matches_reference_on_random_clouds(seed, n, npoint, near):
    cloud = random_cloud(seed, n, near)
    expected = ref.furthest_point_sample(cloud, npoint)
    np.testing.assert_array_equal(native.furthest_point_sample(cloud, npoint), expected)
    np.testing.assert_array_equal(torch_single(torch_ops.furthest_point_sample, cloud, npoint=npoint),
                                  expected)


@pytest.mark.parametrize("shape", ["grid_ties", "plane", "duplicates", "line"])
def test_blocked_fps_matches_reference_where_blocks_and_ties_are_hard(shape):
    """FPS skips far blocks: exact ties, flat/thin clouds and repeated points must not change a pick."""
    rng = np.random.default_rng(7)
    cloud = rng.uniform(-0.5, 0.5, (2500, 3)).astype(np.float32) + np.float32([0, 0, 0.8])
    if shape == "grid_ties":
        cloud = np.round(cloud * 8) / 8                                  # many equal distances
    elif shape == "plane":
        cloud[:, 2] = 0.7
    elif shape == "duplicates":
        cloud[1000:] = cloud[rng.integers(0, 1000, 1500)]
    else:
        cloud[:, 1:] = [0.1, 0.6]
    expected = ref.furthest_point_sample(cloud, 1500)
    np.testing.assert_array_equal(native.furthest_point_sample(cloud, 1500), expected)


def test_fps_skip_rule_uses_the_double_threshold():
    # A point whose float32 |p|² equals float32(1e-3) (just above the double 1e-3) is pickable;
    # one at 0.9999999e-3 is not. The start point 0 is taken even inside the skip ball.
    x = np.float32(0.005)
    y = np.float32(np.sqrt(1e-3 - float(x) * float(x)))
    while x * x + y * y < np.float32(1e-3):
        y = np.nextafter(y, np.float32(1.0))
    assert x * x + y * y == np.float32(1e-3) and float(x * x + y * y) > 1e-3
    inside = np.float32(0.031622775)
    assert float(inside * inside) <= 1e-3
    cloud = np.array([[0.0, 0.0, 0.0], [x, y, 0.0], [inside, 0.0, 0.0], [1.0, 1.0, 1.0]], np.float32)
    expected = ref.furthest_point_sample(cloud, 6)
    assert 1 in expected and 2 not in expected
    for picks in (native.furthest_point_sample(cloud, 6),
                  torch_single(torch_ops.furthest_point_sample, cloud, npoint=6)):
        np.testing.assert_array_equal(picks, expected)


def test_fps_picks_every_usable_point_once_then_repeats_the_lowest():
    cloud = random_cloud(5, 400, near_origin_fraction=0.3)
    cloud[0] = [0.001, 0.0, 0.0]  # the start point itself inside the skip ball
    x, y, z = cloud.T
    usable = np.flatnonzero((x * x + y * y + z * z).astype(np.float64) > 1e-3)
    picks = native.furthest_point_sample(cloud, len(usable) + 6)
    assert picks[0] == 0
    assert sorted(picks[1:len(usable) + 1]) == sorted(usable)
    assert (picks[len(usable) + 1:] == usable[0]).all()
    np.testing.assert_array_equal(torch_single(torch_ops.furthest_point_sample, cloud,
                                               npoint=len(usable) + 6), picks)


def test_fps_all_points_skipped_gives_zeros():
    cloud = np.random.default_rng(6).uniform(-0.01, 0.01, (50, 3)).astype(np.float32)
    for picks in (native.furthest_point_sample(cloud, 8),
                  torch_single(torch_ops.furthest_point_sample, cloud, npoint=8),
                  ref.furthest_point_sample(cloud, 8)):
        np.testing.assert_array_equal(picks, np.zeros(8))


def test_fps_never_picks_a_duplicate_before_all_distinct_points():
    rng = np.random.default_rng(7)
    distinct = random_cloud(7, 60)
    cloud = distinct[rng.permutation(np.repeat(np.arange(60), 3))]
    picks = native.furthest_point_sample(cloud, 60)
    assert len(np.unique(cloud[picks], axis=0)) == 60
    for npoint in (60, len(cloud)):  # npoint == N runs far past exhaustion
        expected = ref.furthest_point_sample(cloud, npoint)
        np.testing.assert_array_equal(native.furthest_point_sample(cloud, npoint), expected)
        np.testing.assert_array_equal(
            torch_single(torch_ops.furthest_point_sample, cloud, npoint=npoint), expected)


def test_fps_more_picks_than_points_and_zero_picks():
    cloud = random_cloud(8, 10)
    expected = ref.furthest_point_sample(cloud, 25)
    np.testing.assert_array_equal(native.furthest_point_sample(cloud, 25), expected)
    np.testing.assert_array_equal(torch_single(torch_ops.furthest_point_sample, cloud, npoint=25),
                                  expected)
    assert native.furthest_point_sample(cloud, 0).shape == (0,)
    assert torch_ops.furthest_point_sample(*as_batch(cloud), 0).shape == (1, 0)


def test_fps_on_example_scene_and_prefix_property(example_cloud, example_fps):
    np.testing.assert_array_equal(example_fps, ref.furthest_point_sample(example_cloud, 2048))
    np.testing.assert_array_equal(
        torch_single(torch_ops.furthest_point_sample, example_cloud, npoint=2048), example_fps)
    ordered = example_cloud[example_fps]
    np.testing.assert_array_equal(native.furthest_point_sample(ordered, 1024), np.arange(1024))
    np.testing.assert_array_equal(torch_single(torch_ops.furthest_point_sample, ordered, npoint=1024),
                                  np.arange(1024))


# -- ball query -----------------------------------------------------------------------------------

@pytest.mark.parametrize("seed,n,s,radius,nsample", [(0, 50, 20, 0.2, 8), (1, 2000, 300, 0.05, 32),
                                                     (2, 5000, 200, 0.1, 64)])
def test_ball_query_matches_reference_on_random_clouds(seed, n, s, radius, nsample):
    cloud = random_cloud(seed, n)
    rng = np.random.default_rng(seed + 100)
    # half the centres are cloud points, half free positions (some with empty balls)
    centers = np.concatenate([cloud[rng.choice(n, s // 2)], random_cloud(seed + 200, s - s // 2) * 1.5])
    expected = ref.ball_query(cloud, centers, radius, nsample)
    for method in native.QUERY_METHODS:
        np.testing.assert_array_equal(native.ball_query(cloud, centers, radius, nsample, method=method),
                                      expected)
    for chunk in (None, 7):
        np.testing.assert_array_equal(torch_single(torch_ops.ball_query, cloud, centers, radius=radius,
                                                   nsample=nsample, chunk_size=chunk), expected)


def test_ball_query_on_example_scene_sa_levels(example_cloud, example_fps):
    sa_xyz = example_cloud[example_fps]
    levels = [(example_cloud, 2048, 0.04, 64), (sa_xyz, 1024, 0.10, 32),
              (sa_xyz[:1024], 512, 0.20, 16), (sa_xyz[:512], 256, 0.30, 16)]
    for points, npoint, radius, nsample in levels:
        centers = sa_xyz[:npoint]
        idx = native.ball_query(points, centers, radius, nsample)
        np.testing.assert_array_equal(idx, ref.ball_query(points, centers, radius, nsample))
        other = "scan" if len(points) >= native.GRID_MIN_POINTS else "grid"
        np.testing.assert_array_equal(native.ball_query(points, centers, radius, nsample, method=other), idx)
        np.testing.assert_array_equal(
            torch_single(torch_ops.ball_query, points, centers, radius=radius, nsample=nsample), idx)
        assert (np.linalg.norm(points[idx] - centers[:, None], axis=2) < radius + 1e-6).all()


def test_ball_query_empty_balls_are_zero_and_boundary_is_strict():
    centre = np.float32([1.0, 1.0, 1.0])
    just_inside = np.nextafter(np.float32(1.5), np.float32(0.0))
    cloud = np.array([[5.0, 5.0, 5.0], [1.5, 1.0, 1.0], [1.0, 0.5, 1.0], [1.0, 1.0, 0.5],
                      [just_inside, 1.0, 1.0], [1.2, 1.1, 0.9]], np.float32)
    centers = np.stack([centre, [9.0, 9.0, -9.0]]).astype(np.float32)
    # |d|² == 0.25 == r² exactly for points 1..3: outside; 4 and 5 inside, padded with 4
    for idx in (native.ball_query(cloud, centers, 0.5, 4, method="scan"),
                native.ball_query(cloud, centers, 0.5, 4, method="grid"),
                torch_single(torch_ops.ball_query, cloud, centers, radius=0.5, nsample=4),
                ref.ball_query(cloud, centers, 0.5, 4)):
        np.testing.assert_array_equal(idx[0], [4, 5, 4, 4])
        np.testing.assert_array_equal(idx[1], [0, 0, 0, 0])


def test_ball_query_fewer_points_than_samples():
    cloud = random_cloud(9, 5) * 0.01
    expected = ref.ball_query(cloud, cloud[:3], 1.0, 16)
    assert (expected[:, :5] == np.arange(5)).all() and (expected[:, 5:] == 0).all()
    np.testing.assert_array_equal(native.ball_query(cloud, cloud[:3], 1.0, 16), expected)
    np.testing.assert_array_equal(torch_single(torch_ops.ball_query, cloud, cloud[:3], radius=1.0,
                                               nsample=16), expected)


# -- cylinder query -------------------------------------------------------------------------------

@pytest.mark.parametrize("seed,n,s,nsample", [(0, 300, 40, 8), (1, 4000, 150, 64)])
def test_cylinder_query_matches_reference_on_random_clouds(seed, n, s, nsample):
    cloud = random_cloud(seed, n) * np.float32(0.3)
    rng = np.random.default_rng(seed + 10)
    centers = np.concatenate([cloud[rng.choice(n, s - 5)], cloud[:5] + np.float32(5.0)])  # 5 empty
    frames = random_frames(seed, s)
    expected = ref.cylinder_query(cloud, centers, frames, 0.05, -0.02, HMAX, nsample)
    assert (expected[-5:] == 0).all()
    for method in native.QUERY_METHODS:
        np.testing.assert_array_equal(native.cylinder_query(cloud, centers, frames, 0.05, -0.02, HMAX,
                                                            nsample, method=method), expected)
    for chunk in (None, 16):
        got = torch_single(torch_ops.cylinder_query, cloud, centers, frames, radius=0.05, hmin=-0.02,
                           hmax=HMAX, nsample=nsample, chunk_size=chunk)
        np.testing.assert_array_equal(got, expected)


def test_cylinder_query_and_group_on_example_scene(example_cloud, example_fps):
    seeds = example_cloud[example_fps[:1024]]
    frames = random_frames(11, len(seeds))
    idx = native.cylinder_query(example_cloud, seeds, frames, 0.05, -0.02, HMAX, 64)
    np.testing.assert_array_equal(idx, ref.cylinder_query(example_cloud, seeds, frames, 0.05, -0.02,
                                                          HMAX, 64))
    np.testing.assert_array_equal(
        native.cylinder_query(example_cloud, seeds, frames, 0.05, -0.02, HMAX, 64, method="scan"), idx)
    np.testing.assert_array_equal(
        torch_single(torch_ops.cylinder_query, example_cloud, seeds, frames, radius=0.05, hmin=-0.02,
                     hmax=HMAX, nsample=64), idx)

    local = native.cylinder_group(example_cloud, seeds, frames, idx)
    assert local.shape == (1024, 4, 64, 3) and local.dtype == np.float32
    np.testing.assert_array_equal(torch_single(torch_ops.cylinder_group, example_cloud, seeds, frames,
                                               idx), local)
    np.testing.assert_allclose(local, ref.cylinder_group(example_cloud, seeds, frames, idx), atol=1e-6)
    # every grouped point satisfies its own depth class's test, in the very float32 values used
    assert (local[..., 1] ** 2 + local[..., 2] ** 2 < np.float32(0.05) * np.float32(0.05)).all()
    assert (local[..., 0] > np.float32(-0.02)).all()
    assert (local[..., 0] < np.float32(HMAX)[None, :, None]).all()


def _features(local: np.ndarray) -> np.ndarray:
    """(..., 3) local xyz -> (..., 4) a nonlinear per-point feature, like the crop MLP's (ReLU'd)."""
    x, y, z = local[..., 0], local[..., 1], local[..., 2]
    return np.maximum(np.stack([x + 0.5 * y, y * z * 100.0, np.sin(40.0 * x) + z, -x], axis=-1), 0.0)


def _pooled_by_layout(cloud, seeds, frames, idx, chunk_points):
    layout = native_crop.crop_union_layout(cloud, seeds, frames, idx, chunk_points)
    assert layout.crop_input.shape[1:] == (3, chunk_points)
    pooled = np.full((4, idx.shape[0] * idx.shape[1] + 3), np.nan, np.float32)  # + padding rows
    for chunk, crop in enumerate(layout.crop_input):
        features = _features(crop.T).astype(np.float32)                       # (P, 4) as the segment gives
        native_crop.pool_crop_features(features, layout, chunk, pooled)
    assert np.isnan(pooled[:, -3:]).all()                                     # nothing past the last row
    return layout, pooled[:, :-3].T.reshape(idx.shape[0], idx.shape[1], 4)


@pytest.mark.parametrize("chunk_points", [257, 2048])
def test_crop_union_layout_pools_each_depth_like_the_per_depth_crop(example_cloud, example_fps, chunk_points):
    """Features computed once per distinct (seed, point), max-pooled per depth == the official per-depth crop."""
    seeds = example_cloud[example_fps[:300]]
    frames = random_frames(12, len(seeds))
    idx = native.cylinder_query(example_cloud, seeds, frames, 0.05, -0.02, HMAX, 64)
    local = native.cylinder_group(example_cloud, seeds, frames, idx)           # (S, D, K, 3)
    layout, pooled = _pooled_by_layout(example_cloud, seeds, frames, idx, chunk_points)
    np.testing.assert_array_equal(pooled, _features(local).max(axis=2))
    distinct = sum(len(np.unique(row)) for row in idx)
    assert (layout.crop_input[:, :, -1] == 0).all()                          # the spare padding column
    assert distinct <= layout.crop_input.shape[0] * (chunk_points - 1) < distinct + chunk_points * len(seeds)
    assert distinct < 0.6 * idx.size                                           # the point of the layout
    # nested cylinders, first hits in index order: group e (points first listed by depth e) is cut
    # at most at the D - e prefixes later depths take of it, so <= 4 + 3 + 2 + 1 pieces per seed
    assert len(layout.piece_starts) - len(layout.crop_input) <= 10 * len(seeds)
    # every point is computed once per seed: the union's columns hold its local coordinates exactly
    columns = np.concatenate([crop.T for crop in layout.crop_input])
    assert len(np.unique(columns[np.any(columns != 0, axis=1)], axis=0)) <= distinct


def test_crop_union_layout_is_exact_for_any_index_order():
    """Unsorted, duplicated, non-nested indices (no query gives these): still the max over each row."""
    cloud = random_cloud(18, 300) * np.float32(0.2)
    rng = np.random.default_rng(18)
    seeds, frames = cloud[:40], random_frames(18, 40)
    idx = rng.integers(0, 300, (40, 3, 16)).astype(np.int32)
    idx[::3, 1] = idx[::3, 1, :1]                                             # a row of one repeated point
    _, pooled = _pooled_by_layout(cloud, seeds, frames, idx, 49)
    np.testing.assert_array_equal(pooled, _features(native.cylinder_group(cloud, seeds, frames, idx)).max(axis=2))
    with pytest.raises(InputError, match="chunk_points 48 must exceed"):
        native_crop.crop_union_layout(cloud, seeds, frames, idx, 48)
    with pytest.raises(InputError, match="out of range"):
        native_crop.crop_union_layout(cloud, seeds, frames, idx + 300, 49)


def test_points_major_transposes_channels_major_crop_features_of_older_exports():
    rng = np.random.default_rng(3)
    for shape in ((256, 2048), (4, 49), (17, 33), (1, 1)):
        features = rng.standard_normal(shape).astype(np.float32)
        np.testing.assert_array_equal(native_crop.points_major(features), features.T)


def test_cylinder_query_boundaries_are_strict():
    # identity frame: local = p - c. r² = 0.25, hmin = -0.25, hmax = (0.25, 0.5).
    c = np.float32([1.0, 1.0, 1.0])
    below = np.nextafter(np.float32(1.25), np.float32(0.0))
    cloud = np.array([[0.75, 1.0, 1.0],     # x == hmin: out
                      [1.25, 1.0, 1.0],     # x == hmax[0]: out of depth 0, in depth 1
                      [1.0, 1.5, 1.0],      # y² == r²: out
                      [1.0, 1.0, 0.5],      # z² == r²: out
                      [below, 1.0, 1.0],    # just under hmax[0]: in both
                      [1.5, 1.0, 1.0]],     # x == hmax[1]: out
                     np.float32)
    frames = np.eye(3, dtype=np.float32)[None]
    far = np.float32([[1.0, 9.0, 1.0]])
    centers = np.concatenate([c[None], far])
    args = (-0.25, [0.25, 0.5], 3)
    for idx in (native.cylinder_query(cloud, centers, np.repeat(frames, 2, 0), 0.5, *args, method="scan"),
                native.cylinder_query(cloud, centers, np.repeat(frames, 2, 0), 0.5, *args, method="grid"),
                torch_single(torch_ops.cylinder_query, cloud, centers, np.repeat(frames, 2, 0),
                             radius=0.5, hmin=-0.25, hmax=[0.25, 0.5], nsample=3),
                ref.cylinder_query(cloud, centers, np.repeat(frames, 2, 0), 0.5, *args)):
        np.testing.assert_array_equal(idx[0], [[4, 4, 4], [1, 4, 1]])
        np.testing.assert_array_equal(idx[1], np.zeros((2, 3)))


def test_grid_queries_with_outlier_and_coincident_points():
    # a far outlier forces coarse cells; a block of identical points has zero extent
    cloud = random_cloud(18, 6000) * np.float32(0.3)
    cloud[123] = [4000.0, -3000.0, 9000.0]
    cloud[4000:4100] = cloud[7]
    centers = np.concatenate([cloud[::60], cloud[[123, 7]]])
    frames = random_frames(18, len(centers))
    expected_ball = ref.ball_query(cloud, centers, 0.03, 32)
    expected_crop = ref.cylinder_query(cloud, centers, frames, 0.05, -0.02, HMAX, 32)
    for method in ("grid", "scan"):
        np.testing.assert_array_equal(native.ball_query(cloud, centers, 0.03, 32, method=method),
                                      expected_ball)
        np.testing.assert_array_equal(native.cylinder_query(cloud, centers, frames, 0.05, -0.02, HMAX,
                                                            32, method=method), expected_crop)
    same = np.repeat(cloud[7:8], 50, axis=0)
    np.testing.assert_array_equal(native.ball_query(same, same[:2], 0.01, 8, method="grid"),
                                  np.tile(np.arange(8), (2, 1)))


def test_cylinder_query_non_orthonormal_frames_fall_back_to_the_scan():
    cloud = random_cloud(19, 5000) * np.float32(0.3)
    centers = cloud[:40]
    frames = random_frames(19, 40) * np.float32(1.5)  # scaled: the grid's distance bound fails
    expected = ref.cylinder_query(cloud, centers, frames, 0.05, -0.02, HMAX, 16)
    np.testing.assert_array_equal(native.cylinder_query(cloud, centers, frames, 0.05, -0.02, HMAX, 16),
                                  expected)
    np.testing.assert_array_equal(
        torch_single(torch_ops.cylinder_query, cloud, centers, frames, radius=0.05, hmin=-0.02, hmax=HMAX,
                     nsample=16), expected)
    with pytest.raises(InputError):
        native.cylinder_query(cloud, centers, frames, 0.05, -0.02, HMAX, 16, method="grid")


# -- three-NN and interpolation -------------------------------------------------------------------

def test_three_nn_matches_reference_including_ties():
    known = random_cloud(12, 200)
    known[50] = known[10]            # duplicates: equal distances, the lower index must come first
    known[120] = known[10]
    unknown = np.concatenate([random_cloud(13, 300), known[[10, 50, 7]]])
    dist, idx = ref.three_nn(unknown, known)
    np.testing.assert_array_equal(idx[-3], [10, 50, 120])
    for got_dist, got_idx in (native.three_nn(unknown, known),
                              torch_single(torch_ops.three_nn, unknown, known)):
        np.testing.assert_array_equal(got_idx, idx)
        np.testing.assert_array_equal(got_dist, dist)


def test_feature_propagation_on_example_scene(example_cloud, example_fps):
    sa_xyz = example_cloud[example_fps]
    features = np.random.default_rng(14).normal(size=(32, 512)).astype(np.float32)
    for n, m in ((512, 256), (1024, 512)):
        dist, idx = native.three_nn(sa_xyz[:n], sa_xyz[:m])
        ref_dist, ref_idx = ref.three_nn(sa_xyz[:n], sa_xyz[:m])
        np.testing.assert_array_equal(idx, ref_idx)
        np.testing.assert_array_equal(dist, ref_dist)
        torch_dist, torch_idx = torch_single(torch_ops.three_nn, sa_xyz[:n], sa_xyz[:m])
        np.testing.assert_array_equal(torch_idx, idx)
        np.testing.assert_array_equal(torch_dist, dist)
        # known ⊂ unknown (prefix property): those points are their own nearest neighbour
        np.testing.assert_array_equal(idx[:m, 0], np.arange(m))

        weight = native.interpolation_weights(dist)
        np.testing.assert_array_equal(torch_single(torch_ops.interpolation_weights, dist), weight)
        np.testing.assert_allclose(weight, ref.interpolation_weights(dist), atol=1e-6)
        assert (weight[:m, 0] > 0.999).all()

        out = native.three_interpolate(features[:, :m], idx, weight)
        np.testing.assert_array_equal(
            torch_single(torch_ops.three_interpolate, features[:, :m], idx, weight), out)
        np.testing.assert_allclose(out, ref.three_interpolate(features[:, :m], idx, weight), atol=1e-6)


def test_group_and_gather_points():
    rng = np.random.default_rng(15)
    features = rng.normal(size=(5, 40)).astype(np.float32)
    idx = rng.integers(0, 40, size=(7, 6)).astype(np.int32)
    expected = ref.group_points(features, idx)
    np.testing.assert_array_equal(native.group_points(features, idx), expected)
    np.testing.assert_array_equal(torch_single(torch_ops.group_points, features, idx), expected)
    np.testing.assert_array_equal(native.gather_points(features, idx[0]), expected[:, 0])
    np.testing.assert_array_equal(torch_single(torch_ops.gather_points, features, idx[0]), expected[:, 0])


def test_torch_ops_handle_each_batch_row_independently():
    clouds = [random_cloud(20, 3000), random_cloud(21, 3000, near_origin_fraction=0.2)]
    frames = [random_frames(20, 100), random_frames(21, 100)]
    xyz = torch.from_numpy(np.stack(clouds))
    centers = xyz[:, :100]
    fps = torch_ops.furthest_point_sample(xyz, 200).numpy()
    ball = torch_ops.ball_query(xyz, centers, 0.05, 16, chunk_size=33).numpy()
    crop = torch_ops.cylinder_query(xyz, centers, torch.from_numpy(np.stack(frames)), 0.05, -0.02, HMAX, 16,
                                    chunk_size=33).numpy()
    dist, idx = (t.numpy() for t in torch_ops.three_nn(xyz[:, :500], centers))
    for b, cloud in enumerate(clouds):
        np.testing.assert_array_equal(fps[b], native.furthest_point_sample(cloud, 200))
        np.testing.assert_array_equal(ball[b], native.ball_query(cloud, cloud[:100], 0.05, 16))
        np.testing.assert_array_equal(crop[b], native.cylinder_query(cloud, cloud[:100], frames[b], 0.05,
                                                                     -0.02, HMAX, 16))
        expected_dist, expected_idx = native.three_nn(cloud[:500], cloud[:100])
        np.testing.assert_array_equal(idx[b], expected_idx)
        np.testing.assert_array_equal(dist[b], expected_dist)


# -- interface ------------------------------------------------------------------------------------

def test_native_module_does_not_import_torch():
    code = ("import sys, graspnet_edge_ros.geometry.native, graspnet_edge_ros.geometry.native_crop; "
            "sys.exit(1 if 'torch' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0


def test_invalid_inputs_raise_typed_errors():
    cloud = random_cloud(16, 10)
    with pytest.raises(InputError):
        native.ball_query(cloud[:, :2], cloud, 0.1, 4)
    with pytest.raises(InputError):
        native.furthest_point_sample(np.full((4, 3), np.nan, np.float32), 2)
    with pytest.raises(ConfigError):
        native.ball_query(cloud, cloud, 0.1, 0)
    with pytest.raises(ConfigError):
        native.ball_query(cloud, cloud, 0.1, 4, method="kdtree")
    with pytest.raises(InputError):
        native.three_nn(cloud, cloud[:2])
    with pytest.raises(InputError):
        torch_ops.three_nn(*as_batch(cloud, cloud[:2]))
    with pytest.raises(InputError):
        native.cylinder_query(cloud, cloud[:3], np.eye(3, dtype=np.float32)[None], 0.05, -0.02, HMAX, 4)


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_torch_queries_export_to_onnx_and_match_native():
    ort = pytest.importorskip("onnxruntime")
    cloud = random_cloud(17, 1500) * np.float32(0.3)
    centers = cloud[:64]
    frames = random_frames(17, 64)

    class Queries(torch.nn.Module):
        def forward(self, xyz, seeds, rotations):
            ball = torch_ops.ball_query(xyz, seeds, 0.05, 16, chunk_size=None)
            crop = torch_ops.cylinder_query(xyz, seeds, rotations, 0.05, -0.02, HMAX, 16, chunk_size=None)
            dist, idx = torch_ops.three_nn(seeds, xyz[:, :100])
            return ball, crop, torch_ops.cylinder_group(xyz, seeds, rotations, crop), dist, idx

    inputs = as_batch(cloud, centers, frames)
    buffer = io.BytesIO()
    torch.onnx.export(Queries(), inputs, buffer, dynamo=False, opset_version=17)
    session = ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    ball, crop, local, dist, idx = session.run(
        None, {i.name: t.numpy() for i, t in zip(session.get_inputs(), inputs)})
    np.testing.assert_array_equal(ball[0], native.ball_query(cloud, centers, 0.05, 16))
    expected_crop = native.cylinder_query(cloud, centers, frames, 0.05, -0.02, HMAX, 16)
    np.testing.assert_array_equal(crop[0], expected_crop)
    np.testing.assert_array_equal(local[0], native.cylinder_group(cloud, centers, frames, expected_crop))
    expected_dist, expected_idx = native.three_nn(centers, cloud[:100])
    np.testing.assert_array_equal(idx[0], expected_idx)
    np.testing.assert_array_equal(dist[0], expected_dist)


def test_column_argmax_is_numpys_argmax_over_rows_including_ties_and_nan():
    rng = np.random.default_rng(7)
    values = np.round(rng.normal(size=(300, 257)) * 2).astype(np.float32)  # many exact ties
    values[3, 5] = values[10, 5] = np.nan      # the first NaN wins
    values[0, 7] = np.nan                      # ... also in the first row
    values[20, 9] = np.inf
    values[:, 11] = np.nan
    values[:, 12] = -np.inf
    np.testing.assert_array_equal(native.column_argmax(values), np.argmax(values, axis=0))
    one_row = rng.normal(size=(1, 4)).astype(np.float32)
    np.testing.assert_array_equal(native.column_argmax(one_row), np.zeros(4, np.int64))
    with pytest.raises(InputError):
        native.column_argmax(np.zeros((0, 3), np.float32))


def test_group_first_layer_channels_last_gives_the_same_values(example_cloud, example_fps):
    rng = np.random.default_rng(3)
    source = example_cloud[example_fps]
    centres = source[:512]
    idx = native.ball_query(source, centres, 0.2, 16)
    projected = rng.normal(size=(128, len(source))).astype(np.float32)
    weight_xyz = rng.normal(size=(128, 3)).astype(np.float32)
    bias = rng.normal(size=128).astype(np.float32)
    first = native.group_first_layer(source, centres, idx, 0.2, projected, weight_xyz, bias)
    last = native.group_first_layer(source, centres, idx, 0.2, projected, weight_xyz, bias, channels_last=True)
    assert last.shape == (512, 16, 128) and (first > 0).any() and (first == 0).any()
    np.testing.assert_array_equal(last, first.transpose(1, 2, 0))
    with pytest.raises(InputError, match="C-contiguous float32 array of shape"):
        native.group_first_layer(source, centres, idx, 0.2, projected, weight_xyz, bias,
                                 out=np.empty((128, 512, 16), np.float32), channels_last=True)
