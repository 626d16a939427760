"""The reference in docs/ is generated from the nodes' parameter tables and the config
dataclasses; the README stays short and links to it."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from param_table import config_table, table  # noqa: E402

from reward_model_ros.launch_check import read_setup_py  # noqa: E402

README = (ROOT / "README.md").read_text()
DOCS = ROOT / "docs"
NODES_DOC = (DOCS / "nodes.md").read_text()
NODES, _ = read_setup_py(ROOT)
# config dataclass -> (the docs page its key table lives in, keys left to another table)
CONFIG_TABLES = {
    "reward_model_ros.data.dataset:ProcessConfig": ("data_and_training.md", ()),
    "reward_model_ros.training.train:TrainConfig": ("data_and_training.md", ("model",)),
    "reward_model_sim.rl_train:RLConfig": ("rl.md", ()),
}


@pytest.mark.parametrize("executable", sorted(NODES))
def test_docs_have_the_current_parameter_table_of_every_node(executable):
    module = NODES[executable].split(":")[0]
    assert f"### `{executable}`" in NODES_DOC
    assert table(module) in NODES_DOC, (
        f"docs/nodes.md's table for {executable} is out of date: regenerate it with "
        f"`python scripts/regen_docs.py` (one table: `python scripts/param_table.py {module}`)"
    )


@pytest.mark.parametrize("target", sorted(CONFIG_TABLES))
def test_docs_have_the_current_key_table_of_every_config(target):
    page, skip = CONFIG_TABLES[target]
    assert config_table(target, skip) in (DOCS / page).read_text(), (
        f"docs/{page}'s table for {target} is out of date: regenerate it with "
        f"`python scripts/regen_docs.py` (one table: "
        f"`python scripts/param_table.py {target} {' '.join(skip)}`)"
    )


def test_readme_stays_short_and_its_links_resolve():
    assert len(README.splitlines()) < 200, "the README is for users: move reference into docs/"
    for link in re.findall(r"\]\(([^)#:]+)", README):
        assert (ROOT / link).exists(), f"README: broken link {link}"
    for page in DOCS.glob("*.md"):
        for link in re.findall(r"\]\(([^)#:]+)", page.read_text()):
            assert (DOCS / link).exists(), f"docs/{page.name}: broken link {link}"


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
