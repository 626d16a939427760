"""maniskill_bridge: a ManiSkill 3 task on the ROS graph, looking like a real robot stack.

Publishes per control step: each sensor camera's image (rgb8) and camera_info, the joint
states, the end-effector pose, ground-truth success (SuccessLabel, source = simulation)
and the simulation clock on /clock; EpisodeEvents at start and end. Consumes
reward_msgs/PolicyAction (end-effector delta pose + gripper, pd_ee_delta_pose).

Time: the simulation clock starts at the wall-clock time the bridge started and advances
by one control period per step, so in real time it tracks the wall clock (latencies
computed by other nodes stay meaningful) and as fast as possible it runs ahead. All
stamps are simulation time; nodes that need it run with use_sim_time.

Drivers: `policy` (the default) steps the task with the PolicyAction messages it receives,
as a real robot would. `scripted` runs labelled episodes itself: ManiSkill's motion-planned
solutions and perturbed versions that fail (reward_model_sim.scripted), published step by
step exactly like policy episodes, with each episode's mode and seed in its EpisodeEvents.
The scripted driver lives in the bridge, not in a separate node, because a motion planner
needs the simulator's state (object poses, the robot model) and drives joint positions;
sending its steps as end-effector deltas over a topic would lose both.

Stepping happens in one thread; service calls (reset) are handed to it.
"""

from __future__ import annotations

import math
import threading
import time

import numpy as np
from geometry_msgs.msg import PoseStamped
from rclpy.clock import Clock as RosClock
from rclpy.clock import ClockType
from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.task import Future
from reward_msgs.msg import EpisodeEvent, PolicyAction, SuccessLabel
from reward_msgs.srv import ResetEpisode
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, Image, JointState
from std_msgs.msg import Header

from reward_model_ros.core.calibration import CameraCalibration
from reward_model_ros.nodes._run import spin_node
from reward_model_ros.nodes.params import (
    Param,
    ParameterError,
    at_least,
    declare_parameters,
    in_range,
    one_of,
    topic_name,
)
from reward_model_ros.ros.conversions import array_to_image, calibration_to_camera_info, seconds_to_stamp
from reward_model_sim.env import TASKS, ManiSkillEnv, Observation, SimConfig, normalised_action
from reward_model_sim.scripted import SCRIPTED_MODES, TASK_MODES, run_episode

NODE_NAME = "maniskill_bridge"

