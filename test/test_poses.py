"""GraspNet frame -> TCP pose conversion: convention, handedness, quaternions, twins, frames."""
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from graspnet_edge_ros.errors import ConfigError, InputError
from graspnet_edge_ros.grasps import GraspGroup
from graspnet_edge_ros.model.views import generate_grasp_views, viewpoint_params_to_matrix
from graspnet_edge_ros.poses import (
    graspnet_to_tcp_rotation, quaternions_xyzw, tcp_poses, transform_poses)


@pytest.fixture(scope="module")
def decoded_like_grasps() -> GraspGroup:
    """Float32 grasps built like pred_decode: template views x 12 in-plane angles."""
    rng = np.random.default_rng(0)
    count = 400
    views = generate_grasp_views(300)[rng.integers(0, 300, count)]
    rotations = viewpoint_params_to_matrix(-views, rng.integers(0, 12, count) * np.pi / 12)
    return GraspGroup.from_parts(rng.random(count), rng.uniform(0.01, 0.1, count), 0.02,
                                 rotations, rng.uniform(-0.3, 0.3, (count, 3)) + [0, 0, 0.7])


def test_hand_computed_convention_example():
    # Approach along camera +z, closing along camera +x: the TCP frame is the camera frame.
    graspnet = np.array([[0, 1, 0], [0, 0, 1], [1, 0, 0]], np.float32)  # columns a, c, a x c
    assert np.array_equal(graspnet[:, 0], [0, 0, 1]) and np.array_equal(graspnet[:, 1], [1, 0, 0])
    assert np.allclose(graspnet_to_tcp_rotation(graspnet)[0], np.eye(3))
    grasps = GraspGroup.from_parts([1.0], [0.05], [0.02], [graspnet], [[0.1, 0.2, 0.5]])
    poses = tcp_poses(grasps, tcp_offset=0.01, pre_grasp_distance=0.1)
    assert np.allclose(poses.quaternions, [[0, 0, 0, 1]])
    assert np.allclose(poses.positions, [[0.1, 0.2, 0.51]])
    assert np.allclose(poses.pre_grasp_positions, [[0.1, 0.2, 0.41]])
    own = tcp_poses(grasps, convention="x_approach_y_closing")
    assert np.allclose(own.rotations[0], graspnet)


@pytest.mark.parametrize("convention", ["z_approach_x_closing", "x_approach_y_closing"])
def test_rotations_are_proper_and_axes_map(decoded_like_grasps, convention):
    rotations = graspnet_to_tcp_rotation(decoded_like_grasps.rotations, convention)
    assert rotations.dtype == np.float64
    assert np.allclose(np.linalg.det(rotations), 1.0, atol=1e-12)
    assert np.abs(np.swapaxes(rotations, 1, 2) @ rotations - np.eye(3)).max() < 1e-12
    approach_column, closing_column = (2, 0) if convention == "z_approach_x_closing" else (0, 1)
    source = decoded_like_grasps.rotations.astype(np.float64)
    assert np.allclose(rotations[:, :, approach_column], source[:, :, 0], atol=1e-6)
    assert np.allclose(rotations[:, :, closing_column], source[:, :, 1], atol=1e-6)


def test_noisy_and_left_handed_input_becomes_the_same_proper_rotation(decoded_like_grasps):
    source = decoded_like_grasps.rotations.astype(np.float64)
    expected = graspnet_to_tcp_rotation(source)
    noisy = source + np.random.default_rng(1).normal(0, 1e-4, source.shape)
    left_handed = source * [1, 1, -1]  # height column flipped: det = -1
    assert np.allclose(np.linalg.det(left_handed), -1, atol=1e-5)
    assert np.allclose(graspnet_to_tcp_rotation(left_handed), expected, atol=1e-12)
    from_noisy = graspnet_to_tcp_rotation(noisy)
    assert np.allclose(np.linalg.det(from_noisy), 1.0, atol=1e-12)
    assert np.allclose(from_noisy, expected, atol=1e-3)


def test_quaternions_unit_canonical_and_round_trip(decoded_like_grasps):
    poses = tcp_poses(decoded_like_grasps)
    assert poses.quaternions.shape == (len(decoded_like_grasps), 4)
    assert np.allclose(np.linalg.norm(poses.quaternions, axis=1), 1.0, atol=1e-12)
    assert (poses.quaternions[:, 3] >= 0).all()
    round_trip = Rotation.from_quat(poses.quaternions).as_matrix()
    assert np.abs(round_trip - poses.rotations).max() < 1e-12
    assert np.allclose(poses.rotations[:, :, 2], poses.approach)


