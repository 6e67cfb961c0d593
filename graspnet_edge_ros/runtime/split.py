"""The split runtime: native geometry kernels between learned segments run by any backend.

This is how GraspNet runs without CUDA and fast: FPS, ball/cylinder queries and interpolation run
in numba kernels with the official semantics; the 1x1-conv segments run in onnxruntime, on the
X5 BPU (hobot_dnn) or in torch. The grasp head runs only on object seeds: the decoder drops every
other seed, so their rows are never computed (they are NaN in the raw outputs).

The grasp head has two layouts (``contract.HEAD_LAYOUTS``), same outputs: ``per_depth``
runs the CloudCrop MLP on every (seed, depth)'s 64 cylinder samples inside one segment (what the
X5 BPU runs); ``shared_points`` runs it once per distinct (seed, point) of the 4 nested cylinders
(``crop_mlp``), max-pools each depth's members in a numba kernel and runs the operation and
tolerance heads on the pooled features (``grasp_head_post``): ~2.5x fewer MLP evaluations.

Independently, the backbone has two layouts (manifest ``layout``, ``contract.SPLIT_LAYOUTS``):
``grouped`` SA2..SA4 segments take the grouped [normalised xyz, features] and run their whole MLP
(the X5 kit); ``factored`` ones start after their first layer, which runs here from the folded
weights in ``first_layers.npz`` (feature half once per source point, xyz half per group).
"""
from __future__ import annotations

import logging
import threading
from typing import Callable, Mapping

import numpy as np

from graspnet_edge_ros.contract import (BACKBONE_SEGMENTS, CROP_FEATURES, DEFAULT_HEAD_LAYOUT_PREFERENCE, HEAD_LAYOUTS,
                                        SplitManifest)
from graspnet_edge_ros.errors import InputError, ModelFormatError
from graspnet_edge_ros.geometry import native, native_crop
from graspnet_edge_ros.model.views import generate_grasp_views, viewpoint_params_to_matrix
from graspnet_edge_ros.timing import StageTimer

LOGGER = logging.getLogger(__name__)

SegmentRunner = Callable[[np.ndarray], np.ndarray]
# (centers (Ns,3), approaching (Ns,3), num_angle, num_depth) -> (Ns,) bool: candidates.SeedGate.
SeedGate = Callable[[np.ndarray, np.ndarray, int, int], np.ndarray]


