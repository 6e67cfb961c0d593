"""The pick-success simulator (graspnet_edge_ros.sim): physics that can fail, reproducible scenes,
the detector -> execution path, the report's figures and the sim-eval command's bad-input errors."""
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import REQUIRE_SHARED_ENV, require_module

from graspnet_edge_ros.cli import main as cli_main
from graspnet_edge_ros.config import DetectorConfig
from graspnet_edge_ros.grasps import GraspGroup
from graspnet_edge_ros.poses import tcp_poses

REPO = Path(__file__).resolve().parents[1]
DOWN, X_AXIS = np.array([0.0, 0.0, -1.0]), np.array([1.0, 0.0, 0.0])
BOX_SIZE = (0.04, 0.05, 0.08)


@pytest.fixture(scope="module")
def box_world():
    """A 4 x 5 x 8 cm box standing on the table, a default (Panda-like) gripper, state saved."""
    require_module("pybullet", "pip install .[sim]")
    from graspnet_edge_ros.sim.execution import GraspExecutor, GripperGeometry
    from graspnet_edge_ros.sim.scenes import TABLE_TOP_Z, ObjectAsset, SimWorld

    world = SimWorld()
    world.add_object(ObjectAsset("box", kind="box", box_size=BOX_SIZE), [0.0, 0.0, TABLE_TOP_Z + BOX_SIZE[2] / 2])
    world.step(0.5)
    executor = GraspExecutor(world, GripperGeometry.from_config(DetectorConfig().gripper))
    world.save_settled()
    yield world, executor, TABLE_TOP_Z
    world.close()


def _top_grasp(x=0.0, y=0.0, width=0.04):
    from graspnet_edge_ros.sim.execution import GraspCommand
    from graspnet_edge_ros.sim.scenes import TABLE_TOP_Z

    # Grasp point 2 cm below the box top; fingertips 2 cm deeper, i.e. at mid-height.
    return GraspCommand(np.array([x, y, TABLE_TOP_Z + BOX_SIZE[2] - 0.02]), DOWN, X_AXIS, width, 0.02)


def test_known_good_grasp_lifts_the_box(box_world):
    world, executor, _ = box_world
    outcome = executor.execute(_top_grasp())
    assert outcome.success and outcome.reason == "lifted" and outcome.lifted_label == 1
    assert not outcome.pre_grasp_collision


def test_same_grasp_10_cm_off_target_fails(box_world):
    world, executor, _ = box_world
    outcome = executor.execute(_top_grasp(y=0.10))
    assert not outcome.success and not outcome.pre_grasp_collision
    # ... and the attempt before it did not leave the world changed: the good grasp still works.
    assert executor.execute(_top_grasp()).success


def test_the_same_grasp_ends_the_same_whatever_ran_before(box_world):
    world, executor, _ = box_world
    first = executor.execute(_top_grasp(x=0.01))
    after_first = world.object_positions()
    executor.execute(_top_grasp(width=0.02))
    executor.execute(_top_grasp(y=0.015))
    again = executor.execute(_top_grasp(x=0.01))
    assert first == again
    np.testing.assert_array_equal(after_first, world.object_positions())


def test_opening_narrower_than_the_object_fails(box_world):
    world, executor, _ = box_world
    # width 2 cm + 1 cm clearance = 3 cm opening on a 4 cm wide box: the fingers land on top of it.
    outcome = executor.execute(_top_grasp(width=0.02))
    assert not outcome.success and outcome.reason == "approach_blocked"


def test_grasp_from_under_the_table_is_a_pre_grasp_collision(box_world):
    from graspnet_edge_ros.sim.execution import GraspCommand

    world, executor, table_z = box_world
    below = GraspCommand(np.array([0.2, 0.0, table_z]), -DOWN, X_AXIS, 0.04, 0.02)
    outcome = executor.execute(below)
    assert outcome.pre_grasp_collision and not outcome.success and outcome.collided_with == "table"


