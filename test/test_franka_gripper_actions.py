"""franka_adapter's franka_gripper backend and franka error recovery, against fake action
servers of the same shape.

franka_msgs cannot be installed here, so test/interfaces/franka_msgs is a stand-in with the
same action definitions as franka_ros2's (Move, Grasp, Homing, ErrorRecovery), built once
with CMake into build/test/franka_msgs (about a minute on 2 cores; reused while its files
are unchanged) and put on the adapter's PYTHONPATH / LD_LIBRARY_PATH only. The adapter then
imports `franka_msgs.action` exactly as on a robot PC. The fake servers run in a child
process (this file, run as a script) and print every goal they receive.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import math
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import call, spin_for, spin_until, wait_for_service
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from reward_msgs.msg import PolicyAction
from reward_msgs.srv import ResetEpisode
from std_srvs.srv import SetBool, Trigger

ROOT = Path(__file__).resolve().parents[1]
STANDIN = ROOT / "test" / "interfaces" / "franka_msgs"
BUILD = ROOT / "build" / "test" / "franka_msgs"
PI = math.pi
RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
GRIPPER = {
    "gripper.backend": "franka_gripper",
    "gripper.namespace": "/fr3_gripper",  # franka_ros2 before v2.0: the namespace is a parameter
    "gripper.grasp_width": 0.02,
    "gripper.epsilon_inner": 0.005,
    "gripper.epsilon_outer": 0.01,
    "gripper.force": 40.0,
    "gripper.speed": 0.05,
    "gripper.open_width": 0.07,
    "gripper.min_interval": 0.5,
    "recovery.backend": "franka_action",
    "control_rate": 2.5,  # a 0.4 s watchdog period and 0.8 s state timeout, as in
    "watchdog.state_timeout": 0.8,  # test_franka_adapter: long against DDS delays under load
    "reset.home_pose": [0.45, 0.0, 0.3, PI, 0.0, 0.0],
    "reset.duration": 0.5,
}


def _digest() -> str:
    h = hashlib.sha256()
    for path in sorted(STANDIN.rglob("*")):
        if path.is_file():
            h.update(path.relative_to(STANDIN).as_posix().encode() + path.read_bytes())
    return h.hexdigest()[:16]


def build_standin() -> Path:
    """The install prefix of the stand-in franka_msgs, built if missing or out of date."""
    prefix, stamp = BUILD / "install", BUILD / "stamp"
    BUILD.mkdir(parents=True, exist_ok=True)
    with open(BUILD.parent / "franka_msgs.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # concurrent test runs build it once
        digest = _digest()
        if stamp.exists() and stamp.read_text() == digest and (prefix / "lib").is_dir():
            return prefix
        venv = Path(sys.prefix)
        env = dict(
            os.environ,
            VIRTUAL_ENV=str(venv),
            PATH=f"{venv / 'bin'}:{os.environ.get('PATH', '')}",
            AMENT_PREFIX_PATH=str(venv),
        )
        shutil.rmtree(BUILD / "build", ignore_errors=True)
        shutil.rmtree(prefix, ignore_errors=True)
        steps = [
            [
                "cmake",
                "-S",
                str(STANDIN),
                "-B",
                str(BUILD / "build"),
                f"-DCMAKE_PREFIX_PATH={venv}",
                f"-DCMAKE_INSTALL_PREFIX={prefix}",
                "-DBUILD_TESTING=OFF",
                f"-DPython3_EXECUTABLE={sys.executable}",
                "-DCMAKE_BUILD_TYPE=Release",
            ],
            ["nice", "-n", "10", "cmake", "--build", str(BUILD / "build"), f"-j{os.cpu_count() or 1}"],
            ["cmake", "--install", str(BUILD / "build")],
        ]
        for step in steps:
            done = subprocess.run(step, env=env, capture_output=True, text=True, timeout=900)
            if done.returncode != 0:
                pytest.fail(
                    f"building the franka_msgs stand-in failed: {' '.join(step)}\n{done.stdout[-3000:]}"
                )
        stamp.write_text(digest)
        return prefix


@pytest.fixture(scope="module")
def standin_prefix():
    if shutil.which("cmake") is None:
        pytest.skip("cmake is not installed: the franka_msgs stand-in cannot be built")
    if importlib.util.find_spec("franka_msgs") is not None:
        pytest.skip("a real franka_msgs is importable: this test would shadow it")
    return build_standin()


@pytest.fixture
def franka_env(standin_prefix, monkeypatch):
    """The adapter and the fake servers find the stand-in; this test process does not need it."""
    site = next((standin_prefix / "lib").glob("python3*/site-packages"))
    monkeypatch.setenv("PYTHONPATH", f"{site}:{os.environ.get('PYTHONPATH', '')}".rstrip(":"))
    monkeypatch.setenv(
        "LD_LIBRARY_PATH", f"{standin_prefix / 'lib'}:{os.environ.get('LD_LIBRARY_PATH', '')}".rstrip(":")
    )
    return standin_prefix


def goals(proc, kind: str) -> list[dict[str, float]]:
    found = re.findall(rf"^GOAL {kind}( .*)?$", proc.output(), re.MULTILINE)
    return [{k: float(v) for k, v in re.findall(r"(\w+)=([-\d.e]+)", line)} for line in found]


def test_a_close_sent_before_the_gripper_server_is_up_is_sent_once_it_is(franka_env, ros_node, start_node):
    # the policy closes while franka_gripper is not there yet (starting late, restarting): the
    # command must not be lost while the policy keeps asking to close (no new toggle comes)
    fake = start_node("fake_arm", params={"max_speed": 1.0})
    adapter = start_node("franka_adapter", params={**GRIPPER, "recovery.backend": "none"})
    enable = wait_for_service(ros_node, SetBool, "/franka_adapter/enable", timeout=30)
    actions = ros_node.create_publisher(PolicyAction, "/action", RELIABLE)
    spin_until(
        ros_node, lambda: actions.get_subscription_count() > 0, 10, "the adapter's action subscription"
    )
    spin_until(ros_node, lambda: call(ros_node, enable, SetBool.Request(data=True)).success, 10, "enable")

    def act(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            actions.publish(PolicyAction(gripper=-1.0))
            spin_for(ros_node, 0.1)
            if "action ignored" in adapter.output():  # a state stall latched the watchdog
                call(ros_node, enable, SetBool.Request(data=True))

    spin_until(ros_node, lambda: (act(0.2), "not sent yet" in adapter.output())[1], 15, "the unsent close")
    servers = start_node("python", args=[__file__, "serve", "/fr3_gripper"])
    end = time.monotonic() + 20.0
    while not goals(servers, "grasp") and time.monotonic() < end:
        act(0.2)
    assert goals(servers, "grasp"), f"the close was never sent\n{adapter.output()[-3000:]}"
    assert len(goals(servers, "grasp")) == 1  # sent once, not on every action
    assert fake.alive()


def test_franka_gripper_goals_and_error_recovery(franka_env, ros_node, start_node):
    servers = start_node("python", args=[__file__, "serve", "/fr3_gripper"])
    fake = start_node("fake_arm", params={"max_speed": 1.0})
    adapter = start_node("franka_adapter", params=GRIPPER)
    enable = wait_for_service(ros_node, SetBool, "/franka_adapter/enable", timeout=30)
    wait_for_service(ros_node, Trigger, "/fake_arm/error_recovery", timeout=30)
    spin_until(
        ros_node,
        lambda: "/fr3_gripper/grasp/_action/send_goal" in dict(ros_node.get_service_names_and_types()),
        30,
        "the fake gripper's action servers",
    )
    spin_until(ros_node, lambda: "serving" in servers.output(), 10, "the fake servers to start")
    time.sleep(1.0)  # the adapter's action clients discover the servers
    actions = ros_node.create_publisher(PolicyAction, "/action", RELIABLE)
    spin_until(
        ros_node, lambda: actions.get_subscription_count() > 0, 10, "the adapter's action subscription"
    )
    spin_until(ros_node, lambda: call(ros_node, enable, SetBool.Request(data=True)).success, 10, "enable")

    def act(gripper: float, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            actions.publish(PolicyAction(gripper=gripper))
            spin_for(ros_node, 0.1)

    end = time.monotonic() + 10.0  # close: one grasp with the configured width, force and epsilon
    while not goals(servers, "grasp") and time.monotonic() < end:
        act(-1.0, 0.2)
        if "action ignored" in adapter.output():  # a state stall latched the watchdog: enable
            call(ros_node, enable, SetBool.Request(data=True))
    assert goals(servers, "grasp"), f"no grasp goal in 10 s\n{adapter.output()[-3000:]}"
    grasp = goals(servers, "grasp")
    assert len(grasp) == 1, servers.output()
    assert grasp[0] == {"width": 0.02, "speed": 0.05, "force": 40.0, "inner": 0.005, "outer": 0.01}
    spin_until(ros_node, lambda: "did not succeed" in adapter.output(), 10, "the failed grasp in the log")
    # a chattering command: at most one toggle per 0.5 s, each a move (open) or a grasp (close)
    assert call(ros_node, enable, SetBool.Request(data=True)).success  # actions paused: re-arm
    end = time.monotonic() + 2.0
    flip = 1.0
    while time.monotonic() < end:
        actions.publish(PolicyAction(gripper=flip))
        flip = -flip
        spin_for(ros_node, 0.05)
    spin_for(ros_node, 0.5)
    moves, grasps = goals(servers, "move"), goals(servers, "grasp")
    assert moves and moves[0] == {"width": 0.07, "speed": 0.05}
    assert 2 <= len(moves) + len(grasps) <= 1 + 2.0 / 0.5 + 2, servers.output()
    # error recovery: the action /action_server/error_recovery
    recover = wait_for_service(ros_node, Trigger, "/franka_adapter/recover")
    answer = call(ros_node, recover, Trigger.Request(), timeout=15)
    assert answer.success and "/action_server/error_recovery succeeded" in answer.message, answer.message
    assert "GOAL error_recovery" in servers.output()
    # a reset opens the gripper through the move action (the watchdog latched meanwhile: enable)
    assert call(ros_node, enable, SetBool.Request(data=True)).success
    n = len(goals(servers, "move"))
    reset = wait_for_service(ros_node, ResetEpisode, "/franka_adapter/reset")
    answer = call(ros_node, reset, ResetEpisode.Request(), timeout=20)
    assert answer.accepted, answer.message
    spin_until(ros_node, lambda: len(goals(servers, "move")) > n, 5, "the reset's open")
    assert fake.alive() and adapter.alive()


# --- the fake servers (run in a child process, where the stand-in is importable) -----------
def serve(namespace: str) -> None:
    import rclpy
    from franka_msgs.action import ErrorRecovery, Grasp, Homing, Move
    from rclpy.action import ActionServer

    rclpy.init()
    node = rclpy.create_node("fake_franka_gripper")

    def execute(kind, action):
        def callback(goal_handle):
            g = goal_handle.request
            if kind == "grasp":
                fields = f"width={g.width} speed={g.speed} force={g.force} "
                fields += f"inner={g.epsilon.inner} outer={g.epsilon.outer}"
            elif kind == "move":
                fields = f"width={g.width} speed={g.speed}"
            else:
                fields = ""
            print(f"GOAL {kind} {fields}".rstrip(), flush=True)
            goal_handle.succeed()
            result = action.Result()
            if kind == "grasp":  # closing on nothing: franka_gripper reports a failed grasp
                result.success, result.error = False, "object width out of epsilon"
            elif hasattr(result, "success"):
                result.success = True
            return result

        return callback

    servers = [  # noqa: F841  (kept alive while spinning)
        ActionServer(node, Move, f"{namespace}/move", execute("move", Move)),
        ActionServer(node, Grasp, f"{namespace}/grasp", execute("grasp", Grasp)),
        ActionServer(node, Homing, f"{namespace}/homing", execute("homing", Homing)),
        ActionServer(
            node, ErrorRecovery, "/action_server/error_recovery", execute("error_recovery", ErrorRecovery)
        ),
    ]
    print("serving", flush=True)
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, Exception):
        pass
    finally:
        rclpy.try_shutdown()


if __name__ == "__main__" and len(sys.argv) > 2 and sys.argv[1] == "serve":
    serve(sys.argv[2])