PARAMETERS = (
    Param("task", "PickCube-v1", "ManiSkill task", one_of(*TASKS), read_only=True),
    Param(
        "driver",
        "policy",
        "policy (steps with PolicyAction messages) | scripted (runs labelled scripted episodes)",
        one_of("policy", "scripted"),
        read_only=True,
    ),
    Param(
        "sim_backend",
        "physx_cpu",
        "physx_cpu | physx_cuda | auto",
        one_of("physx_cpu", "physx_cuda", "auto"),
        read_only=True,
    ),
    Param("render_backend", "cpu", "cpu (lavapipe) | gpu", one_of("cpu", "gpu"), read_only=True),
    Param("camera_width", 128, "sensor camera width, pixels", in_range(16, 4096), read_only=True),
    Param("camera_height", 128, "sensor camera height, pixels", in_range(16, 4096), read_only=True),
    Param(
        "camera_topics",
        [],
        "image topic per sensor camera, in the task's camera order; empty = image_raw for "
        "the first, <camera>/image_raw for others (camera_info beside each)",
        read_only=True,
        array_type="string",
    ),
    Param(
        "joint_names",
        [],
        "names to publish in joint_states (e.g. fr3_joint1..7, fingers); empty = ManiSkill's",
        read_only=True,
        array_type="string",
    ),
    Param(
        "max_episode_steps",
        100,
        "episode step limit (planned PickCube episodes need 60-106)",
        at_least(1),
        read_only=True,
    ),
    Param(
        "show_goal", True, "show the goal marker to the sensor cameras (PickCube hides it)", read_only=True
    ),
    Param("real_time", True, "step at the task's control rate (false: as fast as possible)"),
    Param(
        "hold_action",
        "zero",
        "when no new action arrived for a step: zero (stand still) | last (repeat it)",
        one_of("zero", "last"),
    ),
    Param("auto_reset", True, "start the next episode (seed + 1) when one ends; false: wait for ~/reset"),
    Param("end_on_success", False, "end the episode at the first successful step (false: at the step limit)"),
    Param("seed", 0, "seed of the first episode", at_least(0), read_only=True),
    Param("action_topic", "action", "reward_msgs/PolicyAction input", topic_name, read_only=True),
    Param(
        "episode_event_topic", "episode/event", "reward_msgs/EpisodeEvent output", topic_name, read_only=True
    ),
    Param(
        "wait_for_subscribers",
        [],
        "topics (as published, e.g. episode/event, image_raw) that must have a subscriber before "
        "the first episode starts: a recorder then sees every episode from its first frame",
        read_only=True,
        array_type="string",
    ),
    Param("log_throttle", 5.0, "seconds between repeated warnings (bad actions)", in_range(0.01, 3600.0)),
    Param(
        "scripted_modes",
        list(SCRIPTED_MODES),
        "scripted driver: modes to use; success episodes alternate with the failure modes in turn",
        lambda v: (
            None
            if v and set(v) <= set(SCRIPTED_MODES)
            else f"must be a non-empty list of {', '.join(SCRIPTED_MODES)}"
        ),
        read_only=True,
    ),
    Param(
        "target_success",
        5000,
        "scripted driver: successful episodes to produce (counted by ground truth)",
        at_least(0),
        read_only=True,
    ),
    Param(
        "target_failure",
        5000,
        "scripted driver: failed episodes to produce (counted by ground truth)",
        at_least(0),
        read_only=True,
    ),
    Param(
        "success_hold_steps",
        20,
        "scripted driver: steps a finished episode keeps its final pose (success episodes "
        "hold the success pose at least this long)",
        at_least(0),
        read_only=True,
    ),
    Param(
        "exit_when_done",
        True,
        "scripted driver: exit (code 0) once both targets are met; false: stay up, idle",
        read_only=True,
    ),
)


class _Stopped(Exception):
    """Raised inside a scripted episode when the node shuts down."""


def _calibration(camera: str, frame: np.ndarray, k: np.ndarray) -> CameraCalibration:
    """The simulated camera's pinhole model (no distortion) as a calibration."""
    return CameraCalibration(
        width=frame.shape[1],
        height=frame.shape[0],
        camera_name=camera,
        distortion_model="plumb_bob",
        k=k.reshape(-1).tolist(),
        d=[0.0] * 5,
        p=np.hstack([k, np.zeros((3, 1))]).reshape(-1).tolist(),
    )


