"""Test harness: every test gets its own ROS domain, DDS stays on loopback, nodes run as
separate processes and are always stopped.

Fixtures
- `ros_domain`: a leased ROS_DOMAIN_ID, with the environment (LOCALHOST discovery, the
  project's Fast DDS profile) set for this process and the processes it starts.
- `ros_node`: an rclpy node in this process, in that domain (own context, shut down after).
- `start_node`: start a node executable with `--ros-args` in that domain; stopped after
  the test (SIGINT, SIGTERM, SIGKILL on its whole process group), its log printed when
  the test fails.
The session sniffs RTPS packets on every interface (as root) and fails the run when one
is seen anywhere but on loopback.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from dds_sniffer import Sniffer

from reward_model_ros.dds import DomainLease, local_dds_env

ROOT = Path(__file__).resolve().parents[1]

# Before any rclpy context exists in this process: loopback discovery and the profile.
# The domain ID is leased per test (ros_domain); 0 is never used.
os.environ.update(local_dds_env(domain_id=0))
os.environ.pop("ROS_DOMAIN_ID")

_sniffer: Sniffer | None = None


def _is_xdist_worker(config: pytest.Config) -> bool:
    """A pytest-xdist worker (`make test TEST_WORKERS=auto`): the controller sniffs for all
    of them, once."""
    return hasattr(config, "workerinput")


def pytest_sessionstart(session: pytest.Session) -> None:
    global _sniffer
    if not _is_xdist_worker(session.config) and Sniffer.available() is None:
        _sniffer = Sniffer().start()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _sniffer is None:
        return
    _sniffer.stop()
    if _sniffer.elsewhere:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter) -> None:
    if _is_xdist_worker(terminalreporter.config):
        return
    if _sniffer is None:
        terminalreporter.write_line(f"DDS isolation: not checked: {Sniffer.available()}")
        return
    line = (
        f"DDS isolation: {_sniffer.loopback} RTPS packets on loopback, "
        f"{_sniffer.elsewhere} on other interfaces"
    )
    if _sniffer.elsewhere:
        terminalreporter.write_line(line + " -- LEAK: " + ", ".join(_sniffer.leaks[:10]), red=True)
    else:
        terminalreporter.write_line(line, green=True)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture
def ros_domain(monkeypatch):
    """A ROS domain of this test's own; the environment points there."""
    with DomainLease() as lease:
        for key, value in local_dds_env(lease.domain_id).items():
            monkeypatch.setenv(key, value)
        yield lease.domain_id


@pytest.fixture
def ros_node(ros_domain):
    """An rclpy node in this process, in the test's domain."""
    import rclpy

    context = rclpy.Context()
    rclpy.init(context=context, domain_id=ros_domain)
    node = rclpy.create_node("test_probe", context=context)
    yield node
    node.destroy_node()
    context.try_shutdown()


@pytest.fixture
def start_node(request, ros_domain, tmp_path):
    """Factory: start_node(executable, params=None, params_file=None, remaps=None, name=None, stdin=None)."""
    from reward_model_ros.ros.processes import NodeProcess, ros_args

    started: list[NodeProcess] = []

    def start(executable, params=None, params_file=None, remaps=None, name=None, args=(), stdin=None):
        log = tmp_path / f"{executable}-{len(started)}.log"
        proc = NodeProcess(
            executable,
            [*args, *ros_args(params, params_file, remaps, name)],
            env=dict(os.environ),
            log_path=log,
            stdin=stdin,
        )
        started.append(proc)
        return proc

    yield start
    failed = any(getattr(getattr(request.node, f"rep_{w}", None), "failed", False) for w in ("setup", "call"))
    for proc in started:
        proc.stop()
        if failed:
            print(f"----- log of {proc.executable} (pid {proc.pid}) -----\n{proc.output()}")
