"""Planar grasp -> 6-DoF lifting: geometry against independent pinhole projections."""
from __future__ import annotations

import numpy as np
import pytest

from graspnet_edge_ros.camera import CameraIntrinsics
from graspnet_edge_ros.errors import ConfigError, InputError
from graspnet_edge_ros.planar.lifting import LiftingOptions, lift_planar_grasps
from graspnet_edge_ros.planar.types import PlanarGrasps
from graspnet_edge_ros.poses import tcp_poses

INTRINSICS = CameraIntrinsics(fx=600.0, fy=640.0, cx=319.5, cy=239.5, width=640, height=480)


def project(points: np.ndarray, k: CameraIntrinsics = INTRINSICS) -> np.ndarray:
    """(N, 3) camera points -> (N, 2) pixels (u, v)."""
    points = np.atleast_2d(points)
    return np.stack([k.fx * points[:, 0] / points[:, 2] + k.cx, k.fy * points[:, 1] / points[:, 2] + k.cy], axis=1)


def table_with_box(table_m: float = 0.6, box_top_m: float = 0.5) -> np.ndarray:
    depth = np.full((480, 640), table_m, np.float32)
    depth[200:300, 250:400] = box_top_m
    return depth


def planar(rows, cols, angles, widths_px, scores=None) -> PlanarGrasps:
    rows = np.asarray(rows, float)
    scores = np.linspace(0.9, 0.5, len(rows)) if scores is None else np.asarray(scores, float)
    return PlanarGrasps(rows, np.asarray(cols, float), np.asarray(angles, float), np.asarray(widths_px, float), scores)


@pytest.mark.parametrize("angle", [0.0, 0.4, np.pi / 2, -1.2, 2.5])
def test_lifted_pose_projects_back_onto_the_planar_grasp(angle):
    depth = table_with_box()
    grasp = planar([250.0], [320.0], [angle], [40.0])
    lifted = lift_planar_grasps(grasp, depth, INTRINSICS, LiftingOptions(insertion_depth_m=0.015))
    assert lifted.kept.tolist() == [True]
    row = lifted.grasps
    centre = row.translations[0]
    assert centre[2] == pytest.approx(0.5, abs=1e-6)  # the box top, not the table
    np.testing.assert_allclose(project(centre)[0], [320.0, 250.0], atol=1e-3)

    rotation = row.rotations[0]
    np.testing.assert_allclose(rotation.T @ rotation, np.eye(3), atol=1e-6)
    assert np.linalg.det(rotation) == pytest.approx(1.0, abs=1e-6)
    approach, closing = rotation[:, 0], rotation[:, 1]
    assert approach @ centre > 0  # points from the camera into the scene
    np.testing.assert_allclose(approach, [0, 0, 1], atol=1e-7)

    # The jaw tips, projected, lie on the planar grasp line, width_px apart.
    tips = centre + np.outer([-0.5, 0.5], row.widths[0] * closing)
    tips_px = project(tips)
    direction = tips_px[1] - tips_px[0]
    expected = 40.0 * np.array([np.cos(angle), -np.sin(angle)])
    np.testing.assert_allclose(direction, expected, atol=1e-3)
    assert row.depths[0] == pytest.approx(0.015)
    assert row.scores[0] == pytest.approx(0.9)


def test_tcp_pose_of_a_lifted_grasp_uses_z_approach_x_closing():
    lifted = lift_planar_grasps(planar([250.0], [320.0], [0.3], [30.0]), table_with_box(), INTRINSICS)
    poses = tcp_poses(lifted.grasps)
    np.testing.assert_allclose(poses.rotations[0][:, 2], [0, 0, 1], atol=1e-6)
    closing = np.array([np.cos(0.3) / INTRINSICS.fx, -np.sin(0.3) / INTRINSICS.fy, 0.0])
    np.testing.assert_allclose(poses.rotations[0][:, 0], closing / np.linalg.norm(closing), atol=1e-6)
    # Pre-grasp backs off towards the camera.
    assert poses.pre_grasp_positions[0][2] < poses.positions[0][2]


def test_depth_holes_use_the_valid_window_pixels_and_empty_windows_drop_the_grasp():
    depth = table_with_box()
    depth[245:256, 315:326] = 0.0          # an 11 px hole: the 9 px window of the first grasp lies inside it
    depth[100:103, 100:103] = np.nan        # scattered NaN beside the second grasp
    depth[99, 99] = 0.0
    grasps = planar([250.0, 101.0], [320.0, 101.0], [0.0, 0.0], [20.0, 20.0])
    lifted = lift_planar_grasps(grasps, depth, INTRINSICS, LiftingOptions(depth_window_px=9))
    assert lifted.kept.tolist() == [False, True]
    assert lifted.grasps.translations[0][2] == pytest.approx(0.6)

    wider = lift_planar_grasps(grasps, depth, INTRINSICS, LiftingOptions(depth_window_px=15))
    assert wider.kept.tolist() == [True, True]     # the 15 px window reaches the box top around the hole
    assert wider.grasps.translations[0][2] == pytest.approx(0.5)


def test_low_percentile_picks_the_object_top_at_an_edge():
    depth = table_with_box()
    # A grasp right on the box edge (row 200): half the window is table, half box.
    lifted = lift_planar_grasps(planar([200.0], [320.0], [0.0], [20.0]), depth, INTRINSICS)
    assert lifted.grasps.translations[0][2] == pytest.approx(0.5)


def test_width_uses_the_focal_length_along_the_closing_direction():
    depth = np.full((480, 640), 0.8, np.float32)
    lifted = lift_planar_grasps(planar([240.0, 240.0], [320.0, 320.0], [0.0, np.pi / 2], [60.0, 60.0]),
                                depth, INTRINSICS)
    np.testing.assert_allclose(lifted.grasps.widths, [60 * 0.8 / 600.0, 60 * 0.8 / 640.0], rtol=1e-5)


def test_border_and_empty_inputs():
    depth = table_with_box()
    lifted = lift_planar_grasps(PlanarGrasps.empty(), depth, INTRINSICS)
    assert len(lifted.grasps) == 0 and lifted.kept.size == 0
    corner = lift_planar_grasps(planar([0.0], [639.0], [0.0], [10.0]), depth, INTRINSICS)
    assert corner.kept.tolist() == [True]  # a clipped window still has 25 of 81 pixels valid


def test_bad_inputs_are_clear_errors():
    with pytest.raises(InputError, match="intrinsics"):
        lift_planar_grasps(planar([1.0], [1.0], [0.0], [1.0]), np.ones((10, 10), np.float32), INTRINSICS)
    with pytest.raises(InputError, match="float"):
        lift_planar_grasps(planar([1.0], [1.0], [0.0], [1.0]), np.ones((480, 640), np.uint16), INTRINSICS)
    with pytest.raises(ConfigError, match="odd"):
        LiftingOptions(depth_window_px=4)
    with pytest.raises(InputError, match="cols"):  # a ValueError too
        PlanarGrasps(np.zeros(2), np.zeros(1), np.zeros(2), np.zeros(2), np.zeros(2))
