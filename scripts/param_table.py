"""Print a node's parameter table as Markdown (for the README's configuration reference).

Usage: python scripts/param_table.py reward_model_ros.nodes.reward
"""

from __future__ import annotations

import importlib
import json
import sys


def table(module_name: str) -> str:
    module = importlib.import_module(module_name)
    rows = ["| parameter | default | meaning |", "|---|---|---|"]
    for p in module.PARAMETERS:
        default = json.dumps(p.default) if not isinstance(p.default, bool) else str(p.default).lower()
        ro = " (read-only)" if p.read_only else ""
        rows.append(f"| `{p.name}` | `{default}` | {p.description.replace('|', '/')}{ro} |")
    return "\n".join(rows)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    print(table(sys.argv[1]))
