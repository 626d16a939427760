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
as a real robot would: at the control rate, holding (or zeroing) the action when none came.
`lockstep` is for learners slower than the control rate: each step waits for the action
whose `episode_index` and `step` match the observation just published (the episode's k-th
step is answered by the action with step k, counting from 0 at the START event), so a
learner never trains on actions it did not send; actions for other steps are counted and
dropped, and no matching action within `lockstep_timeout` seconds aborts the episode (an
ABORT EpisodeEvent that says which step it waited for). `scripted` runs labelled episodes
itself: ManiSkill's motion-planned solutions and perturbed versions that fail
(reward_model_sim.scripted), published step by step exactly like policy episodes, with each
episode's mode and seed in its EpisodeEvents.
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
from rclpy.duration import Duration
from rclpy.node import Node
from reward_msgs.msg import EpisodeEvent, ObservationVector, PolicyAction, SuccessLabel
from reward_msgs.srv import ResetEpisode
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, Image, JointState
from std_msgs.msg import Header

from reward_model_ros.core.calibration import CameraCalibration
from reward_model_ros.core.stats import RateWindow
from reward_model_ros.nodes._run import Finished, exit_fast, spin_node
from reward_model_ros.nodes.params import (
    Param,
    ParameterError,
    at_least,
    declare_parameters,
    in_range,
    one_of,
    positive,
    topic_name,
)
from reward_model_ros.ros import qos as qos_profiles
from reward_model_ros.ros.conversions import array_to_image, calibration_to_camera_info, seconds_to_stamp
from reward_model_ros.ros.diagnostics import OK, WARN, Diagnostics
from reward_model_sim.env import (
    POLICY_CONTROL_MODES,
    TASKS,
    ManiSkillEnv,
    Observation,
    SimConfig,
    normalised_action,
    policy_units,
)
from reward_model_sim.scripted import PICKCUBE_MODES, SUCCESS_MODES, TASK_MODES, run_episode
from reward_model_sim.scripted import control_mode as scripted_control_mode

NODE_NAME = "maniskill_bridge"
ALL_MODES = {m for modes in TASK_MODES.values() for m in modes}
MAX_SEED = 2**31 - 1
RESET_TIMEOUT_S = 60.0


def _six_or_none(pose) -> str | None:
    """A camera pose parameter: eye and look-at point, or empty."""
    return None if len(pose) in (0, 6) else "must be 6 numbers (eye, target) or empty"


