"""RViz markers of a grasp result: a gripper wireframe and a "rank: score" label per grasp.

The wireframe comes from the core (``visualization.gripper_line_segments``, the same lines the
PNG overlay draws) and is coloured by ``visualization.score_colors`` (blue = worst shown,
red = best). Every MarkerArray starts with a DELETEALL marker, so grippers of an earlier frame
never linger, and an empty result clears the display.
"""
from __future__ import annotations

import numpy as np

from graspnet_edge_ros.grasps import GraspGroup
from graspnet_edge_ros.visualization import STEM, gripper_line_segments, score_colors

GRIPPER_NAMESPACE = "grippers"
LABEL_NAMESPACE = "labels"
LINE_WIDTH_M = 0.002
BEST_LINE_WIDTH_M = 0.005  # the best grasp is drawn 2.5x thicker
LABEL_HEIGHT_M = 0.012
BEST_LABEL_HEIGHT_M = 0.018
LABEL_RGBA = (1.0, 1.0, 1.0, 1.0)
BEST_LABEL_RGBA = (1.0, 0.85, 0.0, 1.0)  # amber: picks the best label out of a cluster


def grasp_markers(grasps: GraspGroup, stamp, frame_id: str, max_markers: int, transform=None):
    """visualization_msgs/MarkerArray for grasps sorted best first (as in the GraspArray).

    Args:
        grasps: N grasps in the camera frame, best first; marker id = rank = index.
        stamp, frame_id: header of every marker (the GraspArray's).
        max_markers: draw at most this many grippers (the best ones); 0 = only clear the display.
        transform: optional (4, 4) camera -> frame_id transform applied to the wireframes.

    Returns:
        MarkerArray: [DELETEALL, then per drawn grasp a LINE_LIST gripper (ns "grippers") and a
        TEXT_VIEW_FACING label (ns "labels"), both with id = rank].
    """
    from visualization_msgs.msg import Marker, MarkerArray

    clear = Marker(action=Marker.DELETEALL)
    clear.header.stamp, clear.header.frame_id = stamp, frame_id
    markers = [clear]
    shown = grasps[:max(0, int(max_markers))]
    if len(shown):
        segments = gripper_line_segments(shown).astype(np.float64)  # (N, 4, 2, 3)
        if transform is not None:
            transform = np.asarray(transform, dtype=np.float64)
            segments = segments @ transform[:3, :3].T + transform[:3, 3]
        colors = score_colors(shown.scores)
        for rank, score in enumerate(shown.scores.tolist()):
            markers.append(_gripper_marker(stamp, frame_id, rank, segments[rank], colors[rank]))
            markers.append(_label_marker(stamp, frame_id, rank, score, segments[rank, STEM, 1]))
    return MarkerArray(markers=markers)


def _gripper_marker(stamp, frame_id, rank, segments, rgb):
    from geometry_msgs.msg import Point
    from std_msgs.msg import ColorRGBA
    from visualization_msgs.msg import Marker

    marker = Marker(ns=GRIPPER_NAMESPACE, id=rank, type=Marker.LINE_LIST, action=Marker.ADD)
    marker.header.stamp, marker.header.frame_id = stamp, frame_id
    marker.pose.orientation.w = 1.0
    marker.scale.x = BEST_LINE_WIDTH_M if rank == 0 else LINE_WIDTH_M
    marker.color = ColorRGBA(r=float(rgb[0]), g=float(rgb[1]), b=float(rgb[2]), a=1.0)
    marker.points = [Point(x=p[0], y=p[1], z=p[2]) for p in segments.reshape(-1, 3).tolist()]
    return marker


def _label_marker(stamp, frame_id, rank, score, anchor):
    from std_msgs.msg import ColorRGBA
    from visualization_msgs.msg import Marker

    marker = Marker(ns=LABEL_NAMESPACE, id=rank, type=Marker.TEXT_VIEW_FACING, action=Marker.ADD)
    marker.header.stamp, marker.header.frame_id = stamp, frame_id
    # At the end of the approach stem: behind the gripper, so the text does not hide the object.
    marker.pose.position.x, marker.pose.position.y, marker.pose.position.z = (float(v) for v in anchor)
    marker.pose.orientation.w = 1.0
    marker.scale.z = BEST_LABEL_HEIGHT_M if rank == 0 else LABEL_HEIGHT_M
    r, g, b, a = BEST_LABEL_RGBA if rank == 0 else LABEL_RGBA
    marker.color = ColorRGBA(r=r, g=g, b=b, a=a)
    marker.text = f"{rank}: {score:.2f}"
    return marker
