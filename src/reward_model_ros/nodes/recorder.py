"""recorder_node: one rosbag2 bag per labelled episode.

Subscribes to the configured topics (serialized: nothing is decoded except EpisodeEvents
and header stamps) once their publishers appear, with the publishers' reliability (so
best-effort camera streams are recorded too), and hands every message to
`reward_model_ros.data.recording.EpisodeRecorder`, which routes it by stamp into the
episode it belongs to. Episodes start and end on EpisodeEvents (`episode_event_topic`) or
on the `~/start_episode` / `~/stop_episode` services. A writer thread writes and flushes
the bag every `flush_period` seconds, so a crash loses at most that much; SIGINT/SIGTERM
close the open bag as an aborted episode; a bag left by a crash is recovered at the next
start. Free disk space is checked at start and at every flush.
"""

from __future__ import annotations

import importlib
import shutil
import threading
import time
from pathlib import Path

from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message
from rclpy.task import Future
from reward_msgs.msg import EpisodeEvent
from reward_msgs.srv import StartEpisode, StopEpisode

from reward_model_ros.data.bags import header_stamp_ns
from reward_model_ros.data.recording import DATA, END, START, EpisodeRecorder, EventInfo, Item
from reward_model_ros.nodes._run import spin_node
from reward_model_ros.nodes.params import (
    Param,
    ParameterError,
    at_least,
    declare_parameters,
    in_range,
    non_empty,
    one_of,
    topic_name,
)

NODE_NAME = "recorder"
EVENT_NAMES = {
    EpisodeEvent.START: "START",
    EpisodeEvent.SUCCESS: "SUCCESS",
    EpisodeEvent.FAILURE: "FAILURE",
    EpisodeEvent.TIMEOUT: "TIMEOUT",
    EpisodeEvent.ABORT: "ABORT",
}

PARAMETERS = (
    Param("save_dir", "runs/episodes", "where episodes go: <save_dir>/{success,failure,aborted}/episode_N/"),
    Param(
        "topics",
        ["image_raw", "camera_info", "joint_states", "ee_pose", "action", "reward", "success_label"],
        "topics to record (relative names resolve in the node's namespace); the episode event "
        "topic is always recorded",
        non_empty,
        read_only=True,
    ),
    Param(
        "image_topics",
        [],
        "topics counted as camera frames in episode.json; empty = every recorded sensor_msgs/Image topic",
        read_only=True,
        array_type="string",
    ),
    Param("episode_event_topic", "episode/event", "EpisodeEvents that start and end episodes", topic_name),
    Param("task", "", "task name stored with episodes started by ~/start_episode"),
    Param("storage", "mcap", "mcap | sqlite3", one_of("mcap", "sqlite3"), read_only=True),
    Param("target_success", 0, "stop after this many successful episodes (0 = no limit)", at_least(0)),
    Param("target_failure", 0, "stop after this many failed episodes (0 = no limit)", at_least(0)),
    Param("exit_when_done", True, "exit (code 0) once the targets are met; false: stop recording, stay up"),
    Param(
        "flush_period",
        1.0,
        "seconds between flushes to disk (the most a crash can lose)",
        in_range(0.05, 60.0),
    ),
    Param(
        "min_free_disk_mb",
        1024,
        "refuse to start, or end the episode cleanly and stop, below this much free space",
        at_least(0),
    ),
    Param(
        "reorder_window",
        0.3,
        "seconds a message waits so that messages of all topics are routed in stamp order",
        in_range(0.0, 10.0),
    ),
    Param(
        "max_queue_mb",
        1024,
        "messages waiting to be written, at most (beyond: dropped and counted)",
        at_least(1),
    ),
    Param("queue_depth", 100, "subscription history depth per topic", in_range(1, 10000), read_only=True),
)


def get_message(msgtype: str) -> type:
    """'pkg/msg/Name' -> the generated Python class (rosidl_runtime_py is not always there)."""
    pkg, kind, name = msgtype.split("/")
    try:
        return getattr(importlib.import_module(f"{pkg}.{kind}"), name)
    except (ImportError, AttributeError) as exc:
        raise RuntimeError(
            f"the Python bindings of {msgtype} are not installed here: source the workspace that builds {pkg}"
        ) from exc


