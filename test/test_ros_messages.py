"""The package's ROS 2 interfaces cross process boundaries intact, and the core stays ROS-free.

The other end of each round trip is this file run as a script in a child process
(`python test_ros_messages.py publish <topic>` / `serve <service>`); the child inherits the
environment (ROS domain, install space) and exits when the test closes its stdin.
"""
import array
import ast
import contextlib
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DISCOVERY_TIMEOUT_S = 30.0  # discovery takes 0.5-3 s on loopback; generous for loaded CI machines
CHILD_EXIT_TIMEOUT_S = 20.0
SERVER_DEFAULT_MAX_GRASPS = 2  # what the test server returns for max_grasps == 0


def latched_qos():
    """Reliable + transient-local: a subscriber that matches late still gets the last sample."""
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    return QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL)


def build_grasp(index: int):
    """Grasp number `index` with every field set; float values are exact in float32."""
    from geometry_msgs.msg import Point, Pose, Quaternion, Vector3
    from graspnet_edge_ros.msg import Grasp

    sign = -1.0 if index % 2 else 1.0
    step = 1.0 + index
    grasp = Grasp()
    # q and -q are the same rotation: the two grasps differ in every number yet stay unit quaternions
    grasp.pose = Pose(position=Point(x=0.25 * step, y=-0.125 * step, z=0.5 + step),
                      orientation=Quaternion(x=0.5 * sign, y=0.5 * sign, z=-0.5 * sign, w=0.5 * sign))
    grasp.pre_grasp_pose = Pose(position=Point(x=0.25 * step, y=-0.125 * step, z=0.375 + step),
                                orientation=Quaternion(x=-0.5 * sign, y=0.5 * sign, z=0.5 * sign, w=0.5 * sign))
    grasp.approach = Vector3(x=0.48 * sign, y=-0.64 * sign, z=0.6 * sign)
    grasp.score = 0.875 - 0.25 * index
    grasp.width = 0.0625 + 0.015625 * index
    grasp.height = 0.015625 + 0.00390625 * index
    grasp.depth = 0.03125 - 0.0078125 * index
    grasp.object_id = 7 - 8 * index  # 7, then -1 ("unknown")
    grasp.rank = index
    return grasp


def build_grasp_array():
    from builtin_interfaces.msg import Time
    from graspnet_edge_ros.msg import GraspArray

    message = GraspArray()
    message.header.stamp = Time(sec=1_700_000_123, nanosec=456_789_000)
    message.header.frame_id = "camera_color_optical_frame"
    message.grasps = [build_grasp(0), build_grasp(1)]
    message.model_id = "graspnet_edge_grasp.pth@onnxruntime"
    message.pose_convention = "z_approach_x_closing"
    message.pre_grasp_distance = 0.125
    message.status = GraspArray.STATUS_ERROR
    message.status_reason = "round-trip test: every field set"
    message.stage_names = ["preprocess", "inference", "decode"]
    message.stage_latencies_ms = array.array("f", [12.5, 340.25, 7.75])
    return message


def leaf_values(message, prefix: str = "") -> dict:
    """Flatten a message to {"grasps[1].pose.position.x": value, ...}; sequences become lists."""
    leaves = {}
    for name in message.get_fields_and_field_types():
        value = getattr(message, name)
        path = prefix + name
        if hasattr(value, "get_fields_and_field_types"):
            leaves.update(leaf_values(value, path + "."))
        elif isinstance(value, list) and value and hasattr(value[0], "get_fields_and_field_types"):
            for index, element in enumerate(value):
                leaves.update(leaf_values(element, f"{path}[{index}]."))
        elif isinstance(value, (list, tuple, array.array)):
            leaves[path] = list(value)
        else:
            leaves[path] = value
    return leaves


