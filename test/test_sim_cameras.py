"""A second sensor camera in ManiSkill tasks (no ROS): it exists, sees the scene from its own
pose, and bad poses or names are refused clearly."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("mani_skill")

from reward_model_sim.cameras import DEFAULT_SIDE_FOV, DEFAULT_SIDE_POSE, SIDE_CAMERA, ExtraCamera
from reward_model_sim.env import ManiSkillEnv, SimConfig


def test_side_camera_is_a_second_view_of_the_same_scene():
    env = ManiSkillEnv(
        SimConfig(
            task="PickCube-v1",
            side_camera_pose=list(DEFAULT_SIDE_POSE),
            side_camera_fov=DEFAULT_SIDE_FOV,
            camera_width=96,
            camera_height=64,
        )
    )
    try:
        obs = env.reset(2)
        assert list(obs.frames) == ["base_camera", SIDE_CAMERA]  # the task's camera first
        front, side = obs.frames["base_camera"], obs.frames[SIDE_CAMERA]
        assert front.shape == side.shape == (64, 96, 3)
        assert np.abs(front.astype(int) - side.astype(int)).mean() > 10  # not the same picture
        # its intrinsics follow its field of view: fy = h / 2 / tan(fov / 2)
        k = obs.intrinsics[SIDE_CAMERA]
        assert k[1, 1] == pytest.approx(64 / 2 / np.tan(DEFAULT_SIDE_FOV / 2), rel=1e-3)
        # the goal is shown to both views (PickCube hides it from sensors by default)
        assert env.unwrapped.goal_site not in env.unwrapped._hidden_objects
        moved = env.step(np.array([0.5, 0, 0, 0, 0, 0, 1], np.float32))[0]
        assert not np.array_equal(moved.frames[SIDE_CAMERA], side)
    finally:
        env.close()


def test_bad_side_cameras_are_refused():
    with pytest.raises(ValueError, match="give \\[eye x, y, z, target x, y, z\\]"):
        ExtraCamera(SIDE_CAMERA, (0.0, 0.5, 0.3), 128, 128)
    with pytest.raises(ValueError, match="its eye and its target are the same point"):
        ExtraCamera(SIDE_CAMERA, (0.1, 0.2, 0.3, 0.1, 0.2, 0.3), 128, 128)
    from reward_model_sim.cameras import extra_camera_task

    with pytest.raises(ValueError, match="not a registered ManiSkill task"):
        extra_camera_task("NoSuchTask-v1")
