"""Scripted PickCube episodes: ManiSkill's motion-planning solution, and perturbed versions
of it that fail the way real attempts fail. No ROS here: a callback sees every step.

Modes: success (the planned pick-and-place, then the pose held `hold_steps` steps), place
(a second success: the goal lowered onto the table, where 8% of PickCube's goals lie, the cube
set down on it, released, and the gripper lifted away or left open around it: a success with
the cube out of the gripper, which `success` never shows), grasp_offset (grasp beside the
cube), no_grasp (never close the gripper), early_release (open the gripper half-way to the
goal), joint_noise (large noise on the arm's joint targets), stop_short (stop well before the
goal), random (uniform random joint targets).
Near-goal modes, which look like success from one camera: carry_past (carry the cube through
the goal and on, 6-12 cm past it), depth_front / depth_behind (stop 6-10 cm in front of or
behind the goal along the main camera's line of sight: the cube covers the goal marker in its
view), wrong_depth (the goal's height, 5-10 cm off along the camera's horizontal viewing
direction), push_near (push the cube along the table towards the point under the goal, stop
4-7 cm short of it), drop_near (carry it to 4-8 cm beside the goal and open the gripper).
Each is deterministic per seed. The planner drives `pd_joint_pos`, so scripted episodes
need an environment made with that control mode.

StackCube-v1 and PegInsertionSide-v1 have ManiSkill's planned solutions too; for them the
modes are success (the solution, then the hold), joint_noise (the solution with noisy joint
targets) and random. The other failure modes need task-specific grasp geometry and exist
for PickCube-v1 only. PushCube-v1 has its own controller in the policy's action space
(reward_model_sim.push, `pd_ee_delta_pos`) with near-goal failure modes.

`on_step(obs, info, action)` sees every step with the action applied.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import gymnasium as gym
import numpy as np

from reward_model_sim.push import CONTROL_MODE as PUSH_CONTROL_MODE
from reward_model_sim.push import PUSH_MODES, info_success, run_push_episode

SUCCESS_MODES = ("success", "place")
"""planned successes: the scripted driver's success episodes take turns among those it runs"""
SCRIPTED_MODES = (
    "success",
    "place",
    "grasp_offset",
    "no_grasp",
    "early_release",
    "joint_noise",
    "stop_short",
    "random",
)
NEAR_GOAL_MODES = ("carry_past", "depth_front", "depth_behind", "wrong_depth", "push_near", "drop_near")
"""PickCube failure modes that end with the cube near the goal (in a single camera's view, on it)"""
PICKCUBE_MODES = SCRIPTED_MODES + NEAR_GOAL_MODES
GENERIC_MODES = ("success", "joint_noise", "random")
PLACE_GOAL_HEIGHT = (0.0, 0.01)
"""mode place: the goal's centre this far above a cube resting on the table (PickCube's goal
threshold is 2.5 cm, so a cube set down there is placed)"""
PLACE_LIFT = (-0.03, 0.08)
"""mode place: how far the open gripper rises after the release, drawn per seed; under 1 cm
(about a third of the seeds) it stays where it let go, the fingers open around the cube"""
PLACE_MIN_MOVE = 0.08
"""mode place: the lowered goal lies at least this far (x, y) from where the cube starts"""
TASK_MODES = {
    "PickCube-v1": PICKCUBE_MODES,
    "PushCube-v1": PUSH_MODES,
    "StackCube-v1": GENERIC_MODES,
    "PegInsertionSide-v1": GENERIC_MODES,
}


def control_mode(task: str) -> str:
    """The control mode scripted episodes of `task` drive."""
    return PUSH_CONTROL_MODE if task == "PushCube-v1" else "pd_joint_pos"


class StepHook(gym.Wrapper):
    """Calls `on_step(obs, info)` after every env.step (the planner steps the env itself)
    and `on_reset(obs, info)` after every reset, optionally adding Gaussian noise to the
    arm's joint targets."""

    def __init__(
        self,
        env,
        on_step: Callable,
        noise: float = 0.0,
        seed: int = 0,
        on_reset: Callable | None = None,
    ) -> None:
        super().__init__(env)
        self.on_step = on_step
        self.on_reset = on_reset
        self.noise = noise
        self.rng = np.random.default_rng(seed)
        self.steps = 0
        self.last_action: np.ndarray | None = None
        self.last_info: dict = {}

    def step(self, action):
        action = np.array(action, dtype=np.float32, copy=True)
        if self.noise:
            action[..., :7] += self.rng.normal(0.0, self.noise, action[..., :7].shape)
        self.last_action = action
        out = self.env.step(action)
        self.steps += 1
        self.last_info = out[4]
        self.on_step(out[0], out[4], action[0] if action.ndim > 1 else action)
        return out

    def reset(self, **kwargs):
        out = self.env.reset(**kwargs)
        self.steps = 0
        self.last_action = None
        if self.on_reset is not None:
            self.on_reset(*out)
        return out


