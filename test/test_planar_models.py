"""Planar networks: restricted loading of real checkpoints, decode vs scikit-image, and GR-ConvNet on
the real example scene (grasps on objects, not on the table)."""
from __future__ import annotations

import os
import pickle
import sys
import types

import numpy as np
import pytest

torch = pytest.importorskip("torch")
skimage_feature = pytest.importorskip("skimage.feature")
skimage_filters = pytest.importorskip("skimage.filters")

from graspnet_edge_ros.errors import ConfigError, InputError, ModelFormatError  # noqa: E402
from graspnet_edge_ros.planar.decode import gaussian_smooth, peak_local_max  # noqa: E402
from graspnet_edge_ros.planar.runner import PlanarDecodeOptions, load_planar_runner  # noqa: E402


@pytest.fixture(scope="module")
def grconvnet_checkpoint(shared_dir):
    return shared_dir / "models" / "grconvnet3_cornell_rgbd_ch16.pt"


@pytest.fixture(scope="module")
def scene_metres(example_scene):
    depth = example_scene["depth"].astype(np.float32) / np.float32(example_scene["factor_depth"])
    return example_scene["color"], depth


@pytest.fixture(scope="module")
def grconvnet_runner(grconvnet_checkpoint):
    return load_planar_runner(grconvnet_checkpoint)


# -- loading the legacy whole-module pickle --------------------------------------------------------------

def test_legacy_grconvnet_pickle_loads_strictly_with_published_sizes(grconvnet_checkpoint):
    from graspnet_edge_ros.planar.grconvnet import load_grconvnet

    model = load_grconvnet(grconvnet_checkpoint)
    # Facts of the published file (planar_spec A.4/A.9): ch16, 4 input channels, 115 entries, 479,156 params.
    assert (model.input_channels, model.channel_size) == (4, 16)
    assert len(model.state_dict()) == 115
    assert sum(p.numel() for p in model.parameters()) == 479_156
    with torch.inference_mode():
        pos, cos, sin, width = model(torch.zeros(1, 4, 224, 224))
    # Value ranges measured with the original module on a zero input (planar_spec A.9).
    for tensor, (low, high) in ((pos, (-0.001, 0.164)), (cos, (0.83, 1.05)), (sin, (-0.076, 0.111)),
                                (width, (-0.008, 0.142))):
        assert tensor.shape == (1, 1, 224, 224)
        assert float(tensor.min()) == pytest.approx(low, abs=5e-3)   # spec values are rounded
        assert float(tensor.max()) == pytest.approx(high, abs=5e-3)


def _marker_reduce_pickle(marker) -> bytes:
    """A protocol-2 pickle that would run os.system('touch marker') when unpickled unrestricted."""
    command = f"touch {marker}".encode()
    return (b"\x80\x02cos\nsystem\nq\x00X" + len(command).to_bytes(4, "little") + command + b"\x85R.")


def test_restricted_unpickler_refuses_os_system_without_running_it(tmp_path):
    from graspnet_edge_ros.planar.grconvnet import load_grconvnet

    marker = tmp_path / "executed"
    crafted = tmp_path / "evil.pt"
    crafted.write_bytes(_marker_reduce_pickle(marker))
    with pytest.raises(ModelFormatError, match=r"refused to unpickle global 'os\.system'"):
        load_grconvnet(crafted)
    assert not marker.exists()
    # Sanity of the crafted file: an unrestricted unpickler would indeed run it.
    pickle.loads(crafted.read_bytes())
    assert marker.exists()


def test_restricted_unpickler_refuses_foreign_global_in_zip_checkpoint(tmp_path):
    from graspnet_edge_ros.planar.grconvnet import load_grconvnet

    class Runner:  # any class outside the allow-list, pickled inside a modern zip checkpoint
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'executed'}",))

    path = tmp_path / "zip_evil.pt"
    torch.save({"model_state_dict": {"conv1.weight": torch.zeros(1)}, "hook": Runner()}, path)
    with pytest.raises(ModelFormatError, match=r"refused to unpickle global '(os|posix)\.system'"):
        load_grconvnet(path)
    assert not (tmp_path / "executed").exists()