PARAMETERS = (
    Param("task", "PickCube-v1", "ManiSkill task", one_of(*TASKS), read_only=True),
    Param(
        "driver",
        "policy",
        "policy (steps with PolicyAction messages at the control rate) | lockstep (each step waits for "
        "the action for that step) | scripted (runs labelled scripted episodes)",
        one_of("policy", "lockstep", "scripted"),
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
        "camera_pose",
        [],
        "sensor camera [eye x, y, z, target x, y, z] in metres, world frame; empty = the task's camera",
        _six_or_none,
        read_only=True,
        array_type="double",
    ),
    Param(
        "camera_fov",
        0.0,
        "sensor camera vertical field of view, rad; 0 = the task's",
        in_range(0.0, 3.0),
        read_only=True,
    ),
    Param(
        "camera_supersample",
        1,
        "render the sensor cameras this many times wider and higher and average each block down "
        "to camera_width x camera_height (anti-aliased edges, as a real sensor gives); 1 = off",
        in_range(1, 8),
        read_only=True,
    ),
    Param(
        "side_camera_pose",
        [],
        "a second sensor camera, side_camera, [eye x, y, z, target x, y, z] in metres, world frame, "
        "the first one's size (published on side_camera/image_raw); empty = none",
        _six_or_none,
        read_only=True,
        array_type="double",
    ),
    Param(
        "side_camera_fov",
        0.0,
        "the side camera's vertical field of view, rad; 0 = pi/2",
        in_range(0.0, 3.0),
        read_only=True,
    ),
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
    Param(
        "control_mode",
        "pd_ee_delta_pose",
        "policy driver: what a PolicyAction drives: pd_ee_delta_pose (position and rotation deltas) | "
        "pd_ee_delta_pos (position deltas only; PushCube)",
        one_of(*POLICY_CONTROL_MODES),
        read_only=True,
    ),
    Param("real_time", True, "step at the control rate (false: as fast as possible)"),
    Param(
        "control_rate",
        0,
        "Hz of the control steps (0: the task's, 20 Hz for PickCube and PushCube); must divide the "
        "100 Hz physics rate",
        lambda v: None if v == 0 or (1 <= v <= 100 and 100 % v == 0) else "must be 0 or divide 100",
        read_only=True,
    ),
    Param(
        "hold_action",
        "zero",
        "when no new action arrived for a step: zero (stand still) | last (repeat it)",
        one_of("zero", "last"),
    ),
    Param(
        "lockstep_timeout",
        2.0,
        "lockstep driver: seconds to wait for a step's action before the episode is aborted",
        positive,
    ),
    Param("auto_reset", True, "start the next episode (seed + 1) when one ends; false: wait for ~/reset"),
    Param("end_on_success", False, "end the episode at the first successful step (false: at the step limit)"),
    Param("seed", 0, "seed of the first episode", in_range(0, 2**31 - 1), read_only=True),
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
        list(PICKCUBE_MODES),
        "scripted driver: modes to use; success episodes (the success modes, success and place, in "
        "turn) alternate with the failure modes in turn (the modes of each task: "
        "reward_model_sim.scripted.TASK_MODES)",
        lambda v: (
            None
            if v and set(v) <= ALL_MODES
            else f"must be a non-empty list of {', '.join(sorted(ALL_MODES))}"
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


def rotation_vector(q0, q1) -> np.ndarray:
    """The rotation from quaternion q0 to q1 (both x, y, z, w) as a rotation vector (rad)."""
    x0, y0, z0, w0 = (float(v) for v in q0)
    x1, y1, z1, w1 = (float(v) for v in q1)
    # q = q1 * conj(q0)
    w = w1 * w0 + x1 * x0 + y1 * y0 + z1 * z0
    x = -w1 * x0 + x1 * w0 - y1 * z0 + z1 * y0
    y = -w1 * y0 + x1 * z0 + y1 * w0 - z1 * x0
    z = -w1 * z0 - x1 * y0 + y1 * x0 + z1 * w0
    if w < 0:
        w, x, y, z = -w, -x, -y, -z
    s = math.sqrt(x * x + y * y + z * z)
    if s < 1e-12:
        return np.zeros(3)
    angle = 2.0 * math.atan2(s, w)
    return np.array([x, y, z]) / s * angle


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
            camera_pose=list(p["camera_pose"]),
            camera_fov=p["camera_fov"],
            camera_supersample=p["camera_supersample"],
            side_camera_pose=list(p["side_camera_pose"]),
            side_camera_fov=p["side_camera_fov"],
            # a motion planner ends its episodes itself; the step limit is for policies
            max_episode_steps=100_000 if self.scripted else p["max_episode_steps"],
            show_goal=p["show_goal"],
            control_mode=scripted_control_mode(p["task"]) if self.scripted else p["control_mode"],
            control_rate=float(p["control_rate"]),
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

        reliable = qos_profiles.reliable()
        images = qos_profiles.images("reliable", 5)
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
        # the action applied at each step (what a learner from recorded episodes needs) and the
        # task's state vector (privileged: object and goal poses; for simulated policies)
        self.applied_pub = self.create_publisher(PolicyAction, "applied_action", reliable)
        self.state_pub = self.create_publisher(ObservationVector, "state", reliable)
        self.event_pub = self.create_publisher(EpisodeEvent, p["episode_event_topic"], reliable)
        self.clock_pub = self.create_publisher(Clock, "/clock", qos_profiles.CLOCK)
        self.create_subscription(PolicyAction, p["action_topic"], self._on_action, reliable)
        self.create_service(ResetEpisode, "~/reset", self._on_reset)

        self._lock = threading.Lock()
        self._action_arrived = threading.Condition(self._lock)
        self._action: np.ndarray | None = None
        self._action_for: tuple[int, int] = (-1, -1)  # (episode_index, step) of self._action
        self._fresh = False
        self.lockstep = p["driver"] == "lockstep"
        self.stale_actions = 0
        self.lockstep_aborts = 0
        self._reset_request: tuple[ResetEpisode.Request, threading.Event, list] | None = None
        self._stop = threading.Event()
        self.sim_time = time.time()
        self.bad_actions = 0
        self.counts = {"success": 0, "failure": 0}
        self.steps = 0
        self.step_rate = RateWindow()
        self.diagnostics = Diagnostics(self, "simulation", self._health)
        # spin_node spins until this completes (scripted targets met, exit_when_done)
        self.finished = Finished(self)
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
            else f"actions on {p['action_topic']}{' (lockstep)' if self.lockstep else ''}"
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
        failures = [m for m in p["scripted_modes"] if m not in SUCCESS_MODES]
        if p["target_success"] > 0 and not set(p["scripted_modes"]) & set(SUCCESS_MODES):
            raise ParameterError(
                f"target_success > 0 needs a success mode ({' or '.join(SUCCESS_MODES)}) in scripted_modes "
                "(or target_success:=0)"
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
        action, clipped = normalised_action(values[0:3], values[3:6], values[6], self.sim.cfg.control_mode)
        if clipped:
            self.get_logger().warning(
                "an action exceeded 0.1 m / 0.1 rad per step or gripper [-1, 1]: clipped",
                throttle_duration_sec=self.p["log_throttle"],
            )
        with self._lock:
            self._action, self._fresh = action, True
            self._action_for = (int(msg.episode_index), int(msg.step))
            self._action_arrived.notify_all()

    def _on_reset(self, request, response):
        if self.scripted:
            response.accepted = False
            response.message = "this bridge runs scripted episodes (driver: scripted); it resets itself"
            return response
        if request.seed != -1 and not 0 <= request.seed <= MAX_SEED:
            response.accepted = False
            response.message = (
                f"seed {request.seed}: must be -1 (the next seed) or in [0, {MAX_SEED}] (the simulator "
                "seeds numpy with it)"
            )
            return response
        done, result = threading.Event(), []
        with self._lock:
            if self._reset_request is not None:
                response.accepted, response.message = False, "a reset is already in progress: wait for it"
                return response
            self._reset_request = (request, done, result)
        deadline = time.monotonic() + RESET_TIMEOUT_S
        while not done.wait(timeout=0.1):  # short waits: a shutdown never waits for a reset
            if self._stop.is_set() or not self.context.ok() or time.monotonic() > deadline:
                with self._lock:
                    if self._reset_request is not None and self._reset_request[1] is done:
                        self._reset_request = None  # never served: do not poison the next one
                why = (
                    "the bridge is shutting down"
                    if self._stop.is_set()
                    else (
                        f"the simulation did not reset within {RESET_TIMEOUT_S:.0f} s (see the bridge's log)"
                    )
                )
                response.accepted, response.message = False, why
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
        """In real time, sleep until the next control period (never catch up a backlog); in
        lockstep the actions set the pace."""
        if not self.p["real_time"] or self.lockstep:
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
        episodes alternate with failure episodes while both are wanted; the success modes
        take turns, and so do the failure modes. A function of the counts only, so a run is
        reproducible."""
        p = self.p
        want_success = self.counts["success"] < p["target_success"]
        want_failure = self.counts["failure"] < p["target_failure"]
        successes = [m for m in p["scripted_modes"] if m in SUCCESS_MODES]
        failures = [m for m in p["scripted_modes"] if m not in SUCCESS_MODES]
        if not (want_success or want_failure):
            return None
        if want_success and (not want_failure or index % 2 == 0):
            return successes[self._success_turn % len(successes)]
        return failures[self._failure_turn % len(failures)]

    def _run_scripted(self) -> None:
        p = self.p
        if not self._wait_for_subscribers():
            return
        self._failure_turn = 0
        self._success_turn = 0
        index = 0
        while not self._stop.is_set() and self.context.ok():
            mode = self._scripted_mode(index)
            if mode is None:
                self._scripted_done()
                return
            if mode in SUCCESS_MODES:
                self._success_turn += 1
            else:
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
            planned = "success" if mode in SUCCESS_MODES else "failure"
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

        def on_step(obs, info, action) -> None:
            self._check_stop()
            self.sim.step_count += 1
            before = self._last_obs
            self._last_obs = self.sim.observe(obs, info)
            self.sim_time += 1.0 / self.sim.control_freq
            self._publish(self._last_obs, self._scripted_applied(before, self._last_obs, action))
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

    def _scripted_applied(self, before: Observation, after: Observation, action) -> tuple:
        """The applied action in PolicyAction units: the command itself where the scripted
        episode drives end-effector deltas, else (joint targets of a motion plan) the TCP motion
        it achieved: position delta, rotation vector, gripper command."""
        mode = self.sim.cfg.control_mode
        if mode in POLICY_CONTROL_MODES:
            return policy_units(action, mode)
        rot = rotation_vector(before.tcp_orientation, after.tcp_orientation)
        return after.tcp_position - before.tcp_position, rot, float(np.asarray(action).reshape(-1)[-1])

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
            self.finished.set()  # the executor's timer ends spinning: main() returns 0

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
            seed = int(request.seed) if request.seed >= 0 else self.seed + 1
            try:
                obs = self.sim.reset(seed)
            except Exception as exc:  # the reply says why, the bridge stays usable
                response.accepted = False
                response.message = f"reset with seed {seed} failed: {type(exc).__name__}: {exc}"
                self.get_logger().error(response.message)
            else:
                self.seed = seed
                self._start_episode(obs, "policy")
                response.accepted, response.episode_index = True, self.episode
                response.message = f"episode {self.episode} of {self.sim.cfg.task}, seed {self.seed}"
        result.append(response)
        done.set()

    def _lockstep_action(self) -> np.ndarray | None:
        """The action for the step about to be taken; None if a reset or shutdown came first,
        or (after aborting the episode) if none arrived within lockstep_timeout."""
        want = (self.episode, self._last_obs.step)
        deadline = time.monotonic() + self.p["lockstep_timeout"]
        with self._action_arrived:
            while True:
                if self._fresh:
                    self._fresh = False
                    if self._action_for == want:
                        return self._action
                    self.stale_actions += 1
                    self.get_logger().warning(
                        f"dropped an action for episode {self._action_for[0]} step {self._action_for[1]}: "
                        f"waiting for episode {want[0]} step {want[1]} ({self.stale_actions} dropped so far)",
                        throttle_duration_sec=self.p["log_throttle"],
                    )
                if self._reset_request is not None or self._stop.is_set() or not self.context.ok():
                    return None
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._action_arrived.wait(min(left, 0.1))
        self.lockstep_aborts += 1
        why = (
            f"no action for episode {want[0]} step {want[1]} within lockstep_timeout="
            f"{self.p['lockstep_timeout']:g} s: is the policy node running and publishing on "
            f"{self.p['action_topic']}?"
        )
        self.get_logger().error(f"episode {self.episode} aborted: {why}")
        self._event(EpisodeEvent.ABORT, self._last_obs, EpisodeEvent.LABEL_UNKNOWN, why)
        self._next_episode()
        return None

    def _next_episode(self) -> None:
        if self.p["auto_reset"]:
            self.seed += 1
            self._start_episode(self.sim.reset(self.seed), "policy")
        else:
            self._wait_for_reset()

    def _step(self) -> None:
        if self.lockstep:
            action = self._lockstep_action()
            if action is None:
                return
        else:
            with self._lock:
                fresh, self._fresh = self._fresh, False
                action = self._action if (fresh or self.p["hold_action"] == "last") else None
        if action is None:
            action = np.zeros(7 if self.sim.cfg.control_mode == "pd_ee_delta_pose" else 4, np.float32)
            action[-1] = self._last_gripper
        self._last_gripper = float(action[-1])
        obs, truncated = self.sim.step(action)
        self.sim_time += 1.0 / self.sim.control_freq
        self._last_obs = obs
        self._publish(obs, policy_units(action, self.sim.cfg.control_mode))
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
            self._next_episode()

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

    def _health(self):
        """/diagnostics: step rate against the control rate, episodes, refused actions."""
        rate = self.step_rate.rate()
        values = {
            "task": self.sim.cfg.task,
            "driver": self.p["driver"],
            "step_rate_hz": rate,
            "control_rate_hz": self.sim.control_freq,
            "steps": self.steps,
            "episode": self.episode,
            "episodes_success": self.counts["success"],
            "episodes_failure": self.counts["failure"],
            "actions_refused": self.bad_actions,
        }
        if self.lockstep:
            values |= {"actions_dropped_stale": self.stale_actions, "lockstep_aborts": self.lockstep_aborts}
        if self.p["real_time"] and self.steps and rate < 0.8 * self.sim.control_freq:
            return (
                WARN,
                f"stepping at {rate:.1f} Hz, below the {self.sim.control_freq:g} Hz control rate",
                values,
            )
        return OK, f"{self.sim.cfg.task} at {rate:.1f} steps/s, episode {self.episode}", values

    def _publish(self, obs: Observation, applied: tuple | None = None) -> None:
        """Everything of one step; `applied`: the action that led to `obs` (None at a reset)."""
        self.steps += 1
        self.step_rate.tick()
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
        if obs.state is not None:
            self.state_pub.publish(ObservationVector(header=self._header("world"), data=obs.state.tolist()))
        if applied is not None:
            dp, drot, grip = applied
            msg = PolicyAction(header=self._header("world"), episode_index=self.episode)
            msg.step = max(0, obs.step - 1)  # the step it was applied at; stamped like its result
            msg.delta_position.x, msg.delta_position.y, msg.delta_position.z = (float(v) for v in dp)
            o = msg.delta_orientation
            o.x, o.y, o.z = (float(v) for v in drot)
            msg.gripper = float(grip)
            self.applied_pub.publish(msg)

    def destroy_node(self) -> None:
        if hasattr(self, "_thread"):
            self._stop.set()
            self._thread.join(timeout=10)
        if hasattr(self, "sim"):
            self.sim.close()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    code = spin_node(BridgeNode, args)
    exit_fast(code)  # the environment is closed: a SIGINT ends the bridge in well under 2 s
    return code


if __name__ == "__main__":
    raise SystemExit(main())
