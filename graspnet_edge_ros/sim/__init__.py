"""Physics pick-success benchmark (pybullet): scenes, grasp execution, report, ``sim-eval`` CLI.

ROS-free and optional (``pip install .[sim]``): pybullet is imported only when a world is made,
never by the robot runtime. For tests of other features, ``render_scene`` gives an oblique or
top-down view of a settled tabletop with colour, depth (mm) and instance labels:

    from graspnet_edge_ros.sim import render_scene
    scene = render_scene(seed=3, view="oblique", resolution=(640, 480))
    scene.color, scene.depth_mm, scene.labels, scene.intrinsics, scene.camera_pose, scene.table_plane
"""
from graspnet_edge_ros.sim.scenes import SimScene, render_scene  # noqa: F401  (no pybullet import)
