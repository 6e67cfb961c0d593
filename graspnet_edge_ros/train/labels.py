"""Online label generation of graspnet-baseline (``utils/label_generation.py``), memory-light.

``process_grasp_labels`` + ``match_grasp_view_and_label`` in one step, with the same results:

1. Per object, each camera-frame template view v is matched to the nearest template view
   rotated by the pose (official ``knn(k=1)``, whose 1-based output the official code shifts by
   −1; here the 0-based argmin is used directly). Index v then means "camera-frame view v".
2. Each seed takes the labels of its nearest label grasp point (all objects merged).
3. Scores: mu -> ln(u_max / mu) where mu > 0 and width <= GRASP_MAX_WIDTH, else 0, with u_max
   the largest raw label over the batch's matched points; view label = max over (angle, depth).
4. At the predicted top view: labels, offsets, tolerance and the label rotation
   R_pose @ f(−view, 0), used by the training crop around the matched label point.

The official code materialises (B, Ns, V, A, D, 3) offsets and (B, Ns, V, 3, 3) rotations; here
only the matched points' (V, A, D) scores are expanded and the top view is gathered directly.
"""
from __future__ import annotations

import torch

from graspnet_edge_ros.model.graspnet import viewpoint_params_to_matrix_torch

# utils/loss_utils.py (official values, not GraspNet-Edge's 0.067 / 0.045).
GRASP_MAX_WIDTH = 0.1
GRASP_MAX_TOLERANCE = 0.05
THRESH_GOOD = 0.7
THRESH_BAD = 0.1


def nearest_indices(queries: torch.Tensor, references: torch.Tensor) -> torch.Tensor:
    """(Q, 3), (R, 3) -> (Q,) int64 index of each query's nearest reference (0-based)."""
    return torch.cdist(queries.unsqueeze(0), references.unsqueeze(0)).squeeze(0).argmin(dim=1)


def assign_views(pose_rotation: torch.Tensor, template_views: torch.Tensor) -> torch.Tensor:
    """(V,) int64: for camera-frame template view v, the object-frame view whose rotation is nearest."""
    return nearest_indices(template_views, template_views @ pose_rotation.T)


def grasp_score_labels(friction: torch.Tensor, widths: torch.Tensor, u_max: torch.Tensor | float) -> torch.Tensor:
    """Official score transform: ln(u_max / mu) where mu > 0 and width <= GRASP_MAX_WIDTH, else 0."""
    valid = (friction > 0) & (widths <= GRASP_MAX_WIDTH)
    safe = torch.where(valid, friction, torch.ones_like(friction))
    return torch.where(valid, torch.log(u_max / safe), torch.zeros_like(friction))


def _item_objects(batch: dict, item: int, device: torch.device):
    poses = [p.to(device) for p in batch["object_poses_list"][item]]
    points = [p.to(device) for p in batch["grasp_points_list"][item]]
    labels = [x.to(device) for x in batch["grasp_labels_list"][item]]
    offsets = [x.to(device) for x in batch["grasp_offsets_list"][item]]
    tolerance = [x.to(device) for x in batch["grasp_tolerance_list"][item]]
    return poses, points, labels, offsets, tolerance


