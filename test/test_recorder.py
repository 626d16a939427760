"""recorder_node across processes, and the episode routing it stands on (no ROS)."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

from helpers import call, spin_for, spin_until, wait_for_service
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from reward_msgs.msg import EpisodeEvent
from reward_msgs.srv import StartEpisode, StopEpisode
from rosbags.highlevel import AnyReader
from sensor_msgs.msg import Image, JointState

from reward_model_ros.data.bags import needs_recovery
from reward_model_ros.data.recording import DATA, END, START, EpisodeRecorder, EventInfo, Item
from reward_model_ros.ros.conversions import seconds_to_stamp, stamp_to_nanoseconds

RELIABLE = QoSProfile(depth=200, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
BEST_EFFORT = QoSProfile(
    depth=200, reliability=ReliabilityPolicy.BEST_EFFORT, history=HistoryPolicy.KEEP_LAST
)


def read_bag(path: Path) -> dict[str, list]:
    out: dict[str, list] = {}
    with AnyReader([path]) as reader:
        for conn, _t, raw in reader.messages():
            out.setdefault(conn.topic, []).append(reader.deserialize(raw, conn.msgtype))
    return out


def image(t: float, value: int) -> Image:
    msg = Image(height=24, width=32, encoding="rgb8", step=96, data=bytes([value % 256]) * (24 * 96))
    msg.header.stamp = seconds_to_stamp(t)
    msg.header.frame_id = "cam"
    return msg


def event(kind: int, t: float, label: int = -1, seed: int = 7) -> EpisodeEvent:
    msg = EpisodeEvent(event=kind, task="insert_peg", mode="teleop", seed=seed, label=label, episode_index=3)
    msg.header.stamp = seconds_to_stamp(t)
    return msg


class Graph:
    """Publishers in the test process, and a recorder in its own."""

    def __init__(self, node, start_node, save_dir: Path, ns: str = "", **params) -> None:
        # `ns`: a recorder killed earlier still counts as a subscriber of its topics until
        # its DDS lease ends, so a second recorder in one test records other topic names
        self.node = node
        self.events = node.create_publisher(EpisodeEvent, f"{ns}/episode/event", RELIABLE)
        self.images = node.create_publisher(Image, f"{ns}/image_raw", RELIABLE)
        self.wrist = node.create_publisher(Image, f"{ns}/wrist/image_raw", BEST_EFFORT)
        self.joints = node.create_publisher(JointState, f"{ns}/joint_states", RELIABLE)
        pubs = (self.events, self.images, self.wrist, self.joints)
        self.recorder = start_node(
            "recorder_node",
            params={
                "save_dir": str(save_dir),
                "topics": [f"{ns}/image_raw", f"{ns}/wrist/image_raw", f"{ns}/joint_states"],
                "episode_event_topic": f"{ns}/episode/event",
                "min_free_disk_mb": 1,
                **params,
            },
        )
        spin_until(
            node,
            lambda: all(p.get_subscription_count() > 0 for p in pubs) or not self.recorder.alive(),
            30,
            "the recorder to subscribe to every topic",
        )
        assert self.recorder.alive(), self.recorder.output()
        # matching is not symmetric: the publishers see the recorder before it sees them, and
        # what it gets before then arrives only on a resend, up to a heartbeat period late
        spin_for(node, 0.5)

    def stream(self, t0: float, frames: int, period: float = 0.02, joints_per_frame: int = 3) -> float:
        for i in range(frames):
            t = t0 + i * period
            self.images.publish(image(t, i))
            self.wrist.publish(image(t, 255 - i))
            for j in range(joints_per_frame):
                js = JointState(name=["fr3_joint1"], position=[float(i)])
                js.header.stamp = seconds_to_stamp(t + j * period / joints_per_frame)
                self.joints.publish(js)
            spin_for(self.node, period)
        return t0 + frames * period


def test_every_message_of_an_episode_lands_in_its_bag(ros_node, start_node, tmp_path):
    g = Graph(ros_node, start_node, tmp_path)
    t0 = time.time()
    g.stream(t0 - 1.0, 5)  # before the episode: not recorded
    g.events.publish(event(EpisodeEvent.START, t0))
    t_end = g.stream(t0, 40) - 0.02
    g.events.publish(event(EpisodeEvent.SUCCESS, t_end + 0.015, label=EpisodeEvent.LABEL_SUCCESS))
    bag = tmp_path / "success" / "episode_000000"
    spin_until(ros_node, lambda: (bag / "episode.json").is_file(), 20, "the episode bag")
    msgs = read_bag(bag)
    assert len(msgs["/image_raw"]) == 40
    assert len(msgs["/wrist/image_raw"]) == 40  # best-effort source, matched and recorded
    assert len(msgs["/joint_states"]) == 120
    assert [e.event for e in msgs["/episode/event"]] == [EpisodeEvent.START, EpisodeEvent.SUCCESS]
    # the messages come back byte for byte, in order
    assert [bytes(m.data)[0] for m in msgs["/image_raw"]] == list(range(40))
    stamps = [stamp_to_nanoseconds(m.header.stamp) for m in msgs["/image_raw"]]
    assert stamps == sorted(stamps) and stamps[0] == stamp_to_nanoseconds(seconds_to_stamp(t0))
    info = json.loads((bag / "episode.json").read_text())
    assert info["label"] == "success" and info["seed"] == 7 and info["mode"] == "teleop"
    assert info["task"] == "insert_peg" and info["source_episode_index"] == 3
    assert info["frames"] == {"/image_raw": 40, "/wrist/image_raw": 40}
    assert info["dropped_queue_full"] == 0
    assert (bag / "metadata.yaml").is_file() and list(bag.glob("*.mcap"))


def test_manual_services_and_labels(ros_node, start_node, tmp_path):
    g = Graph(ros_node, start_node, tmp_path, task="wipe_table")
    start = wait_for_service(ros_node, StartEpisode, "/recorder/start_episode")
    stop = wait_for_service(ros_node, StopEpisode, "/recorder/stop_episode")
    assert not call(ros_node, stop, StopEpisode.Request(label=1)).accepted  # nothing recording
    answer = call(ros_node, start, StartEpisode.Request(mode="teleop"))
    assert answer.accepted and answer.episode_index == 0
    assert not call(ros_node, start, StartEpisode.Request()).accepted  # one at a time
    time.sleep(0.2)
    g.stream(time.time(), 10)
    spin_for(ros_node, 0.5)  # past the reorder window
    done = call(ros_node, stop, StopEpisode.Request(label=0, message="dropped the cup"))
    assert done.accepted and done.path.endswith("failure/episode_000000")
    info = json.loads((Path(done.path) / "episode.json").read_text())
    assert (
        info["label"] == "failure" and info["task"] == "wipe_table" and info["message"] == "dropped the cup"
    )
    assert len(read_bag(Path(done.path))["/image_raw"]) == 10


def test_sigint_and_sigkill_mid_episode_leave_readable_bags(ros_node, start_node, tmp_path):
    g = Graph(ros_node, start_node, tmp_path, flush_period=0.2)
    t0 = time.time()
    g.events.publish(event(EpisodeEvent.START, t0))
    # stream once the episode is open: on a busy machine a reliable event can arrive after
    # the frames stamped after it (a resend), and frames outside an episode are not kept
    spin_until(ros_node, (tmp_path / "incomplete" / "episode_000000").exists, 10, "the episode to start")
    g.stream(t0, 20)
    spin_for(ros_node, 1.0)  # written and flushed
    os.killpg(g.recorder.pid, signal.SIGKILL)
    spin_until(ros_node, lambda: not g.recorder.alive(), 10, "the recorder to die")
    left = tmp_path / "incomplete" / "episode_000000"
    assert needs_recovery(left)  # no metadata.yaml: the writer never finished
    # the next recorder recovers it at start, into aborted/
    g2 = Graph(ros_node, start_node, tmp_path, ns="/second")
    recovered = tmp_path / "aborted" / "episode_000000"
    spin_until(ros_node, lambda: (recovered / "metadata.yaml").is_file(), 20, "the recovery")
    msgs = read_bag(recovered)
    assert len(msgs["/image_raw"]) == 20 and len(msgs["/joint_states"]) == 60
    assert json.loads((recovered / "episode.json").read_text())["recovered"] is True
    # SIGINT mid-episode: the bag is closed cleanly, labelled aborted, numbered after the others
    t1 = time.time()
    g2.events.publish(event(EpisodeEvent.START, t1))
    opened = tmp_path / "incomplete" / "episode_000001"
    spin_until(ros_node, opened.exists, 10, "the episode to start")  # discovery may lag on a busy machine
    g2.stream(t1, 10)
    spin_for(ros_node, 0.5)
    assert g2.recorder.stop() == 0
    closed = tmp_path / "aborted" / "episode_000001"
    assert len(read_bag(closed)["/second/image_raw"]) == 10
    assert json.loads((closed / "episode.json").read_text())["end_event"] == "ABORT"


def test_refuses_to_start_without_disk_space(start_node, tmp_path):
    rec = start_node("recorder_node", params={"save_dir": str(tmp_path), "min_free_disk_mb": 10**9})
    deadline = time.monotonic() + 30
    while rec.alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert rec.popen.returncode == 2
    assert "MB free under" in rec.output() and "min_free_disk_mb=1000000000" in rec.output()


# --- routing without ROS ----------------------------------------------------------------
def _item(stamp: int, topic: str = "/x", order: int = DATA, received: float = 0.0, ev=None) -> Item:
    from rclpy.serialization import serialize_message
    from std_msgs.msg import String

    return Item(
        stamp,
        order,
        0,
        topic,
        "std_msgs/msg/String",
        serialize_message(String(data=str(stamp))),
        received,
        stamp,
        ev,
    )


def test_routing_is_by_stamp_whatever_the_arrival_order(tmp_path):
    rec = EpisodeRecorder(tmp_path, reorder_window=0.3)
    end = EventInfo(END, "FAILURE", 0)
    # arrival order: data, the end event, more data, then the start event (all within the window)
    for it in [
        _item(12),
        _item(20, "/ev", END, ev=end),
        _item(15),
        _item(5),  # before the episode
        _item(10, "/ev", START, ev=EventInfo(START, "START")),
        _item(20),  # same stamp as the end: inside
    ]:
        rec.put(it)
    rec.process(now=0.1)  # nothing has waited long enough yet
    assert rec.open is None and rec.queued()[0] == 6
    rec.process(now=1.0)
    bag = tmp_path / "failure" / "episode_000000"
    with AnyReader([bag]) as reader:
        got = [(c.topic, reader.deserialize(raw, c.msgtype).data) for c, _t, raw in reader.messages()]
    assert sorted(got) == sorted([("/ev", "10"), ("/x", "12"), ("/x", "15"), ("/x", "20"), ("/ev", "20")])
    rec.put(_item(18))  # stamped inside the closed episode: late, counted
    rec.process(now=5.0)
    assert rec.late == 1


def _topic_counts(bag: Path) -> dict[str, int]:
    with AnyReader([bag]) as reader:
        return {c.topic: c.msgcount for c in reader.connections}


def test_an_ended_episode_waits_for_every_topic_to_reach_its_end(tmp_path):
    """A topic's last message (a DDS resend, a busy executor) arriving after the end event
    has been routed is still the episode's: it closes once every topic has reached its end
    stamp, and the next episode's messages wait until then."""
    rec = EpisodeRecorder(tmp_path, reorder_window=0.3, close_timeout=5.0)
    start, end = EventInfo(START, "START"), EventInfo(END, "SUCCESS", 1)
    for it in [
        _item(10, "/ev", START, ev=start),
        _item(10),
        _item(10, "/y"),
        _item(20),
        _item(20, "/ev", END, ev=end),
    ]:
        rec.put(it)
    rec.process(now=1.0)  # the end is routed; /y has not reached stamp 20
    assert rec.open is not None and rec.open.closing is not None
    rec.put(_item(30, "/ev", START, ev=EventInfo(START, "START"), received=1.0))  # the next episode
    rec.put(_item(30, received=1.0))
    rec.process(now=2.0)
    assert rec.open.index == 0  # the next start waits for the ended episode to close
    rec.put(_item(20, "/y", received=2.0))  # its last frame, 1 s after the end event
    rec.process(now=2.5)
    assert rec.open is not None and rec.open.index == 1  # closed, and the next one started
    assert rec.late == 0 and rec.closed_by_timeout == 0
    assert _topic_counts(tmp_path / "success" / "episode_000000") == {"/ev": 2, "/x": 2, "/y": 2}
    info = json.loads((tmp_path / "success" / "episode_000000" / "episode.json").read_text())
    assert info["end_stamp_ns"] == 20 and info["label"] == "success"


