"""Launch files: static check everywhere; loaded by `launch` where it is installed."""

from __future__ import annotations

import importlib.util
import textwrap
from pathlib import Path

import pytest

from reward_model_ros.launch_check import check_launch_file, parse_launch_file, project_packages

ROOT = Path(__file__).resolve().parents[1]
LAUNCH_FILES = sorted((ROOT / "launch").glob("*.launch.py"))


def test_there_are_launch_files():
    assert LAUNCH_FILES


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_file_static_check(path):
    uses = parse_launch_file(path)
    assert uses, f"{path.name} starts no Node"
    assert check_launch_file(path, project_packages(ROOT)) == []


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_file_loads_with_launch(path):
    if importlib.util.find_spec("launch") is None or importlib.util.find_spec("launch_ros") is None:
        pytest.skip("the `launch` package is not installed (venv without a ROS 2 install)")
    from launch.launch_description_sources import get_launch_description_from_python_launch_file

    description = get_launch_description_from_python_launch_file(str(path))
    assert description.entities


# --- the checker finds what it should --------------------------------------------------
def _write(tmp_path: Path, launch: str, yaml_text: str | None = None) -> Path:
    (tmp_path / "launch").mkdir()
    (tmp_path / "config").mkdir()
    (tmp_path / "setup.py").write_text(
        textwrap.dedent("""
        from glob import glob
        NODES = {"interface_echo_node": "reward_model_ros.nodes.interface_echo:main"}
        data_files = [("share/x/config", glob("config/*.yaml"))]
    """)
    )
    if yaml_text is not None:
        (tmp_path / "config" / "p.yaml").write_text(textwrap.dedent(yaml_text))
    path = tmp_path / "launch" / "t.launch.py"
    path.write_text(textwrap.dedent(launch))
    return path


LAUNCH = """
    import os
    from ament_index_python.packages import get_package_share_directory
    from launch_ros.actions import Node
    def generate_launch_description():
        cfg = os.path.join(get_package_share_directory("reward_model_ros"), "config", "p.yaml")
        return [Node(package={pkg!r}, executable={exe!r}, name="echo",
                     parameters=[cfg, {{"threshold": 0.3, {inline!r}: 1}}])]
"""
GOOD_YAML = "echo:\n  ros__parameters:\n    qos_depth: 5\n"


def _check(
    tmp_path, pkg="reward_model_ros", exe="interface_echo_node", inline="qos_depth", yaml_text=GOOD_YAML
):
    path = _write(tmp_path, LAUNCH.format(pkg=pkg, exe=exe, inline=inline), yaml_text)
    return check_launch_file(path, project_packages(tmp_path))


def test_checker_accepts_a_good_file(tmp_path):
    assert _check(tmp_path) == []


def test_checker_finds_unknown_package(tmp_path):
    assert "package 'nope' is unknown" in " ".join(_check(tmp_path, pkg="nope"))


def test_checker_finds_unknown_executable(tmp_path):
    assert "has no executable 'no_node'" in " ".join(_check(tmp_path, exe="no_node"))


def test_checker_finds_undeclared_inline_parameter(tmp_path):
    assert "does not declare parameter 'qos_dept'" in " ".join(_check(tmp_path, inline="qos_dept"))


def test_checker_finds_missing_parameter_file(tmp_path):
    assert "config/p.yaml does not exist" in " ".join(_check(tmp_path, yaml_text=None))


def test_checker_finds_undeclared_parameter_in_file(tmp_path):
    problems = _check(tmp_path, yaml_text="echo:\n  ros__parameters:\n    threshhold: 0.2\n")
    assert problems == ["t.launch.py: p.yaml [echo]: node echo does not declare parameter 'threshhold'"]


def test_checker_finds_a_section_for_no_node(tmp_path):
    problems = _check(tmp_path, yaml_text="ecco:\n  ros__parameters:\n    qos_depth: 5\n")
    assert "p.yaml [ecco]: applies to no node started with this file (nodes: echo)" in problems[0]


def test_checker_finds_a_root_only_section_for_a_namespaced_node(tmp_path):
    launch = LAUNCH.format(pkg="reward_model_ros", exe="interface_echo_node", inline="qos_depth").replace(
        'name="echo",', 'name="echo", namespace=LaunchConfiguration("ns"),'
    )
    path = _write(tmp_path, launch, GOOD_YAML)
    problems = check_launch_file(path, project_packages(tmp_path))
    assert len(problems) == 1 and "applies only to /echo in the root namespace" in problems[0]
    assert "write '/**/echo'" in problems[0]


def test_checker_accepts_wildcard_and_namespaced_sections(tmp_path):
    text = (
        "/**:\n  ros__parameters:\n    qos_depth: 5\n/robot/echo:\n  ros__parameters:\n    threshold: 0.1\n"
    )
    assert _check(tmp_path, yaml_text=text) == []


def test_checker_resolves_launch_configuration_defaults(tmp_path):
    launch = """
        from launch.actions import DeclareLaunchArgument
        from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
        from launch_ros.actions import Node
        from launch_ros.substitutions import FindPackageShare
        def generate_launch_description():
            arg = DeclareLaunchArgument("params", default_value=PathJoinSubstitution(
                [FindPackageShare("reward_model_ros"), "config", "p.yaml"]))
            exe = LaunchConfiguration("exe")
            return [arg, Node(package="reward_model_ros", executable=exe,
                              parameters=[LaunchConfiguration("params")])]
    """
    path = _write(tmp_path, launch, "interface_echo:\n  ros__parameters:\n    bogus: 1\n")
    problems = check_launch_file(path, project_packages(tmp_path))
    assert problems == [
        't.launch.py:10: executable cannot be resolved statically (<unresolved: LaunchConfiguration("exe")>)'
    ]


def test_checker_checks_files_passed_as_arguments_to_external_nodes(tmp_path):
    launch = """
        from launch_ros.actions import Node
        from launch_ros.substitutions import FindPackageShare
        from launch.substitutions import PathJoinSubstitution
        def generate_launch_description():
            rviz = PathJoinSubstitution([FindPackageShare("reward_model_ros"), "config", "missing.rviz"])
            return [Node(package="rviz2", executable="rviz2", arguments=["-d", rviz])]
    """
    path = _write(tmp_path, launch)
    problems = check_launch_file(path, project_packages(tmp_path))
    assert len(problems) == 1 and "argument config/missing.rviz does not exist" in problems[0]


def test_rviz_config_shows_the_camera_and_the_debug_image():
    import yaml

    from reward_model_ros.nodes.reward import NODE_NAME

    config = yaml.safe_load((ROOT / "config" / "realworld.rviz").read_text())
    images = {
        d["Topic"]["Value"]: d["Topic"]
        for d in config["Visualization Manager"]["Displays"]
        if d["Class"] == "rviz_default_plugins/Image"
    }
    assert set(images) == {"/image_raw", f"/{NODE_NAME}/debug_image"}
    # the node publishes debug images reliable: the display must not ask for more than that
    assert all(t["Reliability Policy"] == "Reliable" for t in images.values())
