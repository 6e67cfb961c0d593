"""Post-processing speed on the real example scene: collision check and NMS, fast vs reference.

1024 candidate grasps centred on scene points (decode-style rotations) are checked against the
full masked workspace cloud voxelised at 0.01 m (the official demo set-up), then NMS'd.
The references are straightforward ports: the official all-pairs collision detector (chunked
over grasps to bound memory) and a per-grasp NMS loop. Prints medians after a warm-up.
Target: collision + NMS <= 30 ms for 1024 grasps.

Second table: the whole unmasked 1280x720 frame (every valid point up to 3 m, as with no mask and
no automatic workspace), set-up included: voxelising the whole frame vs only the neighbourhood of
the 1024 candidates (``crop_to``); identical answers. Target: <= 30 ms.

    python benchmarks/bench_postprocess.py [--grasps 1024] [--repeats 20]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled
from benchmarks.common import example_points, median_ms, write_figures  # noqa: E402
import numpy as np  # noqa: E402  (after benchmarks.common: one BLAS thread, as in the CLI/node)
from graspnet_edge_ros.grasps import ROTATION, TRANSLATION, GraspGroup  # noqa: E402
from graspnet_edge_ros.model import views as grasp_views  # noqa: E402
from graspnet_edge_ros.postprocess.collision import ModelFreeCollisionDetector  # noqa: E402
from graspnet_edge_ros.postprocess.nms import grasp_nms  # noqa: E402

APPROACH_DIST, COLLISION_THRESH, VOXEL_SIZE = 0.05, 0.01, 0.01


def load_masked_cloud() -> np.ndarray:
    """(N, 3) float32 camera-frame points of the example scene's workspace mask."""
    return example_points()[1]


def candidate_grasps(points: np.ndarray, count: int, seed: int = 0) -> GraspGroup:
    rng = np.random.default_rng(seed)
    views = grasp_views.generate_grasp_views(300)
    views = views[views[:, 2] < 0]  # approaching away from the camera, as predictions mostly do
    rotations = grasp_views.viewpoint_params_to_matrix(-views[rng.integers(0, len(views), count)],
                                           rng.integers(0, 12, count) * np.pi / 12)
    return GraspGroup.from_parts(rng.random(count), rng.uniform(0.01, 0.1, count),
                                 rng.integers(1, 5, count) * 0.01, rotations,
                                 points[rng.choice(len(points), count, replace=False)])


def _reference_collision(detector: ModelFreeCollisionDetector, grasps: GraspGroup,
                         approach_dist: float, collision_thresh: float, chunk: int = 32):
    """The official all-pairs detect(), vectorised over grasps in chunks."""
    approach_dist = max(approach_dist, detector.finger_width)
    fl, fw, voxel = detector.finger_length, detector.finger_width, detector.voxel_size
    masks = []
    for start in range(0, len(grasps), chunk):
        part = grasps[start:start + chunk]
        h, d, w = part.heights[:, None], part.depths[:, None], part.widths[:, None]
        local = np.matmul(detector.scene_points[None] - part.translations[:, None], part.rotations)
        x, y, z = local[..., 0], local[..., 1], local[..., 2]
        band = (z > -h / 2) & (z < h / 2)
        fingers_x = (x > d - fl) & (x < d)
        outer = (y > -(w / 2 + fw)) & (y < w / 2 + fw)
        left = band & fingers_x & (y > -(w / 2 + fw)) & (y < -w / 2)
        right = band & fingers_x & (y < w / 2 + fw) & (y > w / 2)
        bottom = band & outer & (x <= d - fl) & (x > d - fl - fw)
        shifting = band & outer & (x <= d - fl - fw) & (x > d - fl - fw - approach_dist)
        volume = ((h * fl * fw / voxel ** 3) * 2 + h * (w + 2 * fw) * fw / voxel ** 3
                  + h * (w + 2 * fw) * approach_dist / voxel ** 3).reshape(-1)
        hits = (left | right | bottom | shifting).sum(axis=1)
        masks.append(hits / (volume + 1e-6) > collision_thresh)
    return np.concatenate(masks)