class BridgeNode(Node):
    def __init__(self) -> None:
        super().__init__(NODE_NAME)
        p = declare_parameters(self, PARAMETERS, on_change=lambda changes: self.p.update(changes))
        self.p = p
        self.scripted = p["driver"] == "scripted"
        if self.scripted:
            self._check_scripted_parameters()
        cfg = SimConfig(
            task=p["task"],
            sim_backend=p["sim_backend"],
            render_backend=p["render_backend"],
            camera_width=p["camera_width"],
            camera_height=p["camera_height"],
            # a motion planner ends its episodes itself; the step limit is for policies
            max_episode_steps=100_000 if self.scripted else p["max_episode_steps"],
            show_goal=p["show_goal"],
            control_mode="pd_joint_pos" if self.scripted else "pd_ee_delta_pose",
        )
        try:
            self.sim = ManiSkillEnv(cfg)
        except Exception as exc:  # Vulkan missing, unknown task, ...
            raise ParameterError(
                f"{NODE_NAME}: cannot start {cfg.task}: {type(exc).__name__}: {exc}"
            ) from exc
        self.seed = p["seed"]
        self.episode = -1
        obs = self.sim.reset(self.seed)
        cameras = list(obs.frames)
        topics = list(p["camera_topics"]) or [
            "image_raw" if i == 0 else f"{cam}/image_raw" for i, cam in enumerate(cameras)
        ]
        if len(topics) != len(cameras):
            raise ParameterError(f"camera_topics has {len(topics)} entries for the task's cameras {cameras}")
        self.joint_names = list(p["joint_names"]) or self.sim.joint_names
        if len(self.joint_names) != len(self.sim.joint_names):
            raise ParameterError(
                f"joint_names has {len(self.joint_names)} names; the robot has "
                f"{len(self.sim.joint_names)} joints ({', '.join(self.sim.joint_names)})"
            )

        reliable = QoSProfile(
            depth=10, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST
        )
        images = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
        self.cameras = cameras
        self.camera_infos = {
            cam: calibration_to_camera_info(
                _calibration(cam, obs.frames[cam], obs.intrinsics.get(cam, np.eye(3)))
            )
            for cam in cameras
        }
        self.image_pubs = [self.create_publisher(Image, t, images) for t in topics]
        self.info_pubs = [
            self.create_publisher(
                CameraInfo, t.rsplit("/", 1)[0] + "/camera_info" if "/" in t else "camera_info", images
            )
            for t in topics
        ]
        self.joint_pub = self.create_publisher(JointState, "joint_states", reliable)
        self.pose_pub = self.create_publisher(PoseStamped, "ee_pose", reliable)
        self.success_pub = self.create_publisher(SuccessLabel, "success_label", reliable)
        self.event_pub = self.create_publisher(EpisodeEvent, p["episode_event_topic"], reliable)
        self.clock_pub = self.create_publisher(Clock, "/clock", QoSProfile(depth=1))
        self.create_subscription(PolicyAction, p["action_topic"], self._on_action, reliable)
        self.create_service(ResetEpisode, "~/reset", self._on_reset)

        self._lock = threading.Lock()
        self._action: np.ndarray | None = None
        self._fresh = False
        self._reset_request: tuple[ResetEpisode.Request, threading.Event, list] | None = None
        self._stop = threading.Event()
        self.sim_time = time.time()
        self.bad_actions = 0
        self.counts = {"success": 0, "failure": 0}
        # spin_node spins until this completes (scripted targets met, exit_when_done)
        self.finished = Future()
        self._finished = threading.Event()
        self.create_timer(
            0.2,
            lambda: self._finished.is_set() and self.finished.set_result(True),
            clock=RosClock(clock_type=ClockType.STEADY_TIME),  # fires under use_sim_time too
        )
        self._episode_mode = "policy"
        self._next_tick = time.monotonic()
        self._first_obs = obs
        target = self._run_scripted if self.scripted else self._run
        self._thread = threading.Thread(target=target, name="maniskill-steps", daemon=True)
        self._thread.start()
        inputs = (
            f"scripted episodes ({', '.join(p['scripted_modes'])}; targets {p['target_success']} "
            f"success / {p['target_failure']} failure)"
            if self.scripted
            else f"actions on {p['action_topic']}"
        )
        self.get_logger().info(
            f"{cfg.task} ({cfg.sim_backend}, {cfg.camera_width}x{cfg.camera_height}) at "
            f"{self.sim.control_freq:g} Hz{'' if p['real_time'] else ' (as fast as possible)'}; cameras "
            f"{dict(zip(cameras, topics, strict=True))}; {inputs}"
        )

    def _check_scripted_parameters(self) -> None:
        p = self.p
        allowed = TASK_MODES[p["task"]]
        unknown = [m for m in p["scripted_modes"] if m not in allowed]
        if unknown:
            raise ParameterError(
                f"scripted_modes {unknown} do not exist for {p['task']}; its modes are {', '.join(allowed)}"
            )
        failures = [m for m in p["scripted_modes"] if m != "success"]
        if p["target_success"] > 0 and "success" not in p["scripted_modes"]:
            raise ParameterError(
                "target_success > 0 needs 'success' in scripted_modes (or target_success:=0)"
            )
        if p["target_failure"] > 0 and not failures:
            raise ParameterError(
                "target_failure > 0 needs a failure mode in scripted_modes (or target_failure:=0)"
            )
        if p["target_success"] == 0 and p["target_failure"] == 0:
            raise ParameterError("target_success and target_failure are both 0: nothing to do")

    # --- inputs -------------------------------------------------------------------------
    def _on_action(self, msg: PolicyAction) -> None:
        values = [
            msg.delta_position.x,
            msg.delta_position.y,
            msg.delta_position.z,
            msg.delta_orientation.x,
            msg.delta_orientation.y,
            msg.delta_orientation.z,
            msg.gripper,
        ]
        if not all(math.isfinite(v) for v in values):
            self.bad_actions += 1
            self.get_logger().warning(
                f"refused an action with NaN or infinite values {values} ({self.bad_actions} so far)",
                throttle_duration_sec=self.p["log_throttle"],
            )
            return
        action, clipped = normalised_action(values[0:3], values[3:6], values[6])
        if clipped:
            self.get_logger().warning(
                "an action exceeded 0.1 m / 0.1 rad per step or gripper [-1, 1]: clipped",
                throttle_duration_sec=self.p["log_throttle"],
            )
        with self._lock:
            self._action, self._fresh = action, True

    def _on_reset(self, request, response):
        if self.scripted:
            response.accepted = False
            response.message = "this bridge runs scripted episodes (driver: scripted); it resets itself"
            return response
        done, result = threading.Event(), []
        with self._lock:
            self._reset_request = (request, done, result)
        if not done.wait(timeout=120):
            response.accepted, response.message = False, "the simulation did not reset within 120 s"
            return response
        return result[0]

    # --- the stepping thread ------------------------------------------------------------
    def _wait_for_subscribers(self) -> bool:
        """Block until every topic in wait_for_subscribers has a subscriber; False if stopping."""
        wanted = {self.resolve_topic_name(t) for t in self.p["wait_for_subscribers"]}
        # our own publishers count *matched* subscriptions (DDS ready to deliver), not just
        # subscriptions the graph has heard of
        own = {pub.topic_name: pub for pub in self.publishers}

        def subscribers(topic: str) -> int:
            return own[topic].get_subscription_count() if topic in own else self.count_subscribers(topic)

        last_log = 0.0
        while not self._stop.is_set() and self.context.ok():
            waiting = sorted(t for t in wanted if subscribers(t) == 0)
            if not waiting:
                return True
            if time.monotonic() - last_log > 10.0:
                last_log = time.monotonic()
                self.get_logger().info(
                    f"waiting for subscribers on {', '.join(waiting)} before the first episode"
                )
            time.sleep(0.1)
        return False

    def _run(self) -> None:
        if not self._wait_for_subscribers():
            return
        self._start_episode(self._first_obs, "policy")
        self._next_tick = time.monotonic()
        while not self._stop.is_set() and self.context.ok():
            try:
                self._serve_reset()
                self._step()
            except Exception as exc:
                if self._stop.is_set() or not self.context.ok():
                    return
                self.get_logger().error(
                    f"simulation step failed: {type(exc).__name__}: {exc}",
                    throttle_duration_sec=self.p["log_throttle"],
                )
            self._pace()

    def _pace(self) -> None:
        """In real time, sleep until the next control period (never catch up a backlog)."""
        if not self.p["real_time"]:
            return
        self._next_tick += 1.0 / self.sim.control_freq
        delay = self._next_tick - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        else:
            self._next_tick = time.monotonic()

    # --- the scripted driver ------------------------------------------------------------
    def _scripted_mode(self, index: int) -> str | None:
        """The mode of the next episode, or None when both targets are met. Success
        episodes alternate with failure episodes while both are wanted; failure modes
        take turns. A function of the counts only, so a run is reproducible."""
        p = self.p
        want_success = self.counts["success"] < p["target_success"]
        want_failure = self.counts["failure"] < p["target_failure"]
        failures = [m for m in p["scripted_modes"] if m != "success"]
        if not (want_success or want_failure):
            return None
        if want_success and (not want_failure or index % 2 == 0):
            return "success"
        return failures[self._failure_turn % len(failures)]

    def _run_scripted(self) -> None:
        p = self.p
        if not self._wait_for_subscribers():
            return
        self._failure_turn = 0
        index = 0
        while not self._stop.is_set() and self.context.ok():
            mode = self._scripted_mode(index)
            if mode is None:
                self._scripted_done()
                return
            if mode != "success":
                self._failure_turn += 1
            seed = p["seed"] + index
            index += 1
            try:
                ok = self._scripted_episode(mode, seed)
            except _Stopped:
                return
            except Exception as exc:  # a planner error: report it, keep producing episodes
                if self._stop.is_set() or not self.context.ok():
                    return
                self.get_logger().error(
                    f"scripted episode {mode} seed {seed} failed: {type(exc).__name__}: {exc}"
                )
                self._event(
                    EpisodeEvent.ABORT,
                    self._last_obs,
                    EpisodeEvent.LABEL_UNKNOWN,
                    f"script error: {type(exc).__name__}: {exc}",
                    mode,
                )
                continue
            self.counts["success" if ok else "failure"] += 1
            planned = "success" if mode == "success" else "failure"
            outcome = "success" if ok else "failure"
            note = "" if planned == outcome else f" (planned {planned}: labelled by the simulation)"
            self._event(
                EpisodeEvent.SUCCESS if ok else EpisodeEvent.FAILURE,
                self._last_obs,
                EpisodeEvent.LABEL_SUCCESS if ok else EpisodeEvent.LABEL_FAILURE,
                f"scripted {mode}: {outcome} after {self._last_obs.step} steps{note}",
                mode,
            )
            self.get_logger().info(
                f"episode {self.episode} ({mode}, seed {seed}): {outcome}, "
                f"{self._last_obs.step} steps{note}; "
                f"{self.counts['success']}/{p['target_success']} success, "
                f"{self.counts['failure']}/{p['target_failure']} failure"
            )

    def _scripted_episode(self, mode: str, seed: int) -> bool:
        self.seed = seed

        def on_reset(obs, info) -> None:
            self._check_stop()
            self._start_episode(self.sim.after_reset(obs, info), mode)

        def on_step(obs, info) -> None:
            self._check_stop()
            self.sim.step_count += 1
            self._last_obs = self.sim.observe(obs, info)
            self.sim_time += 1.0 / self.sim.control_freq
            self._publish(self._last_obs)
            self._pace()

        return run_episode(
            self.sim.env,
            self.sim.cfg.task,
            mode,
            seed,
            on_step,
            hold_steps=self.p["success_hold_steps"],
            on_reset=on_reset,
        )

    def _check_stop(self) -> None:
        if self._stop.is_set() or not self.context.ok():
            raise _Stopped

    def _scripted_done(self) -> None:
        p = self.p
        self.get_logger().info(
            f"targets reached: {self.counts['success']} success and {self.counts['failure']} failure "
            f"episodes (targets {p['target_success']} / {p['target_failure']})"
            + ("; exiting" if p["exit_when_done"] else "; idle")
        )
        # the last EpisodeEvent must reach reliable subscribers (recorders) before we go
        self.event_pub.wait_for_all_acked(Duration(seconds=5.0))
        if p["exit_when_done"]:
            self._finished.set()  # the executor's timer ends spinning: main() returns 0

    def _serve_reset(self) -> None:
        with self._lock:
            pending, self._reset_request = self._reset_request, None
        if pending is None:
            return
        request, done, result = pending
        response = ResetEpisode.Response()
        if request.task and request.task != self.sim.cfg.task:
            response.accepted = False
            response.message = (
                f"task {request.task!r}: this bridge runs {self.sim.cfg.task}; start a bridge "
                "with task:=... to change it"
            )
        else:
            self.seed = int(request.seed) if request.seed >= 0 else self.seed + 1
            self._start_episode(self.sim.reset(self.seed), "policy")
            response.accepted, response.episode_index = True, self.episode
            response.message = f"episode {self.episode} of {self.sim.cfg.task}, seed {self.seed}"
        result.append(response)
        done.set()

    def _step(self) -> None:
        with self._lock:
            fresh, self._fresh = self._fresh, False
            action = self._action if (fresh or self.p["hold_action"] == "last") else None
        if action is None:
            action = np.zeros(7, np.float32)
            action[6] = self._last_gripper
        self._last_gripper = float(action[6])
        obs, truncated = self.sim.step(action)
        self.sim_time += 1.0 / self.sim.control_freq
        self._publish(obs)
        ended = truncated or (self.p["end_on_success"] and obs.success)
        if ended:
            event = (
                EpisodeEvent.SUCCESS
                if obs.success
                else (EpisodeEvent.TIMEOUT if truncated else EpisodeEvent.FAILURE)
            )
            self._event(
                event,
                obs,
                EpisodeEvent.LABEL_SUCCESS if obs.success else EpisodeEvent.LABEL_FAILURE,
                f"{'step limit' if truncated else 'success'} after {obs.step} steps",
            )
            if self.p["auto_reset"]:
                self.seed += 1
                self._start_episode(self.sim.reset(self.seed), "policy")
            else:
                self._wait_for_reset()

    def _wait_for_reset(self) -> None:
        while not self._stop.is_set() and self.context.ok():
            with self._lock:
                if self._reset_request is not None:
                    return
            time.sleep(0.01)

    def _start_episode(self, obs: Observation, mode: str) -> None:
        # a reset takes one control period of simulation time, so that the new episode's
        # first frame never shares a stamp with the previous episode's last one
        self.sim_time += 1.0 / self.sim.control_freq
        self.episode += 1
        self._last_gripper = 1.0  # open
        with self._lock:
            self._action, self._fresh = None, False
        self._last_obs = obs
        self._event(EpisodeEvent.START, obs, EpisodeEvent.LABEL_UNKNOWN, "", mode)
        self._publish(obs)

    # --- outputs ------------------------------------------------------------------------
    def _header(self, frame_id: str = "") -> Header:
        return Header(stamp=seconds_to_stamp(self.sim_time), frame_id=frame_id)

    def _event(self, event: int, obs: Observation, label: int, message: str, mode: str = "policy") -> None:
        self.event_pub.publish(
            EpisodeEvent(
                header=self._header(),
                event=event,
                episode_index=self.episode,
                task=self.sim.cfg.task,
                mode=mode,
                seed=self.seed,
                label=label,
                step=obs.step,
                message=message,
            )
        )

    def _publish(self, obs: Observation) -> None:
        self.clock_pub.publish(Clock(clock=seconds_to_stamp(self.sim_time)))
        for cam, image_pub, info_pub in zip(self.cameras, self.image_pubs, self.info_pubs, strict=True):
            header = self._header(cam)
            frame = obs.frames[cam]
            image_pub.publish(array_to_image(frame, "rgb8", header))
            info = self.camera_infos[cam]  # fixed intrinsics: built once, restamped
            info.header = header
            info_pub.publish(info)
        header = self._header("world")
        self.joint_pub.publish(
            JointState(header=header, name=self.joint_names, position=obs.joint_positions.tolist())
        )
        pose = PoseStamped(header=header)
        pose.pose.position.x, pose.pose.position.y, pose.pose.position.z = obs.tcp_position.tolist()
        o = pose.pose.orientation
        o.x, o.y, o.z, o.w = obs.tcp_orientation.tolist()
        self.pose_pub.publish(pose)
        self.success_pub.publish(
            SuccessLabel(
                header=self._header(),
                success=obs.success,
                source=SuccessLabel.SOURCE_SIMULATION,
                confidence=1.0,
                episode_index=self.episode,
            )
        )

    def destroy_node(self) -> None:
        if hasattr(self, "_thread"):
            self._stop.set()
            self._thread.join(timeout=10)
        if hasattr(self, "sim"):
            self.sim.close()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    return spin_node(BridgeNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
