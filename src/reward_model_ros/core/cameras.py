"""The camera-name contract from the dataset to the node.

The dataset builder names each camera topic (`/image_raw` -> `camera`, `/wrist/image_raw`
-> `wrist`); training records those names in the checkpoint (`model.camera_names`, in the
dataset's order) and keys crop boxes by them; whoever scores frames (reward_node, the RL
reward, `predict`) says which checkpoint camera each of its inputs is. A name that matches
nothing is an error that names both sides, never a silently uncropped frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from reward_model_ros.core.config import ConfigError


def map_cameras(
    checkpoint_cameras: Sequence[str], inputs: Sequence[str], names: Sequence[str] = ()
) -> list[str]:
    """The checkpoint camera name for each input (image topic).

    - `names` given: one per input, each a checkpoint camera (a name may repeat: one
      camera's model applied to two views);
    - else the checkpoint's cameras in order, which needs as many inputs as cameras;
    - a model that records no cameras (freshly initialised, or an older checkpoint) names
      each input after itself.

    :raises ConfigError: naming the inputs, the names given and the checkpoint's cameras.
    """
    inputs, names, known = list(inputs), list(names), list(checkpoint_cameras)
    if names:
        if len(names) != len(inputs):
            raise ConfigError(
                f"camera_names has {len(names)} entries for {len(inputs)} image topics {inputs}: "
                "give one name per topic, or none"
            )
        unknown = [n for n in names if known and n not in known]
        if unknown:
            raise ConfigError(
                f"camera_names {unknown} match no camera of the checkpoint, which was trained on "
                f"{known}: name each of the topics {inputs} after one of those"
            )
        return names
    if not known:
        return inputs
    if len(known) != len(inputs):
        raise ConfigError(
            f"{len(inputs)} image topic(s) {inputs}, but the checkpoint was trained on {len(known)} "
            f"camera(s) {known}: give one topic per camera, or camera_names (one per topic) to say "
            "which checkpoint camera each topic is"
        )
    return known


def check_crop_boxes(crop_boxes: dict, served: Sequence[str], checkpoint_cameras: Sequence[str]) -> None:
    """Every crop box must belong to a camera that is served.

    :raises ConfigError: naming the box's camera, the served cameras and the checkpoint's.
    """
    stray = sorted(set(crop_boxes) - set(served))
    if stray:
        raise ConfigError(
            f"crop box(es) for camera(s) {stray} match none of the served cameras {list(served)} "
            f"(checkpoint cameras: {list(checkpoint_cameras) or 'none recorded'}): serve a topic as "
            "that camera (camera_names), or set model.crop_boxes for the cameras served"
        )


def serve_cameras(
    ckpt: Any,
    inputs: Sequence[str],
    names: Sequence[str] = (),
    boxes: Sequence[Sequence[int] | None] | None = None,
) -> list[str]:
    """Prepare a loaded checkpoint to score frames from `inputs` (image topics, or a
    simulator's cameras): the checkpoint camera of each input (`map_cameras`), crop boxes
    given per input (None: keep the checkpoint's; an entry None: no crop for that input)
    re-keyed by those names, and every crop box checked against what is served. The same
    for reward_node and the RL reward. Returns the camera name per input.

    :raises ConfigError: see map_cameras and check_crop_boxes.
    """
    from reward_model_ros.core.config import ModelConfig

    cameras = map_cameras(ckpt.config.camera_names, inputs, names)
    if boxes is not None:
        if len(boxes) != len(cameras):
            raise ConfigError(f"{len(boxes)} crop boxes for {len(cameras)} inputs {list(inputs)}")
        crops: dict[str, list[int]] = {}
        for cam, box in zip(cameras, boxes, strict=True):
            if box is None:
                continue
            if cam in crops and list(crops[cam]) != list(box):
                raise ConfigError(f"two inputs are camera {cam!r} with different crop boxes")
            crops[cam] = [int(v) for v in box]
        ckpt.config = ModelConfig.from_dict({**ckpt.config.to_dict(), "crop_boxes": crops})
    check_crop_boxes(ckpt.config.crop_boxes, cameras, ckpt.config.camera_names)
    known = list(ckpt.config.camera_names)
    if ckpt.config.views > 1 and sorted(cameras) != sorted(known):
        raise ConfigError(
            f"the checkpoint judges its cameras {known} together (model.multi_view=joint), but the "
            f"inputs {list(inputs)} are cameras {cameras}: serve one input per checkpoint camera"
        )
    return cameras