def test_each_attempt_starts_from_the_settled_scene_as_rendered():
    require_module("pybullet", "pip install .[sim]")
    from graspnet_edge_ros.sim.scenes import SceneOptions, SimWorld, build_scene

    with SimWorld() as world:
        build_scene(world, 0, SceneOptions("household", 6))   # teddy and mug: URDFs with an inertial offset
        settled = world.object_positions()
        aabbs = [world.p.getAABB(body, physicsClientId=world.client) for body in world.objects]
        world.save_settled()
        world.step(0.2)
        world.restore_settled()
        np.testing.assert_allclose(world.object_positions(), settled, atol=1e-6)
        np.testing.assert_allclose([world.p.getAABB(b, physicsClientId=world.client) for b in world.objects],
                                   aabbs, atol=1e-4)


def test_commands_use_the_published_pose_in_either_convention():
    from graspnet_edge_ros.sim.execution import commands_from_result

    rotation = np.stack([[0, 0, 1.0], [1.0, 0, 0], [0, 1.0, 0]], axis=1)  # approach +z_cam, closing +x_cam
    grasps = GraspGroup.from_parts([0.9], [0.05], [0.03], rotation[None], [[0.01, 0.02, 0.5]])
    camera_pose = np.eye(4)
    camera_pose[:3, :3] = [[1, 0, 0], [0, -1, 0], [0, 0, -1]]  # looking straight down
    camera_pose[:3, 3] = [0.1, 0.0, 1.2]
    commands = []
    for convention in ("z_approach_x_closing", "x_approach_y_closing"):
        config = DetectorConfig.from_flat(pose_convention=convention, tcp_offset_m=0.015)
        poses = tcp_poses(grasps, convention, config.poses.tcp_offset_m, config.poses.pre_grasp_distance_m)
        commands += commands_from_result(SimpleNamespace(poses=poses, grasps=grasps), config, camera_pose, 5)
    for command in commands:
        np.testing.assert_allclose(command.point, [0.11, -0.02, 0.7], atol=1e-6)
        np.testing.assert_allclose(command.approach, [0, 0, -1], atol=1e-6)
        np.testing.assert_allclose(command.closing, [1, 0, 0], atol=1e-6)
        assert command.width == pytest.approx(0.05) and command.depth == pytest.approx(0.03)


def test_same_seed_gives_the_same_scene_and_consistent_geometry():
    require_module("pybullet", "pip install .[sim]")
    from graspnet_edge_ros.sim import render_scene

    first, again = render_scene(4, "oblique"), render_scene(4, "oblique")
    for name in ("color", "depth_mm", "labels"):
        np.testing.assert_array_equal(getattr(first, name), getattr(again, name))
    other = render_scene(5, "oblique")
    assert not np.array_equal(first.depth_mm, other.depth_mm)
    assert first.depth_mm.dtype == np.uint16 and first.color.shape == (480, 640, 3)
    assert first.labels.max() == len(first.object_names) >= 3
    # Table pixels back-projected with the intrinsics lie on table_plane (height 0, within 2 mm).
    k, z = first.intrinsics, first.depth_m
    rows, cols = np.nonzero((first.labels == 0) & (z > 0))
    points = np.stack([(cols - k.cx) * z[rows, cols] / k.fx, (rows - k.cy) * z[rows, cols] / k.fy, z[rows, cols]], 1)
    heights = points @ first.table_plane[:3] + first.table_plane[3]
    on_table = np.abs(heights) < 0.002
    assert on_table.mean() > 0.5
    # Object pixels stand above the table.
    rows, cols = np.nonzero(first.labels > 0)
    points = np.stack([(cols - k.cx) * z[rows, cols] / k.fx, (rows - k.cy) * z[rows, cols] / k.fy, z[rows, cols]], 1)
    assert np.median(points @ first.table_plane[:3] + first.table_plane[3]) > 0.005


def test_depth_noise_adds_holes_and_millimetre_noise():
    require_module("pybullet", "pip install .[sim]")
    from graspnet_edge_ros.sim import render_scene

    clean, noisy = render_scene(2, "topdown"), render_scene(2, "topdown", noise=True)
    np.testing.assert_array_equal(clean.labels, noisy.labels)
    holes = (noisy.depth_mm == 0) & (clean.depth_mm > 0)
    assert 0.002 < holes.mean() < 0.1
    both = (noisy.depth_mm > 0) & (clean.depth_mm > 0)
    difference = noisy.depth_mm[both].astype(int) - clean.depth_mm[both].astype(int)
    assert np.abs(difference).max() > 0 and np.abs(np.median(difference)) <= 1