def _hold(hook: StepHook, steps: int) -> None:
    """Keep the last joint target (the final pose) for `steps` more steps."""
    if hook.last_action is not None:
        for _ in range(steps):
            hook.step(hook.last_action)


def _random_episode(hook: StepHook, seed: int, steps: int = 60) -> None:
    rng = np.random.default_rng(seed)
    hook.reset(seed=seed)
    limits = hook.unwrapped.agent.robot.get_qlimits()[0, :7].cpu().numpy()
    for _ in range(steps):
        target = rng.uniform(limits[:, 0], limits[:, 1]) * 0.5
        hook.step(np.concatenate([target, [rng.choice([-1.0, 1.0])]]).astype(np.float32))


def run_episode(
    env,
    task: str,
    mode: str,
    seed: int,
    on_step: Callable,
    hold_steps: int = 20,
    on_reset: Callable | None = None,
) -> bool:
    """Run one scripted episode of `task` on an env made with `control_mode(task)`; returns the
    final ground-truth success."""
    if task == "PushCube-v1":
        return run_push_episode(env, mode, seed, on_step, hold_steps, on_reset)
    if task == "PickCube-v1":
        return run_pickcube(env, mode, seed, on_step, hold_steps, on_reset)
    modes = TASK_MODES.get(task)
    if modes is None:
        raise ValueError(f"no scripted episodes for {task!r}; tasks: {', '.join(TASK_MODES)}")
    if mode not in modes:
        raise ValueError(f"mode {mode!r} does not exist for {task}: choose from {', '.join(modes)}")
    from mani_skill.examples.motionplanning.panda import solutions

    hook = StepHook(env, on_step, noise=0.15 if mode == "joint_noise" else 0.0, seed=seed, on_reset=on_reset)
    if mode == "random":
        _random_episode(hook, seed)
    else:
        solve = getattr(solutions, "solve" + task.split("-")[0])
        solve(hook, seed=seed, debug=False, vis=False)  # resets through the hook
        _hold(hook, hold_steps)
    return info_success(hook.last_info)


def run_pickcube(
    env,
    mode: str,
    seed: int,
    on_step: Callable,
    hold_steps: int = 20,
    on_reset: Callable | None = None,
) -> bool:
    """Run one scripted PickCube episode on a pd_joint_pos env; returns the final success."""
    import sapien
    from mani_skill.examples.motionplanning.base_motionplanner.utils import (
        compute_grasp_info_by_obb,
        get_actor_obb,
    )
    from mani_skill.examples.motionplanning.panda.motionplanner import PandaArmMotionPlanningSolver

    if mode not in PICKCUBE_MODES:
        raise ValueError(f"mode {mode!r}: must be one of {', '.join(PICKCUBE_MODES)}")
    rng = np.random.default_rng(seed)
    hook = StepHook(env, on_step, noise=0.15 if mode == "joint_noise" else 0.0, seed=seed, on_reset=on_reset)
    if mode == "random":
        _random_episode(hook, seed)
        return info_success(hook.last_info)
    base = hook.unwrapped
    if mode == "place":
        with _goal_on_table(base, rng):
            hook.reset(seed=seed)
    else:
        hook.reset(seed=seed)
    planner = PandaArmMotionPlanningSolver(
        hook,
        debug=False,
        vis=False,
        base_pose=base.agent.robot.pose,
        visualize_target_grasp_pose=False,
        print_env_info=False,
    )
    try:
        obb = get_actor_obb(base.cube)
        closing0 = base.agent.tcp.pose.to_transformation_matrix()[0, :3, 1].cpu().numpy()
        grasp = compute_grasp_info_by_obb(
            obb, approaching=np.array([0, 0, -1]), target_closing=closing0, depth=0.025
        )
        cube_p = base.cube.pose.sp.p
        if mode == "grasp_offset":  # beside the cube, by more than its half size
            cube_p = cube_p + np.array([*rng.choice([-1, 1], 2) * rng.uniform(0.035, 0.05, 2), 0.0])
        grasp_pose = base.agent.build_grasp_pose(np.array([0, 0, -1]), grasp["closing"], cube_p)
        goal = base.goal_site.pose.sp.p
        if mode == "push_near":
            _push_near(planner, grasp_pose, cube_p, goal, rng)
        else:
            planner.move_to_pose_with_screw(grasp_pose * sapien.Pose([0, 0, -0.05]))
            planner.move_to_pose_with_screw(grasp_pose)
            if mode != "no_grasp":
                planner.close_gripper()
            if mode == "stop_short":
                goal = grasp_pose.p + 0.4 * (goal - grasp_pose.p)
            if mode == "early_release":
                planner.move_to_pose_with_screw(
                    sapien.Pose(grasp_pose.p + 0.5 * (goal - grasp_pose.p), grasp_pose.q)
                )
                planner.open_gripper()
            if mode in NEAR_GOAL_MODES:
                goal = near_goal_target(mode, goal, grasp_pose.p, camera_eye(base), rng)
            if mode == "place":  # set down on the table, inside the lowered goal
                goal = np.array([*goal[:2], float(base.cube_half_size) + 0.002])
            planner.move_to_pose_with_screw(sapien.Pose(goal, grasp_pose.q))
            if mode == "drop_near":
                planner.open_gripper()
            if mode == "place":
                planner.open_gripper()
                lift = rng.uniform(*PLACE_LIFT)  # 0: the open fingers stay around the cube
                if lift >= 0.01:
                    planner.move_to_pose_with_screw(sapien.Pose(goal + np.array([0, 0, lift]), grasp_pose.q))
        # hold the final pose (the success pose in mode success) so that successful
        # episodes show at least hold_steps success frames
        _hold(hook, hold_steps)
    finally:
        planner.close()
    return info_success(hook.last_info)


