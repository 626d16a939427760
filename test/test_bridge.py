"""maniskill_bridge across processes (ManiSkill on the CPU: each test starts a simulation)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from geometry_msgs.msg import PoseStamped
from helpers import call, spin_until, wait_for_service
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from reward_msgs.msg import EpisodeEvent, PolicyAction, SuccessLabel
from reward_msgs.srv import ResetEpisode
from sensor_msgs.msg import CameraInfo, Image, JointState

from reward_model_ros.ros.conversions import stamp_to_nanoseconds

pytest.importorskip("mani_skill")

ROOT = Path(__file__).resolve().parents[1]

QOS = QoSProfile(depth=200, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)


def listen(node, msg_type, topic):
    got: list = []
    node.create_subscription(msg_type, topic, got.append, QOS)
    return got


def started(node, bridge, timeout=90):
    spin_until(
        node,
        lambda: node.count_publishers("/image_raw") > 0 or not bridge.alive(),
        timeout,
        "the bridge to start",
    )
    assert bridge.alive(), bridge.output()


def test_frames_joint_states_and_episode_events(ros_node, start_node):
    images = listen(ros_node, Image, "/image_raw")
    infos = listen(ros_node, CameraInfo, "/camera_info")
    side = listen(ros_node, Image, "/side_camera/image_raw")
    side_infos = listen(ros_node, CameraInfo, "/side_camera/camera_info")
    joints = listen(ros_node, JointState, "/joint_states")
    labels = listen(ros_node, SuccessLabel, "/success_label")
    events = listen(ros_node, EpisodeEvent, "/episode/event")
    # the shipped parameter file loads, with overrides on top
    bridge = start_node(
        "maniskill_bridge",
        params_file=ROOT / "config" / "sim_pickcube.yaml",
        params={"max_episode_steps": 10, "seed": 5},
    )
    started(ros_node, bridge)

    def after_first_end():
        ends = [i for i, e in enumerate(events) if e.event != EpisodeEvent.START]
        return [] if not ends else events[ends[0] :]

    # the first 10-step episode lasts 0.5 s and may be over before discovery has matched the
    # event topic (CI once saw its START and not its end): judge from the first end received
    spin_until(
        ros_node,
        lambda: sum(e.event == EpisodeEvent.START for e in after_first_end()) >= 2,
        60,
        "an episode to end and the next two to start",
    )
    first_end, *later = after_first_end()
    assert first_end.event == EpisodeEvent.TIMEOUT and first_end.label == EpisodeEvent.LABEL_FAILURE
    assert first_end.step == 10 and first_end.task == "PickCube-v1"
    starts = [e for e in later if e.event == EpisodeEvent.START]
    assert starts[0].episode_index == first_end.episode_index + 1 and starts[0].seed == first_end.seed + 1
    assert starts[1].seed == starts[0].seed + 1 and starts[1].episode_index == starts[0].episode_index + 1
    img = images[-1]
    assert (img.width, img.height, img.encoding, img.header.frame_id) == (128, 128, "rgb8", "base_camera")
    assert infos[-1].k[0] > 0 and infos[-1].width == 128
    # the shipped file's second camera: a side view, one frame per step with the same stamp
    assert (side[-1].width, side[-1].encoding, side[-1].header.frame_id) == (128, "rgb8", "side_camera")
    assert side_infos[-1].header.frame_id == "side_camera" and side_infos[-1].k[0] > 0
    side_stamps = {stamp_to_nanoseconds(m.header.stamp) for m in side}
    front_stamps = [stamp_to_nanoseconds(m.header.stamp) for m in images[-12:]]
    paired = [t for t in front_stamps if t <= max(side_stamps)]  # the side frame of later ones may lag
    assert len(paired) >= 6 and all(t in side_stamps for t in paired)
    front = np.frombuffer(bytes(images[-1].data), np.uint8)
    assert not np.array_equal(front, np.frombuffer(bytes(side[-1].data), np.uint8))  # another view
    assert len(joints[-1].name) == 9 and joints[-1].name[0] == "panda_joint1"
    assert labels[-1].source == SuccessLabel.SOURCE_SIMULATION and labels[-1].success is False
    # real time: about the control rate of 20 Hz (loose bounds: 2 shared cores)
    stamps = np.array([stamp_to_nanoseconds(m.header.stamp) for m in images[-15:]]) * 1e-9
    assert np.allclose(np.diff(stamps), 0.05, atol=1e-6)  # simulation time: one control period per frame
    start = time.monotonic()
    n0 = len(images)
    spin_until(ros_node, lambda: len(images) >= n0 + 20, 30, "20 more frames")
    rate = 20 / (time.monotonic() - start)
    # 5 Hz: two cameras rendered on a slower 2-core machine in the full suite gave 7.2 Hz
    assert 5 < rate < 30, rate


def test_actions_move_the_end_effector_and_bad_actions_are_refused(ros_node, start_node):
    poses = listen(ros_node, PoseStamped, "/ee_pose")
    bridge = start_node("maniskill_bridge", params={"max_episode_steps": 1000, "log_throttle": 0.01})
    started(ros_node, bridge)
    pub = ros_node.create_publisher(PolicyAction, "/action", QOS)
    spin_until(ros_node, lambda: pub.get_subscription_count() > 0 and len(poses) > 0, 30, "the action topic")
    z0 = poses[-1].pose.position.z
    bad = PolicyAction(gripper=float("nan"))
    pub.publish(bad)
    for _ in range(25):  # 1.25 s of "up 2 cm per step"
        msg = PolicyAction(gripper=1.0)
        msg.delta_position.z = 0.02
        pub.publish(msg)
        spin_until(ros_node, lambda: True, 0.05, "")
        time.sleep(0.05)
    spin_until(ros_node, lambda: poses[-1].pose.position.z > z0 + 0.1, 10, "the end-effector to rise 10 cm")
    assert abs(poses[-1].pose.position.x - poses[0].pose.position.x) < 0.05
    assert bridge.alive()
    assert "refused an action with NaN or infinite values" in bridge.output()


def test_reset_with_the_same_seed_gives_the_same_first_frame(ros_node, start_node):
    images = listen(ros_node, Image, "/image_raw")
    events = listen(ros_node, EpisodeEvent, "/episode/event")
    bridge = start_node("maniskill_bridge", params={"real_time": False, "max_episode_steps": 1000})
    started(ros_node, bridge)
    client = wait_for_service(ros_node, ResetEpisode, "/maniskill_bridge/reset", 60)
    firsts = []
    for _ in range(2):
        answer = call(ros_node, client, ResetEpisode.Request(seed=7), timeout=60)
        assert answer.accepted, answer.message
        spin_until(
            ros_node,
            lambda a=answer: any(
                e.event == EpisodeEvent.START and e.episode_index == a.episode_index for e in events
            ),
            20,
            "the START event",
        )
        start = next(
            e for e in events if e.event == EpisodeEvent.START and e.episode_index == answer.episode_index
        )
        assert start.seed == 7
        spin_until(
            ros_node,
            lambda s=start: any(m.header.stamp == s.header.stamp for m in images),
            20,
            "the episode's first frame",
        )
        firsts.append(next(m for m in images if m.header.stamp == start.header.stamp))
    assert bytes(firsts[0].data) == bytes(firsts[1].data)
    stamps = [stamp_to_nanoseconds(m.header.stamp) for m in images]
    assert len(stamps) == len(set(stamps))  # no two frames share a stamp, across resets too
    refused = call(ros_node, client, ResetEpisode.Request(task="StackCube-v1", seed=1), timeout=60)
    assert not refused.accepted and "this bridge runs PickCube-v1" in refused.message


def test_scripted_episodes_are_labelled_by_ground_truth_and_the_driver_exits(ros_node, start_node):
    labels = listen(ros_node, SuccessLabel, "/success_label")
    events = listen(ros_node, EpisodeEvent, "/episode/event")
    images = listen(ros_node, Image, "/image_raw")
    bridge = start_node(
        "maniskill_bridge",
        params={
            "driver": "scripted",
            "scripted_modes": ["success", "place", "early_release"],
            "target_success": 2,
            "target_failure": 1,
            "success_hold_steps": 12,
            "real_time": False,
            "seed": 1,
        },
    )
    spin_until(ros_node, lambda: not bridge.alive(), 150, "both targets and the bridge's exit")
    assert bridge.popen.returncode == 0, bridge.output()
    assert "targets reached: 2 success and 1 failure" in bridge.output()
    spin_until(ros_node, lambda: sum(e.event != EpisodeEvent.START for e in events) >= 3, 5, "the end events")
    ends = [e for e in events if e.event != EpisodeEvent.START]
    starts = [e for e in events if e.event == EpisodeEvent.START]
    # each episode's mode and seed are announced at its start and end; success episodes
    # alternate with failures, and the success modes take turns
    modes = [("success", 1), ("early_release", 2), ("place", 3)]
    assert [(e.mode, e.seed) for e in starts] == modes
    assert [(e.mode, e.seed) for e in ends] == modes
    assert [e.event for e in ends] == [EpisodeEvent.SUCCESS, EpisodeEvent.FAILURE, EpisodeEvent.SUCCESS]
    assert [e.label for e in ends] == [
        EpisodeEvent.LABEL_SUCCESS,
        EpisodeEvent.LABEL_FAILURE,
        EpisodeEvent.LABEL_SUCCESS,
    ]
    for start, end in zip(starts, ends, strict=True):
        flags = [m.success for m in labels if m.episode_index == start.episode_index]
        assert len(flags) == end.step + 1  # the first frame after reset, then one per step
        assert flags[-1] == (end.label == EpisodeEvent.LABEL_SUCCESS)  # ground truth at the end
        frames = [
            m
            for m in images
            if stamp_to_nanoseconds(start.header.stamp)
            <= stamp_to_nanoseconds(m.header.stamp)
            <= stamp_to_nanoseconds(end.header.stamp)
        ]
        assert len(frames) == end.step + 1
    success_flags = [m.success for m in labels if m.episode_index == starts[0].episode_index]
    run = len(success_flags) - success_flags.index(True)
    assert run >= 12 and all(success_flags[-run:])  # held the success pose success_hold_steps


def test_scripted_driver_refuses_impossible_targets_clearly(ros_node, start_node):
    bridge = start_node(
        "maniskill_bridge",
        params={"driver": "scripted", "scripted_modes": ["no_grasp"], "target_success": 3},
    )
    spin_until(ros_node, lambda: not bridge.alive(), 60, "the bridge to exit")
    assert bridge.popen.returncode == 2
    assert "target_success > 0 needs a success mode (success or place) in scripted_modes" in bridge.output()


def test_scripted_episodes_recorded_as_labelled_bags(ros_node, start_node, tmp_path):
    """collect_data.launch.py's two nodes with its parameter file: bridge -> recorder -> bags."""
    import json

    from rosbags.highlevel import AnyReader

    config = ROOT / "config" / "collect_pickcube.yaml"
    targets = {"target_success": 1, "target_failure": 1}
    recorder = start_node("recorder_node", params_file=config, params={"save_dir": str(tmp_path), **targets})
    bridge = start_node("maniskill_bridge", params_file=config, params={**targets, "seed": 4})
    spin_until(ros_node, lambda: not recorder.alive(), 150, "the recorder to reach its targets and exit")
    assert recorder.popen.returncode == 0, recorder.output()
    spin_until(ros_node, lambda: not bridge.alive(), 30, "the bridge to exit")
    for label, mode in (("success", "success"), ("failure", "grasp_offset")):
        (bag,) = (tmp_path / label).iterdir()
        info = json.loads((bag / "episode.json").read_text())
        assert info["label"] == label and info["mode"] == mode and info["task"] == "PickCube-v1"
        with AnyReader([bag]) as reader:
            counts = {c.topic: c.msgcount for c in reader.connections}
            events = [
                reader.deserialize(raw, c.msgtype)
                for c, _t, raw in reader.messages()
                if c.topic == "/episode/event"
            ]
        steps = events[-1].step
        # every frame of the episode from its first (the bridge waited for the recorder)
        assert counts["/image_raw"] == counts["/success_label"] == counts["/joint_states"] == steps + 1
        assert counts["/side_camera/image_raw"] == steps + 1  # both views, every frame
        assert [e.event for e in events] == [
            EpisodeEvent.START,
            EpisodeEvent.SUCCESS if label == "success" else EpisodeEvent.FAILURE,
        ]


