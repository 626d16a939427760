"""A fully populated sample of every reward_msgs type, and the echo rule for its services.

Every field of every sample differs from its default, so a round trip that drops or
garbles any field is detected (test_interfaces checks that property for each type, so a
field added later without a sample value fails the tests).
"""

from __future__ import annotations

import math

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Vector3
from reward_msgs.msg import EpisodeEvent, ObservationVector, PolicyAction, RewardStamped, SuccessLabel
from reward_msgs.srv import ComputeRewards, ResetEpisode
from sensor_msgs.msg import Image
from std_msgs.msg import Header

# topic suffix -> message class
MESSAGE_TYPES = {
    "reward_stamped": RewardStamped,
    "episode_event": EpisodeEvent,
    "success_label": SuccessLabel,
    "policy_action": PolicyAction,
    "observation_vector": ObservationVector,
}
SERVICE_TYPES = {"compute_rewards": ComputeRewards, "reset_episode": ResetEpisode}


def _header(frame_id: str, sec: int = 1_700_000_000, nanosec: int = 123_456_789) -> Header:
    return Header(stamp=Time(sec=sec, nanosec=nanosec), frame_id=frame_id)


def sample_messages() -> dict[str, object]:
    """One message of each type with every field set to a non-default value."""
    return {
        "reward_stamped": RewardStamped(
            header=_header("camera_color_optical_frame"),
            probability=0.875,
            reward=1.0,
            success=True,
            threshold=0.6,
            model_id="pickcube@0123456789ab",
            camera_names=["wrist", "front"],
            camera_probabilities=[0.9, 0.85],
            inference_latency=0.0125,
            total_latency=0.021,
            terminal=True,
            sequence=42,
            valid=False,
            invalid_reason="front: near-uniform frame",
        ),
        "episode_event": EpisodeEvent(
            header=_header("", nanosec=5),
            event=EpisodeEvent.TIMEOUT,
            episode_index=7,
            task="PickCube-v1",
            mode="grasp_offset",
            seed=1234,
            label=EpisodeEvent.LABEL_FAILURE,
            step=100,
            message="step limit 100 reached",
        ),
        "success_label": SuccessLabel(
            header=_header("", nanosec=6),
            success=True,
            source=SuccessLabel.SOURCE_POSE_HOLD,
            confidence=0.5,
            episode_index=3,
        ),
        "policy_action": PolicyAction(
            header=_header("fr3_link0", nanosec=7),
            delta_position=Vector3(x=0.01, y=-0.02, z=0.005),
            delta_orientation=Vector3(x=0.0, y=0.1, z=-0.05),
            gripper=-1.0,
            episode_index=2,
            step=17,
        ),
        "observation_vector": ObservationVector(
            header=_header("world", nanosec=8),
            names=["tcp.x", "tcp.y"],
            data=[0.25, -0.125],
        ),
    }


def _image(encoding: str, height: int, width: int, channels: int, seed: int) -> Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, channels), np.uint8)
    return Image(
        header=_header(f"camera_{seed}", nanosec=seed),
        height=height,
        width=width,
        encoding=encoding,
        is_bigendian=0,
        step=width * channels,
        data=pixels.tobytes(),
    )


def sample_compute_rewards_request() -> ComputeRewards.Request:
    return ComputeRewards.Request(
        images=[_image("rgb8", 4, 6, 3, 1), _image("mono8", 5, 5, 1, 2)],
        camera_names=["front", "wrist"],
    )


def echo_compute_rewards(
    request: ComputeRewards.Request, threshold: float, latency: float = 0.0
) -> ComputeRewards.Response:
    """The interface-check server's answer: probability = mean pixel value / 255.

    Not a model: a deterministic function of the request, so that the client can tell that
    every image arrived intact and every response field came back.
    """
    probs, valid, errors = [], [], []
    for i, image in enumerate(request.images):
        data = np.frombuffer(bytes(image.data), np.uint8)
        if data.size == 0:
            probs.append(math.nan)
            valid.append(False)
            errors.append(f"image {i}: empty")
        else:
            probs.append(float(data.mean()) / 255.0)
            valid.append(True)
            errors.append("")
    successes = [bool(p >= threshold) for p in probs]
    return ComputeRewards.Response(
        probabilities=probs,
        rewards=[1.0 if s else 0.0 for s in successes],
        successes=successes,
        valid=valid,
        errors=errors,
        threshold=threshold,
        model_id="interface_echo",
        inference_latency=latency,
    )


def sample_reset_request() -> ResetEpisode.Request:
    return ResetEpisode.Request(task="PushCube-v1", seed=99)


def echo_reset_episode(request: ResetEpisode.Request, episode_index: int) -> ResetEpisode.Response:
    """The interface-check server's answer: accepted iff a task is named, echoing the request."""
    return ResetEpisode.Response(
        accepted=bool(request.task),
        message=f"task={request.task} seed={request.seed}",
        episode_index=episode_index,
    )
