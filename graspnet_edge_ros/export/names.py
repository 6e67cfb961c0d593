"""Input/output names of the exported models (single ONNX file, split segments, torch backend). No torch."""
from __future__ import annotations

from graspnet_edge_ros.backends.base import TensorSpec

# Every split segment has one input and one output tensor with these names.
SEGMENT_INPUT = "input"
SEGMENT_OUTPUT = "output"
# Split layouts (model/segments.py): "grouped" SA segments run their whole MLP (X5 kit);
# "factored" SA2..SA4 segments start after their first layer, which the runtime applies from
# the folded weights in FIRST_LAYERS_FILE.
SPLIT_LAYOUTS = ("grouped", "factored")
FACTORED_SA = ("sa2", "sa3", "sa4")
FIRST_LAYERS_FILE = "first_layers.npz"

SINGLE_FILE_INPUT = "point_clouds"
# What pred_decode reads, plus the view diagnostics (official end_points names, batch 1).
SINGLE_FILE_OUTPUTS = ("objectness_score", "view_score", "fp2_xyz", "grasp_top_view_inds",
                       "grasp_top_view_xyz", "grasp_top_view_rot", "grasp_score_pred",
                       "grasp_angle_cls_pred", "grasp_width_pred", "grasp_tolerance_pred")


def single_file_output_specs(config, num_seed: int) -> list[TensorSpec]:
    """Specs of SINGLE_FILE_OUTPUTS for a GraspNetConfig-like ``config``."""
    a, d, v, s = config.num_angle, config.num_depth, config.num_view, num_seed
    shapes = {
        "objectness_score": ((1, 2, s), "float32"),
        "view_score": ((1, s, v), "float32"),
        "fp2_xyz": ((1, s, 3), "float32"),
        "grasp_top_view_inds": ((1, s), "int64"),
        "grasp_top_view_xyz": ((1, s, 3), "float32"),
        "grasp_top_view_rot": ((1, s, 3, 3), "float32"),
        "grasp_score_pred": ((1, a, s, d), "float32"),
        "grasp_angle_cls_pred": ((1, a, s, d), "float32"),
        "grasp_width_pred": ((1, a, s, d), "float32"),
        "grasp_tolerance_pred": ((1, a, s, d), "float32"),
    }
    return [TensorSpec(name, *shapes[name]) for name in SINGLE_FILE_OUTPUTS]
