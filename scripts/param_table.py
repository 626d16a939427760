"""Print a node's parameter table, or a config dataclass's key table, as Markdown (for the
reference in docs/; test/test_docs.py keeps them in sync).

Usage: python scripts/param_table.py reward_model_ros.nodes.reward
       python scripts/param_table.py reward_model_ros.data.dataset:ProcessConfig
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import itertools
import json
import sys
import textwrap


def table(module_name: str) -> str:
    """A node module's PARAMETERS as a table."""
    module = importlib.import_module(module_name)
    rows = ["| parameter | default | meaning |", "|---|---|---|"]
    for p in module.PARAMETERS:
        default = json.dumps(p.default) if not isinstance(p.default, bool) else str(p.default).lower()
        ro = " (read-only)" if p.read_only else ""
        rows.append(f"| `{p.name}` | `{default}` | {p.description.replace('|', '/')}{ro} |")
    return "\n".join(rows)


def field_docs(cls: type) -> dict[str, str]:
    """The docstring under each field of a dataclass (CleanRL's convention), base classes' too."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__[:-1]):
        if dataclasses.is_dataclass(klass):
            docs |= _own_field_docs(klass)
    return docs


def _own_field_docs(cls: type) -> dict[str, str]:
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body
    docs = {}
    for node, nxt in itertools.pairwise(body):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(nxt, ast.Expr)
            and isinstance(nxt.value, ast.Constant)
            and isinstance(nxt.value.value, str)
        ):
            docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


def _rows(cls: type, prefix: str, skip: set[str]) -> list[str]:
    rows, docs = [], field_docs(cls)
    for f in dataclasses.fields(cls):
        key = prefix + f.name
        if key in skip:
            continue
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default
        if dataclasses.is_dataclass(default):
            rows += _rows(type(default), key + ".", skip)
            continue
        shown = json.dumps(default) if not isinstance(default, bool) else str(default).lower()
        rows.append(f"| `{key}` | `{shown}` | {docs.get(f.name, '').replace('|', '/')} |")
    return rows


def config_table(target: str, skip: tuple[str, ...] = ()) -> str:
    """'module:Class' -> one row per leaf key (nested dataclasses flattened as a.b.c)."""
    module_name, cls_name = target.split(":")
    cls = getattr(importlib.import_module(module_name), cls_name)
    return "\n".join(["| key | default | meaning |", "|---|---|---|", *_rows(cls, "", set(skip))])


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    target = sys.argv[1]
    print(config_table(target, tuple(sys.argv[2:])) if ":" in target else table(target))