def _reference_nms(grasps: GraspGroup, translation_thresh=0.03, rotation_thresh=np.pi / 6):
    """Greedy NMS, one Python iteration per grasp (vectorised over the later grasps)."""
    rows = grasps.array.astype(np.float64)[np.argsort(-grasps.scores, kind="stable")]
    removed = np.zeros(len(rows), bool)
    for i in range(len(rows)):
        if removed[i]:
            continue
        later = rows[i + 1:]
        distances = np.sqrt(((later[:, TRANSLATION] - rows[i, TRANSLATION]) ** 2).sum(axis=1))
        traces = np.clip(later[:, ROTATION] @ rows[i, ROTATION], -1, 3)
        close = (distances < translation_thresh) & (np.arccos((traces - 1) / 2) < rotation_thresh)
        removed[i + 1:] |= close
    return GraspGroup(rows[~removed].astype(np.float32))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grasps", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--json", help="write the figures here (run_all.py's summary)")
    args = parser.parse_args(argv)

    cloud = load_masked_cloud()
    detector = ModelFreeCollisionDetector(cloud, voxel_size=VOXEL_SIZE)
    setup_ms = median_ms(lambda: ModelFreeCollisionDetector(cloud, voxel_size=VOXEL_SIZE),
                         args.repeats)
    grasps = candidate_grasps(cloud, args.grasps)
    print(f"scene: {len(cloud)} masked points -> {len(detector.scene_points)} voxel points "
          f"(voxel {VOXEL_SIZE} m); detector set-up (voxelise + grid) {setup_ms:.1f} ms; "
          f"{len(grasps)} grasps")

    fast_mask = detector.detect(grasps, APPROACH_DIST, COLLISION_THRESH)
    reference_mask = _reference_collision(detector, grasps, APPROACH_DIST, COLLISION_THRESH)
    collision_fast = median_ms(lambda: detector.detect(grasps, APPROACH_DIST, COLLISION_THRESH),
                               args.repeats)
    collision_reference = median_ms(
        lambda: _reference_collision(detector, grasps, APPROACH_DIST, COLLISION_THRESH),
        max(2, args.repeats // 10))
    print(f"collision: fast {collision_fast:8.2f} ms | official port {collision_reference:8.1f} ms"
          f" | x{collision_reference / collision_fast:.0f} | identical masks: "
          f"{np.array_equal(fast_mask, reference_mask)} | in collision: {fast_mask.sum()}")

    nms_fast = median_ms(lambda: grasp_nms(grasps), args.repeats)
    nms_reference = median_ms(lambda: _reference_nms(grasps), max(2, args.repeats // 10))
    identical = np.array_equal(grasp_nms(grasps).array, _reference_nms(grasps).array)
    print(f"nms:       fast {nms_fast:8.2f} ms | per-grasp loop {nms_reference:8.1f} ms"
          f" | x{nms_reference / nms_fast:.0f} | identical: {identical} | "
          f"survivors: {len(grasp_nms(grasps))}")
    total = collision_fast + nms_fast
    print(f"collision + nms: {total:.2f} ms (target <= 30 ms): {'OK' if total <= 30 else 'MISSED'}")
    unmasked_frame(grasps, args.repeats)
    write_figures(args.json, {"grasps": len(grasps), "collision_ms": collision_fast,
                              "collision_reference_ms": collision_reference, "nms_ms": nms_fast,
                              "nms_reference_ms": nms_reference},
                  {f"collision + NMS, {len(grasps)} grasps": f"{total:.1f} ms (target <= 30 ms)",
                   "collision vs official port": f"{collision_reference / collision_fast:.0f}x",
                   "NMS vs per-grasp loop": f"{nms_reference / nms_fast:.0f}x"})
    return 0


def unmasked_frame(grasps: GraspGroup, repeats: int) -> None:
    """Collision check with set-up on the unmasked frame: whole-frame voxels vs the candidates' neighbourhood."""
    from benchmarks.common import example_frame
    from graspnet_edge_ros.camera import decode_depth, select_workspace

    _, depth, _, intrinsics, scale = example_frame()
    cloud = select_workspace(decode_depth(depth, "16UC1", scale), intrinsics, max_depth=3.0).cloud

    def full():
        return ModelFreeCollisionDetector(cloud, VOXEL_SIZE).detect(grasps, APPROACH_DIST, COLLISION_THRESH,
                                                                     return_ious=True)

    def cropped():
        detector = ModelFreeCollisionDetector(cloud, VOXEL_SIZE, crop_to=grasps, crop_approach_dist=APPROACH_DIST)
        return detector.detect(grasps, APPROACH_DIST, COLLISION_THRESH, return_ious=True)

    identical = np.array_equal(full()[1], cropped()[1])
    full_ms, cropped_ms = median_ms(full, repeats), median_ms(cropped, repeats)
    print(f"unmasked {depth.shape[1]}x{depth.shape[0]} frame, {len(cloud)} points, {len(grasps)} grasps over the "
          f"workspace, set-up included: whole frame {full_ms:.1f} ms | candidates' neighbourhood {cropped_ms:.1f} ms"
          f" | x{full_ms / cropped_ms:.1f} | identical IoUs: {identical} | target <= 30 ms: "
          f"{'OK' if cropped_ms <= 30 else 'MISSED'}")
    # Candidates on one object (targeting, or a scene with one item): the crop is where it pays.
    centre = grasps.translations[0]
    near = np.flatnonzero(np.linalg.norm(grasps.translations - centre, axis=1) < 0.08)
    few = grasps[near]
    identical = np.array_equal(full_few := ModelFreeCollisionDetector(cloud, VOXEL_SIZE).detect(
        few, APPROACH_DIST, COLLISION_THRESH, return_ious=True)[1], ModelFreeCollisionDetector(
        cloud, VOXEL_SIZE, crop_to=few, crop_approach_dist=APPROACH_DIST).detect(
        few, APPROACH_DIST, COLLISION_THRESH, return_ious=True)[1]) and len(full_few) == len(few)
    full_ms = median_ms(lambda: ModelFreeCollisionDetector(cloud, VOXEL_SIZE).detect(
        few, APPROACH_DIST, COLLISION_THRESH), repeats)
    cropped_ms = median_ms(lambda: ModelFreeCollisionDetector(
        cloud, VOXEL_SIZE, crop_to=few, crop_approach_dist=APPROACH_DIST).detect(
        few, APPROACH_DIST, COLLISION_THRESH), repeats)
    print(f"same frame, {len(few)} grasps within 8 cm (one object): whole frame {full_ms:.1f} ms | "
          f"candidates' neighbourhood {cropped_ms:.1f} ms | x{full_ms / cropped_ms:.1f} | identical IoUs: {identical}")


if __name__ == "__main__":
    raise SystemExit(main())
