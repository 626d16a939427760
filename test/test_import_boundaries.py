"""core/, rl/, data/ and training/ must run without ROS: no rclpy, no message package, directly or not."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "reward_model_ros"
ROS_ONLY = (
    "rclpy",
    "rosidl_runtime_py",
    "rosidl_parser",
    "ament_index_python",
    "launch",
    "launch_ros",
    "rosbag2_py",
    "cv_bridge",
    "message_filters",
    "tf2_ros",
    "builtin_interfaces",
    "rcl_interfaces",
)


def forbidden(module: str) -> bool:
    top = module.split(".")[0]
    return top in ROS_ONLY or top.endswith("_msgs") or top.endswith("_srvs")


def direct_imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return [(line, m) for line, m in found if forbidden(m)]


def modules_under(root: Path, package: str) -> list[str]:
    names = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        names.append(".".join([package.split(".")[0], *parts]))
    return names


# Imports every module given on the command line with ROS imports made impossible, then
# prints the offending module names (the chain is in the traceback).
BLOCKER = textwrap.dedent(
    """
    import importlib, importlib.abc, sys
    ROS_ONLY = %r
    def forbidden(name):
        top = name.split(".")[0]
        return top in ROS_ONLY or top.endswith("_msgs") or top.endswith("_srvs")
    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if forbidden(name):
                raise ImportError("ROS import blocked: " + name)
    sys.meta_path.insert(0, Block())
    bad = []
    for mod in sys.argv[1:]:
        try:
            importlib.import_module(mod)
        except ImportError as exc:
            bad.append(mod + ": " + str(exc))
    print("\\n".join(bad))
    sys.exit(1 if bad else 0)
    """
) % (ROS_ONLY,)


def run_blocked_import(modules: list[str], extra_path: Path | None = None):
    cmd = [sys.executable, "-c", BLOCKER, *modules]
    env = None
    if extra_path is not None:
        import os

        env = dict(os.environ, PYTHONPATH=f"{extra_path}:{os.environ.get('PYTHONPATH', '')}")
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)


@pytest.mark.parametrize("sub", ["core", "rl", "data", "training"])
def test_no_ros_import_in_source(sub):
    offenders = [
        f"{p.relative_to(SRC)}:{line} imports {m}"
        for p in sorted((SRC / sub).rglob("*.py"))
        for line, m in direct_imports(p)
    ]
    assert not offenders, offenders


def test_core_and_rl_import_with_ros_blocked():
    """Catches indirect imports too (core -> some helper -> rclpy)."""
    modules = [
        m for sub in ("core", "rl", "data", "training") for m in modules_under(SRC / sub, "reward_model_ros")
    ]
    assert {
        "reward_model_ros.core",
        "reward_model_ros.rl",
        "reward_model_ros.data",
        "reward_model_ros.training",
    } <= set(modules)
    out = run_blocked_import(modules)
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_checks_catch_a_violation(tmp_path):
    """Both checks fail on a package whose module imports a message package indirectly."""
    pkg = tmp_path / "fakepkg" / "core"
    pkg.mkdir(parents=True)
    (tmp_path / "fakepkg" / "__init__.py").write_text("")
    (tmp_path / "fakepkg" / "helper.py").write_text("from std_msgs.msg import Header\n")
    (pkg / "__init__.py").write_text("")
    (pkg / "direct.py").write_text("import rclpy\n")
    (pkg / "indirect.py").write_text("from fakepkg import helper\n")
    assert [m for _, m in direct_imports(pkg / "direct.py")] == ["rclpy"]
    out = run_blocked_import(["fakepkg.core.indirect"], extra_path=tmp_path)
    assert out.returncode == 1 and "std_msgs" in out.stdout, out.stdout + out.stderr