@contextlib.contextmanager
def child_process(role: str, name: str):
    """Run this file as `<role> <name>` in a child; on exit close its stdin and collect stderr."""
    child = subprocess.Popen([sys.executable, __file__, role, name], cwd=REPO_ROOT, env=os.environ.copy(),
                             stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             text=True)
    outcome = {"stderr": ""}
    try:
        yield child, outcome
    finally:
        try:
            _, outcome["stderr"] = child.communicate(timeout=CHILD_EXIT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            child.kill()
            _, stderr = child.communicate()
            outcome["stderr"] = stderr + "\n[killed: did not exit after its stdin was closed]"


def test_test_message_sets_every_field_to_distinct_non_default_values(ros_interfaces):
    from graspnet_edge_ros.msg import Grasp, GraspArray

    sent = build_grasp_array()
    default_twin = GraspArray(grasps=[Grasp() for _ in sent.grasps])
    sent_leaves, default_leaves = leaf_values(sent), leaf_values(default_twin)
    left_at_default = {path for path, value in sent_leaves.items() if value == default_leaves.get(path)}
    # rank 0 is the best grasp's rank by definition; every other field must carry information.
    assert left_at_default == {"grasps[0].rank"}

    first, second = leaf_values(sent.grasps[0]), leaf_values(sent.grasps[1])
    assert {path for path in first if first[path] == second[path]} == set()


def test_status_constants_have_their_documented_values(ros_interfaces):
    from graspnet_edge_ros.msg import GraspArray

    assert (GraspArray.STATUS_OK, GraspArray.STATUS_NO_VALID_INPUT,
            GraspArray.STATUS_NO_GRASP, GraspArray.STATUS_ERROR) == (0, 1, 2, 3)


def test_grasp_array_published_by_another_process_arrives_with_every_field_intact(ros_context):
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from graspnet_edge_ros.msg import GraspArray

    topic = f"/graspnet_edge_test/grasps_{uuid.uuid4().hex[:8]}"
    received = []
    node = rclpy.create_node("graspnet_edge_test_subscriber", context=ros_context)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(node)
    try:
        node.create_subscription(GraspArray, topic, received.append, latched_qos())
        with child_process("publish", topic) as (publisher, outcome):
            deadline = time.monotonic() + DISCOVERY_TIMEOUT_S
            while not received and publisher.poll() is None and time.monotonic() < deadline:
                executor.spin_once(timeout_sec=0.1)
    finally:
        executor.shutdown()
        node.destroy_node()

    assert received, f"no GraspArray on {topic} within {DISCOVERY_TIMEOUT_S} s; publisher stderr:\n{outcome['stderr']}"
    assert publisher.returncode == 0, outcome["stderr"]
    expected = build_grasp_array()
    assert leaf_values(received[0]) == leaf_values(expected)
    assert received[0] == expected  # the generated __eq__ covers anything the flattening could miss


def test_detect_grasps_service_answers_from_another_process(ros_context):
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from graspnet_edge_ros.msg import GraspArray
    from graspnet_edge_ros.srv import DetectGrasps

    service_name = f"/graspnet_edge_test/detect_grasps_{uuid.uuid4().hex[:8]}"
    node = rclpy.create_node("graspnet_edge_test_client", context=ros_context)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(node)
    client = node.create_client(DetectGrasps, service_name)
    responses = {}
    try:
        with child_process("serve", service_name) as (server, outcome):
            deadline = time.monotonic() + DISCOVERY_TIMEOUT_S
            while (not client.wait_for_service(timeout_sec=0.1) and server.poll() is None
                   and time.monotonic() < deadline):
                pass
            if client.service_is_ready():
                for max_grasps, timeout_s in ((3, 1.5), (0, 0.0)):
                    future = client.call_async(DetectGrasps.Request(max_grasps=max_grasps, timeout_s=timeout_s))
                    executor.spin_until_future_complete(future, timeout_sec=DISCOVERY_TIMEOUT_S)
                    responses[max_grasps] = future.result()
    finally:
        executor.shutdown()
        node.destroy_node()

    assert responses, f"service {service_name} never became available; server stderr:\n{outcome['stderr']}"
    assert server.returncode == 0, outcome["stderr"]
    asked_three, asked_default = responses[3], responses[0]
    assert asked_three is not None and asked_default is not None, "a request got no response in time"
    assert asked_three.success and asked_three.message == "3 grasps, timeout 1.5 s"
    assert asked_default.message == f"{SERVER_DEFAULT_MAX_GRASPS} grasps, timeout 0 s"
    assert [grasp.rank for grasp in asked_three.result.grasps] == [0, 1, 2]
    assert len(asked_default.result.grasps) == SERVER_DEFAULT_MAX_GRASPS
    assert asked_three.result.status == GraspArray.STATUS_OK
    assert asked_three.result.header.frame_id == "camera_color_optical_frame"
    assert asked_three.result.grasps[2] == build_grasp(2)


def test_importing_the_core_pulls_in_neither_rclpy_nor_torch():
    probe = ("import sys, graspnet_edge_ros, graspnet_edge_ros.grasps; "
             "heavy = sorted({'rclpy', 'torch'} & set(sys.modules)); "
             "assert not heavy, f'imported: {heavy}'")
    run = subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr


# Top-level modules only the ROS layer (graspnet_edge_ros/ros/) may import.
ROS_ONLY_MODULES = {"rclpy", "rosidl_runtime_py", "message_filters", "tf2_ros", "tf2_py", "cv_bridge",
                    "sensor_msgs_py", "launch", "launch_ros", "builtin_interfaces", "rosgraph_msgs"}
ROS_ONLY_SUBPACKAGES = ("graspnet_edge_ros.msg", "graspnet_edge_ros.srv", "graspnet_edge_ros.ros")


def imported_module_names(source_file: Path, root: Path = REPO_ROOT) -> set:
    """Absolute names of every module the file under `root` imports, relative imports resolved."""
    package_parts = list(source_file.relative_to(root).parent.parts)
    names = set()
    for node in ast.walk(ast.parse(source_file.read_text(), filename=str(source_file))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package_parts[:len(package_parts) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def is_ros_only(module_name: str) -> bool:
    top = module_name.split(".")[0]
    return (top in ROS_ONLY_MODULES or top.endswith(("_msgs", "_srvs", "_interfaces"))
            or any(module_name == sub or module_name.startswith(sub + ".") for sub in ROS_ONLY_SUBPACKAGES))


def test_no_module_outside_the_ros_layer_imports_ros():
    package_dir = REPO_ROOT / "graspnet_edge_ros"
    core_files = [path for path in sorted(package_dir.rglob("*.py"))
                  if path.relative_to(package_dir).parts[0] != "ros"]
    offenders = {str(path.relative_to(REPO_ROOT)): sorted(filter(is_ros_only, imported_module_names(path)))
                 for path in core_files}
    assert {path: names for path, names in offenders.items() if names} == {}


def test_import_scan_sees_ros_imports_in_every_form(tmp_path):
    # The scan above passes trivially if it misses an import form; check it on known offenders.
    package = tmp_path / "graspnet_edge_ros" / "geometry"
    package.mkdir(parents=True)
    offender = package / "frames.py"
    offender.write_text("import numpy\nimport rclpy.node\nfrom geometry_msgs.msg import Pose\n"
                        "from ..msg import Grasp\nfrom .. import ros\ndef f():\n    import tf2_ros\n")
    flagged = sorted(filter(is_ros_only, imported_module_names(offender, root=tmp_path)))
    assert flagged == ["geometry_msgs.msg", "geometry_msgs.msg.Pose", "graspnet_edge_ros.msg",
                       "graspnet_edge_ros.msg.Grasp", "graspnet_edge_ros.ros", "rclpy.node", "tf2_ros"]


# ---- child-process side ---------------------------------------------------------------------------

def wait_for_stdin_eof() -> threading.Event:
    """An event set when the parent closes our stdin (or dies), so the child never outlives it."""
    closed = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), closed.set()), daemon=True).start()
    return closed


