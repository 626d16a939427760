"""The README's configuration reference is generated from the nodes' parameter tables."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from param_table import table  # noqa: E402

from reward_model_ros.launch_check import read_setup_py  # noqa: E402

README = (ROOT / "README.md").read_text()
NODES, _ = read_setup_py(ROOT)


@pytest.mark.parametrize("executable", sorted(NODES))
def test_readme_has_the_current_parameter_table_of_every_node(executable):
    module = NODES[executable].split(":")[0]
    assert f"### `{executable}`" in README
    assert table(module) in README, (
        f"README's table for {executable} is out of date: regenerate it with "
        f"`python scripts/param_table.py {module}`"
    )


@pytest.mark.parametrize("executable", sorted(NODES))
def test_every_node_has_a_parameter_file_that_loads_its_declared_names(executable):
    import yaml

    module = __import__(NODES[executable].split(":")[0], fromlist=["PARAMETERS", "NODE_NAME"])
    declared = {p.name for p in module.PARAMETERS} | {"use_sim_time"}  # declared by rclpy itself
    key = f"/**/{module.NODE_NAME}"  # any namespace
    files = [p for p in (ROOT / "config").glob("*.yaml") if key in (yaml.safe_load(p.read_text()) or {})]
    assert files, f"no config/*.yaml has a section {key!r}"
    for path in files:
        section = yaml.safe_load(path.read_text())[key]["ros__parameters"]
        assert set(section) <= declared, f"{path.name}: undeclared {set(section) - declared}"
