"""RL over ROS on a (fake) Franka, across processes: fake_arm with its fake camera,
franka_adapter, arm_observer, reward_node (an untrained model) and rl_trainer with
episode_start first_observation, as launch/realworld_rl.launch.py wires them.

Every stored transition's reward must be the RewardStamped of its frame (by the frame's stamp,
which arm_observer copies onto the observation); the trainer announces each episode (START,
TIMEOUT) with consecutive indices; every target stays in the adapter's box; a stale arm pose
(fake_arm's ~/pause_state) stops the observations and the trainer aborts that episode, stores
nothing from the stale time, and goes on after the operator's ~/enable. The rewards differ
from frame to frame (an environment reward the test changes continuously, combine_mode add),
so a wrong pairing shows.
"""

from __future__ import annotations

import itertools
import math
import time
from pathlib import Path

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseStamped
from helpers import call, spin_for, spin_until, wait_for_service
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from reward_msgs.msg import EpisodeEvent, ObservationVector, PolicyAction, RewardStamped
from sensor_msgs.msg import Image
from std_msgs.msg import Float32
from std_srvs.srv import SetBool

from reward_model_ros.core.arm_safety import ArmSafetyConfig
from reward_model_ros.core.checkpoint import save_checkpoint, untrained
from reward_model_ros.core.config import ModelConfig
from reward_model_ros.core.observation import (
    POSE_NAMES,
    JointTable,
    RateGate,
    observation_vector,
    stale_reason,
)
from reward_model_ros.core.stamps import stamp_ns
from reward_model_ros.ros.conversions import pose_from_ros

