"""recorder_node: one rosbag2 bag per labelled episode.

Subscribes to the configured topics (serialized: nothing is decoded except EpisodeEvents
and header stamps) once their publishers appear, with the publishers' reliability (so
best-effort camera streams are recorded too), and hands every message to
`reward_model_ros.data.recording.EpisodeRecorder`, which routes it by stamp into the
episode it belongs to. Episodes start and end on EpisodeEvents (`episode_event_topic`) or
on the `~/start_episode` / `~/stop_episode` services (labels 1, 0, -1; any other is refused
and the episode goes on). A writer thread writes and flushes the bag every `flush_period`
seconds, so a crash loses at most that much; SIGINT/SIGTERM close the open bag as an
aborted episode; a bag left by a crash is recovered at the next start (the file as it was
kept beside it). Disk space: at start, too little free space is one `error:` line and exit
code 2; while running, free space is checked after every write against the write rate
(`disk_horizon`), and a full disk closes the open episode as aborted ("disk full"), bag
readable, after which the node stays up and refuses new episodes.
"""

from __future__ import annotations

import importlib
import shutil
import threading
import time
from pathlib import Path

from rclpy.node import Node
from rclpy.serialization import deserialize_message
from reward_msgs.msg import EpisodeEvent
from reward_msgs.srv import StartEpisode, StopEpisode

