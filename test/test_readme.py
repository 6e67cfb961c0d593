"""The README stays true where it can be checked mechanically."""
import importlib.util
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
README = (REPO_ROOT / "README.md").read_text()


def test_parameter_table_matches_the_declared_parameters():
    spec = importlib.util.spec_from_file_location("parameter_table", REPO_ROOT / "scripts" / "parameter_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    start = README.index("<!-- parameters:begin")
    table = README[README.index("\n", start) + 1:README.index("<!-- parameters:end -->")].strip()
    assert table == module.markdown(), "README parameter table is stale: run scripts/parameter_table.py"


def test_readme_names_the_two_commands_and_ci_runs_the_test_command():
    assert "make demo" in README and "make test" in README
    ci = (REPO_ROOT / ".ci" / "run").read_text()
    assert "make test" in ci
