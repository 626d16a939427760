"""A ManiSkill 3 task behind a small, ROS-free interface: reset, step, observations as numpy.

The bridge node publishes what this returns; tests drive it directly. Only this package
imports mani_skill.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from reward_model_sim.cameras import (
    SIDE_CAMERA,
    ExtraCamera,
    check_supersample,
    downsample,
    downsample_intrinsics,
    extra_camera_task,
)

log = logging.getLogger(__name__)

TASKS = ("PickCube-v1", "PushCube-v1", "PegInsertionSide-v1", "StackCube-v1")
# pd_ee_delta_pose: a normalised action of +-1 moves the end-effector by +-0.1 m and
# rotates it by +-0.1 rad per control step (ManiSkill's Panda controller configuration).
POS_STEP_M = 0.1
ROT_STEP_RAD = 0.1


@dataclass
class SimConfig:
    task: str = "PickCube-v1"
    """ManiSkill task id"""
    sim_backend: str = "physx_cpu"
    """physx_cpu, or physx_cuda / auto where CUDA is available"""
    render_backend: str = "cpu"
    """cpu (lavapipe) or gpu"""
    camera_width: int = 128
    """sensor camera width in pixels"""
    camera_height: int = 128
    """sensor camera height in pixels"""
    camera_pose: list[float] = field(default_factory=list)
    """the sensor camera's eye and look-at point, [ex, ey, ez, tx, ty, tz] in metres (world
    frame); empty = the task's own camera"""
    camera_fov: float = 0.0
    """its vertical field of view in radians (0 = the task's)"""
    side_camera_pose: list[float] = field(default_factory=list)
    """a second sensor camera, `side_camera`, [ex, ey, ez, tx, ty, tz] in metres (world
    frame), the same size as the first; empty = none"""
    side_camera_fov: float = 0.0
    """its vertical field of view in radians (0 = pi/2)"""
    camera_supersample: int = 1
    """render every sensor camera this many times wider and higher, then average each block of
    pixels down to camera_width x camera_height (anti-aliasing, as a real sensor integrates a
    pixel's light; 1 = off)"""
    max_episode_steps: int = 100
    """episode step limit (planned PickCube episodes take 60-106 steps)"""
    show_goal: bool = True
    """make the task's goal marker visible to the sensor cameras (PickCube hides it)"""
    control_mode: str = "pd_ee_delta_pose"
    """pd_ee_delta_pose or pd_ee_delta_pos for policies (PolicyAction); pd_joint_pos for the
    motion-planned scripted episodes (PushCube's scripted episodes use pd_ee_delta_pos)"""
    control_rate: float = 0.0
    """Hz of the control steps; 0 = the task's (20 Hz for PickCube and PushCube). The physics
    runs at 100 Hz: the rate must divide 100 (e.g. 10, 20, 25, 50)"""


@dataclass
class Observation:
    frames: dict[str, np.ndarray]
    """camera name -> (H, W, 3) RGB uint8"""
    intrinsics: dict[str, np.ndarray]
    """camera name -> 3x3 K matrix"""
    joint_names: list[str]
    joint_positions: np.ndarray
    """radians / metres, in joint_names order"""
    tcp_position: np.ndarray
    """end-effector (TCP) position in the world frame, metres"""
    tcp_orientation: np.ndarray
    """end-effector orientation as a quaternion (x, y, z, w)"""
    success: bool
    step: int
    extras: dict[str, bool] = field(default_factory=dict)
    """other boolean info of the task, e.g. is_grasped"""
    state: np.ndarray | None = None
    """the task's flattened state vector (privileged: object and goal poses), float32"""


def _np(x) -> np.ndarray:
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


POLICY_CONTROL_MODES = ("pd_ee_delta_pose", "pd_ee_delta_pos")
"""control modes a PolicyAction maps onto: 6-D pose deltas + gripper, or 3-D position deltas + gripper"""


def normalised_action(
    delta_position, delta_rotation, gripper: float, control_mode: str = "pd_ee_delta_pose"
) -> tuple[np.ndarray, bool]:
    """PolicyAction units (m, rad rotation vector, gripper -1..1) -> the normalised action of
    `control_mode` in [-1, 1] (7 numbers for pd_ee_delta_pose, 4 for pd_ee_delta_pos, which
    has no rotation), and whether anything had to be clipped."""
    parts = [np.asarray(delta_position, float) / POS_STEP_M]
    if control_mode == "pd_ee_delta_pose":
        parts.append(np.asarray(delta_rotation, float) / ROT_STEP_RAD)
    elif control_mode != "pd_ee_delta_pos":
        raise ValueError(f"control_mode {control_mode!r}: a PolicyAction maps onto {POLICY_CONTROL_MODES}")
    raw = np.concatenate([*parts, [float(gripper)]])
    clipped = np.clip(raw, -1.0, 1.0)
    return clipped.astype(np.float32), bool(np.any(clipped != raw))


def policy_units(action: np.ndarray, control_mode: str) -> tuple[np.ndarray, np.ndarray, float]:
    """The inverse: a normalised action -> (delta_position m, delta_rotation rad, gripper)."""
    a = np.asarray(action, float).reshape(-1)
    if control_mode == "pd_ee_delta_pose":
        return a[:3] * POS_STEP_M, a[3:6] * ROT_STEP_RAD, float(a[6])
    if control_mode == "pd_ee_delta_pos":
        return a[:3] * POS_STEP_M, np.zeros(3), float(a[3])
    raise ValueError(f"control_mode {control_mode!r}: not a policy control mode {POLICY_CONTROL_MODES}")