class SplitGraspNet:
    """Raw GraspNet outputs for one cloud from native geometry + segment runners.

    Args:
        manifest: segment shapes and GraspNet constants (see ``graspnet_edge_ros.contract``).
        runners: segment name -> callable taking the (1,C,H,W) float32 input, returning the output.
        head_layout: grasp-head layout to run (a key of ``HEAD_LAYOUTS``); default: the first of
            "shared_points", "per_depth" that the manifest lists and ``runners`` has every segment of.

    Examples:
        >>> net = SplitGraspNet.from_directory("graspnet_split/", backend="onnxruntime")  # doctest: +SKIP
        >>> raw = net(points)  # (N,3) float32 camera-frame metres  # doctest: +SKIP
    """

    def __init__(self, manifest: SplitManifest, runners: Mapping[str, SegmentRunner], head_layout: str | None = None):
        if head_layout is None:
            usable = [layout for layout in DEFAULT_HEAD_LAYOUT_PREFERENCE if layout in manifest.head_layouts
                      and all(name in runners for name in HEAD_LAYOUTS[layout])]
            head_layout = usable[0] if usable else (manifest.head_layouts or ["per_depth"])[0]
        if head_layout not in manifest.head_layouts:
            raise ModelFormatError(f"the manifest has no '{head_layout}' grasp head (has: {manifest.head_layouts})")
        missing = [name for name in BACKBONE_SEGMENTS + HEAD_LAYOUTS[head_layout] if name not in runners]
        if missing:
            raise ModelFormatError(f"no runner for segments {missing}")
        self.manifest = manifest
        self.head_layout = head_layout
        self.runners = dict(runners)
        self.template_views = generate_grasp_views(manifest.model.num_view)
        # Each view's gripper frame (in-plane angle 0), row for row what viewpoint_params_to_matrix
        # gives for the seeds that pick that view.
        self.template_rotations = viewpoint_params_to_matrix(-self.template_views,
                                                             np.zeros(len(self.template_views), np.float32))
        # "factored" layout: the first SA2..SA4 layer runs here (segments.py), from these weights.
        self.first_layers = manifest.load_first_layers() if manifest.layout == "factored" else None
        self._buffers = threading.local()
        self.last_timings_ms: dict[str, float] = {}
        if head_layout == "shared_points" and not manifest.crop_features_points_major:
            again = ("graspnet-edge export --split --quantize int8 --calibration-source SRC"
                     if manifest.precision == "int8" else "graspnet-edge export --split")
            LOGGER.warning("%s: crop_mlp gives channels-major features (exported before 2026-12-07); they are "
                           "transposed before the pooling (~0.7 ms per crop_mlp call on a 2-core x86 VM): "
                           "re-export it (%s) to save that", manifest.directory, again)

    @classmethod
    def from_directory(cls, directory, backend: str = "onnxruntime", head_layout: str | None = None,
                       warm_up: bool = True, **backend_options) -> "SplitGraspNet":
        """Load a split directory; ``warm_up``: run each segment once at load (see ``warm_up``)."""
        from graspnet_edge_ros.runtime.segment_runners import backend_runners

        manifest = SplitManifest.load(directory)
        layout = head_layout or manifest.head_layout_for(backend)
        net = cls(manifest, backend_runners(manifest, backend, layout, **backend_options), layout)
        if warm_up:
            net.warm_up()
        return net

    def warm_up(self) -> None:
        """Run every segment once on zeros of its input shape.

        A session's first run initialises its kernels and plans its memory, and the process first
        touches the pages of its activations then: measured here, 26-46 ms for the fp32 segments,
        which the first frame paid (its forward 1.3-1.4x a warm one; ~1.1x after this). Done at load,
        as a model server warms its models up; ``from_directory`` calls it.
        """
        for name, runner in self.runners.items():
            runner(np.zeros(self.manifest.segment(name).input_shape, np.float32))

    def _run(self, name: str, tensor: np.ndarray, timer: StageTimer) -> np.ndarray:
        """Run one segment; returns its (1, C, H, 1) output as (C, H)."""
        return self._run_4d(name, tensor, timer)[0, :, :, 0]

    def _run_4d(self, name: str, tensor: np.ndarray, timer: StageTimer) -> np.ndarray:
        with timer(f"segment_{name}"):
            return self.runners[name](np.ascontiguousarray(tensor, dtype=np.float32))

    def __call__(self, points: np.ndarray, skip_background_seeds: bool = True,
                 seed_gate: SeedGate | None = None) -> dict[str, np.ndarray]:
        """Run the network on one cloud.

        Args:
            points: (N, 3) float32 camera-frame xyz in metres (the model's sampled input).
            skip_background_seeds: compute the grasp head only where objectness says "object".
            seed_gate: ``gate(centers, approaching, num_angle, num_depth) -> (Ns,) bool`` over those
                seeds (``candidates.SeedGate``): the head runs only where it is True; the raw outputs
                then hold ``grasp_seed_gate`` (1, S) bool, False where a seed's head was skipped.

        Returns:
            Official end_points names with a batch axis of 1 (see ``postprocess.decode``).
        """
        points = np.ascontiguousarray(points, dtype=np.float32)
        if points.ndim != 2 or points.shape[1] != 3 or len(points) == 0:
            raise InputError(f"points must be (N, 3) with N > 0, got {points.shape}")
        if not np.isfinite(points).all():
            raise InputError("points contain NaN or inf")
        m = self.manifest.model
        timer = StageTimer()
        n2 = m.sa_layers[1][0]
        fps_indices, (sa1_xyz, sa2_xyz, sa3_xyz, sa4_xyz), (sa2_features, sa3_features, sa4_features) = \
            self._set_abstractions(points, timer)
        fp1_features = self._run("fp1", self._propagate("fp1", sa3_xyz, sa4_xyz, sa4_features, sa3_features,
                                                         timer), timer)
        approach = self._run("fp2_approach", self._propagate("fp2_approach", sa2_xyz, sa3_xyz, fp1_features,
                                                              sa2_features, timer), timer)

        with timer("approach_decode"):
            objectness = approach[0:2]
            view_score = approach[2:].T                                    # (S, num_view)
            top_view_inds = native.column_argmax(approach[2:])
            top_view_xyz = self.template_views[top_view_inds]
            top_view_rot = self.template_rotations[top_view_inds]
            selected = np.flatnonzero(objectness[1] > objectness[0]) if skip_background_seeds \
                else np.arange(n2)
        gate_mask = None
        if seed_gate is not None:
            with timer("seed_gate"):
                selected = selected[seed_gate(sa2_xyz[selected], -top_view_xyz[selected], m.num_angle, m.num_depth)]
                gate_mask = np.zeros(n2, bool)
                gate_mask[selected] = True
        head = self._grasp_head(points, sa2_xyz, top_view_rot, selected, timer)
        a = m.num_angle
        outputs = {
            "point_clouds": points[None],
            "fp2_xyz": sa2_xyz[None],
            "fp2_inds": fps_indices[None, :n2].astype(np.int32),
            "objectness_score": objectness[None],
            "view_score": view_score[None],
            "grasp_top_view_inds": top_view_inds[None].astype(np.int64),
            "grasp_top_view_score": view_score[np.arange(n2), top_view_inds][None],
            "grasp_top_view_xyz": top_view_xyz[None],
            "grasp_top_view_rot": top_view_rot[None],
            "grasp_score_pred": head[None, 0:a],
            "grasp_angle_cls_pred": head[None, a:2 * a],
            "grasp_width_pred": head[None, 2 * a:3 * a],
            "grasp_tolerance_pred": head[None, 3 * a:4 * a],
        }
        if gate_mask is not None:
            outputs["grasp_seed_gate"] = gate_mask[None]
        self.last_timings_ms = dict(timer.ms)
        return outputs

    def _set_abstractions(self, points: np.ndarray, timer: StageTimer):
        """FPS indices, SA1..SA4 centres and SA2..SA4 features ((C, S) each)."""
        m = self.manifest.model
        (n1, r1, k1), (n2, r2, k2), (n3, _, _), (n4, _, _) = m.sa_layers
        with timer("fps"):
            fps_indices = native.furthest_point_sample(points, n1)
            sa1_xyz = points[fps_indices]
            # Prefix property of index-0 FPS: deeper SA centres are prefixes of SA1's order.
            centres = (sa1_xyz, sa1_xyz[:n2], sa1_xyz[:n3], sa1_xyz[:n4])
        with timer("ball_query"):
            sa2_idx = native.ball_query(sa1_xyz, centres[1], r2, k2)
        sa1_kept, sa2_idx = self._sa1_groups_read(sa2_idx, n1)
        features = self._sa1_features(points, sa1_xyz[sa1_kept], r1, k1, timer)
        source_xyz = (sa1_xyz[sa1_kept], centres[1], centres[2])
        outputs = []
        for name, (_, radius, nsample), source_xyz, xyz in zip(("sa2", "sa3", "sa4"), m.sa_layers[1:],
                                                                source_xyz, centres[1:]):
            with timer("ball_query"):
                idx = sa2_idx if name == "sa2" else native.ball_query(source_xyz, xyz, radius, nsample)
            if self.first_layers is None:
                with timer("ball_query"):
                    grouped = self._buffer(name, (1, 3 + len(features), len(xyz), nsample))
                    native.group_xyz(source_xyz, xyz, idx, radius, out=grouped[0, :3])
                    np.take(features, idx, axis=1, out=grouped[0, 3:])
                features = self._run(name, grouped, timer)
            else:
                with timer("sa_first_layer"):
                    # Linear in the features: once per source point, not once per (centre, neighbour),
                    # and only for the points the groups read (SA3 reads ~13 % of SA2's centres).
                    read, idx = _columns_read(idx, len(source_xyz))
                    projected = self.first_layers[name][1] @ features[:, read]
                features = self._factored_sa(name, source_xyz[read], xyz, idx, radius, projected, timer)
            outputs.append(features)
        return fps_indices, centres, tuple(outputs)

    def _factored_sa(self, name: str, source_xyz: np.ndarray, xyz: np.ndarray, idx: np.ndarray, radius: float,
                     projected: np.ndarray, timer: StageTimer) -> np.ndarray:
        """(256, S) features of a factored SA segment: its first layer here, the rest in calls of the
        segment's centres per call (the last call padded with the last centre, its extra columns dropped)."""
        weight_xyz, _, bias = self.first_layers[name]
        count, height = len(xyz), self.manifest.sa_chunk_centres(name)
        channels_last = self.manifest.sa_channels_last
        shape = (1, height, idx.shape[1], len(bias)) if channels_last else (1, len(bias), height, idx.shape[1])
        grouped = self._buffer(name, shape)
        if channels_last:
            projected = np.asfortranarray(projected)  # its (N, C) rows, transposed once for every call
        outputs = []
        for start in range(0, count, height):
            rows = slice(start, start + height) if start + height <= count \
                else np.minimum(np.arange(start, start + height), count - 1)
            with timer("sa_first_layer"):
                native.group_first_layer(source_xyz, xyz[rows], idx[rows], radius, projected, weight_xyz, bias,
                                         out=grouped[0], channels_last=channels_last)
            outputs.append(self._run(name, grouped, timer))
        return np.concatenate(outputs, axis=1)[:, :count] if len(outputs) > 1 else outputs[0]

    def _sa1_groups_read(self, sa2_idx: np.ndarray, n1: int) -> tuple[np.ndarray, np.ndarray]:
        """(SA1 centres to compute, SA2's ball-query indices into them).

        SA2's ball query keeps the first nsample SA1 centres in FPS order within its radius, so it
        reads only ~40 % of SA1's groups; with an sa1 segment of fewer groups than SA1 has, only
        those run. With a whole-SA1 segment (the X5 kit's) every group runs, as exported.
        """
        if self.manifest.sa1_chunk_groups >= n1:
            return np.arange(n1), sa2_idx
        return _columns_read(sa2_idx, n1)

    def _sa1_features(self, points: np.ndarray, centres: np.ndarray, radius: float, nsample: int,
                      timer: StageTimer) -> np.ndarray:
        """(128, len(centres)) SA1 features, in sa1 calls of the segment's group count."""
        chunk = self.manifest.sa1_chunk_groups
        calls = -(-len(centres) // chunk)
        with timer("ball_query"):
            # Pad with the last centre: the padded groups are computed and dropped, never read.
            padded = np.concatenate([centres, np.repeat(centres[-1:], calls * chunk - len(centres), axis=0)])
            idx = native.ball_query(points, padded, radius, nsample)
            grouped = self._buffer("sa1", (calls, 3, chunk, nsample))
            for call in range(calls):
                rows = slice(call * chunk, (call + 1) * chunk)
                native.group_xyz(points, padded[rows], idx[rows], radius, out=grouped[call])
        features = [self._run("sa1", grouped[call][None], timer) for call in range(calls)]
        return np.concatenate(features, axis=1)[:, :len(centres)] if calls > 1 else features[0][:, :len(centres)]

    def _propagate(self, name: str, unknown: np.ndarray, known: np.ndarray, known_features: np.ndarray,
                   skip_features: np.ndarray, timer: StageTimer) -> np.ndarray:
        """(1, C_known + C_skip, n, 1) FP segment input: [three-NN interpolated, skip features]."""
        with timer("interpolate"):
            channels = len(known_features)
            fp_in = self._buffer(name, (1, channels + len(skip_features), len(unknown), 1))
            dist, idx = native.three_nn(unknown, known)
            native.three_interpolate(known_features, idx, native.interpolation_weights(dist),
                                     out=fp_in[0, :channels, :, 0])
            fp_in[0, channels:, :, 0] = skip_features
        return fp_in

    def _buffer(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        """A float32 segment-input buffer reused across calls (per thread: callers may share a net)."""
        buffers = self._buffers.__dict__
        buffer = buffers.get(name)
        if buffer is None or buffer.shape != shape:
            buffer = buffers[name] = np.empty(shape, np.float32)
        return buffer

    def _grasp_head(self, points: np.ndarray, seed_xyz: np.ndarray, seed_rot: np.ndarray,
                    selected: np.ndarray, timer: StageTimer) -> np.ndarray:
        """(4*A, S, D) head outputs; rows of seeds not in ``selected`` are NaN (never computed)."""
        m = self.manifest.model
        channels = 4 * m.num_angle
        head = np.full((channels, len(seed_xyz), m.num_depth), np.nan, np.float32)
        if len(selected) == 0:
            return head
        with timer("cylinder_query"):
            centers, rotations = seed_xyz[selected], seed_rot[selected]
            idx = native.cylinder_query(points, centers, rotations, m.cylinder_radius, m.hmin,
                                        np.asarray(m.hmax_list, np.float32), m.crop_nsample)  # (Ns,D,K)
        ns, depths, nsample = idx.shape
        rows_per_call = self.manifest.head_chunk_seeds * depths
        total_rows = ns * depths
        calls = -(-total_rows // rows_per_call)
        if self.head_layout == "shared_points":
            results = self._shared_points_head(points, centers, rotations, idx, calls, timer)
        else:
            with timer("cylinder_query"):
                local = native.cylinder_group(points, centers, rotations, idx)               # (Ns,D,K,3)
                grouped = local.reshape(total_rows, nsample, 3).transpose(2, 0, 1)           # (3,Ns*D,K)
            batch = np.zeros((3, calls * rows_per_call, nsample), np.float32)
            batch[:, :total_rows] = grouped
            results = [self._run("grasp_head", batch[None, :, r:r + rows_per_call], timer)
                       for r in range(0, calls * rows_per_call, rows_per_call)]
        computed = np.concatenate(results, axis=1)[:, :total_rows].reshape(channels, ns, depths)
        head[:, selected] = computed
        return head

    def _shared_points_head(self, points: np.ndarray, centers: np.ndarray, rotations: np.ndarray,
                            idx: np.ndarray, calls: int, timer: StageTimer) -> list[np.ndarray]:
        """Head outputs per ``grasp_head_post`` call: crop MLP once per distinct point, max per depth."""
        with timer("cylinder_query"):
            layout = native_crop.crop_union_layout(points, centers, rotations, idx, self.manifest.crop_chunk_points)
        rows_per_call = self.manifest.head_chunk_seeds * idx.shape[1]
        pooled = np.zeros((CROP_FEATURES, calls * rows_per_call), np.float32)
        points_major = self.manifest.crop_features_points_major
        for chunk in range(len(layout.crop_input)):
            output = self._run_4d("crop_mlp", layout.crop_input[chunk][None, :, :, None], timer)
            with timer("crop_pool"):
                # (P, C); an export before 2026-12-07 gives (1, C, P, 1), transposed here
                crop_features = output[0, :, 0, :] if points_major else native_crop.points_major(output[0, :, :, 0])
                native_crop.pool_crop_features(crop_features, layout, chunk, pooled)
        return [self._run("grasp_head_post", pooled[None, :, r:r + rows_per_call, None], timer)
                for r in range(0, calls * rows_per_call, rows_per_call)]


def _columns_read(idx: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """(the sorted distinct entries of ``idx``, ``idx`` renumbered into them); entries are < count."""
    seen = np.zeros(count, bool)
    seen[idx.ravel()] = True
    read = np.flatnonzero(seen)  # np.unique's result without its sort (1 ms for SA2's 32768 entries)
    if len(read) == count:  # every entry read (SA2's indices, already renumbered into SA1's read groups)
        return read, idx
    position = np.empty(count, idx.dtype)
    position[read] = np.arange(len(read), dtype=idx.dtype)
    return read, position[idx]
