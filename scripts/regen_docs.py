"""Rewrite every generated table in docs/ (node parameters, config keys) from the code.

python scripts/regen_docs.py        # test/test_docs.py says when this is needed
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "test"))

from param_table import config_table, table  # noqa: E402
from test_docs import CONFIG_TABLES, NODES  # noqa: E402


def replace_table(text: str, new: str) -> str:
    """Replace the table whose header and first row match `new`'s (a generated table keeps its
    header and its first key), up to the first line that is not a table row."""
    lines, new_lines = text.split("\n"), new.split("\n")
    for i in range(len(lines) - 2):
        if lines[i] == new_lines[0] and lines[i + 2].split("|")[1] == new_lines[2].split("|")[1]:
            end = i
            while end < len(lines) and lines[end].startswith("|"):
                end += 1
            return "\n".join(lines[:i] + new_lines + lines[end:])
    raise SystemExit(f"no table starting with {new_lines[2]!r} found: add it by hand once")


def main() -> None:
    docs = ROOT / "docs"
    nodes = docs / "nodes.md"
    text = nodes.read_text()
    for target in sorted(NODES.values()):
        text = replace_table(text, table(target.split(":")[0]))
    nodes.write_text(text)
    for target, (page, skip) in CONFIG_TABLES.items():
        path = docs / page
        path.write_text(replace_table(path.read_text(), config_table(target, skip)))
    print("docs/ tables regenerated")


if __name__ == "__main__":
    main()