def test_state_dict_variants_load_and_strict_errors_name_keys(grconvnet_checkpoint, tmp_path):
    from graspnet_edge_ros.planar.grconvnet import load_grconvnet

    reference = load_grconvnet(grconvnet_checkpoint).state_dict()
    wrapped = tmp_path / "ddp.pth"
    torch.save({"epoch": 30, "model_state_dict": {f"module.{k}": v for k, v in reference.items()}}, wrapped)
    loaded = load_grconvnet(wrapped).state_dict()
    assert all(torch.equal(loaded[k], reference[k]) for k in reference)

    broken = dict(reference)
    broken.pop("res3.bn1.running_var")
    broken["extra_head.weight"] = torch.zeros(1)
    broken["cos_output.weight"] = torch.zeros(2, 16, 2, 2)
    path = tmp_path / "broken.pth"
    torch.save(broken, path)
    with pytest.raises(ModelFormatError) as error:
        load_grconvnet(path)
    message = str(error.value)
    assert "res3.bn1.running_var" in message and "extra_head.weight" in message
    assert "cos_output.weight: checkpoint (2, 16, 2, 2) vs model (1, 16, 2, 2)" in message


def test_affga_whole_module_pickle_with_original_class_names_loads(tmp_path):
    """A torch.save(model) whose classes live in the original ``models.affga.*`` modules."""
    from graspnet_edge_ros.planar import affga
    from graspnet_edge_ros.planar.formats import AFFGA_PICKLE_NAMES, detect_planar_model_type

    torch.manual_seed(0)
    model = affga.AFFGANet().eval()
    ours = {"DeepLab": affga.AFFGANet, "ResNet": affga.ResNet101, "Bottleneck": affga.Bottleneck,
            "HASP": affga.HASP, "_HASPModule": affga.HASPBranch, "Decoder": affga.Decoder}
    fakes = {}
    packages = {name for module_name, _ in AFFGA_PICKLE_NAMES for name in
                (".".join(module_name.split(".")[:i]) for i in range(1, module_name.count(".") + 2))}
    created = [name for name in sorted(packages) if name not in sys.modules]
    for name in created:
        sys.modules[name] = types.ModuleType(name)
    for module_name, class_name in AFFGA_PICKLE_NAMES:
        module = sys.modules[module_name]
        fake = type(class_name, (ours[class_name],), {"__module__": module_name})
        setattr(module, class_name, fake)
        fakes[ours[class_name]] = fake
    try:
        for sub in model.modules():
            if type(sub) in fakes:
                sub.__class__ = fakes[type(sub)]
        path = tmp_path / "affga_release.pth"
        torch.save(model, path)
    finally:
        for name in created:
            sys.modules.pop(name, None)
        for sub in model.modules():
            if type(sub) in fakes.values():
                sub.__class__ = type(sub).__mro__[1]
    assert "models.affga.deeplab" not in sys.modules
    assert detect_planar_model_type(path) == "affga"
    loaded = affga.load_affga(path)
    reference = model.state_dict()
    assert len(reference) == 744
    assert all(torch.equal(loaded.state_dict()[k], reference[k]) for k in reference)
    # The unused decoder convs are part of the strict key set (planar_spec pitfall 8).
    assert "decoder.conv_hasp_mid.0.weight" in reference and "decoder.conv_2.1.running_mean" in reference


def test_affga_parameter_count_matches_the_published_architecture():
    from graspnet_edge_ros.planar.affga import AFFGANet

    model = AFFGANet()
    assert sum(p.numel() for p in model.parameters()) == 69_652_090   # planar_spec B.2 table
    assert len(model.state_dict()) == 744


# -- decode vs scikit-image --------------------------------------------------------------------------------

def _skimage_peaks(image, **kwargs):
    return skimage_feature.peak_local_max(image, **kwargs)