def test_lockstep_applies_exactly_the_actions_sent_for_each_step(ros_node, start_node):
    """The lockstep driver waits for each step's own action: a slow learner's steps are the
    actions it sent (never a held or zeroed one), an action for another step is dropped and
    counted, and silence aborts the episode with the step it waited for."""
    events = listen(ros_node, EpisodeEvent, "/episode/event")
    applied = listen(ros_node, PolicyAction, "/applied_action")
    params = {"driver": "lockstep", "lockstep_timeout": 1.5, "max_episode_steps": 1000, "log_throttle": 0.01}
    params["control_rate"] = 10  # not the task's 20 Hz: each step is 0.1 s of simulated time
    bridge = start_node("maniskill_bridge", params=params)
    started(ros_node, bridge)
    pub = ros_node.create_publisher(PolicyAction, "/action", QOS)
    spin_until(ros_node, lambda: pub.get_subscription_count() > 0, 30, "the action topic")
    reset = wait_for_service(ros_node, ResetEpisode, "/maniskill_bridge/reset", 60)
    answer = call(ros_node, reset, ResetEpisode.Request(seed=3), timeout=60)
    assert answer.accepted, answer.message
    episode = answer.episode_index
    applied.clear()
    stale = PolicyAction(episode_index=episode, step=7, gripper=1.0)
    stale.delta_position.x = 0.05
    pub.publish(stale)  # for a step that is not the current one: dropped
    sent = []
    for k in range(5):
        time.sleep(0.3)  # a learner far slower than 20 Hz: the bridge must wait, not step on
        msg = PolicyAction(episode_index=episode, step=k, gripper=1.0)
        msg.delta_position.z = 0.01 * (k + 1)
        pub.publish(msg)
        sent.append(msg.delta_position.z)
        spin_until(ros_node, lambda n=k + 1: len(applied) >= n, 10, f"step {k} to be applied")
    assert [m.step for m in applied] == [0, 1, 2, 3, 4]
    assert all(m.episode_index == episode for m in applied)
    assert [m.delta_position.z for m in applied] == pytest.approx(sent, abs=1e-4)
    assert all(abs(m.delta_position.x) < 1e-6 for m in applied)  # the stale action never ran
    stamps = [m.header.stamp.sec + m.header.stamp.nanosec * 1e-9 for m in applied]
    assert np.diff(stamps) == pytest.approx([0.1] * 4, abs=1e-6) and "at 10 Hz" in bridge.output()

    def aborted():
        return next((e for e in events if e.event == EpisodeEvent.ABORT and e.episode_index == episode), None)

    spin_until(ros_node, lambda: aborted() is not None, 10, "the episode to be aborted")
    assert f"no action for episode {episode} step 5 within lockstep_timeout=1.5 s" in aborted().message
    assert len(applied) == 5  # nothing was stepped while it waited
    spin_until(
        ros_node,
        lambda: any(e.event == EpisodeEvent.START and e.episode_index == episode + 1 for e in events),
        10,
        "the next episode (auto_reset)",
    )
    assert "dropped an action for episode" in bridge.output()