# the sensor camera of each task (the one the classifier sees)
SENSOR_CAMERA = {
    "PickCube-v1": "base_camera",
    "PushCube-v1": "base_camera",
    "StackCube-v1": "base_camera",
    "PegInsertionSide-v1": "base_camera",
}


def sensor_configs(task: str, width: int, height: int, pose=(), fov: float = 0.0) -> dict:
    """ManiSkill's sensor_configs: every camera's size, and the main camera's pose and field of
    view when given (a view that keeps the goal and the object in sight, unoccluded)."""
    cfg: dict = {"width": width, "height": height}
    if pose or fov:
        camera: dict = {"width": width, "height": height}
        if pose:
            if len(pose) != 6:
                raise ValueError(f"camera_pose {list(pose)}: give [eye x, y, z, target x, y, z]")
            from mani_skill.utils import sapien_utils

            camera["pose"] = sapien_utils.look_at(eye=list(pose[:3]), target=list(pose[3:]))
        if fov:
            camera["fov"] = float(fov)
        cfg[SENSOR_CAMERA.get(task, "base_camera")] = camera
    return cfg


class ManiSkillEnv:
    def __init__(self, cfg: SimConfig) -> None:
        import gymnasium as gym
        import mani_skill.envs  # noqa: F401  (registers the tasks)

        if cfg.task not in TASKS:
            raise ValueError(f"task {cfg.task!r} is not supported; choose one of {', '.join(TASKS)}")
        self.cfg = cfg
        self.supersample = check_supersample(cfg.camera_supersample)
        width, height = cfg.camera_width * self.supersample, cfg.camera_height * self.supersample
        task, extra = cfg.task, {}
        if cfg.side_camera_pose:
            pose, size = tuple(cfg.side_camera_pose), (width, height)
            side = ExtraCamera(SIDE_CAMERA, pose, *size, cfg.side_camera_fov)
            task, extra = extra_camera_task(cfg.task), {"extra_cameras": [side]}
        self.env = gym.make(
            task,
            obs_mode="rgb+state",  # images for the reward, the state vector for policies
            control_mode=cfg.control_mode,
            num_envs=1,
            sim_backend=cfg.sim_backend,
            render_backend=cfg.render_backend,
            max_episode_steps=cfg.max_episode_steps,
            **({"sim_config": {"control_freq": int(cfg.control_rate)}} if cfg.control_rate else {}),
            sensor_configs=sensor_configs(cfg.task, width, height, cfg.camera_pose, cfg.camera_fov),
            **extra,
        )
        self.unwrapped = self.env.unwrapped
        self.control_freq = float(self.unwrapped.control_freq)
        self.joint_names = [j.name for j in self.unwrapped.agent.robot.get_active_joints()]
        self.step_count = 0

    def _show_goal(self) -> None:
        """Tasks that hide their goal from the sensors keep it in `_hidden_objects`."""
        goal = getattr(self.unwrapped, "goal_site", None)
        hidden = getattr(self.unwrapped, "_hidden_objects", [])
        if goal is not None and any(o is goal for o in hidden):
            hidden[:] = [o for o in hidden if o is not goal]
            goal.show_visual()

    def reset(self, seed: int) -> Observation:
        obs, info = self.env.reset(seed=int(seed))
        return self.after_reset(obs, info)

    def after_reset(self, obs, info) -> Observation:
        """The first observation of an episode, with the goal shown when configured (also
        for resets done by someone else, e.g. a motion planner stepping `self.env`)."""
        if self.cfg.show_goal:
            self._show_goal()
            obs = self.unwrapped.get_obs()
        self.step_count = 0
        return self.observe(obs, info)

    def step(self, action: np.ndarray) -> tuple[Observation, bool]:
        """Apply one normalised action; returns the observation and whether the step limit was hit."""
        obs, _reward, _terminated, truncated, info = self.env.step(np.asarray(action, np.float32)[None])
        self.step_count += 1
        return self.observe(obs, info), bool(_np(truncated).any())

    def observe(self, obs, info, step: int | None = None) -> Observation:
        """A raw ManiSkill observation + info as an `Observation` (step: the episode's step
        count; default the count of `step()` calls since the last reset)."""
        f = self.supersample
        frames = {name: downsample(_np(data["rgb"])[0], f) for name, data in obs["sensor_data"].items()}
        intrinsics = {
            name: downsample_intrinsics(_np(p["intrinsic_cv"])[0], f)
            for name, p in obs.get("sensor_param", {}).items()
        }
        tcp = self.unwrapped.agent.tcp.pose
        wxyz = _np(tcp.q)[0]
        extras = {
            k: bool(_np(v).reshape(-1)[0]) for k, v in info.items() if k != "success" and _np(v).dtype == bool
        }
        return Observation(
            frames=frames,
            intrinsics=intrinsics,
            joint_names=self.joint_names,
            joint_positions=_np(self.unwrapped.agent.robot.get_qpos())[0].astype(float),
            tcp_position=_np(tcp.p)[0].astype(float),
            tcp_orientation=np.array([wxyz[1], wxyz[2], wxyz[3], wxyz[0]], float),
            success=bool(_np(info.get("success", False)).reshape(-1)[0]),
            step=self.step_count if step is None else step,
            extras=extras,
            state=_np(obs["state"])[0].astype(np.float32) if "state" in obs else None,
        )

    def close(self) -> None:
        self.env.close()
