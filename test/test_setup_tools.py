"""Set-up pieces: the wheels' CMake path fix, and colcon finding both packages."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import numpy
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import fix_wheel_cmake_paths  # noqa: E402

from reward_model_ros.launch_check import read_setup_py  # noqa: E402

NODE_EXECUTABLES, _ = read_setup_py(ROOT)


def test_fix_rewrites_builder_paths_once(tmp_path):
    cmake = tmp_path / "share" / "std_msgs" / "cmake"
    cmake.mkdir(parents=True)
    f = cmake / "export_std_msgs__rosidl_generator_pyExport.cmake"
    f.write_text(
        'INTERFACE_INCLUDE_DIRECTORIES "/opt/python/cp311-cp311/include/python3.11;'
        '/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include"\n'
    )
    assert fix_wheel_cmake_paths.fix(tmp_path) == 1
    text = f.read_text()
    assert "/opt/python" not in text
    assert sysconfig.get_paths()["include"] in text and numpy.get_include() in text
    assert fix_wheel_cmake_paths.fix(tmp_path) == 0


def test_venv_exports_point_at_this_python():
    prefix = Path(sys.prefix)
    exports = list(prefix.glob("share/*/cmake/*__rosidl_generator_pyExport.cmake"))
    assert exports, "no ROS wheel CMake exports in the venv: run make setup"
    assert not [e for e in exports if "/opt/python/" in e.read_text()]


def _copy_checkout(dest: Path) -> None:
    """Copy what a clone would hold (tracked and new, not ignored files) to dest."""
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for rel in filter(None, files):
        src = ROOT / rel.decode()
        if src.is_file():
            (dest / rel.decode()).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel.decode())


def test_colcon_workspace_build_as_in_the_readme(tmp_path):
    """README, "On a real ROS 2 install": clone into a workspace, colcon build with both base
    paths, source install/setup.bash; the installed package (not this checkout) then imports,
    finds its share directory and runs its nodes."""
    bin_dir = Path(sys.executable).parent
    if not (bin_dir / "colcon").exists():
        pytest.skip("colcon is not installed")
    ws = tmp_path / "ws"
    _copy_checkout(ws / "src" / "reward_model_ros")
    env = dict(
        os.environ,
        PATH=f"{bin_dir}:{os.environ['PATH']}",
        AMENT_PREFIX_PATH=sys.prefix,
        CMAKE_PREFIX_PATH=sys.prefix,
    )
    build = subprocess.run(
        [
            "colcon",
            "build",
            "--base-paths",
            "src/reward_model_ros",
            "src/reward_model_ros/src/reward_msgs",
            "--cmake-args",
            "-DBUILD_TESTING=OFF",
        ],
        cwd=ws,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    for pkg in ("reward_model_ros", "reward_msgs"):
        assert (ws / "install" / pkg / "share" / pkg / "package.xml").is_file(), build.stdout[-2000:]
    install = ws / "install" / "reward_model_ros"
    # Every module of the installed package must come from install/: the venv's editable
    # install of this checkout would otherwise fill any subpackage the install lacks.
    probe = textwrap.dedent(
        f"""
        import importlib, pkgutil, sys
        import reward_model_ros, reward_model_sim, reward_msgs.msg
        from reward_model_ros.paths import share_dir
        print(reward_model_ros.__file__); print(reward_msgs.msg.__file__); print(share_dir())
        bad = []
        for pkg in (reward_model_ros, reward_model_sim):
            for info in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
                try:
                    mod = importlib.import_module(info.name)
                except ModuleNotFoundError as exc:
                    if exc.name and exc.name.split(".")[0] in ("mani_skill", "launch", "launch_ros"):
                        continue  # optional dependencies
                    raise
                if not mod.__file__.startswith({str(install)!r}):
                    bad.append(f"{{info.name}} -> {{mod.__file__}}")
        for name in sorted(sys.modules):
            mod = sys.modules[name]
            ours = name.split(".")[0] in ("reward_model_ros", "reward_model_sim")
            if ours and (getattr(mod, "__file__", None) or "").startswith({str(ROOT)!r}):
                bad.append(f"{{name}} -> {{mod.__file__}}")
        print("NOT FROM THE INSTALL:", sorted(set(bad)) if bad else "none")
        """
    )
    (ws / "probe.py").write_text(probe)
    scripts = sorted(p.name for p in (install / "lib" / "reward_model_ros").iterdir())
    assert set(NODE_EXECUTABLES) <= set(scripts), scripts
    helps = " && ".join(f"{install}/lib/reward_model_ros/{s} --help > help_{s}.txt" for s in scripts)
    script = (
        "source install/setup.bash && python probe.py && reward-model --help > help_cli.txt && "
        f"{helps} && reward-model check-interfaces --timeout 20"
    )
    run = subprocess.run(["bash", "-c", script], cwd=ws, env=env, capture_output=True, text=True, timeout=400)
    assert run.returncode == 0, run.stdout + run.stderr
    module, msgs, share, modules = run.stdout.splitlines()[:4]
    assert modules == "NOT FROM THE INSTALL: none", modules
    assert module.startswith(str(install))
    assert msgs.startswith(str(ws / "install" / "reward_msgs"))
    assert share == str(install / "share" / "reward_model_ros")
    for s in scripts:  # every executable started from install/: nodes print their parameters
        assert ("parameters:" if s in NODE_EXECUTABLES else "usage:") in (ws / f"help_{s}.txt").read_text(), s
    assert "reward-model" in (ws / "help_cli.txt").read_text()
    assert str(install / "lib" / "reward_model_ros") in run.stdout
    assert "7/7 interfaces came back unchanged" in run.stdout


def _run_tests(tmp_path: Path, workers: str, codes: list[int], *args: str) -> tuple[int, list[list[str]]]:
    """scripts/run_tests.sh with a stand-in python that logs its arguments and exits with the
    next of `codes` (one per pytest pass)."""
    tmp_path = tmp_path / f"run{len(list(tmp_path.glob('run*')))}"
    tmp_path.mkdir()
    log, codes_file = tmp_path / "calls.log", tmp_path / "codes"
    codes_file.write_text("\n".join(map(str, codes)) + "\n")
    fake = tmp_path / "python"
    fake.write_text(
        "#!/usr/bin/env bash\n"
        f'printf "%s\\x1f" "$@" >> {log}; echo >> {log}\n'
        f'code=$(head -n 1 {codes_file}); sed -i 1d {codes_file}; exit "$code"\n'
    )
    fake.chmod(0o755)
    env = {**os.environ, "PYTHON": str(fake), "TEST_WORKERS": workers}
    script = ROOT / "scripts" / "run_tests.sh"
    proc = subprocess.run(["bash", str(script), *args], env=env, capture_output=True)
    lines = log.read_text().splitlines() if log.exists() else []
    calls = [line.rstrip("\x1f").split("\x1f") for line in lines]
    return proc.returncode, calls


def test_make_test_runs_realtime_tests_alone_after_the_parallel_pass(tmp_path):
    """`make test`'s two passes: everything not `realtime` on xdist workers, then the realtime
    tests serially with xdist off; both always run, and either failing fails the suite."""
    rc, calls = _run_tests(tmp_path, "auto", [0, 0], "-k", "x")
    assert rc == 0 and len(calls) == 2
    first, second = calls
    assert first[:3] == ["-m", "pytest", "-n"] and first[3] == "auto"
    assert first[first.index("-m", 1) + 1] == "not realtime" and first[-2:] == ["-k", "x"]
    assert second[2:4] == ["-p", "no:xdist"] and second[second.index("-m", 1) + 1] == "realtime"
    assert second[-2:] == ["-k", "x"]
    # a failure in the first pass still runs the second, and fails the suite
    rc, calls = _run_tests(tmp_path, "auto", [1, 0])
    assert rc == 1 and len(calls) == 2
    assert _run_tests(tmp_path, "2", [0, 1])[0] == 1
    # a pass that selects nothing (pytest's 5: one file without realtime tests) is no failure
    assert _run_tests(tmp_path, "auto", [0, 5])[0] == 0
    # TEST_WORKERS=0: one serial session of everything
    rc, calls = _run_tests(tmp_path, "0", [0])
    assert rc == 0 and calls == [["-m", "pytest"]]


def test_pytest_markers_are_strict_and_realtime_is_declared():
    """A misspelt marker (say `@pytest.mark.realtim`) would put a real-time test in the
    parallel pass without a word: markers must be declared, and `realtime` is."""
    text = (ROOT / "pyproject.toml").read_text()
    assert "--strict-markers" in text and '"realtime:' in text
