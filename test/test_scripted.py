"""Scripted PickCube episodes (no ROS): planned successes succeed and hold, perturbations fail."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("mani_skill")

from reward_model_sim.scripted import NEAR_GOAL_MODES, SCRIPTED_MODES, SUCCESS_MODES, camera_eye, run_pickcube


@pytest.fixture(scope="module")
def env():
    import gymnasium as gym
    import mani_skill.envs  # noqa: F401

    # state observations: the scripts do not depend on rendering, and this is 10x faster
    e = gym.make(
        "PickCube-v1",
        obs_mode="state",
        control_mode="pd_joint_pos",
        sim_backend="physx_cpu",
        num_envs=1,
        max_episode_steps=400,
    )
    yield e
    e.close()


def run(env, mode, seed, hold=20):
    flags = []
    ok = run_pickcube(
        env, mode, seed, lambda obs, info, *_: flags.append(bool(info["success"][0])), hold_steps=hold
    )
    return ok, flags


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_planned_episode_succeeds_and_holds_the_success_pose(env, seed):
    ok, flags = run(env, "success", seed)
    assert ok
    # the last hold_steps frames (at least) are success frames, in one run at the end
    tail = len(flags) - flags.index(True)
    assert tail >= 20 and all(flags[-tail:])


@pytest.mark.parametrize("seed", [0, 2, 5])
def test_place_sets_the_cube_down_in_a_goal_on_the_table_and_lets_go(env, seed):
    """The second success: released, on the table, inside the goal (lowered there before the
    first observation and away from the cube's start, so the episode does not begin a success)."""
    env.reset(seed=seed)
    own_goal = np.asarray(env.unwrapped.goal_site.pose.p[0], float)  # as ManiSkill draws it
    starts = []

    def on_reset(obs, info):
        base = env.unwrapped
        starts.append([np.asarray(a.pose.p[0], float) for a in (base.cube, base.goal_site)])

    flags = []
    ok = run_pickcube(
        env, "place", seed, lambda obs, info, *_: flags.append(bool(info["success"][0])), on_reset=on_reset
    )
    base = env.unwrapped
    cube, goal = (np.asarray(a.pose.p[0], float) for a in (base.cube, base.goal_site))
    ((cube0, goal0),) = starts
    assert ok and all(flags[-20:]) and not flags[0]
    assert not bool(base.agent.is_grasping(base.cube)[0])  # out of the gripper
    assert cube[2] < 0.021 and np.linalg.norm(cube - goal) < 0.025  # resting on the table, placed
    assert np.array_equal(goal0, goal) and goal0[2] < 0.031  # the goal as the first frame showed it
    assert np.linalg.norm((goal0 - cube0)[:2]) >= 0.08 - 1e-6
    # later episodes get the env's own goal again: the lowering does not outlive the reset
    env.reset(seed=seed)
    assert np.array_equal(np.asarray(env.unwrapped.goal_site.pose.p[0], float), own_goal)


@pytest.mark.parametrize("mode", [m for m in SCRIPTED_MODES if m not in SUCCESS_MODES])
def test_every_failure_mode_fails(env, mode):
    ok, flags = run(env, mode, seed=0)
    assert not ok and not flags[-1]
    assert len(flags) >= 50  # a real attempt, not an empty episode


@pytest.mark.parametrize("mode", NEAR_GOAL_MODES)
def test_near_goal_modes_fail_where_one_camera_sees_success(env, mode):
    """Each near-goal mode fails and ends where it says: the depth modes on the main camera's
    line of sight through the goal (the cube covers the goal marker in its view)."""
    ok, flags = run(env, mode, seed=1)
    base = env.unwrapped
    cube, goal = (np.asarray(a.pose.p[0], float) for a in (base.cube, base.goal_site))
    eye = camera_eye(base)
    assert not ok and not flags[-1] and len(flags) >= 50
    dist = np.linalg.norm(cube - goal)
    assert 0.035 < dist < 0.35, dist
    to_cube, to_goal = cube - eye, goal - eye
    angle = np.degrees(np.arccos(to_cube @ to_goal / np.linalg.norm(to_cube) / np.linalg.norm(to_goal)))
    if mode in ("depth_front", "depth_behind"):
        assert angle < 4.0, angle  # on the line of sight: one view shows the cube on the goal
        nearer = np.linalg.norm(to_cube) < np.linalg.norm(to_goal)
        assert nearer == (mode == "depth_front")
    if mode == "wrong_depth":
        assert abs(cube[2] - goal[2]) < 0.015 and np.linalg.norm((cube - goal)[:2]) > 0.04
    if mode == "carry_past":
        assert bool(base.agent.is_grasping(base.cube)[0]) and np.linalg.norm((cube - goal)[:2]) > 0.05
    if mode in ("push_near", "drop_near"):
        assert cube[2] < 0.03 and np.linalg.norm((cube - goal)[:2]) < 0.12  # on the table, near the goal


def test_episodes_are_deterministic_per_seed(env):
    a, b = [], []
    run_pickcube(env, "joint_noise", 3, lambda obs, info, *_: a.append(np.asarray(obs[0, :9]).copy()))
    run_pickcube(env, "joint_noise", 3, lambda obs, info, *_: b.append(np.asarray(obs[0, :9]).copy()))
    assert len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def test_unknown_mode(env):
    with pytest.raises(ValueError, match="mode 'wobble'"):
        run_pickcube(env, "wobble", 0, lambda obs, info, *_: None)


@pytest.mark.parametrize("task", ["PushCube-v1", "StackCube-v1"])
def test_other_tasks_use_maniskills_planned_solutions(task):
    import gymnasium as gym

    from reward_model_sim.scripted import TASK_MODES, control_mode, run_episode

    e = gym.make(task, obs_mode="state", control_mode=control_mode(task), sim_backend="physx_cpu", num_envs=1)
    try:
        resets, flags = [], []
        ok = run_episode(
            e,
            task,
            "success",
            0,
            lambda obs, info, *_: flags.append(bool(info["success"][0])),
            hold_steps=5,
            on_reset=lambda obs, info, *_: resets.append(len(flags)),
        )
        assert ok and resets == [0] and all(flags[-5:])
        assert not run_episode(e, task, "random", 0, lambda obs, info, *_: None)
        with pytest.raises(ValueError, match=r"does not exist for|PushCube mode 'grasp_offset'"):
            run_episode(e, task, "grasp_offset", 0, lambda obs, info, *_: None)
        assert "grasp_offset" not in TASK_MODES[task]
    finally:
        e.close()


def test_pushcube_scripted_episodes_act_in_the_policys_space_and_fail_near_the_goal():
    """PushCube's scripted episodes drive end-effector deltas (so their bags are demonstrations);
    the failure modes end near the goal, deterministically per seed."""
    import gymnasium as gym

    from reward_model_sim.push import PUSH_MODES
    from reward_model_sim.scripted import control_mode, run_episode

    assert control_mode("PushCube-v1") == "pd_ee_delta_pos"
    e = gym.make("PushCube-v1", obs_mode="state", control_mode="pd_ee_delta_pos", sim_backend="physx_cpu")
    try:
        outcomes = {}
        for mode in PUSH_MODES:
            actions: list = []
            record = actions.append
            outcomes[mode] = [
                run_episode(e, "PushCube-v1", mode, seed, lambda o, i, a, rec=record: rec(a.copy()), 3)
                for seed in range(4)
            ]
            assert all(a.shape == (4,) and np.all(np.abs(a) <= 1) for a in actions)
        # a success push's speed is drawn per seed: most rest inside, some slide out past the rim
        assert sum(outcomes["success"]) >= 3, outcomes["success"]
        for mode in ("push_short", "push_wide", "hover", "random"):
            assert sum(outcomes[mode]) <= 1, (mode, outcomes[mode])
    finally:
        e.close()
    # the same seed replays the same episode, exactly, in a fresh env (PhysX's warm-start state
    # carries over between the episodes of one env, so there replays differ by ~1e-3)
    runs = []
    for _ in range(2):
        fresh = gym.make(
            "PushCube-v1", obs_mode="state", control_mode="pd_ee_delta_pos", sim_backend="physx_cpu"
        )
        actions = []
        run_episode(
            fresh, "PushCube-v1", "push_short", 7, lambda o, i, a, rec=actions.append: rec(a.copy()), 3
        )
        fresh.close()
        runs.append(actions)
    assert len(runs[0]) == len(runs[1]) and all(np.array_equal(a, b) for a, b in zip(*runs, strict=True))
