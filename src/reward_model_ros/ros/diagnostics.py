"""`/diagnostics` (diagnostic_msgs/DiagnosticArray) for every long-running node: one status
per node, once a second, OK / WARN / ERROR with key-value figures, as rqt_robot_monitor and
Foxglove's diagnostics panel show them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

from reward_model_ros.nodes._run import steady_clock
from reward_model_ros.ros import qos as qos_profiles

OK, WARN, ERROR, STALE = (
    DiagnosticStatus.OK,
    DiagnosticStatus.WARN,
    DiagnosticStatus.ERROR,
    DiagnosticStatus.STALE,
)
LEVEL_NAMES = {OK: "OK", WARN: "WARN", ERROR: "ERROR", STALE: "STALE"}

# A collector returns (level, one-line message, {key: value}).
Collector = Callable[[], tuple[bytes, str, dict[str, Any]]]


def _text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


class Diagnostics:
    """Publishes `collect()` as one DiagnosticStatus named '<node>: <what>' every `period` s."""

    def __init__(
        self, node: Any, what: str, collect: Collector, period: float = 1.0, hardware_id: str = ""
    ) -> None:
        self.node, self.collect = node, collect
        self.name = f"{node.get_name()}: {what}"
        self.hardware_id = hardware_id or node.get_fully_qualified_name()
        self.pub = node.create_publisher(DiagnosticArray, "/diagnostics", qos_profiles.reliable(10))
        self.last: DiagnosticStatus | None = None
        node.create_timer(period, self.publish, clock=steady_clock())

    def status(self) -> DiagnosticStatus:
        try:
            level, message, values = self.collect()
        except Exception as exc:  # a broken collector must show, not kill the node
            level, message, values = ERROR, f"diagnostics failed: {type(exc).__name__}: {exc}", {}
        return DiagnosticStatus(
            level=level,
            name=self.name,
            message=message,
            hardware_id=self.hardware_id,
            values=[KeyValue(key=str(k), value=_text(v)) for k, v in values.items()],
        )

    def publish(self) -> None:
        self.last = self.status()
        array = DiagnosticArray(status=[self.last])
        array.header.stamp = self.node.get_clock().now().to_msg()
        self.pub.publish(array)