@pytest.mark.parametrize("args, fragment", [
    (["--object-set", "cutlery"], "unknown object set 'cutlery'"),
    (["--seeds", "5:5"], "seed range '5:5' is empty"),
    (["--seeds", "a:b"], "--seeds must be A:B"),
    (["--views", "side"], "unknown view 'side'"),
    (["--resolution", "16x16"], "--resolution 16x16: each side must be 32 to 4096 pixels"),
    (["--resolution", "640x5000"], "--resolution 640x5000: each side must be 32 to 4096 pixels"),
    (["--resolution", "0x480"], "--resolution 0x480: each side must be 32 to 4096"),
    (["--json", "/"], "--json / is a directory"),
    (["--contact-sheet", "/proc/sheet.png"], "--contact-sheet /proc/sheet.png: cannot create a file"),
])
def test_sim_eval_bad_input_is_one_line_with_exit_code_2(args, fragment, capsys):
    assert cli_main(["sim-eval", "--model", "unused.pth"] + args) == 2
    err = capsys.readouterr().err.strip()
    assert fragment in err and len(err.splitlines()) == 1


def test_sim_eval_checks_outputs_before_any_work(tmp_path, capsys):
    # A bad --json is reported even though a later argument (the object set) is bad too, and
    # nothing was written or rendered.
    assert cli_main(["sim-eval", "--model", "unused.pth", "--json", str(tmp_path), "--object-set", "cutlery"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--json" in err and "is a directory" in err and len(err.splitlines()) == 1


def test_sim_eval_reads_the_nodes_own_parameter_files(tmp_path, capsys):
    from graspnet_edge_ros.config import PARAMETERS, from_mapping, load_yaml
    from graspnet_edge_ros.sim.benchmark import load_eval_config

    default_yaml = REPO / "config" / "default.yaml"
    loaded = load_eval_config(str(default_yaml), "model.pth")
    err = capsys.readouterr().err
    # Node-only keys (topics, QoS) are dropped with one notice; the detector keys all apply.
    assert len(err.strip().splitlines()) == 1 and "ignoring node-only parameter(s)" in err and "color_topic" in err
    detector_keys = {k: v for k, v in load_yaml(default_yaml).items() if k in PARAMETERS}
    detector_keys.pop("model_path")
    assert loaded.config == from_mapping(detector_keys, DetectorConfig.from_flat(model_path="model.pth"))
    assert loaded.config.model.model_path == "model.pth" and loaded.name == "default"
    # The /** layout, with a node-only key and a detector key that differs from the defaults.
    star = tmp_path / "star.yaml"
    star.write_text("/**:\n  ros__parameters:\n    slop: 0.1\n    max_grasps: 7\n    model_path: m.onnx\n")
    loaded = load_eval_config(str(star), "ignored.pth")
    assert loaded.config.filters.max_grasps == 7 and loaded.config.model.model_path == "m.onnx"
    assert "slop" in capsys.readouterr().err


@pytest.mark.parametrize("text, fragment", [
    ("/**:\n  ros__parameters:\n    slop: 0.1\n    max_grasp: 3\n", "unknown parameter 'max_grasp'; did you mean"),
    ("- max_grasps\n", "expected a mapping of parameters, got list"),
    ("max_grasps: [1, 2\n", "not valid YAML"),
    ("table_plane_mode: given\ntable_plane_frame: base_link\n", "only applied by the ROS node"),
])
def test_sim_eval_parameter_file_errors_name_the_file_once(text, fragment, tmp_path, capsys):
    params = tmp_path / "p_list.yaml"
    params.write_text(text)
    assert cli_main(["sim-eval", "--model", "unused.pth", "--params", str(params)]) == 2
    err = [line for line in capsys.readouterr().err.strip().splitlines() if "note:" not in line]
    assert len(err) == 1 and fragment in err[0], err
    assert err[0].count("p_list.yaml") == 1, err[0]


def test_require_module_fails_under_make_test_and_skips_otherwise(monkeypatch):
    monkeypatch.setenv(REQUIRE_SHARED_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match="no_such_module_xyz is not importable"):
        require_module("no_such_module_xyz")
    monkeypatch.setenv(REQUIRE_SHARED_ENV, "0")
    with pytest.raises(pytest.skip.Exception):
        require_module("no_such_module_xyz")
    assert require_module("json") is json


def test_sim_eval_params_file_with_unknown_key(tmp_path, capsys):
    params = tmp_path / "bad.yaml"
    params.write_text("table_plane_mode: none\ncolision_thresh: 0.02\n")
    assert cli_main(["sim-eval", "--model", "unused.pth", "--params", str(params)]) == 2
    err = capsys.readouterr().err.strip()
    assert "unknown parameter 'colision_thresh'" in err and "bad.yaml" in err and len(err.splitlines()) == 1


def test_robot_runtime_never_imports_pybullet_and_its_absence_is_one_line():
    code = ("import sys, graspnet_edge_ros.pipeline, graspnet_edge_ros.cli as c, graspnet_edge_ros.sim; "
            "c.build_parser(); print('pybullet' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert result.stdout.strip() == "False"
    code = ("import sys; sys.modules['pybullet'] = None; from graspnet_edge_ros.cli import main; "
            "sys.exit(main(['sim-eval', '--model', 'unused.pth', '--seeds', '0:1']))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert result.returncode != 0 and "pip install .[sim]" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_two_scene_benchmark_through_the_detector(shared_dir, tmp_path, capsys):
    require_module("pybullet", "pip install .[sim]")
    model = shared_dir / "models" / "graspnet_edge_grasp.pth"
    report_path, sheet = tmp_path / "report.json", tmp_path / "sheet.png"
    # The official post-processing, with half the default model input to keep the torch run short.
    params = tmp_path / "official_10k.yaml"
    params.write_text((REPO / "benchmarks" / "sim_params" / "official.yaml").read_text() + "num_points: 10000\n")
    code = cli_main(["sim-eval", "--model", str(model), "--params", str(params), "--seeds", "0:2",
                     "--views", "oblique,topdown", "--top-k", "3", "--no-progress",
                     "--json", str(report_path), "--contact-sheet", str(sheet)])
    assert code == 0
    assert "official_10k" in capsys.readouterr().out
    report = json.loads(report_path.read_text())
    rows = report["scenes"]
    assert [(r["seed"], r["view"]) for r in rows] == [(0, "oblique"), (0, "topdown"), (1, "oblique"), (1, "topdown")]
    for row in rows:
        assert len(row["grasps"]) == min(3, row["num_grasps"])
        assert [g["rank"] for g in row["grasps"]] == list(range(len(row["grasps"])))
        assert all(not (g["success"] and g["pre_grasp_collision"]) for g in row["grasps"])
        assert row["detect_ms"] > 0 and row["render_s"] > 0
    assert sum(r["num_grasps"] > 0 for r in rows) >= 3   # the detector finds grasps on these scenes
    by_view = {s["view"]: s for s in report["summary"]}
    assert set(by_view) == {"oblique", "topdown", "all"}
    for view, summary in by_view.items():
        members = [r for r in rows if view in ("all", r["view"])]
        executed = [g for r in members for g in r["grasps"]]
        assert summary["scenes"] == len(members)
        assert summary["executed_grasps"] == len(executed)
        assert summary["lifted_grasps"] == sum(g["success"] for g in executed)
        assert summary["top1_success"] == pytest.approx(
            np.mean([bool(r["grasps"]) and r["grasps"][0]["success"] for r in members]))
        assert 0 <= summary["top1_success"] <= summary["success_at_k"] <= 1
        assert 0 <= summary["precision_at_k"] <= 1 and 0 <= summary["pre_grasp_collision_rate"] <= 1
        assert summary["grasps_per_scene"] == pytest.approx(np.mean([r["num_grasps"] for r in members]))
    assert report["settings"]["asset_source"].startswith("pybullet_data")
    assert sheet.stat().st_size > 10000