@pytest.mark.parametrize("sigma", [1.0, 2.0])
def test_gaussian_equals_skimage_on_real_maps(grconvnet_runner, scene_metres, sigma):
    color, depth = scene_metres
    grasps = grconvnet_runner(color, depth)
    raw = grasps.extras["width_px"]
    np.testing.assert_array_equal(gaussian_smooth(raw, sigma),
                                  skimage_filters.gaussian(raw, sigma, preserve_range=True))


def test_peaks_equal_skimage_on_real_quality_map(grconvnet_runner, scene_metres):
    color, depth = scene_metres
    quality = grconvnet_runner(color, depth).extras["quality"]
    for kwargs in ({"min_distance": 20, "threshold_abs": 0.2, "num_peaks": 1},
                   {"min_distance": 20, "threshold_abs": 0.2, "num_peaks": 5},
                   {"min_distance": 20, "threshold_abs": 0.2},
                   {"min_distance": 5, "threshold_abs": 0.05},
                   {"min_distance": 3, "threshold_abs": 0.1, "exclude_border": False}):
        ours = peak_local_max(quality, **kwargs)
        np.testing.assert_array_equal(ours, _skimage_peaks(quality, **kwargs), err_msg=str(kwargs))
    assert len(peak_local_max(quality, min_distance=20, threshold_abs=0.2)) >= 3


def test_peaks_equal_skimage_on_synthetic_edge_cases():
    image = np.zeros((224, 224), np.float32)
    image[5, 100] = 1.0          # within 20 px of the border: excluded
    image[20, 60] = 0.9          # exactly 20 px from the border: allowed
    image[203, 150] = 0.8        # last allowed row
    image[204, 30] = 0.95        # first excluded row from the bottom
    image[100:103, 100:103] = 0.7   # 3x3 plateau: one peak (spacing), raster-first
    image[100, 130] = 0.7        # tie with the plateau, 30 px away
    image[110, 118] = 0.5        # inside the plateau's window but weaker: not a maximum
    cases = [dict(min_distance=20, threshold_abs=0.2), dict(min_distance=20, threshold_abs=0.2, num_peaks=2),
             dict(min_distance=20, threshold_abs=0.7), dict(min_distance=1, threshold_abs=0.2),
             dict(min_distance=20, threshold_abs=0.2, exclude_border=False), dict(min_distance=20)]
    for kwargs in cases:
        np.testing.assert_array_equal(peak_local_max(image, **kwargs), _skimage_peaks(image, **kwargs),
                                      err_msg=str(kwargs))
    found = peak_local_max(image, min_distance=20, threshold_abs=0.2)
    assert [5, 100] not in found.tolist() and [20, 60] in found.tolist()
    # A constant image has no peaks; a single border peak gives an empty (0, 2) array.
    assert peak_local_max(np.full((50, 50), 0.5), min_distance=2, threshold_abs=0.1).shape == (0, 2)
    lone = np.zeros((60, 60))
    lone[5, 30] = 1
    assert peak_local_max(lone, min_distance=20, threshold_abs=0.2).shape == (0, 2)


@pytest.mark.parametrize("seed", range(4))
def test_peaks_equal_skimage_with_many_ties(seed):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 6, (96, 96)).astype(np.float64)   # coarse levels: plateaus and ties everywhere
    image = np.kron(image, np.ones((2, 2)))[:150, :170]
    for min_distance in (1, 2, 3, 7):
        for num_peaks in (None, 1, 10):
            kwargs = dict(min_distance=min_distance, threshold_abs=1.5)
            if num_peaks is not None:
                kwargs["num_peaks"] = num_peaks
            np.testing.assert_array_equal(peak_local_max(image, **kwargs), _skimage_peaks(image, **kwargs),
                                          err_msg=str(kwargs))


