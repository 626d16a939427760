"""A second sensor camera for ManiSkill tasks (a side view beside the task's own camera).

ManiSkill's `sensor_configs` argument can change a task's cameras but not add one, so a task
with extra cameras is a subclass whose `_default_sensor_configs` appends them, registered
once per task under `RewardModel<task>` (e.g. `RewardModelPickCube-v1`) with the task's own
step limit and defaults. `gym.make(extra_camera_task(task), extra_cameras=[...])` then gives
the task with those cameras; everything else about it is the task's.

One camera cannot tell a cube in front of the goal from one behind it along its line of
sight; a second view from the side can (see docs/simulation.md, "Cameras").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SIDE_CAMERA = "side_camera"
# PickCube's and PushCube's goal region seen from the robot's left: across the front camera's
# line of sight (which runs along -x), so that depth along it becomes left-right in this view
DEFAULT_SIDE_POSE = (-0.03, 0.55, 0.2, -0.03, 0.0, 0.16)
DEFAULT_SIDE_FOV = 0.8


@dataclass(frozen=True)
class ExtraCamera:
    name: str
    pose: tuple[float, ...]
    """[eye x, y, z, target x, y, z] in metres, world frame"""
    width: int
    height: int
    fov: float = 0.0
    """vertical field of view, rad; 0 = pi/2 (ManiSkill's tabletop cameras)"""

    def __post_init__(self) -> None:
        if len(self.pose) != 6:
            raise ValueError(
                f"camera {self.name!r} pose {list(self.pose)}: give [eye x, y, z, target x, y, z]"
            )
        if list(self.pose[:3]) == list(self.pose[3:]):
            raise ValueError(
                f"camera {self.name!r}: its eye and its target are the same point {self.pose[:3]}"
            )


def extra_camera_task(task: str) -> str:
    """The id of `task` with an `extra_cameras` argument (registered on first use)."""
    from mani_skill.utils.registration import REGISTERED_ENVS, register_env

    uid = f"RewardModel{task}"
    if uid in REGISTERED_ENVS:
        return uid
    if task not in REGISTERED_ENVS:
        raise ValueError(f"{task!r} is not a registered ManiSkill task")
    spec = REGISTERED_ENVS[task]
    cls = type(f"RewardModel{spec.cls.__name__}", (_ExtraCamerasMixin, spec.cls), {})
    register_env(
        uid,
        max_episode_steps=spec.max_episode_steps,
        asset_download_ids=list(spec.asset_download_ids or []),
        **spec.default_kwargs,
    )(cls)
    return uid


class _ExtraCamerasMixin:
    """Appends `extra_cameras` (ExtraCamera list) to the task's own sensor cameras."""

    def __init__(self, *args, extra_cameras: list[ExtraCamera] = (), **kwargs) -> None:
        self._extra_cameras = list(extra_cameras)  # read by _default_sensor_configs during init
        super().__init__(*args, **kwargs)

    @property
    def _default_sensor_configs(self):
        from mani_skill.sensors.camera import CameraConfig
        from mani_skill.utils import sapien_utils

        own = super()._default_sensor_configs
        own = list(own) if isinstance(own, list | tuple) else [own]
        names = {c.uid for c in own}
        for cam in self._extra_cameras:
            if cam.name in names:
                raise ValueError(
                    f"camera name {cam.name!r} is taken by the task's own cameras {sorted(names)}"
                )
            pose = sapien_utils.look_at(eye=list(cam.pose[:3]), target=list(cam.pose[3:]))
            own.append(CameraConfig(cam.name, pose, cam.width, cam.height, cam.fov or np.pi / 2, 0.01, 100))
            names.add(cam.name)
        return own


def check_supersample(factor: int) -> int:
    if not isinstance(factor, int | np.integer) or isinstance(factor, bool) or not 1 <= factor <= 8:
        raise ValueError(f"camera_supersample={factor!r}: give a whole number from 1 (off) to 8")
    return int(factor)


def downsample(images, factor: int):
    """Box-filter (..., H*f, W*f, C) uint8 images to (..., H, W, C): each output pixel the mean
    of an f x f block, as a camera's sensor integrates the light over a pixel. A renderer
    without anti-aliasing quantises an edge to whole pixels; the block mean keeps where inside
    a pixel the edge falls. numpy arrays or torch tensors (same type back)."""
    if factor == 1:
        return images
    *lead, h, w, c = images.shape
    if h % factor or w % factor:
        raise ValueError(f"a {w}x{h} frame does not divide by camera_supersample={factor}")
    blocks = images.reshape(*lead, h // factor, factor, w // factor, factor, c)
    if hasattr(blocks, "detach"):  # torch
        return (blocks.float().mean(dim=(-4, -2)) + 0.5).to(images.dtype)
    return (blocks.mean(axis=(-4, -2), dtype=np.float32) + 0.5).astype(images.dtype)


def downsample_intrinsics(k, factor: int):
    """The 3x3 pinhole matrix of a frame rendered `factor` times larger, for the downsampled
    frame: the first two rows / factor (SAPIEN puts the principal point at (W/2, H/2) at every
    size, so this is the matrix it gives for a frame rendered at the smaller size)."""
    if factor == 1:
        return k
    k = np.array(k, dtype=np.float64, copy=True)
    k[:2] /= factor
    return k
