"""The franka adapter's robot-side backends: how a gripper command and an error recovery
reach the robot. Chosen by parameter; each imports what it needs only when chosen, so the
adapter runs where franka_msgs is not installed (with the other backends).

Gripper (`gripper.backend`):
- `none`: commands are only counted.
- `franka_gripper`: franka_ros2's gripper actions `<namespace>/move` (open) and
  `<namespace>/grasp` (close), franka_msgs/action/{Move,Grasp}; the namespace is a
  parameter because it changed between releases (`/fr3_gripper` before franka_ros2 v2.0,
  `<ns>/franka_gripper` after).
- `crisp_topic`: crisp_py's gripper interface, a position controller's command topic
  (std_msgs/Float64MultiArray with one value; `gripper_position_controller/commands`).

Error recovery (`recovery.backend`):
- `none`: ~/recover says there is none.
- `franka_action`: franka_hardware's action `/action_server/error_recovery`
  (franka_msgs/action/ErrorRecovery). Reactivating the hardware component and the
  controllers afterwards (controller_manager) is left to the operator.
- `trigger_service`: a std_srvs/Trigger service (fake_arm's `~/error_recovery`, or a
  script of your own that also reactivates the controllers).
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from typing import Any

from reward_model_ros.core.arm_safety import OPEN
from reward_model_ros.nodes.params import Param, ParameterError, in_range, one_of, topic_name
from reward_model_ros.ros import qos as qos_profiles

GRIPPER_BACKENDS = ("none", "franka_gripper", "crisp_topic")
RECOVERY_BACKENDS = ("none", "franka_action", "trigger_service")


# the measured end-effector pose, as franka_adapter and arm_observer subscribe to it
MEASURED_POSE_PARAMS = (
    Param(
        "pose_topic",
        "franka_robot_state_broadcaster/current_pose",
        "geometry_msgs/PoseStamped measured end-effector pose (franka_robot_state_broadcaster)",
        topic_name,
        read_only=True,
    ),
    Param(
        "pose_qos",
        "best_effort",
        "reliability of the pose subscription: best_effort (receives from any publisher) | reliable",
        one_of(*qos_profiles.RELIABILITIES),
        read_only=True,
    ),
    Param("pose_qos_depth", 5, "history depth of the pose subscription", in_range(1, 1000), read_only=True),
)


def franka_actions(what: str) -> Any:
    """The franka_msgs.action module, or a ParameterError saying which parameter needs it."""
    try:
        return importlib.import_module("franka_msgs.action")
    except ImportError as exc:
        raise ParameterError(
            f"{what} needs franka_msgs (from franka_ros2), which is not importable here ({exc}): "
            "source the franka_ros2 workspace, or choose another backend"
        ) from exc


class NoGripper:
    name = "none"

    def __init__(self) -> None:
        self.sent = 0

    def command(self, state: str) -> None:
        self.sent += 1

    def retry(self) -> None:
        """Nothing is ever left unsent."""

    def status(self) -> dict[str, Any]:
        return {"gripper_commands": self.sent}


class CrispGripperTopic:
    """One Float64MultiArray [value] per command: `open_value` or `closed_value`."""

    name = "crisp_topic"

    def __init__(self, node: Any, topic: str, open_value: float, closed_value: float) -> None:
        from std_msgs.msg import Float64MultiArray

        self._msg = Float64MultiArray
        self.values = {OPEN: open_value}
        self.closed_value = closed_value
        self.pub = node.create_publisher(Float64MultiArray, topic, qos_profiles.reliable(10))
        self.sent = 0

    def command(self, state: str) -> None:
        value = self.values.get(state, self.closed_value)
        self.pub.publish(self._msg(data=[float(value)]))
        self.sent += 1

    def retry(self) -> None:
        """A topic is never unavailable: nothing is left unsent."""

    def status(self) -> dict[str, Any]:
        return {"gripper_commands": self.sent, "gripper_topic": self.pub.topic_name}


class FrankaGripperActions:
    """franka_gripper's `move` (open to `open_width`) and `grasp` (close to `grasp_width`
    with `force`, within epsilon) actions. Goals are sent without waiting; a new command
    cancels the goal still in flight, so the latest command wins. `actions` is the module
    holding Move, Grasp and Homing (franka_msgs.action unless given). A command the server is
    not there for (not yet discovered, restarting) stays pending and `retry()`, called on every
    action, sends it once the server is ready, unless a newer command replaced it."""

    name = "franka_gripper"

    def __init__(self, node: Any, namespace: str, settings: dict[str, float], actions: Any = None) -> None:
        from rclpy.action import ActionClient

        self.node, self.s = node, settings
        self.actions = actions or franka_actions("gripper.backend franka_gripper")
        ns = namespace.rstrip("/")
        self.names = {"move": f"{ns}/move", "grasp": f"{ns}/grasp"}
        self.move = ActionClient(node, self.actions.Move, self.names["move"])
        self.grasp = ActionClient(node, self.actions.Grasp, self.names["grasp"])
        self.sent = self.failed = self.unavailable = 0
        self.last_error = ""
        self._in_flight: Any = None
        self._pending: str | None = None

    def retry(self) -> None:
        if (
            self._pending is not None
            and (self.move if self._pending == OPEN else self.grasp).server_is_ready()
        ):
            self.command(self._pending)

    def command(self, state: str) -> None:
        self._pending = None
        if state == OPEN:
            client, goal = (
                self.move,
                self.actions.Move.Goal(width=self.s["open_width"], speed=self.s["speed"]),
            )
            name = self.names["move"]
        else:
            goal = self.actions.Grasp.Goal(
                width=self.s["grasp_width"], speed=self.s["speed"], force=self.s["force"]
            )
            goal.epsilon.inner, goal.epsilon.outer = self.s["epsilon_inner"], self.s["epsilon_outer"]
            client, name = self.grasp, self.names["grasp"]
        if not client.server_is_ready():
            self.unavailable += 1
            self._pending = state
            self.node.get_logger().warning(
                f"gripper action server {name} is not available: {state} not sent yet "
                "(check gripper.namespace: /fr3_gripper before franka_ros2 v2.0, <ns>/franka_gripper after)",
                throttle_duration_sec=5.0,
            )
            return
        if self._in_flight is not None:
            self._in_flight.cancel_goal_async()
            self._in_flight = None
        self.sent += 1
        client.send_goal_async(goal).add_done_callback(lambda f, s=state: self._accepted(f, s))

    def _accepted(self, future: Any, state: str) -> None:
        handle = future.result()
        if handle is None or not handle.accepted:
            self.failed += 1
            self.last_error = f"{state}: goal rejected"
            self.node.get_logger().warning(f"gripper {state} goal rejected by the gripper")
            return
        self._in_flight = handle
        handle.get_result_async().add_done_callback(lambda f, s=state, h=handle: self._done(f, s, h))

    def _done(self, future: Any, state: str, handle: Any) -> None:
        if self._in_flight is handle:
            self._in_flight = None
        result = future.result().result
        if not getattr(result, "success", True):
            self.failed += 1
            self.last_error = f"{state}: {getattr(result, 'error', '')}"
            # a grasp that closes on nothing fails by design: information, not an alarm
            self.node.get_logger().info(f"gripper {state} did not succeed: {getattr(result, 'error', '')}")

    def status(self) -> dict[str, Any]:
        return {
            "gripper_commands": self.sent,
            "gripper_failed": self.failed,
            "gripper_unavailable": self.unavailable,
            "gripper_pending": self._pending or "",
            "gripper_last_error": self.last_error,
        }


def make_gripper(node: Any, p: dict[str, Any]) -> Any:
    backend = p["gripper.backend"]
    if backend == "franka_gripper":
        keys = ("open_width", "grasp_width", "speed", "force", "epsilon_inner", "epsilon_outer")
        return FrankaGripperActions(node, p["gripper.namespace"], {k: p[f"gripper.{k}"] for k in keys})
    if backend == "crisp_topic":
        return CrispGripperTopic(node, p["gripper.topic"], p["gripper.open_value"], p["gripper.closed_value"])
    return NoGripper()


# --- error recovery --------------------------------------------------------------------------
class NoRecovery:
    name = "none"

    async def recover(self, timeout: float) -> tuple[bool, str]:
        return False, "no error recovery configured (recovery.backend none)"


class FrankaErrorRecovery:
    """franka_msgs/action/ErrorRecovery on `name` (franka_hardware: /action_server/error_recovery)."""

    name = "franka_action"

    def __init__(self, node: Any, name: str, actions: Any = None) -> None:
        from rclpy.action import ActionClient

        self.node = node
        self.actions = actions or franka_actions("recovery.backend franka_action")
        self.action_name = name
        self.client = ActionClient(node, self.actions.ErrorRecovery, name)

    async def recover(self, timeout: float) -> tuple[bool, str]:
        name = self.action_name
        if not self.client.server_is_ready():
            return False, f"error recovery action {name} is not available (is franka_hardware running?)"
        handle = await wait_for(self.client.send_goal_async(self.actions.ErrorRecovery.Goal()), timeout)
        if handle is None or not handle.accepted:
            return False, f"{name}: goal not accepted"
        response = await wait_for(handle.get_result_async(), timeout)
        if response is None:
            return False, f"{name}: no result within {timeout:.0f} s"
        result = response.result
        if not getattr(result, "success", True):
            return False, f"{name}: {getattr(result, 'error', 'failed')}"
        return True, f"{name} succeeded: reactivate the hardware component and controllers if they stopped"


class TriggerRecovery:
    """A std_srvs/Trigger service that recovers the robot (fake_arm's ~/error_recovery)."""

    name = "trigger_service"

    def __init__(self, node: Any, name: str) -> None:
        from std_srvs.srv import Trigger

        self.node, self._request = node, Trigger.Request
        self.client = node.create_client(Trigger, name)

    async def recover(self, timeout: float) -> tuple[bool, str]:
        if not self.client.service_is_ready():
            return False, f"error recovery service {self.client.srv_name} is not available"
        response = await wait_for(self.client.call_async(self._request()), timeout)
        if response is None:
            return False, f"{self.client.srv_name}: no answer within {timeout:.0f} s"
        return bool(response.success), f"{self.client.srv_name}: {response.message}"


def make_recovery(node: Any, p: dict[str, Any]) -> Any:
    backend = p["recovery.backend"]
    if backend == "franka_action":
        return FrankaErrorRecovery(node, p["recovery.name"])
    if backend == "trigger_service":
        return TriggerRecovery(node, p["recovery.name"])
    return NoRecovery()


class _NextIteration:
    """Awaited in an rclpy coroutine callback: hand the executor back for one iteration."""

    def __await__(self):
        yield


async def until(ready: Callable[[], bool], timeout: float) -> bool:
    """In a coroutine callback (rclpy runs `async def` callbacks as tasks): wait until
    `ready()`, at most `timeout` s, without blocking the executor's thread, so that one
    thread serves the node's timers and subscriptions meanwhile. The task is resumed at each
    executor iteration (a node with a timer iterates at least at its rate). True if ready."""
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            return False
        await _NextIteration()
    return True


async def wait_for(future: Any, timeout: float) -> Any:
    """An rclpy future's result, at most `timeout` s (None after that), from a coroutine."""
    if not await until(future.done, timeout):
        return None
    return future.result()
