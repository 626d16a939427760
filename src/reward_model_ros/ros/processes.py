"""Start node executables as separate processes and always stop them.

Used by the tests and `reward-model demo`. Each process gets its own session (process
group), so that stopping it also stops anything it started; stop escalates from SIGINT
(rclpy's clean shutdown) to SIGTERM to SIGKILL.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from reward_model_ros.paths import PACKAGE

log = logging.getLogger(__name__)


def find_executable(name: str) -> str:
    """Path of a node executable: in the venv's bin/, or in lib/<pkg> of a colcon install
    (the install's first when this module was imported from it).

    :raises FileNotFoundError: naming where it looked.
    """
    venv_bin = Path(sys.executable).parent / name
    candidates = [venv_bin]
    try:
        from ament_index_python.packages import get_package_prefix

        prefix = Path(get_package_prefix(PACKAGE))
        installed = prefix / "lib" / PACKAGE / name
        # imported from a colcon install: that install's executables come first
        here_installed = prefix in Path(__file__).resolve().parents
        candidates = [installed, venv_bin] if here_installed else [venv_bin, installed]
    except Exception:  # not on a sourced ROS install
        pass
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    found = shutil.which(name)
    if found:
        return found
    raise FileNotFoundError(
        f"node executable {name!r} not found (looked in {', '.join(map(str, candidates))} "
        "and PATH). Run `make setup` (venv) or `colcon build` and source install/setup.bash."
    )


def ros_args(
    params: Mapping[str, object] | None = None,
    params_file: str | os.PathLike[str] | None = None,
    remaps: Mapping[str, str] | None = None,
    node_name: str | None = None,
) -> list[str]:
    """Build a `--ros-args ...` argument list."""
    args = ["--ros-args"]
    if params_file is not None:
        args += ["--params-file", str(params_file)]
    for name, value in (params or {}).items():
        args += ["-p", f"{name}:={_param_literal(value)}"]
    if node_name:
        args += ["-r", f"__node:={node_name}"]
    for src, dst in (remaps or {}).items():
        args += ["-r", f"{src}:={dst}"]
    return args


def _param_literal(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_param_literal(v) for v in value) + "]"
    if isinstance(value, str):
        return value if value else "''"
    return repr(value)


class NodeProcess:
    """One node executable running in its own process group, output to a log file."""

    def __init__(
        self,
        executable: str,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        log_path: str | os.PathLike[str] | None = None,
        stdin: int | None = None,
    ) -> None:
        """`stdin`: a file descriptor (e.g. a pseudo-terminal) or None for /dev/null."""
        self.executable = executable
        self.log_path = Path(log_path) if log_path else None
        cmd = [find_executable(executable), *args]
        self.command = cmd
        self._log_file = open(self.log_path, "wb") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.popen = subprocess.Popen(
            cmd,
            env=dict(env) if env is not None else None,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL if stdin is None else stdin,
            start_new_session=True,
        )
        log.debug("started %s (pid %d): %s", executable, self.popen.pid, " ".join(cmd))

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def output(self) -> str:
        """What the process printed so far (empty without a log file)."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 5.0) -> int | None:
        """Stop the whole process group: SIGINT, then SIGTERM, then SIGKILL.

        Returns the exit code of the main process (None if it could not be reaped).
        """
        for sig, wait in ((signal.SIGINT, timeout), (signal.SIGTERM, 2.0), (signal.SIGKILL, 2.0)):
            if not self._group_alive():
                break
            try:
                os.killpg(self.popen.pid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and self._group_alive():
                time.sleep(0.02)
        try:
            code = self.popen.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            code = None
        if self._log_file is not subprocess.DEVNULL:
            self._log_file.close()
        return code

    def _group_alive(self) -> bool:
        self.popen.poll()
        try:
            os.killpg(self.popen.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        # A group whose only members are zombies still answers signal 0: reap ours.
        return self.popen.returncode is None or _group_has_live_members(self.popen.pid)

    def __enter__(self) -> NodeProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _group_has_live_members(pgid: int) -> bool:
    """True when a process other than a zombie is in process group pgid (Linux /proc)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # the command name is in parentheses and may contain spaces
        fields = stat[stat.rfind(")") + 2 :].split()
        state, group = fields[0], int(fields[2])
        if group == pgid and state != "Z":
            return True
    return False
