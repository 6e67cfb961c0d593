"""package.xml is rosdep-complete: every third-party module the node, the runtimes and the CLI import
is declared there (rosdep key) or in requirements-robot.txt; a missing one is one line at start.

The import graph is walked statically (``ast``) from the node, every backend of the format table,
the runtime, the CLIs and the launch files, following the package's own modules and collecting
every import, top-level or inside a function (a lazily imported runtime is still a dependency),
plus the literal names given to ``importlib.import_module``.
"""
import ast
import os
import re
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from graspnet_edge_ros import dependencies

REPO_ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "graspnet_edge_ros"
ROOT_MODULES = (
    "graspnet_edge_ros.ros.node", "graspnet_edge_ros.runtime.split", "graspnet_edge_ros.runtime.graspnet_runner",
    "graspnet_edge_ros.pipeline", "graspnet_edge_ros.cli", "graspnet_edge_ros.ros.replay_cli",
    "graspnet_edge_ros.x5.cli", "graspnet_edge_ros.ros.launch_support", "graspnet_edge_ros.dependencies",
)
# rosdep keys of Python libraries -> the module they provide (ROS packages: key = module).
KEY_MODULES = {
    "python3-numpy": "numpy", "python3-scipy": "scipy", "python3-yaml": "yaml", "python3-pil": "PIL",
    "python3-numba": "numba", "python3-tqdm": "tqdm", "python3-torch": "torch", "python3-skimage": "skimage",
    "python3-pytest": "pytest", "python3-pytest-timeout": "pytest_timeout",
}
# Build-only keys and ROS meta packages that provide no Python module of their own.
NON_MODULE_KEYS = {"ament_cmake", "ament_cmake_python", "rosidl_default_generators", "rosidl_default_runtime",
                   "ament_cmake_pytest", "ros2launch"}
# Distribution names in requirements-robot.txt -> modules.
DISTRIBUTION_MODULES = {"onnxruntime": ["onnxruntime"], "pybullet": ["pybullet", "pybullet_data"]}


def package_xml_keys(path: Path = REPO_ROOT / "package.xml") -> dict[str, set[str]]:
    """{"run": keys a robot gets, "test": test-only keys}."""
    root = ET.parse(path).getroot()
    run = {e.text.strip() for tag in ("depend", "exec_depend", "build_export_depend") for e in root.iter(tag)}
    test = {e.text.strip() for e in root.iter("test_depend")}
    return {"run": run, "test": test}


def requirements_robot(path: Path = REPO_ROOT / "requirements-robot.txt") -> dict[str, set[str]]:
    """{"required": modules, "optional": modules, "board": modules} declared in requirements-robot.txt."""
    declared = {"required": set(), "optional": set(), "board": set()}
    for line in path.read_text().splitlines():
        line = line.strip()
        tagged = re.match(r"#\s*(optional|board):\s*([A-Za-z0-9_.-]+)", line)
        if tagged:
            declared[tagged.group(1)].add(tagged.group(2))
        elif line and not line.startswith("#"):
            name = re.split(r"[<>=!~\[; ]", line, maxsplit=1)[0]
            declared["required"].update(DISTRIBUTION_MODULES.get(name, [name]))
    return declared


def declared_modules(keys: set[str]) -> set[str]:
    return {KEY_MODULES.get(key, key) for key in keys if key not in NON_MODULE_KEYS}


def _module_file(name: str) -> Path | None:
    path = REPO_ROOT.joinpath(*name.split("."))
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    if path.with_suffix(".py").is_file():
        return path.with_suffix(".py")
    return None