def run_publisher(topic: str) -> int:
    import rclpy
    from graspnet_edge_ros.msg import GraspArray

    rclpy.init()
    node = rclpy.create_node("graspnet_edge_test_publisher")
    publisher = node.create_publisher(GraspArray, topic, latched_qos())
    deadline = time.monotonic() + DISCOVERY_TIMEOUT_S
    while publisher.get_subscription_count() == 0:
        if time.monotonic() > deadline:
            print(f"publisher: no subscriber on {topic} within {DISCOVERY_TIMEOUT_S} s", file=sys.stderr)
            return 1
        rclpy.spin_once(node, timeout_sec=0.05)
    publisher.publish(build_grasp_array())
    # Stay until the parent has the message: the latched sample lives only as long as we do.
    wait_for_stdin_eof().wait()
    node.destroy_node()
    rclpy.shutdown()
    return 0


def run_server(service_name: str) -> int:
    import rclpy
    from graspnet_edge_ros.msg import GraspArray
    from graspnet_edge_ros.srv import DetectGrasps

    def detect(request, response):
        count = request.max_grasps or SERVER_DEFAULT_MAX_GRASPS
        response.result.header.frame_id = "camera_color_optical_frame"
        response.result.grasps = [build_grasp(index) for index in range(count)]
        response.result.status = GraspArray.STATUS_OK
        response.success = True
        response.message = f"{count} grasps, timeout {request.timeout_s:g} s"
        return response

    rclpy.init()
    node = rclpy.create_node("graspnet_edge_test_server")
    node.create_service(DetectGrasps, service_name, detect)
    parent_done = wait_for_stdin_eof()
    while not parent_done.is_set():
        rclpy.spin_once(node, timeout_sec=0.1)
    node.destroy_node()
    rclpy.shutdown()
    return 0


