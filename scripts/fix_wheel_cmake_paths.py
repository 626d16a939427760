"""Rewrite the wheel builder's paths in the ROS wheels' exported CMake files.

The ros-* wheels export `<pkg>__rosidl_generator_py` targets whose include directories
point at the machine that built the wheels (/opt/python/cp311-cp311/...). Building an
interface package (reward_msgs) against them fails until those paths name this Python's
headers and this numpy's headers. Idempotent: run it after every install of the wheels.

Usage: python scripts/fix_wheel_cmake_paths.py PREFIX   (PREFIX = the venv)
"""

from __future__ import annotations

import re
import sys
import sysconfig
from pathlib import Path

import numpy

PYTHON_INCLUDE = re.compile(r"/opt/python/cp3\d+-cp3\d+/include/python3\.\d+")
NUMPY_INCLUDE = re.compile(
    r"/opt/python/cp3\d+-cp3\d+/lib/python3\.\d+/site-packages/numpy/(?:_core|core)/include"
)


def fix(prefix: Path) -> int:
    python_include = sysconfig.get_paths()["include"]
    numpy_include = numpy.get_include()
    for path, want in ((python_include, "Python.h"), (numpy_include, "numpy/arrayobject.h")):
        if not (Path(path) / want).is_file():
            raise SystemExit(f"error: {want} not found under {path}: install the headers first")
    changed = 0
    for path in sorted(prefix.glob("share/*/cmake/*__rosidl_generator_pyExport.cmake")):
        text = path.read_text()
        new = NUMPY_INCLUDE.sub(numpy_include, PYTHON_INCLUDE.sub(python_include, text))
        if new != text:
            path.write_text(new)
            changed += 1
    return changed


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    n = fix(Path(sys.argv[1]))
    print(f"fixed wheel-builder paths in {n} CMake export file(s)")