from reward_model_ros.data.bags import IMAGE_TYPES, DiskFull, header_stamp_ns, is_disk_full
from reward_model_ros.data.recording import (
    DATA,
    END,
    LABEL_DIRS,
    RESERVE_BYTES,
    START,
    EpisodeRecorder,
    EventInfo,
    Item,
)
from reward_model_ros.nodes._run import Finished, spin_node, steady_clock
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
from reward_model_ros.ros import qos as qos_profiles
from reward_model_ros.ros.diagnostics import ERROR, OK, WARN, Diagnostics

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
        [
            "image_raw",
            "camera_info",
            "joint_states",
            "ee_pose",
            "action",
            "applied_action",
            "state",
            "reward",
            "success_label",
        ],
        "topics to record (relative names resolve in the node's namespace); the episode event "
        "topic is always recorded",
        non_empty,
        read_only=True,
    ),
    Param(
        "image_topics",
        [],
        "topics counted as camera frames in episode.json; empty = every recorded sensor_msgs/Image and "
        "CompressedImage topic",
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
        "disk_horizon",
        5.0,
        "seconds of writing at the current rate that must also fit on the disk (checked after every write)",
        in_range(0.0, 3600.0),
    ),
    Param(
        "reorder_window",
        0.3,
        "seconds a message waits so that messages of all topics are routed in stamp order",
        in_range(0.0, 10.0),
    ),
    Param(
        "close_timeout",
        5.0,
        "seconds an ended episode waits for a message stamped at or after its end on every topic it "
        "recorded (a DDS resend comes up to a heartbeat period, 3 s by default, late); it closes as "
        "soon as they are all there",
        in_range(0.0, 60.0),
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
        self.p = p = declare_parameters(self, PARAMETERS, on_change=self._on_params)
        self.save_dir = Path(p["save_dir"]).expanduser().resolve()
        try:
            self.save_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ParameterError(f"{NODE_NAME}: cannot create save_dir {self.save_dir}: {exc}") from exc
        free = shutil.disk_usage(self.save_dir).free / 2**20
        if free < p["min_free_disk_mb"] + RESERVE_BYTES / 2**20:
            raise ParameterError(
                f"{NODE_NAME}: only {free:.0f} MB free under {self.save_dir} (min_free_disk_mb="
                f"{p['min_free_disk_mb']}, plus {RESERVE_BYTES >> 20} MB kept to close bags cleanly on a "
                "full disk): free some space or choose another save_dir"
            )
        self.event_topic = self.resolve_topic_name(p["episode_event_topic"])
        self.topics = {self.resolve_topic_name(t) for t in p["topics"]} | {self.event_topic}
        self.recorder = EpisodeRecorder(
            self.save_dir,
            storage=p["storage"],
            reorder_window=p["reorder_window"],
            close_timeout=p["close_timeout"],
            max_queue_bytes=p["max_queue_mb"] * 2**20,
            image_topics=tuple(self.resolve_topic_name(t) for t in p["image_topics"]),
            on_closed=self._on_closed,
            log=self.get_logger(),
            min_free_bytes=p["min_free_disk_mb"] * 2**20,
            disk_horizon=p["disk_horizon"],
            reserve_bytes=RESERVE_BYTES,
        )
        try:
            self.recorder.reserve.take()
        except (DiskFull, OSError) as exc:
            kind = "is full" if is_disk_full(exc) else "cannot be written"
            raise ParameterError(
                f"{NODE_NAME}: the disk under {self.save_dir} {kind} ({exc}): free some space or choose "
                "another save_dir"
            ) from exc
        for path in self.recorder.recover_leftovers():
            self.get_logger().warning(f"an episode left by a crash was recovered into {path}")
        self.subscribed: dict[str, str] = {}
        self._header_types: dict[str, bool] = {}
        self.stopped = False  # targets met: no new episodes (a full disk: recorder.stopped_reason)
        self.finished = Finished(self)  # spin_node returns once it is set (targets met)
        self._stop = threading.Event()
        self._last_report = (0, 0)
        self.create_service(StartEpisode, "~/start_episode", self._on_start)
        self.create_service(StopEpisode, "~/stop_episode", self._on_stop)
        self._discover()
        # steady timers: under use_sim_time a ROS-time timer would not fire until /clock runs
        steady = steady_clock()
        self.create_timer(0.5, self._discover, clock=steady)
        self.create_timer(5.0, self._report_drops, clock=steady)
        self.diagnostics = Diagnostics(self, "recorder", self._health)
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
            qos = qos_profiles.matching(infos, self.p["queue_depth"])
            reliable = qos_profiles.publishers_reliability(infos) == "reliable"
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
            if msgtype in IMAGE_TYPES and not self.p["image_topics"]:
                self.recorder.image_topics.add(topic)
            self.get_logger().info(
                f"recording {topic} ({msgtype}, {'reliable' if reliable else 'best effort'})"
            )

    def _on_message(self, topic: str, msgtype: str, data: bytes) -> None:
        now_ns = self.get_clock().now().nanoseconds
        stamped = bool(self._header_types.get(topic))
        stamp = header_stamp_ns(data) if stamped else now_ns
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
        self.recorder.put(
            Item(stamp, order, 0, topic, msgtype, data, time.monotonic(), now_ns, event, stamped)
        )

    # --- services -----------------------------------------------------------------------
    def _on_start(self, request, response):
        if self.stopped:
            response.accepted, response.message = False, "recording has stopped: the targets are met"
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
        try:
            path = self.recorder.stop_manual(
                self.get_clock().now().nanoseconds, request.label, request.message
            )
        except ValueError as exc:
            ep = self.recorder.open
            going_on = f"; episode {ep.index} is still being recorded" if ep is not None else ""
            response.accepted, response.message = False, f"{exc}{going_on}"
            return response
        if path is None:
            response.accepted, response.message = False, "no episode is being recorded"
            if self.recorder.stopped_reason:
                response.message += f" (recording has stopped: {self.recorder.stopped_reason})"
            return response
        response.path = str(path)
        info = self.recorder.last_info or {}
        if info.get("path") == str(path) and info.get("label") != LABEL_DIRS[request.label]:
            # the disk filled while it was closing
            response.accepted = False
            response.message = (
                f"not saved as {LABEL_DIRS[request.label]}: {info.get('message')}; it is in {path}"
            )
            return response
        response.accepted, response.message = True, f"saved {path}"
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
                self.recorder.check_disk()  # logs and closes the episode when space runs short
            except Exception as exc:
                self.get_logger().error(
                    f"writing failed: {type(exc).__name__}: {exc}", throttle_duration_sec=5.0
                )

    def _on_params(self, changes: dict) -> None:
        self.p.update(changes)
        if "min_free_disk_mb" in changes:
            self.recorder.min_free_bytes = changes["min_free_disk_mb"] * 2**20
        if "disk_horizon" in changes:
            self.recorder.disk_horizon = changes["disk_horizon"]
        if "reorder_window" in changes:
            self.recorder.window = changes["reorder_window"]
        if "close_timeout" in changes:
            self.recorder.close_timeout = changes["close_timeout"]

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
                self.finished.set()

    def _health(self):
        """/diagnostics: disk space, write rate, episodes, drops; ERROR once recording stopped."""
        r = self.recorder
        free = shutil.disk_usage(self.save_dir).free / 2**20
        queued = r.queued()
        values = {
            "save_dir": str(self.save_dir),
            "disk_free_mb": free,
            "write_rate_mb_s": r.write_rate / 2**20,
            "bytes_written": r.bytes_written,
            "recording": r.open is not None,
            "episode_open": r.open.index if r.open is not None else "",
            **{f"episodes_{k}": v for k, v in r.counts.items()},
            "queued_messages": queued[0],
            "queued_mb": queued[1] / 2**20,
            "dropped_queue_full": r.dropped_queue,
            "arrived_late": r.late,
            "episodes_closed_by_timeout": r.closed_by_timeout,
            "topics_subscribed": len(self.subscribed),
            "topics_wanted": len(self.topics),
        }
        if r.stopped_reason:
            return ERROR, f"recording stopped: {r.stopped_reason}", values
        if r.dropped_queue or r.late:
            return WARN, f"{r.dropped_queue} dropped (queue full), {r.late} late", values
        if len(self.subscribed) < len(self.topics):
            missing = sorted(self.topics - set(self.subscribed))
            return WARN, f"no publisher yet on {', '.join(missing)}", values
        state = f"recording episode {r.open.index}" if r.open is not None else "waiting for an episode"
        return OK, f"{state}; {free / 1024:.1f} GB free", values

    def _report_drops(self) -> None:
        now = (self.recorder.dropped_queue, self.recorder.late)
        if now != self._last_report:
            self.get_logger().warning(
                f"could not keep up: {now[0]} messages dropped (write queue full), {now[1]} arrived after "
                "their episode was closed (raise close_timeout; reorder_window for messages stamped "
                "before an episode's start)"
            )
            self._last_report = now

    def destroy_node(self) -> None:
        if hasattr(self, "_thread"):
            self._stop.set()
            self._thread.join(timeout=30)
            path = self.recorder.abort("the recorder was stopped during the episode")
            if path is not None:
                self.get_logger().warning(f"stopped mid-episode: the episode so far is in {path}")
            self.recorder.reserve.release()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    return spin_node(RecorderNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