class RecorderNode(Node):
    def __init__(self) -> None:
        super().__init__(NODE_NAME)
        self.p = p = declare_parameters(self, PARAMETERS, on_change=lambda c: self.p.update(c))
        self.save_dir = Path(p["save_dir"]).expanduser().resolve()
        self.save_dir.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(self.save_dir).free / 2**20
        if free < p["min_free_disk_mb"]:
            raise ParameterError(
                f"{NODE_NAME}: only {free:.0f} MB free under {self.save_dir} (min_free_disk_mb="
                f"{p['min_free_disk_mb']}): free some space or choose another save_dir"
            )
        self.event_topic = self.resolve_topic_name(p["episode_event_topic"])
        self.topics = {self.resolve_topic_name(t) for t in p["topics"]} | {self.event_topic}
        self.recorder = EpisodeRecorder(
            self.save_dir,
            storage=p["storage"],
            reorder_window=p["reorder_window"],
            max_queue_bytes=p["max_queue_mb"] * 2**20,
            image_topics=tuple(self.resolve_topic_name(t) for t in p["image_topics"]),
            on_closed=self._on_closed,
            log=self.get_logger(),
        )
        for path in self.recorder.recover_leftovers():
            self.get_logger().warning(f"an episode left by a crash was recovered into {path}")
        self.subscribed: dict[str, str] = {}
        self._header_types: dict[str, bool] = {}
        self.stopped = False  # targets met or disk full: no new episodes
        self.finished = Future()  # spin_node returns when this completes (targets met)
        self._finished = threading.Event()
        self._stop = threading.Event()
        self._last_report = (0, 0)
        self.create_service(StartEpisode, "~/start_episode", self._on_start)
        self.create_service(StopEpisode, "~/stop_episode", self._on_stop)
        self._discover()
        # steady timers: under use_sim_time a ROS-time timer would not fire until /clock runs
        steady = Clock(clock_type=ClockType.STEADY_TIME)
        self.create_timer(0.5, self._discover, clock=steady)
        self.create_timer(
            0.2, lambda: self._finished.is_set() and self.finished.set_result(True), clock=steady
        )
        self.create_timer(5.0, self._report_drops, clock=steady)
        self._thread = threading.Thread(target=self._write_loop, name="recorder-writer", daemon=True)
        self._thread.start()
        self.get_logger().info(
            f"recording {sorted(self.topics)} into {self.save_dir} ({p['storage']}); episodes start and "
            f"end on {self.event_topic} or ~/start_episode and ~/stop_episode; {free / 1024:.1f} GB free"
        )

    # --- subscriptions ----------------------------------------------------------------
    def _discover(self) -> None:
        """Subscribe to each wanted topic once its type is known, matching its publishers' QoS."""
        missing = self.topics - set(self.subscribed)
        if not missing:
            return
        types = dict(self.get_topic_names_and_types())
        for topic in sorted(missing):
            if topic not in types:
                continue
            msgtype = types[topic][0]
            infos = self.get_publishers_info_by_topic(topic)
            if not infos:
                continue
            reliable = all(i.qos_profile.reliability == ReliabilityPolicy.RELIABLE for i in infos)
            latched = all(i.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL for i in infos)
            qos = QoSProfile(
                depth=self.p["queue_depth"],
                history=HistoryPolicy.KEEP_LAST,
                reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
                durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE,
            )
            try:
                cls = get_message(msgtype)
                self.recorder.registry.ensure(msgtype)
                self._header_types[topic] = self.recorder.registry.starts_with_header(msgtype)
            except Exception as exc:
                self.get_logger().error(
                    f"cannot record {topic} ({msgtype}): {exc}", throttle_duration_sec=30.0
                )
                continue
            self.create_subscription(
                cls, topic, lambda data, t=topic, m=msgtype: self._on_message(t, m, data), qos, raw=True
            )
            self.subscribed[topic] = msgtype
            if msgtype == "sensor_msgs/msg/Image" and not self.p["image_topics"]:
                self.recorder.image_topics.add(topic)
            self.get_logger().info(
                f"recording {topic} ({msgtype}, {'reliable' if reliable else 'best effort'})"
            )

    def _on_message(self, topic: str, msgtype: str, data: bytes) -> None:
        now_ns = self.get_clock().now().nanoseconds
        stamp = header_stamp_ns(data) if self._header_types.get(topic) else now_ns
        event = None
        order = DATA
        if topic == self.event_topic:
            msg = deserialize_message(data, EpisodeEvent)
            start = msg.event == EpisodeEvent.START
            if self.stopped and start:
                return
            order = START if start else END
            event = EventInfo(
                kind=order,
                event=EVENT_NAMES.get(msg.event, str(msg.event)),
                label=msg.label,
                task=msg.task,
                mode=msg.mode,
                seed=msg.seed,
                source_episode=msg.episode_index,
                message=msg.message,
            )
        self.recorder.put(Item(stamp, order, 0, topic, msgtype, data, time.monotonic(), now_ns, event))

    # --- services -----------------------------------------------------------------------
    def _on_start(self, request, response):
        if self.stopped:
            response.accepted, response.message = False, "recording has stopped (targets met or disk full)"
            return response
        try:
            index = self.recorder.start_manual(
                self.get_clock().now().nanoseconds, request.task or self.p["task"], request.mode or "manual"
            )
        except RuntimeError as exc:
            response.accepted, response.message = False, str(exc)
            return response
        response.accepted, response.episode_index = True, index
        response.message = f"recording episode {index}"
        return response

    def _on_stop(self, request, response):
        path = self.recorder.stop_manual(self.get_clock().now().nanoseconds, request.label, request.message)
        if path is None:
            response.accepted, response.message = False, "no episode is being recorded"
            return response
        response.accepted, response.path, response.message = True, str(path), f"saved {path}"
        return response

    # --- the writer thread --------------------------------------------------------------
    def _write_loop(self) -> None:
        last_flush = time.monotonic()
        while not self._stop.is_set():
            time.sleep(0.02)
            try:
                self.recorder.process()
                if time.monotonic() - last_flush >= self.p["flush_period"]:
                    last_flush = time.monotonic()
                    self.recorder.flush()
                    self._check_disk()
            except Exception as exc:
                self.get_logger().error(
                    f"writing failed: {type(exc).__name__}: {exc}", throttle_duration_sec=5.0
                )

    def _check_disk(self) -> None:
        free = shutil.disk_usage(self.save_dir).free / 2**20
        if free >= self.p["min_free_disk_mb"] or self.stopped:
            return
        self.stopped = True
        path = self.recorder.abort(f"disk nearly full: {free:.0f} MB free")
        self.get_logger().error(
            f"only {free:.0f} MB free under {self.save_dir} (min_free_disk_mb={self.p['min_free_disk_mb']}): "
            f"recording stopped{f'; the open episode was closed into {path}' if path else ''}. "
            "Free some space and restart the recorder."
        )

    def _on_closed(self, info: dict) -> None:
        c = self.recorder.counts
        p = self.p
        self.get_logger().info(
            f"episode {info['episode']} ({info['label']}, {info['mode'] or '-'}, seed {info['seed']}): "
            f"{sum(info['messages'].values())} messages, {info['duration_s']:.1f} s -> {info['path']}; "
            f"{c['success']} success / {c['failure']} failure / {c['aborted']} aborted so far"
        )
        targets = p["target_success"] or p["target_failure"]
        if (
            targets
            and c["success"] >= p["target_success"]
            and c["failure"] >= p["target_failure"]
            and not self.stopped
        ):
            self.stopped = True
            self.get_logger().info(
                f"targets reached: {c['success']} success and {c['failure']} failure episodes "
                f"(targets {p['target_success']} / {p['target_failure']}); "
                + ("exiting" if p["exit_when_done"] else "recording stopped")
            )
            if p["exit_when_done"]:
                self._finished.set()

    def _report_drops(self) -> None:
        now = (self.recorder.dropped_queue, self.recorder.late)
        if now != self._last_report:
            self.get_logger().warning(
                f"could not keep up: {now[0]} messages dropped (write queue full), {now[1]} arrived after "
                "their episode was closed (raise reorder_window)"
            )
            self._last_report = now

    def destroy_node(self) -> None:
        if hasattr(self, "_thread"):
            self._stop.set()
            self._thread.join(timeout=30)
            path = self.recorder.abort("the recorder was stopped during the episode")
            if path is not None:
                self.get_logger().warning(f"stopped mid-episode: the episode so far is in {path}")
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    return spin_node(RecorderNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