def test_offset_and_pre_grasp_lie_on_the_approach_line(decoded_like_grasps):
    poses = tcp_poses(decoded_like_grasps, tcp_offset=-0.03, pre_grasp_distance=0.12)
    centers = decoded_like_grasps.translations.astype(np.float64)
    assert np.allclose(poses.positions - centers, -0.03 * poses.approach, atol=1e-12)
    behind = poses.positions - poses.pre_grasp_positions
    assert np.allclose(np.linalg.norm(behind, axis=1), 0.12)
    assert np.allclose(behind / 0.12, poses.approach)
    with pytest.raises(ConfigError):
        tcp_poses(decoded_like_grasps, pre_grasp_distance=-0.1)


def twin_graspnet_rotations(rotations):
    """The same grasps turned 180 degrees about the approach (GraspNet x) axis."""
    return rotations * np.array([1, -1, -1], np.float32)


@pytest.mark.parametrize("convention", ["z_approach_x_closing", "x_approach_y_closing"])
def test_twin_choice_is_closest_to_reference_and_twin_invariant(decoded_like_grasps, convention):
    reference = Rotation.from_rotvec([0.3, -0.2, 1.0]).as_matrix()
    twins = GraspGroup(decoded_like_grasps.array.copy())
    twins.array[:, 4:13] = twin_graspnet_rotations(decoded_like_grasps.rotations).reshape(-1, 9)
    kept = tcp_poses(decoded_like_grasps, convention, twin_policy="keep")
    chosen = tcp_poses(decoded_like_grasps, convention, twin_policy="closest_to_reference",
                       reference_rotation=reference)
    chosen_from_twins = tcp_poses(twins, convention, twin_policy="closest_to_reference",
                                  reference_rotation=reference)
    assert 0 < chosen.flipped.sum() < len(chosen)

    def angle_to_reference(rotations):
        return Rotation.from_matrix(np.swapaxes(rotations, 1, 2) @ reference).magnitude()

    alternative = tcp_poses(twins, convention, twin_policy="keep").rotations
    chosen_angles = angle_to_reference(chosen.rotations)
    assert (chosen_angles <= angle_to_reference(kept.rotations) + 1e-12).all()
    assert (chosen_angles <= angle_to_reference(alternative) + 1e-12).all()
    # Whichever twin the network reports, the chosen pose is the same grasp pose.
    assert np.allclose(chosen.rotations, chosen_from_twins.rotations, atol=1e-6)
    assert np.allclose(chosen.approach, kept.approach)
    assert np.array_equal(chosen.flipped, ~chosen_from_twins.flipped)


def test_default_reference_points_tcp_x_along_frame_x(decoded_like_grasps):
    poses = tcp_poses(decoded_like_grasps, twin_policy="closest_to_reference")
    # With identity as reference the twin with the larger trace is chosen: R00 + R11 >= 0.
    assert (poses.rotations[:, 0, 0] + poses.rotations[:, 1, 1] >= -1e-12).all()


def test_transform_poses_round_trip_and_use_in_tcp_poses(decoded_like_grasps):
    transform = np.eye(4)
    transform[:3, :3] = Rotation.from_euler("xyz", [0.2, -1.1, 2.0]).as_matrix()
    transform[:3, 3] = [0.4, -0.1, 0.9]
    camera = tcp_poses(decoded_like_grasps, tcp_offset=0.02)
    base = tcp_poses(decoded_like_grasps, tcp_offset=0.02, transform=transform)
    positions, rotations = transform_poses(camera.positions, camera.rotations, transform)
    assert np.allclose(base.positions, positions) and np.allclose(base.rotations, rotations)
    assert np.allclose(base.approach, rotations[:, :, 2])
    back = transform_poses(positions, rotations, np.linalg.inv(transform))
    assert np.allclose(back[0], camera.positions) and np.allclose(back[1], camera.rotations)
    sheared = transform.copy()
    sheared[0, 1] += 0.1
    with pytest.raises(InputError):
        transform_poses(positions, rotations, sheared)


def test_invalid_and_empty_inputs():
    with pytest.raises(ConfigError):
        graspnet_to_tcp_rotation(np.eye(3), "y_approach")
    with pytest.raises(ConfigError):
        tcp_poses(GraspGroup.empty(), twin_policy="random")
    degenerate = np.array([[1, 1, 0], [0, 0, 0], [0, 0, 1]], np.float64)  # approach = closing
    with pytest.raises(InputError):
        graspnet_to_tcp_rotation(degenerate)
    with pytest.raises(InputError):
        graspnet_to_tcp_rotation(np.full((3, 3), np.nan))
    empty = tcp_poses(GraspGroup.empty(), twin_policy="closest_to_reference")
    assert empty.positions.shape == (0, 3) and empty.quaternions.shape == (0, 4)
    assert empty.rotations.shape == (0, 3, 3) and len(empty) == 0
    assert quaternions_xyzw(np.zeros((0, 3, 3))).shape == (0, 4)