ROOT = Path(__file__).resolve().parents[1]
PI = math.pi
QOS = QoSProfile(depth=500, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
STEPS = 10  # per episode: ~1 s at 10 Hz, so the stale pose lands mid-episode even under load
MAX_POSE_AGE = 0.25
BOX_LOW = [0.4, -0.1, 0.2, PI - 0.4, -0.4, -0.6]
BOX_HIGH = [0.6, 0.1, 0.4, -PI + 0.4, 0.4, 0.6]
BOX = ArmSafetyConfig(workspace_low=tuple(BOX_LOW), workspace_high=tuple(BOX_HIGH))
FAKE_ARM = {
    "rate": 100.0,
    "max_speed": 0.5,
    "max_angular_speed": 2.0,
    "initial_pose": [0.5, 0.0, 0.3, PI, 0.0, 0.0],
    "camera_topic": "image_raw",
    "camera_rate": 10.0,
    "camera_width": 64,
    "camera_height": 64,
}
ADAPTER = {
    "start_enabled": True,
    # a generous watchdog: DDS delays of up to ~1 s happen on a loaded 2-core machine
    "control_rate": 2.5,
    "watchdog.action_timeout_periods": 3,  # 1.2 s; episode ends (TIMEOUT events) stop the deadline
    "watchdog.state_timeout": 0.8,
    "safety.workspace_low": BOX_LOW,
    "safety.workspace_high": BOX_HIGH,
    "reset.home_pose": [0.5, 0.0, 0.3, PI, 0.0, 0.0],
    "reset.duration": 0.5,
    "reset.timeout": 10.0,
}
OBSERVER = {
    "image_topic": "image_raw",
    "image_qos": "reliable",
    "joint_states_topic": "joint_states",
    "max_pose_age": MAX_POSE_AGE,
}


def trainer_params(out: Path) -> dict:
    return {
        "episode_start": "first_observation",
        "reset_service": "/franka_adapter/reset",
        "task": "fake_reach",
        "max_episode_steps": STEPS,
        "terminate_on_success": False,
        "reward_timeout": 3.0,
        "step_timeout": 2.0,
        "reset_timeout": 20.0,
        "output_dir": str(out),
        "checkpoint_interval": 0.0,
        "learning_starts": 5,
        "batch_size": 8,
        "buffer_size": 1000,
        "demo_buffer_size": 100,
        "hidden": [32, 32],
        "param_push_interval": 5,
    }


# --- the observation core (no ROS) -------------------------------------------------------------
def test_rate_gate_passes_at_most_the_rate_without_bursts():
    def passed(times, rate=10.0):
        gate, out = RateGate(rate), []
        for t in times:
            if gate.due(t):
                gate.mark(t)
                out.append(t)
        return out

    rng = np.random.default_rng(0)
    jittered = np.arange(100) * 0.1 + rng.uniform(-0.005, 0.005, 100)
    assert len(passed(jittered)) == 100  # a 10 Hz camera under a 10 Hz gate: every frame
    assert len(passed(np.arange(300) / 30.0)) == pytest.approx(100, abs=2)  # 30 Hz: every third
    assert len(passed(np.arange(150) / 15.0)) == pytest.approx(100, abs=2)  # 15 Hz: 10 of 15 a second
    # after a 2 s gap the gate does not let a burst through to catch up
    times = [*np.arange(10) / 30.0, *(2.0 + np.arange(30) / 30.0)]
    out = passed(times)
    assert all(b - a >= 0.09 for a, b in itertools.pairwise(out))


def test_observation_vector_and_staleness():
    joints = JointTable()
    joints.update(["j1", "j2"], [0.1, 0.2], now=10.0)
    joints.update(["j2", "j1"], [0.5, 0.4], now=10.05)  # another order: the first one's is kept
    names, data = observation_vector((1, 2, 3), (0, 0, 0, 1), joints)
    assert names == [*POSE_NAMES, "joint.j1", "joint.j2"]
    assert data == pytest.approx([1, 2, 3, 0, 0, 0, 1, 0.4, 0.5])
    assert observation_vector((1, 2, 3), (0, 0, 0, 1))[1] == [1.0, 2.0, 3.0, 0.0, 0.0, 0.0, 1.0]
    assert stale_reason(10.1, 0.1, pose_arrival=10.05, joints=joints) is None
    assert "pose is 0.150 s old" in stale_reason(10.2, 0.1, pose_arrival=10.05)
    assert stale_reason(10.1, 0.1, pose_arrival=None) == "no pose received yet"
    joints.update(["j2"], [0.6], now=10.3)  # j1 not refreshed: the oldest joint counts
    assert "joint states are 0.300 s old" in stale_reason(10.35, 0.1, pose_arrival=10.3, joints=joints)
    assert stale_reason(10.0, 0.1, pose_arrival=10.0, joints=JointTable()) == "no joint states received yet"


# --- the graph -----------------------------------------------------------------------------------
class Probe:
    def __init__(self, node) -> None:
        self.node = node
        self.rewards: dict[int, RewardStamped] = {}
        self.states: dict[int, ObservationVector] = {}
        self.rl_images: set[int] = set()
        self.camera: list[int] = []
        self.events: list[EpisodeEvent] = []
        self.actions: list[PolicyAction] = []
        self.targets: list[PoseStamped] = []
        self.observer: list = []
        node.create_subscription(RewardStamped, "/reward", lambda m: self._keep(self.rewards, m), QOS)
        node.create_subscription(ObservationVector, "/state", lambda m: self._keep(self.states, m), QOS)
        node.create_subscription(
            Image, "/rl/image", lambda m: self.rl_images.add(stamp_ns(m.header.stamp)), QOS
        )
        node.create_subscription(
            Image, "/image_raw", lambda m: self.camera.append(stamp_ns(m.header.stamp)), QOS
        )
        node.create_subscription(EpisodeEvent, "/episode/event", self.events.append, QOS)
        node.create_subscription(PolicyAction, "/action", self.actions.append, QOS)
        node.create_subscription(PoseStamped, "/target_pose", self.targets.append, QOS)
        node.create_subscription(
            DiagnosticArray,
            "/diagnostics",
            lambda m: self.observer.extend(s for s in m.status if s.name.startswith("arm_observer")),
            QOS,
        )

    @staticmethod
    def _keep(table: dict, msg) -> None:
        table[stamp_ns(msg.header.stamp)] = msg

    def of(self, kind: int) -> list[EpisodeEvent]:
        return [e for e in self.events if e.event == kind]

    def observer_counts(self) -> dict[str, str]:
        return {v.key: v.value for v in self.observer[-1].values} if self.observer else {}


def test_rl_on_a_fake_franka_pairs_rewards_by_stamp_and_aborts_on_a_stale_pose(
    ros_node, start_node, tmp_path
):
    ckpt = save_checkpoint(
        tmp_path / "clf", untrained(ModelConfig(arch="resnet10", image_size=[3, 64, 64]), 0.5).model, 0.5
    )
    probe = Probe(ros_node)
    env = ros_node.create_publisher(Float32, "/env_reward", QOS)
    counter = iter(range(10**9))
    ros_node.create_timer(0.01, lambda: env.publish(Float32(data=next(counter) * 1e-2)))

    t_start = time.monotonic()
    config = ROOT / "config"
    reward = start_node(
        "reward_node",
        params={
            "model.checkpoint_path": str(ckpt),
            "model.threads": 1,
            "reward_mode": "per_step",
            "image_qos": "reliable",
            "combine_mode": "add",
            "env_reward_topic": "env_reward",
        },
        remaps={"image_raw": "rl/image"},
    )
    fake = start_node("fake_arm", params_file=config / "fake_arm.yaml", params=FAKE_ARM)
    adapter = start_node("franka_adapter", params_file=config / "fake_arm.yaml", params=ADAPTER)
    observer = start_node("arm_observer", params_file=config / "realworld_rl.yaml", params=OBSERVER)
    out = tmp_path / "rl"
    trainer = start_node("rl_trainer", params_file=config / "realworld_rl.yaml", params=trainer_params(out))
    procs = (reward, fake, adapter, observer, trainer)

    def logs() -> str:
        return "\n".join(f"--- {p.executable}\n{p.output()[-3000:]}" for p in procs)

    # two whole episodes, announced by the trainer
    spin_until(
        ros_node,
        lambda: (
            len(probe.of(EpisodeEvent.TIMEOUT)) >= 2
            or probe.of(EpisodeEvent.ABORT)
            or not all(p.alive() for p in procs)
        ),
        90,
        "2 episodes (TIMEOUT events)",
    )
    assert all(p.alive() for p in procs), logs()
    assert not probe.of(EpisodeEvent.ABORT), [e.message for e in probe.of(EpisodeEvent.ABORT)]

    # the third episode: the arm's state stops (fake_arm keeps its camera running)
    spin_until(ros_node, lambda: len(probe.of(EpisodeEvent.START)) >= 3, 30, "the third START")
    pause = wait_for_service(ros_node, SetBool, "/fake_arm/pause_state")
    assert call(ros_node, pause, SetBool.Request(data=True)).success
    paused_ns = ros_node.get_clock().now().nanoseconds
    stale_episode = probe.of(EpisodeEvent.START)[2].episode_index
    spin_until(
        ros_node,
        lambda: any(e.event == EpisodeEvent.ABORT for e in probe.events),
        20,
        "the trainer to abort the episode with the stale pose",
    )
    abort = next(e for e in probe.events if e.event == EpisodeEvent.ABORT)
    assert abort.episode_index == stale_episode and "step_timeout" in abort.message, abort
    spin_until(
        ros_node,
        lambda: int(probe.observer_counts().get("skipped_stale", 0)) > 0,
        10,
        "arm_observer's diagnostics to count the skipped frames",
    )
    resumed_ns = ros_node.get_clock().now().nanoseconds
    # no observation from a frame taken once the pose had gone stale; the camera kept going
    stale_from = paused_ns + int((MAX_POSE_AGE + 0.3) * 1e9)
    assert not [t for t in probe.states if stale_from < t < resumed_ns], "an observation with a stale pose"
    assert sum(stale_from < t < resumed_ns for t in probe.camera) >= 5
    assert "frame skipped, no observation: the pose is" in observer.output(), observer.output()

    # the operator: the arm's state is back, the adapter's latched fault cleared; episodes go on
    assert call(ros_node, pause, SetBool.Request(data=False)).success
    enable = wait_for_service(ros_node, SetBool, "/franka_adapter/enable")
    spin_until(ros_node, lambda: call(ros_node, enable, SetBool.Request(data=True)).success, 10, "~/enable")
    spin_until(
        ros_node,
        lambda: any(e.episode_index > stale_episode for e in probe.of(EpisodeEvent.TIMEOUT)),
        30,
        "an episode after the operator's ~/enable",
    )
    spin_for(ros_node, 0.5)  # let the last messages land
    assert trainer.stop(timeout=20) == 0, trainer.output()  # SIGINT: the final checkpoint
    elapsed = time.monotonic() - t_start
    log = trainer.output()
    assert f"episode {stale_episode} aborted at step" in log and "is arm_observer publishing" in log, log

    # START / end events: consecutive indices, stamped like an observation, the recorder's fields
    starts, timeouts = probe.of(EpisodeEvent.START), probe.of(EpisodeEvent.TIMEOUT)
    indices = [e.episode_index for e in starts]
    assert indices == list(range(indices[0], indices[0] + len(indices))), indices
    assert [e.episode_index for e in timeouts] == [i for i in indices if i != stale_episode][: len(timeouts)]
    for e in starts + timeouts:
        assert stamp_ns(e.header.stamp) in probe.states, e
        assert (e.task, e.mode) == ("fake_reach", "policy"), e
    for e in timeouts:
        decision = probe.rewards[stamp_ns(e.header.stamp)].success
        assert e.step == STEPS and e.label == (
            EpisodeEvent.LABEL_SUCCESS if decision else EpisodeEvent.LABEL_FAILURE
        )
    assert not probe.of(EpisodeEvent.SUCCESS) and len(probe.of(EpisodeEvent.ABORT)) == 1

    # observations: the measured pose and the joints, stamped like the frame reward_node scored
    obs = next(iter(probe.states.values()))
    assert list(obs.names[:7]) == list(POSE_NAMES) and len(obs.data) == 7 + 9, obs.names
    # (the probe's subscriptions matched at different times, and the newest may be on their way)
    first = max(min(probe.states), min(probe.rl_images), min(probe.camera))
    settled = max(probe.states) - 10**9
    assert {t for t in probe.states if first <= t < settled} <= probe.rl_images
    assert {t for t in probe.rl_images if first <= t < settled} <= set(probe.camera)
    assert len(probe.rl_images) >= 3 * STEPS

    # every target inside the adapter's box
    assert len(probe.targets) >= 3 * STEPS
    for msg in probe.targets:
        assert BOX.in_box(pose_from_ros(msg.pose), tol=1e-6), pose_from_ros(msg.pose).xyz_rpy()

    # every stored transition: the reward of its own frame, the observation of that frame
    from reward_model_ros.rl.async_learner import load_transitions

    rows = load_transitions(out / "checkpoint")
    n = len(rows["rewards"])
    assert n >= 3 * STEPS, n
    for i in range(n):
        t = int(rows["next_stamp_ns"][i])
        assert t in probe.rewards, f"row {i}: no RewardStamped with its stamp {t}: a made-up reward"
        assert np.float32(rows["rewards"][i]) == np.float32(probe.rewards[t].reward), (
            f"row {i}: paired wrongly"
        )
        np.testing.assert_allclose(rows["next_obs"][i], probe.states[t].data, rtol=1e-6)
        assert not stale_from < t < resumed_ns, f"row {i}: learned from the stale time"
    assert len({float(r) for r in rows["rewards"]}) > n // 2  # the rewards varied
    assert rows["dones"].sum() == 0  # terminate_on_success false
    print(f"fake Franka RL: {n} transitions, {len(starts)} episodes, {elapsed:.1f} s to the final checkpoint")
