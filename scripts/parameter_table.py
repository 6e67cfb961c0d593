"""Print the node's parameter table as Markdown (pasted into README.md; test_readme.py checks it)."""
from graspnet_edge_ros.ros.params import RESTART_REQUIRED, parameter_table


def _value(default) -> str:
    if isinstance(default, bool):
        return "true" if default else "false"
    if isinstance(default, tuple):
        return "[" + ", ".join(f"{v:g}" for v in default) + "]"
    if isinstance(default, str):
        return f'"{default}"'
    return f"{default:g}" if isinstance(default, float) else str(default)


def markdown() -> str:
    lines = ["| parameter | type | default | meaning |", "|---|---|---|---|"]
    for name, (default, kind, description) in parameter_table().items():
        restart = " *(restart)*" if name in RESTART_REQUIRED else ""
        text = description.replace("|", "\\|")  # a bare | would split the Markdown cell
        lines.append(f"| `{name}` | {kind} | `{_value(default)}` | {text}{restart} |")
    return "\n".join(lines)


def bounds_markdown() -> str:
    """The accepted range of every bounded numeric parameter (README "Failure behaviour")."""
    from graspnet_edge_ros.config import ARRAY_ELEMENT_BOUNDS, format_bound
    from graspnet_edge_ros.ros.params import all_bounds

    lines = ["| parameter | accepted range |", "|---|---|"]
    for name, (low, high) in all_bounds().items():
        lines.append(f"| `{name}` | {format_bound(low)} .. {format_bound(high)} |")
    for name, (low, high) in ARRAY_ELEMENT_BOUNDS.items():
        lines.append(f"| `{name}` (each value) | {format_bound(low)} .. {format_bound(high)} |")
    return "\n".join(lines)


if __name__ == "__main__":
    import sys

    print(bounds_markdown() if sys.argv[1:] == ["--bounds"] else markdown())
