"""Scripted PickCube episodes: ManiSkill's motion-planning solution, and perturbed versions
of it that fail the way real attempts fail. No ROS here: a callback sees every step.

Modes: success (the planned pick-and-place, then the pose held `hold_steps` steps),
grasp_offset (grasp beside the cube), no_grasp (never close the gripper), early_release
(open the gripper half-way to the goal), joint_noise (large noise on the arm's joint
targets), stop_short (stop well before the goal), random (uniform random joint targets).
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

from collections.abc import Callable

import gymnasium as gym
import numpy as np

from reward_model_sim.push import CONTROL_MODE as PUSH_CONTROL_MODE
from reward_model_sim.push import PUSH_MODES, info_success, run_push_episode

SCRIPTED_MODES = (
    "success",
    "grasp_offset",
    "no_grasp",
    "early_release",
    "joint_noise",
    "stop_short",
    "random",
)
GENERIC_MODES = ("success", "joint_noise", "random")
TASK_MODES = {
    "PickCube-v1": SCRIPTED_MODES,
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

    if mode not in SCRIPTED_MODES:
        raise ValueError(f"mode {mode!r}: must be one of {', '.join(SCRIPTED_MODES)}")
    rng = np.random.default_rng(seed)
    hook = StepHook(env, on_step, noise=0.15 if mode == "joint_noise" else 0.0, seed=seed, on_reset=on_reset)
    if mode == "random":
        _random_episode(hook, seed)
        return info_success(hook.last_info)
    hook.reset(seed=seed)
    base = hook.unwrapped
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
        planner.move_to_pose_with_screw(grasp_pose * sapien.Pose([0, 0, -0.05]))
        planner.move_to_pose_with_screw(grasp_pose)
        if mode != "no_grasp":
            planner.close_gripper()
        goal = base.goal_site.pose.sp.p
        if mode == "stop_short":
            goal = grasp_pose.p + 0.4 * (goal - grasp_pose.p)
        if mode == "early_release":
            planner.move_to_pose_with_screw(
                sapien.Pose(grasp_pose.p + 0.5 * (goal - grasp_pose.p), grasp_pose.q)
            )
            planner.open_gripper()
        planner.move_to_pose_with_screw(sapien.Pose(goal, grasp_pose.q))
        # hold the final pose (the success pose in mode success) so that successful
        # episodes show at least hold_steps success frames
        _hold(hook, hold_steps)
    finally:
        planner.close()
    return info_success(hook.last_info)
