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


def test_the_pushcube_configs_share_one_camera():
    """The classifier is trained on frames of config/collect_pushcube.yaml's camera; the bridge
    that serves it (sim_pushcube.yaml) and the RL env that renders for it (rl_pushcube.yaml)
    must place the same camera, or the reward judges a view it never saw."""
    import yaml

    from reward_model_ros.paths import share_dir

    def bridge(name: str) -> dict:
        params = yaml.safe_load((share_dir() / "config" / name).read_text())["/**/maniskill_bridge"]
        p = params["ros__parameters"]
        return {
            "pose": p["camera_pose"],
            "fov": p["camera_fov"],
            "size": [p["camera_width"], p["camera_height"]],
            "supersample": p.get("camera_supersample", 1),
        }

    env = yaml.safe_load((share_dir() / "config" / "rl_pushcube.yaml").read_text())["env"]
    rl = {
        "pose": env["camera_pose"],
        "fov": env["camera_fov"],
        "size": [env["camera_size"]] * 2,
        "supersample": env.get("camera_supersample", 1),
    }
    collect = bridge("collect_pushcube.yaml")
    assert len(collect["pose"]) == 6
    assert bridge("sim_pushcube.yaml") == collect
    assert rl == collect


def test_supersampled_frames_keep_the_size_and_intrinsics_and_smooth_only_edges():
    """camera_supersample=2 renders 256x256 and averages to 128x128: the same picture as the
    plain render, with the intrinsics the plain render has, differing only along edges."""
    frames, ks = {}, {}
    for factor in (1, 2):
        env = ManiSkillEnv(
            SimConfig(
                task="PushCube-v1",
                camera_pose=[0.55, 0.0, 0.55, 0.1, 0.0, 0.0],
                camera_fov=0.9,
                control_mode="pd_ee_delta_pos",
                camera_supersample=factor,
            )
        )
        try:
            obs = env.reset(3)
            frames[factor], ks[factor] = obs.frames["base_camera"], obs.intrinsics["base_camera"]
        finally:
            env.close()
    assert frames[2].shape == frames[1].shape == (128, 128, 3) and frames[2].dtype == np.uint8
    np.testing.assert_allclose(ks[2], ks[1], rtol=1e-4)
    import cv2

    def blur(x):  # compare the scene, not the aliasing of the wood's texture
        return cv2.blur(x.astype(np.float32), (7, 7))

    same = np.abs(blur(frames[2]) - blur(frames[1])).mean()
    assert same < 4.0  # the same scene (measured: 2.8 of 255) ...
    for axis, shift in ((0, 2), (0, -2), (1, 2), (1, -2)):  # ... in the same place
        assert same < np.abs(blur(frames[2]) - blur(np.roll(frames[1], shift, axis=axis))).mean()
    assert not np.array_equal(frames[2], frames[1])  # but not the plain render


def test_downsample_is_a_block_mean_that_keeps_sub_pixel_edges():
    import torch

    from reward_model_sim.cameras import check_supersample, downsample, downsample_intrinsics

    # a white bar whose edge moves by half a pixel of the output: the plain render cannot show
    # it, the block mean does
    big = np.zeros((2, 8, 8, 3), np.uint8)
    big[0, :, :3] = 255  # edge inside output pixel 1
    big[1, :, :4] = 255  # edge on the border of output pixels 1 and 2
    small = downsample(big, 2)
    assert small.shape == (2, 4, 4, 3)
    assert small[0, 0, :, 0].tolist() == [255, 128, 0, 0]  # (255 + 0) / 2, rounded
    assert small[1, 0, :, 0].tolist() == [255, 255, 0, 0]
    assert np.array_equal(downsample(torch.from_numpy(big), 2).numpy(), small)  # the GPU path alike
    assert downsample(big, 1) is big
    with pytest.raises(ValueError, match="does not divide by camera_supersample=3"):
        downsample(big, 3)
    for bad in (0, 9, 1.5, True):
        with pytest.raises(ValueError, match="whole number from 1"):
            check_supersample(bad)
    k = np.array([[264.98, 0, 128.0], [0, 264.98, 128.0], [0, 0, 1]])
    np.testing.assert_allclose(downsample_intrinsics(k, 2), [[132.49, 0, 64.0], [0, 132.49, 64.0], [0, 0, 1]])


def test_the_rl_sim_batch_supersamples_as_the_bridge_does():
    """RL renders the classifier's frames itself (rl_sim): the same setting must give the same
    frames as the bridge's env, or the reward judges a picture it was not trained on."""
    from reward_model_sim.rl_sim import ManiSkillBatch, SimBatchConfig

    view = {"camera_pose": [0.55, 0.0, 0.55, 0.1, 0.0, 0.0], "camera_fov": 0.9}
    batch = ManiSkillBatch(
        SimBatchConfig(
            task="PushCube-v1", camera_size=64, camera_supersample=2, control_mode="pd_ee_delta_pos", **view
        )
    )
    env = ManiSkillEnv(
        SimConfig(
            task="PushCube-v1",
            camera_width=64,
            camera_height=64,
            camera_supersample=2,
            control_mode="pd_ee_delta_pos",
            **view,
        )
    )
    try:
        rl = batch.reset(4).frames[0][0]
        bridge = env.reset(4).frames["base_camera"]
        assert rl.shape == (64, 64, 3)
        assert np.array_equal(rl, bridge)
    finally:
        env.close()
        batch.close()