def test_grconvnet_decode_reproduces_the_repository_post_process(grconvnet_runner, scene_metres):
    """Same maps -> the repository's recipe written with skimage -> the same grasps."""
    from graspnet_edge_ros.planar.preprocess import grconvnet_input

    color, depth = scene_metres
    grasps = grconvnet_runner(color, depth)
    window = grconvnet_runner.crop_window(depth.shape)
    engine = grconvnet_runner._engine
    outputs = engine.run({"input": grconvnet_input(color, depth, window, 4)})
    q = skimage_filters.gaussian(outputs["pos"][0, 0], 2.0, preserve_range=True)
    angle = skimage_filters.gaussian(0.5 * np.arctan2(outputs["sin"][0, 0], outputs["cos"][0, 0]), 2.0,
                                     preserve_range=True)
    width = skimage_filters.gaussian(outputs["width"][0, 0] * 150.0, 1.0, preserve_range=True)
    peaks = skimage_feature.peak_local_max(q, min_distance=20, threshold_abs=0.2, num_peaks=10)
    np.testing.assert_array_equal(grasps.rows, peaks[:, 0] + window.top)
    np.testing.assert_array_equal(grasps.cols, peaks[:, 1] + window.left)
    np.testing.assert_allclose(grasps.angles_rad, angle[peaks[:, 0], peaks[:, 1]], rtol=0, atol=1e-6)
    np.testing.assert_allclose(grasps.widths_px, width[peaks[:, 0], peaks[:, 1]], rtol=0, atol=1e-4)


# -- GR-ConvNet on the real scene --------------------------------------------------------------------------

def _heights_above_table(example_scene, depth):
    from graspnet_edge_ros.camera import CameraIntrinsics, back_project
    from graspnet_edge_ros.postprocess.filters import fit_table_plane

    intrinsics = CameraIntrinsics.from_matrix(example_scene["K"], depth.shape[1], depth.shape[0])
    cloud = back_project(depth, intrinsics)
    valid = depth > 0
    normal, offset = fit_table_plane(cloud[valid & example_scene["workspace_mask"]])
    return np.where(valid, cloud @ normal + offset, np.nan)


def _jaw_segment_heights(heights, row, col, angle, width):
    """Heights sampled along the closing segment between the jaws (direction (cos a, -sin a) in (u, v))."""
    t = np.linspace(-0.5, 0.5, 41)
    rows = np.clip(np.round(row - t * width * np.sin(angle)).astype(int), 0, heights.shape[0] - 1)
    cols = np.clip(np.round(col + t * width * np.cos(angle)).astype(int), 0, heights.shape[1] - 1)
    return heights[rows, cols]


def _spans_object(segment) -> bool:
    return bool(np.nanmean(segment > 0.008) >= 0.1)   # >= 10 % of the segment 8 mm above the table