if __name__ == "__main__":
    role, name = sys.argv[1], sys.argv[2]
    sys.exit({"publish": run_publisher, "serve": run_server}[role](name))


# The command-line front ends: only other front ends may import them (library code raises typed
# errors and takes its file readers from graspnet_edge_ros.files).
CLI_MODULES = {"graspnet_edge_ros.cli"}
CLI_FRONT_ENDS = {"graspnet_edge_ros/cli.py", "graspnet_edge_ros/ros/replay_cli.py", "graspnet_edge_ros/sim/cli.py"}


def test_no_library_module_imports_the_cli():
    package_dir = REPO_ROOT / "graspnet_edge_ros"
    offenders = {}
    for path in sorted(package_dir.rglob("*.py")):
        relative = str(path.relative_to(REPO_ROOT))
        if relative in CLI_FRONT_ENDS:
            continue
        names = {name for name in imported_module_names(path)
                 if any(name == cli or name.startswith(cli + ".") for cli in CLI_MODULES)}
        if names:
            offenders[relative] = sorted(names)
    assert offenders == {}


# Import layers of the package, lowest first (README, "Repository layout"): a module may import its
# own layer and the layers listed after "may import"; anything else is an upward import. Patterns
# are paths under graspnet_edge_ros/ (fnmatch), the first match wins. The format table names
# backend classes and exporters as strings, imported on use: a plug-in table, not an import.
IMPORT_LAYERS = (
    ("foundation", ("__init__.py", "thread_pools.py", "errors.py", "status.py", "timing.py", "digest.py", "compat.py",
                    "dependencies.py", "cdr.py", "topics.py", "grasps.py", "config.py", "contract.py", "formats.py", "memory.py",
                    "model/config.py", "planar/types.py", "planar/formats.py"), ()),
    ("geometry", ("geometry/*", "model/views.py", "camera.py"), ("foundation",)),
    ("backends", ("backends/*",), ("foundation",)),
    ("runtime", ("runtime/*", "planar/preprocess.py", "planar/decode.py", "planar/runner.py"),
     ("foundation", "geometry", "backends")),
    ("model", ("model/*", "planar/grconvnet.py", "planar/affga.py", "planar/legacy_pickle.py"),
     ("foundation", "geometry")),
    ("export", ("export/*", "planar/export.py"), ("foundation", "geometry", "backends", "model")),
    ("stages", ("postprocess/*", "support_plane.py", "targeting.py", "poses.py", "files.py", "visualization.py",
                "planar/lifting.py", "planar/__init__.py"), ("foundation", "geometry")),
    ("pipeline", ("candidates.py", "pipeline.py", "warmup.py"), ("foundation", "geometry", "backends", "runtime", "stages")),
    ("apps", ("cli.py", "quantize.py", "ros/*", "x5/*", "sim/*", "train/*"),
     ("foundation", "geometry", "backends", "runtime", "model", "export", "stages", "pipeline")),
)