def _imports(path: Path, module: str):
    """(imported module name, line) of every import in ``path``, anywhere in the file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module
            yield name, node.lineno
            for alias in node.names:  # `from package import submodule`
                yield f"{name}.{alias.name}", node.lineno
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            yield node.args[0].value, node.lineno


def backend_modules() -> tuple[str, ...]:
    """The backend modules of the format table (loaded by name at run time, so not imported statically)."""
    from graspnet_edge_ros.backends.registry import FORMATS

    return tuple(fmt.class_path.split(":")[0] for fmt in FORMATS)


def third_party_imports(roots=None, extra_files=()) -> dict[str, list[str]]:
    """{top-level third-party module: ["module:line", ...]} reachable from ``roots`` (default: the
    node, the runtime, the CLIs and every backend of the format table)."""
    roots = ROOT_MODULES + backend_modules() if roots is None else roots
    found: dict[str, list[str]] = {}
    seen: set[str] = set()
    pending = [(name, _module_file(name)) for name in roots] + [(f"<{p.name}>", p) for p in extra_files]
    while pending:
        module, path = pending.pop()
        if module in seen or path is None:
            continue
        seen.add(module)
        parts = module.split(".")
        pending += [(".".join(parts[:i]), _module_file(".".join(parts[:i]))) for i in range(1, len(parts))]
        for name, line in _imports(path, module):
            top = name.split(".")[0]
            if top == PACKAGE:
                if _module_file(name) is not None:
                    pending.append((name, _module_file(name)))
            elif top not in sys.stdlib_module_names and top != "__future__":
                found.setdefault(top, []).append(f"{module}:{line}")
    return found


def undeclared(found: dict, keys: dict, robot: dict) -> dict:
    allowed = (declared_modules(keys["run"]) | robot["required"] | robot["optional"] | robot["board"])
    return {module: where[:3] for module, where in found.items() if module not in allowed}


@pytest.fixture(scope="module")
def found():
    imports = third_party_imports(extra_files=sorted((REPO_ROOT / "launch").glob("*.launch.py")))
    # The walk sees what matters (a sanity check of the walker itself, not of the declarations).
    assert {"numpy", "scipy", "numba", "rclpy", "yaml", "onnxruntime", "torch", "launch_ros", "tf2_ros",
            "tf2_msgs", "message_filters", "hbm_runtime"} <= set(imports), sorted(imports)
    return imports


def test_every_import_of_the_node_runtime_and_cli_is_declared(found):
    missing = undeclared(found, package_xml_keys(), requirements_robot())
    assert not missing, f"declare these in package.xml (rosdep key) or requirements-robot.txt: {missing}"


def test_removing_any_declaration_is_caught(found, tmp_path):
    """The check is not vacuous: dropping one key of package.xml or one line of requirements-robot.txt fails it."""
    keys, robot = package_xml_keys(), requirements_robot()
    for key in sorted(keys["run"] - NON_MODULE_KEYS):
        module = KEY_MODULES.get(key, key)
        if module not in found:
            continue
        reduced = {"run": keys["run"] - {key}, "test": keys["test"]}
        assert module in undeclared(found, reduced, robot), key
    text = (REPO_ROOT / "package.xml").read_text()
    without_numba = tmp_path / "package.xml"
    without_numba.write_text(text.replace("<exec_depend>python3-numba</exec_depend>", ""))
    assert "numba" in undeclared(found, package_xml_keys(without_numba), robot)
    without_ort = tmp_path / "requirements-robot.txt"
    without_ort.write_text(re.sub(r"(?m)^onnxruntime.*$", "", (REPO_ROOT / "requirements-robot.txt").read_text()))
    assert "onnxruntime" in undeclared(found, keys, requirements_robot(without_ort))


def test_keys_are_rosdep_keys_and_robot_requirements_are_not_in_package_xml():
    keys = package_xml_keys()
    python_keys = {key for key in keys["run"] | keys["test"] if key.startswith("python3-")}
    assert python_keys <= set(KEY_MODULES), python_keys - set(KEY_MODULES)
    assert not any(key.endswith("-pip") for key in python_keys)  # never `sudo pip` through rosdep
    assert {"python3-numpy", "python3-scipy", "python3-yaml", "python3-pil", "python3-numba", "python3-tqdm",
            "rclpy", "tf2_ros", "tf2_msgs", "message_filters", "launch_ros"} <= keys["run"]
    robot = requirements_robot()
    assert robot["required"] == {"onnxruntime"}
    assert {"torch", "onnx", "rosbags"} <= robot["optional"] and {"hbm_runtime", "hobot_dnn"} <= robot["board"]


def test_install_hints_agree_with_the_declarations(found):
    keys, robot = package_xml_keys(), requirements_robot()
    assert set(dependencies.APT_MODULES.values()) <= keys["run"]
    assert set(dependencies.PIP_MODULES) <= robot["required"] | robot["optional"]
    assert set(dependencies.BOARD_MODULES) == robot["board"]
    assert dependencies.ROS_MODULES <= declared_modules(keys["run"])
    for module in found:  # whatever is missing on a robot, the node says how to install it
        assert dependencies.install_hint(module), module
    assert "sudo apt install python3-numba" in dependencies.install_hint("numba")
    assert dependencies.install_hint("onnxruntime").startswith("pip install onnxruntime")


def test_test_suite_imports_are_test_dependencies_or_dev_requirements():
    """What the tests import comes from package.xml (run or test) or the dev pins in requirements.txt."""
    keys = package_xml_keys()
    renamed = {"scikit_image": "skimage", "pillow": "PIL", "pyyaml": "yaml", "mcap_ros2_support": "mcap_ros2"}
    pinned = set()
    for line in (REPO_ROOT / "requirements.txt").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name = re.split(r"[<>=!~\[; ]", line.strip(), maxsplit=1)[0].replace("-", "_").lower()
            pinned.add(renamed.get(name, name))
    local = ({p.stem for p in (REPO_ROOT / "test").rglob("*.py")} | {p.stem for p in (REPO_ROOT / "scripts").glob("*.py")}
             | {p.name for p in (REPO_ROOT / "test" / "fakes").iterdir()})
    allowed = declared_modules(keys["run"] | keys["test"]) | pinned | local
    modules = {}
    for path in sorted((REPO_ROOT / "test").glob("*.py")):
        for name, line in _imports(path, path.stem):
            top = name.split(".")[0]
            if top not in sys.stdlib_module_names and top not in (PACKAGE, "__future__") and top not in allowed:
                modules.setdefault(top, []).append(f"{path.name}:{line}")
    assert not modules, modules


# ------------------------------------------------------------- one line for a missing package
BLOCKER = textwrap.dedent("""\
    import os
    import sys

    class _Blocker:
        blocked = set(os.environ.get("GRASPNET_EDGE_TEST_BLOCK", "").split(","))

        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in self.blocked:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, _Blocker())
    """)


def run_blocked(command, blocked: str, tmp_path, **kwargs):
    """Run ``command`` with ``blocked`` made unimportable (a sitecustomize on PYTHONPATH)."""
    site = tmp_path / "blocker"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(BLOCKER)
    env = dict(os.environ, GRASPNET_EDGE_TEST_BLOCK=blocked,
               PYTHONPATH=os.pathsep.join(filter(None, [str(site), str(REPO_ROOT), os.environ.get("PYTHONPATH")])))
    done = subprocess.run([str(c) for c in command], env=env, capture_output=True, text=True, timeout=180,
                          cwd=REPO_ROOT, **kwargs)
    return done.returncode, (done.stdout + done.stderr).strip()


def assert_one_line(code: int, output: str, *fragments: str):
    assert code == 1 and "Traceback" not in output, output
    lines = [line for line in output.splitlines() if "missing Python package" in line or "cannot start" in line]
    assert len(lines) == 1, output
    for fragment in fragments:
        assert fragment in lines[0], output


@pytest.mark.parametrize("blocked, fragments", [
    ("numba", ("'numba'", "sudo apt install python3-numba", "rosdep install")),
    ("numpy", ("'numpy'", "sudo apt install python3-numpy")),
    ("rclpy", ("'rclpy'", "ros-")),
])
def test_node_entry_with_a_missing_package_is_one_line(ros_interfaces, blocked, fragments, tmp_path):
    code, output = run_blocked([sys.executable, "-m", "graspnet_edge_ros.ros.node", "--ros-args",
                                "-p", "model_path:=/nonexistent"], blocked, tmp_path)
    assert_one_line(code, output, *fragments)


def test_installed_launcher_with_a_missing_package_is_one_line(ros_interfaces, tmp_path):
    from conftest import install_space

    launcher = install_space() / PACKAGE / "lib" / PACKAGE / "graspnet_edge_node"
    if not launcher.is_file():
        pytest.skip("no install space: run scripts/setup_env.sh")
    if "missing_dependency_message" not in launcher.read_text():
        pytest.fail("the installed launcher is stale: run scripts/setup_env.sh")
    code, output = run_blocked([launcher, "--ros-args", "-p", "model_path:=/nonexistent"], "numba", tmp_path)
    assert_one_line(code, output, "'numba'", "sudo apt install python3-numba")


def test_missing_onnxruntime_names_the_pip_package(ros_interfaces, split_model_dir, tmp_path):
    code, output = run_blocked([sys.executable, "-m", "graspnet_edge_ros.ros.node", "--ros-args",
                                "-p", f"model_path:={split_model_dir}"], "onnxruntime", tmp_path)
    assert_one_line(code, output, "onnxruntime", "pip install onnxruntime")