def test_grconvnet_finds_grasps_on_objects_in_the_real_scene(grconvnet_runner, example_scene, scene_metres):
    color, depth = scene_metres
    grasps = grconvnet_runner(color, depth)
    assert grconvnet_runner.model_type == "grconvnet" and grconvnet_runner.backend_name == "torch"
    assert grconvnet_runner.model_id.startswith("grconvnet:grconvnet3_cornell_rgbd_ch16.pt@")
    assert set(grconvnet_runner.last_timings_ms) == {"prepare", "network", "decode"}
    assert len(grasps) == 10 and np.all(np.diff(grasps.scores) <= 0)
    assert grasps.scores[0] > 0.6 and np.all(grasps.scores > 0.2)
    window = grconvnet_runner.crop_window(depth.shape)
    assert (window.top, window.left) == ((720 - 224) // 2, (1280 - 224) // 2)
    # Full-image coordinates inside the crop, away from its 20 px excluded border.
    assert np.all((grasps.rows >= window.top + 20) & (grasps.rows < window.top + 204))
    assert np.all((grasps.cols >= window.left + 20) & (grasps.cols < window.left + 204))
    assert np.all(example_scene["workspace_mask"][grasps.rows.astype(int), grasps.cols.astype(int)])
    assert np.all((grasps.angles_rad > -np.pi / 2 - 1e-6) & (grasps.angles_rad <= np.pi / 2 + 1e-6))
    # Openings between 1 and ~11 cm at ~0.47 m (f = 631 px): plausible pixel widths for these objects.
    assert np.all((grasps.widths_px > 10) & (grasps.widths_px < 150))
    heights = _heights_above_table(example_scene, depth)
    for i in range(len(grasps)):
        segment = _jaw_segment_heights(heights, grasps.rows[i], grasps.cols[i], grasps.angles_rad[i],
                                       grasps.widths_px[i])
        assert _spans_object(segment), f"grasp {i} at ({grasps.rows[i]}, {grasps.cols[i]}) spans only table"
    # The criterion can fail: segments on the bare mat (bottom-left, top-left of the image) do not pass.
    for row, col in ((600.0, 300.0), (100.0, 300.0)):
        assert not _spans_object(_jaw_segment_heights(heights, row, col, 0.0, 70.0))


def test_crop_centre_option_and_camera_normalisation_shift_the_crop_and_keep_grasps_valid(
        grconvnet_runner, example_scene, scene_metres):
    from graspnet_edge_ros.planar.preprocess import crop_center_from_mask

    color, depth = scene_metres
    baseline = grconvnet_runner(color, depth)
    centre = crop_center_from_mask(example_scene["workspace_mask"])
    try:
        grconvnet_runner.decode_options = PlanarDecodeOptions(crop_center_rc=(centre[0], centre[1] - 60),
                                                              depth_normalisation="camera", num_grasps=3)
        shifted = grconvnet_runner(color, depth)
        window = grconvnet_runner.crop_window(depth.shape)
    finally:
        grconvnet_runner.decode_options = PlanarDecodeOptions()
    assert window.left == round(centre[1] - 60 - 112)
    assert len(shifted) == 3 and shifted.extras["crop_origin_rc"] == (window.top, window.left)
    assert np.all(shifted.cols >= window.left + 20) and np.all(shifted.cols < window.left + 204)
    assert not np.array_equal(shifted.cols[:3], baseline.cols[:3])


def test_depth_holes_are_filled_before_normalising(grconvnet_runner, scene_metres):
    from graspnet_edge_ros.planar.preprocess import fill_depth_holes, grconvnet_input

    color, depth = scene_metres
    window = grconvnet_runner.crop_window(depth.shape)
    holed = depth.copy()
    holed[window.top + 50:window.top + 60, window.left + 50:window.left + 60] = np.nan
    holed[window.top + 100, window.left + 100] = 0.0
    prepared = grconvnet_input(color, holed, window, 4)
    assert np.isfinite(prepared).all() and prepared.shape == (1, 4, 224, 224)
    filled = fill_depth_holes(holed[window.slices])
    crop = depth[window.slices]
    valid = crop > 0
    # Each former hole takes a depth that occurs among the valid pixels right around it.
    assert filled[100, 100] in set(crop[99:102, 99:102][valid[99:102, 99:102]].ravel().tolist())
    assert np.all(np.abs(filled[50:60, 50:60] - np.median(crop[45:65, 45:65])) < 0.05)
    # The network still finds object grasps with the holes.
    assert grconvnet_runner(color, holed).scores[0] > 0.6


def test_bad_inputs_raise_clear_errors(grconvnet_runner, scene_metres):
    color, depth = scene_metres
    with pytest.raises(InputError, match="needs a colour image"):
        grconvnet_runner(None, depth)
    with pytest.raises(InputError, match="needs a depth image"):
        grconvnet_runner(color, None)
    with pytest.raises(InputError, match="smaller than the network's 224x224 crop"):
        grconvnet_runner(color[:200, :300], depth[:200, :300])
    with pytest.raises(InputError, match="differ in size"):
        grconvnet_runner(color[:, :640], depth)
    with pytest.raises(InputError, match="float metres"):
        grconvnet_runner(color, (depth * 1000).astype(np.uint16))
    with pytest.raises(InputError, match=r"\(H, W, 3\) uint8"):
        grconvnet_runner(color.astype(np.float32), depth)
    with pytest.raises(InputError, match="no valid depth"):
        grconvnet_runner(color, np.full(depth.shape, np.nan, np.float32))
    with pytest.raises(ConfigError):
        PlanarDecodeOptions(depth_normalisation="raw")
    with pytest.raises(ConfigError):
        PlanarDecodeOptions(num_grasps=0)