def import_layer(relative_path: str) -> str:
    """Layer of a file given by its path under graspnet_edge_ros/."""
    import fnmatch

    for name, patterns, _ in IMPORT_LAYERS:
        if any(fnmatch.fnmatch(relative_path, pattern) for pattern in patterns):
            return name
    raise AssertionError(f"graspnet_edge_ros/{relative_path} is in no import layer: add it to IMPORT_LAYERS")


def package_modules(package_dir: Path) -> dict:
    """{dotted module name: path under the package} for every module of the package."""
    modules = {}
    for path in package_dir.rglob("*.py"):
        relative = path.relative_to(package_dir)
        parts = [package_dir.name, *relative.parts[:-1]] + ([] if path.name == "__init__.py" else [path.stem])
        modules[".".join(parts)] = str(relative)
    return modules


def upward_imports(source_file: Path, root: Path, modules: dict) -> list:
    """["<imported module> (<its layer>)", ...] that the file's layer may not import (every import form,
    function-local ones and literal importlib.import_module/__import__ calls included)."""
    layer = import_layer(str(source_file.relative_to(root / "graspnet_edge_ros")))
    allowed = {layer, *next(may for name, _, may in IMPORT_LAYERS if name == layer)}
    offences = set()
    for name in imported_module_names(source_file, root) | literal_dynamic_imports(source_file):
        parts = name.split(".")
        # The module itself, or for "from package import name" the package: the longest known prefix.
        target = next((".".join(parts[:n]) for n in range(len(parts), 0, -1) if ".".join(parts[:n]) in modules), None)
        if target is not None and import_layer(modules[target]) not in allowed:
            offences.add(f"{target} ({import_layer(modules[target])})")
    return sorted(offences)


def literal_dynamic_imports(source_file: Path) -> set:
    names = set()
    for node in ast.walk(ast.parse(source_file.read_text(), filename=str(source_file))):
        if (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
                and (getattr(node.func, "attr", None) == "import_module" or getattr(node.func, "id", None) == "__import__")):
            names.add(node.args[0].value)
    return names


def test_imports_flow_one_way_through_the_layers():
    package_dir = REPO_ROOT / "graspnet_edge_ros"
    modules = package_modules(package_dir)
    offenders = {}
    for path in sorted(package_dir.rglob("*.py")):
        offences = upward_imports(path, REPO_ROOT, modules)
        if offences:
            offenders[f"{path.relative_to(REPO_ROOT)} ({import_layer(str(path.relative_to(package_dir)))})"] = offences
    assert offenders == {}


def test_the_layer_check_catches_an_upward_import(tmp_path):
    """Canary: a runtime module that reaches up into the exporter, model and pipeline in three forms."""
    modules = package_modules(REPO_ROOT / "graspnet_edge_ros")
    canary = tmp_path / "graspnet_edge_ros" / "runtime" / "canary.py"
    canary.parent.mkdir(parents=True)
    canary.write_text("import importlib\n\nfrom graspnet_edge_ros.contract import SplitManifest\n\n\n"
                      "def load():\n    from ..export import onnx_export\n"
                      "    import graspnet_edge_ros.model.checkpoint\n"
                      "    return importlib.import_module('graspnet_edge_ros.pipeline')\n")
    assert upward_imports(canary, tmp_path, modules) == [
        "graspnet_edge_ros.export (export)", "graspnet_edge_ros.export.onnx_export (export)", "graspnet_edge_ros.model.checkpoint (model)",
        "graspnet_edge_ros.pipeline (pipeline)"]
    # The same file one layer up (export) may import the model, not the pipeline.
    moved = tmp_path / "graspnet_edge_ros" / "export" / "canary.py"
    moved.parent.mkdir(parents=True)
    moved.write_text(canary.read_text())
    assert upward_imports(moved, tmp_path, modules) == ["graspnet_edge_ros.pipeline (pipeline)"]
