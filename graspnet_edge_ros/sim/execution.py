"""Execute grasps with a floating parallel-jaw gripper in a settled SimWorld.

The gripper is built from the detector's gripper parameters (the geometry the executability
filter reasons about), in a frame whose origin is the centre between the fingertips, z = approach,
x = closing, y = z x x (the height axis):

* two fingers, boxes gripper_finger_width_m (x, outside the opening) x gripper_finger_thickness_m
  (y) x gripper_finger_length_m (z, ending at the fingertips), on prismatic joints along +-x;
  their inner faces are the jaw opening;
* the palm, a box gripper_palm_width_m x gripper_palm_thickness_m x gripper_palm_depth_m behind
  the fingers;
* the wrist/flange, a cylinder of gripper_wrist_radius_m and gripper_wrist_length_m behind the palm.

One attempt, always from the same settled state (``SimWorld.restore_settled``):

1. place the open gripper (grasp width + clearance, at most gripper_max_width_m) at the pre-grasp
   pose, ``pre_grasp_distance_m`` back along -approach; if it overlaps the table, the floor or an
   object by more than ``contact_tolerance_m`` it is a pre-grasp collision and nothing moves;
2. approach along the approach vector to the grasp (fingertips ``depth`` beyond the grasp point),
   driven by a force-limited constraint, so the table and objects stop or get pushed as they would;
3. close both fingers with the force limit (``grip_force_n`` per finger, Panda hand: 70 N);
4. lift ``lift_m`` straight up (world z) and hold;
5. success = some object is at least ``min_lift_m`` higher than it was and touches a finger.

Friction: fingers 1.0 (rubber pads), with a little torsional friction so an off-centre object
does not spin out unrealistically; objects keep their pybullet_data values (mostly 1.0, jenga 0.5).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from graspnet_edge_ros.config import DetectorConfig, GripperConfig
from graspnet_edge_ros.errors import ConfigError
from graspnet_edge_ros.sim.scenes import TIME_STEP_S, SimWorld

PARK_POSITION = (0.0, 0.0, 5.0)   # where the gripper is made, far above the scene


@dataclass(frozen=True)
class GripperGeometry:
    """Parallel-jaw gripper, metres (see the module docstring for the frame)."""

    finger_length: float = 0.05
    finger_width: float = 0.02
    finger_thickness: float = 0.02
    palm_depth: float = 0.06
    palm_width: float = 0.2
    palm_thickness: float = 0.06
    wrist_length: float = 0.1
    wrist_radius: float = 0.045
    max_width: float = 0.1

    @classmethod
    def from_config(cls, gripper: GripperConfig) -> "GripperGeometry":
        """From the ``gripper`` group of a DetectorConfig (``config.gripper``)."""
        return cls(gripper.gripper_finger_length_m, gripper.gripper_finger_width_m,
                   gripper.gripper_finger_thickness_m, gripper.gripper_palm_depth_m, gripper.gripper_palm_width_m,
                   gripper.gripper_palm_thickness_m, gripper.gripper_wrist_length_m, gripper.gripper_wrist_radius_m,
                   gripper.gripper_max_width_m)

    def __post_init__(self):
        for name in ("finger_length", "finger_width", "finger_thickness", "max_width"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"simulated gripper: {name} must be > 0, got {getattr(self, name)}")


@dataclass(frozen=True)
class ExecutionOptions:
    pre_grasp_distance_m: float = 0.1
    lift_m: float = 0.15
    min_lift_m: float = 0.1
    grip_force_n: float = 70.0
    opening_clearance_m: float = 0.01
    approach_speed_m_s: float = 0.2
    closing_speed_m_s: float = 0.1
    finger_friction: float = 1.0
    finger_spinning_friction: float = 0.002
    arm_force_n: float = 100.0
    contact_tolerance_m: float = 0.002


@dataclass(frozen=True)
class GraspCommand:
    """One grasp in the world frame: grasp point, unit approach and closing axes, jaw width and
    ``depth`` (fingertips reach this far beyond the grasp point along the approach)."""

    point: np.ndarray
    approach: np.ndarray
    closing: np.ndarray
    width: float
    depth: float = 0.02

    def frame(self) -> tuple[np.ndarray, np.ndarray]:
        """(fingertip centre, rotation with columns closing, height, approach)."""
        approach = np.asarray(self.approach, np.float64)
        approach = approach / np.linalg.norm(approach)
        closing = np.asarray(self.closing, np.float64)
        closing = closing - approach * (closing @ approach)
        closing /= np.linalg.norm(closing)
        rotation = np.stack([closing, np.cross(approach, closing), approach], axis=1)
        return np.asarray(self.point, np.float64) + self.depth * approach, rotation


@dataclass(frozen=True)
class GraspOutcome:
    success: bool
    pre_grasp_collision: bool
    reason: str                    # lifted | pre_grasp_collision | nothing_lifted | approach_blocked
    lifted_label: int = 0          # object label held after the lift (0 = none)
    collided_with: str = ""        # "table", "floor" or "object <label>" for a pre-grasp collision


class GraspExecutor:
    """Executes grasps in ``world`` from its settled state (``world.save_settled()`` first); each
    attempt rebuilds the world and the gripper, so attempts cannot influence one another."""

    def __init__(self, world: SimWorld, geometry: GripperGeometry, options: ExecutionOptions = ExecutionOptions()):
        self.world, self.geometry, self.options = world, geometry, options
        self.p, self.client = world.p, world.client
        self.body = self.constraint = None

    # -- gripper --------------------------------------------------------------------------------
    def _build_gripper(self) -> int:
        p, c, g = self.p, self.world.client, self.geometry
        palm_z = -g.finger_length - g.palm_depth / 2
        shapes = dict(shapeTypes=[p.GEOM_BOX], halfExtents=[[g.palm_width / 2, g.palm_thickness / 2,
                                                                g.palm_depth / 2]],
                      radii=[0.0], lengths=[0.0], collisionFramePositions=[[0, 0, palm_z]])
        if g.wrist_length > 0 and g.wrist_radius > 0:
            shapes["shapeTypes"].append(p.GEOM_CYLINDER)
            shapes["halfExtents"].append([0, 0, 0])
            shapes["radii"].append(g.wrist_radius)
            shapes["lengths"].append(g.wrist_length)
            shapes["collisionFramePositions"].append([0, 0, palm_z - g.palm_depth / 2 - g.wrist_length / 2])
        base_shape = p.createCollisionShapeArray(physicsClientId=c, **shapes)
        finger_half = [g.finger_width / 2, g.finger_thickness / 2, g.finger_length / 2]
        finger_shapes, finger_centres = [], []
        for side in (1.0, -1.0):
            centre = [side * g.finger_width / 2, 0.0, -g.finger_length / 2]
            finger_shapes.append(p.createCollisionShape(p.GEOM_BOX, halfExtents=finger_half,
                                                        collisionFramePosition=centre, physicsClientId=c))
            finger_centres.append(centre)
        body = p.createMultiBody(
            baseMass=1.0, baseCollisionShapeIndex=base_shape, basePosition=PARK_POSITION,
            linkMasses=[0.05, 0.05], linkCollisionShapeIndices=finger_shapes,
            linkVisualShapeIndices=[-1, -1], linkPositions=[[0, 0, 0], [0, 0, 0]],
            linkOrientations=[[0, 0, 0, 1]] * 2, linkInertialFramePositions=finger_centres,
            linkInertialFrameOrientations=[[0, 0, 0, 1]] * 2, linkParentIndices=[0, 0],
            linkJointTypes=[p.JOINT_PRISMATIC] * 2, linkJointAxis=[[1, 0, 0], [-1, 0, 0]],
            physicsClientId=c)
        for link in (0, 1):
            p.changeDynamics(body, link, lateralFriction=self.options.finger_friction,
                             spinningFriction=self.options.finger_spinning_friction, physicsClientId=c)
        return body

    def _set_opening(self, half_opening: float) -> None:
        for joint in (0, 1):
            self.p.resetJointState(self.body, joint, half_opening, 0.0, physicsClientId=self.client)
            self.p.setJointMotorControl2(self.body, joint, self.p.POSITION_CONTROL, targetPosition=half_opening,
                                         force=1000.0, physicsClientId=self.client)

    def _move_to(self, position, quaternion) -> None:
        self.p.changeConstraint(self.constraint, list(position), list(quaternion),
                                maxForce=self.options.arm_force_n, physicsClientId=self.client)

    # -- one attempt ----------------------------------------------------------------------------
    def execute(self, grasp: GraspCommand) -> GraspOutcome:
        p, o, world = self.p, self.options, self.world
        world.restore_settled()
        c = self.client = world.client
        self.body = self._build_gripper()
        self.constraint = p.createConstraint(self.body, -1, -1, -1, p.JOINT_FIXED, [0, 0, 0], [0, 0, 0],
                                             PARK_POSITION, physicsClientId=c)
        tips, rotation = grasp.frame()
        approach = rotation[:, 2]
        quaternion = _quaternion_xyzw(rotation)
        opening = float(np.clip(grasp.width + o.opening_clearance_m, 0.0, self.geometry.max_width))
        start = tips - o.pre_grasp_distance_m * approach

        p.resetBasePositionAndOrientation(self.body, start.tolist(), quaternion, physicsClientId=c)
        p.resetBaseVelocity(self.body, [0, 0, 0], [0, 0, 0], physicsClientId=c)
        self._set_opening(opening / 2)
        self._move_to(start, quaternion)
        collided = self._pre_grasp_collision()
        if collided:
            return GraspOutcome(False, True, "pre_grasp_collision", 0, collided)

        heights_before = world.object_positions()[:, 2]
        steps = max(1, int(round(o.pre_grasp_distance_m / o.approach_speed_m_s / TIME_STEP_S)))
        for step in range(1, steps + 1):
            self._move_to(start + (tips - start) * step / steps, quaternion)
            p.stepSimulation(physicsClientId=c)
        world.step(0.1)
        reached = np.asarray(p.getBasePositionAndOrientation(self.body, physicsClientId=c)[0])
        blocked = float(np.linalg.norm(reached - tips)) > 0.01

        for joint in (0, 1):
            p.setJointMotorControl2(self.body, joint, p.POSITION_CONTROL, targetPosition=0.0,
                                    force=o.grip_force_n, maxVelocity=o.closing_speed_m_s, physicsClientId=c)
        world.step(opening / 2 / o.closing_speed_m_s + 0.25)

        steps = max(1, int(round(1.0 / TIME_STEP_S)))
        for step in range(1, steps + 1):
            self._move_to(reached + np.array([0.0, 0.0, o.lift_m]) * step / steps, quaternion)
            p.stepSimulation(physicsClientId=c)
        world.step(0.5)

        lifted = world.object_positions()[:, 2] - heights_before
        for index in np.argsort(-lifted):
            body = world.objects[index]
            if lifted[index] >= o.min_lift_m and p.getContactPoints(self.body, body, physicsClientId=c):
                return GraspOutcome(True, False, "lifted", int(index) + 1)
        return GraspOutcome(False, False, "approach_blocked" if blocked else "nothing_lifted")

    def _pre_grasp_collision(self) -> str:
        p, c, world = self.p, self.client, self.world
        p.performCollisionDetection(physicsClientId=c)
        others = [(world.table, "table"), (world.floor, "floor")] + [
            (body, f"object {label}") for label, body in enumerate(world.objects, start=1)]
        for body, name in others:
            points = p.getClosestPoints(self.body, body, 0.0, physicsClientId=c)
            if any(point[8] < -self.options.contact_tolerance_m for point in points):
                return name
        return ""


def _quaternion_xyzw(rotation: np.ndarray) -> list[float]:
    from scipy.spatial.transform import Rotation

    return Rotation.from_matrix(rotation).as_quat().tolist()


def commands_from_result(result, config: DetectorConfig, camera_pose: np.ndarray, top_k: int) -> list[GraspCommand]:
    """The top-k published grasps of a DetectionResult as world-frame GraspCommands.

    Uses only what a robot receives: TCP poses (position, rotation in the ``pose_convention``,
    approach), width and depth; the grasp point is the TCP position minus ``tcp_offset_m`` along
    the approach.
    """
    poses = result.poses
    if poses is None or len(poses) == 0:
        return []
    closing_column = {"z_approach_x_closing": 0, "x_approach_y_closing": 1}[poses.convention]
    rotation_w, origin_w = camera_pose[:3, :3], camera_pose[:3, 3]
    commands = []
    for index in range(min(top_k, len(poses))):
        approach = poses.approach[index]
        point = poses.positions[index] - config.poses.tcp_offset_m * approach
        commands.append(GraspCommand(
            point=rotation_w @ point + origin_w, approach=rotation_w @ approach,
            closing=rotation_w @ poses.rotations[index][:, closing_column],
            width=float(result.grasps.widths[index]), depth=float(result.grasps.depths[index])))
    return commands