TABLE_CLEARANCE = 0.025  # lowest cube centre a carried cube is taken to (half size 0.02 + margin)


@contextlib.contextmanager
def _goal_on_table(base, rng: np.random.Generator):
    """During the reset inside: PickCube's own episode initialisation, then its goal lowered to
    PLACE_GOAL_HEIGHT above a resting cube (x, y as drawn), before the first observation."""
    from mani_skill.utils.structs.pose import Pose

    initialize = base._initialize_episode

    def lowered(env_idx, options):
        initialize(env_idx, options)
        p = base.goal_site.pose.p.clone()
        cube = base.cube.pose.p[:, :2]
        away = p[:, :2] - cube
        dist = float(away.norm())
        if dist < PLACE_MIN_MOVE:  # a cube that starts inside a goal on the table is a success at once
            angle = rng.uniform(0, 2 * np.pi)
            way = away / dist if dist > 1e-3 else away.new_tensor([[np.cos(angle), np.sin(angle)]])
            p[:, :2] = cube + way * PLACE_MIN_MOVE
        p[:, 2] = base.cube_half_size + rng.uniform(*PLACE_GOAL_HEIGHT)
        base.goal_site.set_pose(Pose.create_from_pq(p))

    base._initialize_episode = lowered
    try:
        yield
    finally:
        del base._initialize_episode  # the class's method again


def camera_eye(base, camera: str = "base_camera") -> np.ndarray:
    """World position of the task's sensor camera (configured or default)."""
    cfg = getattr(base, "_sensor_configs", {}).get(camera)
    if cfg is not None:
        p = cfg.pose.p
        return np.asarray(p.cpu() if hasattr(p, "cpu") else p, float).reshape(-1)[:3]
    return np.asarray(base.sensor_cam_eye_pos, float)


def near_goal_target(
    mode: str, goal: np.ndarray, start: np.ndarray, eye: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Where a near-goal failure mode takes the cube's centre (and the TCP holding it)."""
    goal, start, eye = (np.asarray(v, float) for v in (goal, start, eye))
    sight = (goal - eye) / np.linalg.norm(goal - eye)  # the camera's line of sight through the goal
    flat = np.array([sight[0], sight[1], 0.0]) / max(np.linalg.norm(sight[:2]), 1e-6)
    if mode == "carry_past":
        way = np.array([*(goal - start)[:2], 0.0])
        way = way / np.linalg.norm(way) if np.linalg.norm(way) > 1e-3 else flat
        target = goal + way * rng.uniform(0.06, 0.12)
    elif mode in ("depth_front", "depth_behind"):
        target = goal + (1 if mode == "depth_behind" else -1) * sight * rng.uniform(0.06, 0.10)
        if target[2] < TABLE_CLEARANCE:  # behind a low goal the line of sight enters the table
            target = goal + flat * rng.uniform(0.06, 0.10)
    elif mode == "wrong_depth":
        target = goal + rng.choice([-1.0, 1.0]) * flat * rng.uniform(0.05, 0.10)
    elif mode == "drop_near":
        angle = rng.uniform(0, 2 * np.pi)
        target = goal + np.array([np.cos(angle), np.sin(angle), 0.0]) * rng.uniform(0.04, 0.08)
    else:
        raise ValueError(f"{mode!r} is not a near-goal mode ({', '.join(NEAR_GOAL_MODES)})")
    target[2] = max(target[2], TABLE_CLEARANCE)
    return target


def _push_near(planner, grasp_pose, cube_p: np.ndarray, goal: np.ndarray, rng: np.random.Generator) -> None:
    """Closed fingers behind the cube, low over the table, then a straight push towards the
    point under the goal, stopping 4-7 cm short of it."""
    import sapien

    way = np.array([*(goal - cube_p)[:2], 0.0])
    dist = np.linalg.norm(way)
    way = way / dist if dist > 1e-3 else np.array([1.0, 0.0, 0.0])
    stop = max(dist - rng.uniform(0.04, 0.07), 0.0)
    behind = np.array([*(cube_p - way * 0.045)[:2], 0.02])
    planner.close_gripper()
    planner.move_to_pose_with_screw(sapien.Pose(behind + np.array([0, 0, 0.06]), grasp_pose.q))
    planner.move_to_pose_with_screw(sapien.Pose(behind, grasp_pose.q))
    planner.move_to_pose_with_screw(sapien.Pose(behind + way * stop, grasp_pose.q))
