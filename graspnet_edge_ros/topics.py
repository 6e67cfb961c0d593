"""The node's default topic names, written once.

Dependency-free, like status.py. The input names are relative: the node resolves them in its
namespace and they can be remapped. Tools that work outside any namespace (the bag builder,
the replay, the X5 frame reader) use their absolute form, :func:`absolute`. A test checks that
no other module, launch file or config file types them again.
"""

COLOR_TOPIC = "camera/color/image_raw"
DEPTH_TOPIC = "camera/aligned_depth_to_color/image_raw"
CAMERA_INFO_TOPIC = "camera/color/camera_info"
INPUT_TOPICS = (COLOR_TOPIC, DEPTH_TOPIC, CAMERA_INFO_TOPIC)

# Outputs: GRASPS_TOPIC and MARKERS_TOPIC are private to the node (~/grasps, ~/markers).
GRASPS_TOPIC = "grasps"
MARKERS_TOPIC = "markers"
DIAGNOSTICS_TOPIC = "/diagnostics"


def absolute(name: str) -> str:
    """``name`` in the root namespace ("camera/color/image_raw" -> "/camera/color/image_raw")."""
    return "/" + name.lstrip("/")
