"""The QoS profiles of the project, named once.

- `reliable(depth)`: results, events, labels, actions, states: every message counts.
- `images(reliability, depth)`: camera frames; reliable by default (what rviz2 and the
  common camera drivers use), best-effort selectable.
- `DEBUG_IMAGE`: reliable, depth 1: what rviz2's Image display subscribes with by default.
- `CLOCK`: /clock, reliable keep-last 1 (only the newest time matters).
- `matching(infos, depth)`: a subscription profile that matches the publishers found on
  a topic (reliability and durability), for nodes that subscribe to whatever a driver
  publishes (the recorder, reward_node's image_qos=auto).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

RELIABILITIES = ("reliable", "best_effort")


def reliable(depth: int = 10) -> QoSProfile:
    """Reliable, volatile, keep-last `depth`: for messages that must all arrive."""
    return QoSProfile(depth=depth, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)


def images(reliability: str = "reliable", depth: int = 5) -> QoSProfile:
    """Camera frames: `reliability` is 'reliable' or 'best_effort'."""
    if reliability not in RELIABILITIES:
        raise ValueError(f"reliability {reliability!r}: must be one of {', '.join(RELIABILITIES)}")
    policy = ReliabilityPolicy.RELIABLE if reliability == "reliable" else ReliabilityPolicy.BEST_EFFORT
    return QoSProfile(depth=depth, reliability=policy, history=HistoryPolicy.KEEP_LAST)


DEBUG_IMAGE = reliable(depth=1)
CLOCK = QoSProfile(depth=1)


def publishers_reliability(infos: Sequence[Any]) -> str:
    """'reliable' when every publisher in `infos` (rclpy TopicEndpointInfo) is, else 'best_effort'."""
    ok = all(i.qos_profile.reliability == ReliabilityPolicy.RELIABLE for i in infos)
    return "reliable" if ok else "best_effort"


def matching(infos: Sequence[Any], depth: int) -> QoSProfile:
    """A subscription that receives from all of the publishers in `infos`: reliable only when
    all are, transient-local only when all are (so latched topics replay their last message)."""
    qos = images(publishers_reliability(infos), depth)
    if infos and all(i.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL for i in infos):
        qos.durability = DurabilityPolicy.TRANSIENT_LOCAL
    return qos