@torch.no_grad()
def generate_grasp_targets(seed_xyz: torch.Tensor, top_view_inds: torch.Tensor, batch: dict,
                           template_views: torch.Tensor) -> dict[str, torch.Tensor]:
    """Labels for every seed, at all views (view label) and at the predicted top view.

    Args:
        seed_xyz: (B, Ns, 3) ``fp2_xyz``; top_view_inds: (B, Ns) predicted view indices.
        batch: collated dataset batch (per-item lists of per-object tensors).
        template_views: (V, 3) ``generate_grasp_views(V)``.

    Returns (official end_points names without ``batch_``):
        grasp_point (B,Ns,3) matched label point, camera frame; view_label (B,Ns,V);
        grasp_view_rot (B,Ns,3,3) label rotation at the top view; grasp_label (B,Ns,A,D)
        transformed scores, grasp_offset (B,Ns,A,D,3) [angle, depth, width], grasp_tolerance
        (B,Ns,A,D), all at the top view. Items without any object get zero labels, the seed
        as centre and the predicted top-view rotation (the official code would fail there).
    """
    device = seed_xyz.device
    batch_size, num_seeds, _ = seed_xyz.shape
    num_views = template_views.shape[0]
    matched = []
    u_max = torch.zeros((), device=device)
    for item in range(batch_size):
        poses, points, labels, offsets, tolerance = _item_objects(batch, item, device)
        if not poses:
            matched.append(None)
            continue
        camera_points, view_maps, owners = [], [], []
        for k, (pose, object_points) in enumerate(zip(poses, points)):
            camera_points.append(object_points @ pose[:, :3].T + pose[:, 3])
            view_maps.append(assign_views(pose[:, :3], template_views))
            owners.append(torch.full((len(object_points),), k, dtype=torch.long, device=device))
        owner = torch.cat(owners)
        nearest = nearest_indices(seed_xyz[item], torch.cat(camera_points))           # (Ns,)
        seed_owner = owner[nearest]
        counts = torch.tensor([len(p) for p in points], device=device)
        local = nearest - (torch.cumsum(counts, 0) - counts)[seed_owner]               # row within its object
        # (Ns, V) object-frame view of camera view v for the matched point's object.
        view_map = torch.stack(view_maps)[seed_owner]
        merged_labels = torch.cat(labels)
        merged_widths = torch.cat([o[..., 2] for o in offsets])
        seed_labels = torch.gather(merged_labels[nearest], 1,
                                   view_map[:, :, None, None].expand(-1, -1, *merged_labels.shape[2:]))
        seed_widths = torch.gather(merged_widths[nearest], 1,
                                   view_map[:, :, None, None].expand(-1, -1, *merged_widths.shape[2:]))
        u_max = torch.maximum(u_max, seed_labels.max())
        matched.append((poses, points, labels, offsets, tolerance, seed_owner, local, view_map,
                        seed_labels, seed_widths, torch.cat(camera_points)[nearest]))

    grasp_point = seed_xyz.clone()
    view_label = torch.zeros(batch_size, num_seeds, num_views, device=device)
    shape = None
    for entry in matched:
        if entry is not None:
            shape = entry[8].shape[2:]
            break
    num_angle, num_depth = shape if shape is not None else (12, 4)
    grasp_label = torch.zeros(batch_size, num_seeds, num_angle, num_depth, device=device)
    grasp_offset = torch.zeros(batch_size, num_seeds, num_angle, num_depth, 3, device=device)
    grasp_tolerance = torch.zeros(batch_size, num_seeds, num_angle, num_depth, device=device)
    top_views = template_views[top_view_inds]                                          # (B, Ns, 3)
    grasp_view_rot = viewpoint_params_to_matrix_torch(
        -top_views.reshape(-1, 3), torch.zeros(batch_size * num_seeds, device=device)).reshape(batch_size, num_seeds, 3, 3)
    for item, entry in enumerate(matched):
        if entry is None:
            continue
        poses, points, labels, offsets, tolerance, seed_owner, local, view_map, seed_labels, seed_widths, point = entry
        scores = grasp_score_labels(seed_labels, seed_widths, u_max)                  # (Ns, V, A, D)
        view_label[item] = scores.flatten(2).max(dim=2).values
        top = top_view_inds[item]
        seed_range = torch.arange(num_seeds, device=device)
        grasp_label[item] = scores[seed_range, top]
        object_view = view_map[seed_range, top]                                         # (Ns,) object-frame view
        for k in range(len(poses)):
            mine = seed_owner == k
            if not mine.any():
                continue
            rows, views = local[mine], object_view[mine]
            grasp_offset[item, mine] = offsets[k][rows, views]
            grasp_tolerance[item, mine] = tolerance[k][rows, views]
            template_rot = viewpoint_params_to_matrix_torch(-template_views[views], torch.zeros(len(views), device=device))
            grasp_view_rot[item, mine] = poses[k][:, :3] @ template_rot
        grasp_point[item] = point
    return {"grasp_point": grasp_point, "view_label": view_label, "grasp_view_rot": grasp_view_rot,
            "grasp_label": grasp_label, "grasp_offset": grasp_offset, "grasp_tolerance": grasp_tolerance}
