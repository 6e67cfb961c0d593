"""Model health: raw GraspNet outputs must be finite wherever the decoder reads them.

A checkpoint with NaN weights, a broken segment or an int8 conversion gone wrong produce NaN or
inf outputs; decoded, those look like "no object seeds" or "every grasp rejected". Checked here,
they are a ``ModelError`` naming the output, so the user sees a model fault, not a scene fault.
"""
from __future__ import annotations

import numpy as np

from graspnet_edge_ros.errors import ModelError

# Outputs over every seed; head outputs are checked only at object seeds (see below).
_SEED_OUTPUTS = ("objectness_score", "fp2_xyz", "grasp_top_view_xyz", "view_score")
_HEAD_OUTPUTS = ("grasp_score_pred", "grasp_angle_cls_pred", "grasp_width_pred", "grasp_tolerance_pred")


def check_raw_outputs(raw: dict) -> None:
    """Raise ModelError naming the first raw output with a non-finite value the decoder would read.

    The split runtime leaves the grasp-head rows of background seeds NaN on purpose (never
    computed, never decoded), and those of seeds its ``seed_gate`` dropped (``grasp_seed_gate``
    False), so head outputs are checked at the object seeds it computed only.
    """
    for name in _SEED_OUTPUTS:
        if name in raw:
            _require_finite(name, np.asarray(raw[name]))
    objectness = np.asarray(raw["objectness_score"])[0] if "objectness_score" in raw else None
    if objectness is None:
        return
    computed = objectness[1] > objectness[0]
    if "grasp_seed_gate" in raw:
        computed &= np.asarray(raw["grasp_seed_gate"], bool)[0]
    seeds = np.flatnonzero(computed)
    for name in _HEAD_OUTPUTS:
        if name in raw and len(seeds):
            _require_finite(name, np.asarray(raw[name])[0][:, seeds])


def _require_finite(name: str, values: np.ndarray) -> None:
    if values.dtype.kind != "f":
        return
    finite = np.isfinite(values)
    if not finite.all():
        bad = int(values.size - np.count_nonzero(finite))
        raise ModelError(f"the model output {name!r} holds {bad} of {values.size} non-finite values "
                         "(NaN/inf): the weights or a model segment are broken")