def test_an_ended_episode_closes_at_close_timeout_and_keeps_its_label(tmp_path):
    rec = EpisodeRecorder(tmp_path, reorder_window=0.3, close_timeout=2.0)
    start, end = EventInfo(START, "START"), EventInfo(END, "FAILURE", 0)
    for it in [_item(10, "/ev", START, ev=start), _item(10, "/y"), _item(15), _item(20, "/ev", END, ev=end)]:
        rec.put(it)
    rec.process(now=1.0)
    rec.process(now=2.9)  # /x and /y never reach 20: waits until 1.0 + close_timeout
    assert rec.open is not None
    rec.process(now=3.0)
    assert rec.open is None and rec.closed_by_timeout == 1
    assert _topic_counts(tmp_path / "failure" / "episode_000000") == {"/ev": 2, "/x": 1, "/y": 1}
    rec.put(_item(19, received=3.0))  # later still: late, counted
    rec.process(now=4.0)
    assert rec.late == 1
    # stopping the recorder while an ended episode waits: it keeps its own end, not aborted
    for it in [_item(30, "/ev", START, ev=start, received=4.0), _item(30, "/y", received=4.0)]:
        rec.put(it)
    rec.put(_item(40, "/ev", END, ev=EventInfo(END, "SUCCESS", 1), received=4.0))
    rec.process(now=5.0)
    assert rec.open is not None and rec.open.closing is not None
    assert rec.abort("stopped") is None  # nothing was still recording
    assert (tmp_path / "success" / "episode_000001").is_dir() and not (tmp_path / "aborted").exists()


def test_a_full_queue_drops_and_counts_but_keeps_events(tmp_path):
    rec = EpisodeRecorder(tmp_path, max_queue_bytes=25)  # items of 10 bytes
    assert rec.put(_item(1)) and rec.put(_item(2))
    assert not rec.put(_item(3))  # over the limit
    assert rec.put(_item(4, "/ev", START, ev=EventInfo(START, "START")))  # events always kept
    assert rec.dropped_queue == 1
