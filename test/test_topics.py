"""Constants written once, and typed errors on runtime paths.

* The node's default topic names live in graspnet_edge_ros/topics.py only: no other module,
  launch file, benchmark or script spells them out again (docstrings may mention them), and the
  config files (YAML cannot import them) hold the same values.
* No module of the package raises a bare ValueError/KeyError/TypeError that leaves it: bad
  input and bad parameters raise the typed errors of errors.py (InputError and ConfigError are
  ValueErrors too, so callers catching ValueError keep working).
"""
import ast
from pathlib import Path

import yaml

from graspnet_edge_ros import topics
from graspnet_edge_ros.errors import ConfigError, GraspNetEdgeError, InputError, ModelFormatError, ReplayError

REPO_ROOT = Path(__file__).resolve().parent.parent
PACKAGE_DIR = REPO_ROOT / "graspnet_edge_ros"
TOPIC_NAMES = {"color_topic": topics.COLOR_TOPIC, "depth_topic": topics.DEPTH_TOPIC,
               "camera_info_topic": topics.CAMERA_INFO_TOPIC}
BARE_ERRORS = {"ValueError", "KeyError", "TypeError"}
# Helpers whose bare error is control flow caught by their caller, never seen outside the module.
CAUGHT_BY_THE_CALLER = {("config.py", "_as_int")}


def python_sources():
    for pattern, root in (("**/*.py", PACKAGE_DIR), ("*.py", REPO_ROOT / "launch"),
                          ("**/*.py", REPO_ROOT / "benchmarks"), ("**/*.py", REPO_ROOT / "scripts")):
        yield from sorted(root.glob(pattern))


def docstring_nodes(tree) -> set:
    nodes = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                nodes.add(id(first.value))
    return nodes


def test_default_topic_names_are_written_only_in_topics_py():
    offenders = []
    for path in python_sources():
        if path == PACKAGE_DIR / "topics.py":
            continue
        tree = ast.parse(path.read_text(), str(path))
        docstrings = docstring_nodes(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                offenders += [f"{path.relative_to(REPO_ROOT)}:{node.lineno}: {name!r}"
                              for name in topics.INPUT_TOPICS if name in node.value]
    assert not offenders, "use graspnet_edge_ros.topics instead of:\n" + "\n".join(offenders)


def test_derived_topic_names_follow_topics_py():
    from graspnet_edge_ros.ros import bags, replay
    from graspnet_edge_ros.ros.params import NodeSettings
    from graspnet_edge_ros.x5.frames import DEFAULT_TOPICS

    settings = NodeSettings()
    assert (settings.color_topic, settings.depth_topic, settings.camera_info_topic) == topics.INPUT_TOPICS
    assert not any(name.startswith("/") for name in topics.INPUT_TOPICS)  # relative: in the node's namespace
    absolute = tuple("/" + name for name in topics.INPUT_TOPICS)
    assert (bags.COLOR_TOPIC, bags.DEPTH_TOPIC, bags.INFO_TOPIC) == absolute
    assert (DEFAULT_TOPICS["color"], DEFAULT_TOPICS["depth"], DEFAULT_TOPICS["info"]) == absolute
    assert replay.DEFAULT_FRAME_TOPIC == bags.COLOR_TOPIC
    assert set(replay.output_topics("n", "/arm")) == {"/arm/n/grasps", "/arm/n/markers", "/diagnostics"}


def test_config_files_use_the_default_topic_names():
    """YAML cannot import the constants: the shipped parameter files must hold the same names."""
    def topic_entries(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key in TOPIC_NAMES:
                    yield key, value
                else:
                    yield from topic_entries(value)

    for path in sorted((REPO_ROOT / "config").glob("*.yaml")):
        entries = list(topic_entries(yaml.safe_load(path.read_text())))
        assert {key for key, _ in entries} == set(TOPIC_NAMES), path.name
        for key, value in entries:
            assert value == TOPIC_NAMES[key], f"{path.name}: {key} is {value!r}, topics.py says {TOPIC_NAMES[key]!r}"


def _caught_locally(raise_node, parents, name: str) -> bool:
    """True when ``raise_node`` sits in the body of a try whose handlers catch ``name``."""
    node = raise_node
    while node in parents:
        parent = parents[node]
        if isinstance(parent, ast.Try) and node in parent.body:
            for handler in parent.handlers:
                caught = handler.type
                names = {e.id for e in (caught.elts if isinstance(caught, ast.Tuple) else [caught])
                         if isinstance(e, ast.Name)} if caught is not None else BARE_ERRORS
                if name in names:
                    return True
        node = parent
    return False


def test_the_package_raises_typed_errors_not_bare_value_key_or_type_errors():
    offenders = []
    for path in sorted(PACKAGE_DIR.glob("**/*.py")):
        tree = ast.parse(path.read_text(), str(path))
        parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
        for node in ast.walk(tree):
            if not isinstance(node, ast.Raise) or node.exc is None:
                continue
            exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            name = exc.id if isinstance(exc, ast.Name) else None
            if name not in BARE_ERRORS or _caught_locally(node, parents, name):
                continue
            function = node
            while function in parents and not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                function = parents[function]
            if (path.name, getattr(function, "name", "")) not in CAUGHT_BY_THE_CALLER:
                offenders.append(f"{path.relative_to(REPO_ROOT)}:{node.lineno}: raise {name}")
    assert not offenders, "raise a typed error from graspnet_edge_ros/errors.py instead:\n" + "\n".join(offenders)


def test_bad_value_errors_are_value_errors_in_one_tree():
    for error in (InputError, ConfigError):
        assert issubclass(error, GraspNetEdgeError) and issubclass(error, ValueError)
    # a model or a replay failing is not a bad argument
    assert not issubclass(ModelFormatError, ValueError) and not issubclass(ReplayError, ValueError)
    assert issubclass(ReplayError, GraspNetEdgeError)
