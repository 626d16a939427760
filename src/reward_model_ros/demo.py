"""The main job on the embedded default (`make demo`, `reward-model demo`).

Stage 1 round-trips every reward_msgs type between two processes (the interfaces and DDS
work). Stage 2 runs the product's data path: camera_node plays a generated video at 30 Hz,
reward_node scores every frame with a freshly initialised classifier, and this process
prints each RewardStamped as it arrives and a latency summary. Stage 3 runs simulation:
maniskill_bridge's scripted driver plays labelled PickCube episodes (planned successes and
failures) and reward_node scores the bridge's camera; per episode, the simulation's ground
truth is printed next to the node's mean probability. Everything runs in a leased ROS
domain with DDS kept on this machine. (Training replaces the untrained model once it exists.)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from reward_msgs.msg import EpisodeEvent, SuccessLabel

from reward_model_ros.paths import share_dir
from reward_model_ros.ros.conversions import stamp_to_nanoseconds
from reward_model_ros.ros.processes import NodeProcess, ros_args
from reward_model_ros.ros.reward_listener import Received, RewardListener


@dataclass
class DemoConfig:
    out_dir: Path = Path("runs/demo")
    """where the generated video and the node logs go"""
    frames: int = 90
    """frames in the generated video (played once at `rate`)"""
    rate: float = 30.0
    """camera frame rate, Hz"""
    width: int = 640
    """video width"""
    height: int = 480
    """video height"""
    arch: str = "resnet18"
    """classifier backbone (freshly initialised)"""
    precision: str = "fp32"
    """inference precision of reward_node"""
    timeout: float = 60.0
    """seconds to wait for each stage"""
    episodes: int = 2
    """simulation stage: scripted success episodes, and as many failure episodes"""


def write_demo_video(path: Path, frames: int, width: int, height: int, rate: float) -> Path:
    """A synthetic scene: a red cube slides towards a green target and stops on it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), rate, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {path} (MJPG/AVI)")
    side = height // 8
    target = (int(width * 0.75), height // 2)
    for i in range(frames):
        img = np.full((height, width, 3), (60, 60, 60), np.uint8)
        cv2.rectangle(img, (0, height * 2 // 3), (width, height), (90, 70, 50), -1)  # table
        cv2.circle(img, target, side, (0, 200, 0), 3)
        progress = min(1.0, i / max(1, frames * 0.7))
        x = int(width * 0.15 + progress * (target[0] - width * 0.15))
        cv2.rectangle(
            img,
            (x - side // 2, target[1] - side // 2),
            (x + side // 2, target[1] + side // 2),
            (0, 0, 220),
            -1,
        )
        cv2.putText(img, f"frame {i:03d}", (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (255, 255, 255), 2)
        writer.write(img)
    writer.release()
    return path


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def _print_reward(item: Received) -> None:
    m = item.msg
    print(
        f"  #{m.sequence:03d} p={m.probability:.4f} {'SUCCESS' if m.success else 'fail   '} "
        f"reward={m.reward:+.1f} inference={m.inference_latency * 1e3:5.1f} ms "
        f"stamp->here={item.latency_ms:5.1f} ms",
        flush=True,
    )


def run_reward_stage(cfg: DemoConfig) -> int:
    video = write_demo_video(cfg.out_dir / "camera.avi", cfg.frames, cfg.width, cfg.height, cfg.rate)
    print(f"wrote {video} ({cfg.frames} frames, {cfg.width}x{cfg.height}, a cube sliding onto a target)")
    camera = None
    with RewardListener("demo_probe", on_message=_print_reward) as listener:
        reward = NodeProcess(
            "reward_node",
            ros_args({"model.arch": cfg.arch, "model.precision": cfg.precision, "image_qos": "reliable"}),
            env=listener.env,
            log_path=cfg.out_dir / "reward_node.log",
        )
        try:
            ready = listener.spin_until(  # reward_node subscribes to image_raw once its model is loaded
                lambda: listener.node.count_subscribers("/image_raw") > 0 or not reward.alive(), cfg.timeout
            )
            if not ready or not reward.alive():
                print("reward_node did not start:\n" + reward.output())
                return 1
            print(
                f"reward_node is up ({cfg.arch}, freshly initialised: its probabilities mean nothing yet); "
                f"starting camera_node on the video at {cfg.rate:g} Hz"
            )
            camera = NodeProcess(
                "camera_node",
                ros_args(
                    {
                        "source": str(video.resolve()),
                        "rate": cfg.rate,
                        "loop": False,
                        "wait_for_subscriber": True,
                        "frame_id": "demo_camera",
                    }
                ),
                env=listener.env,
                log_path=cfg.out_dir / "camera_node.log",
            )
            listener.spin_until(lambda: not camera.alive(), cfg.timeout + cfg.frames / cfg.rate)
            listener.spin_until(lambda: len(listener.received) >= cfg.frames, 2.0)
        finally:
            if camera is not None:
                camera.stop()
            reward.stop()
    return _summary(cfg, listener.received, camera)


def _summary(cfg: DemoConfig, rewards: list[Received], camera: NodeProcess | None) -> int:
    latency = [r.latency_ms for r in rewards]
    inference = [r.msg.inference_latency * 1e3 for r in rewards]
    code = camera.popen.returncode if camera else None
    print(
        f"scored {len(rewards)}/{cfg.frames} frames ({cfg.frames - len(rewards)} dropped); "
        f"camera_node exit code {code}"
    )
    if rewards:
        print(
            f"latency from frame capture to reward here: p50 {_percentile(latency, 50):.1f} ms, "
            f"p99 {_percentile(latency, 99):.1f} ms, max {max(latency):.1f} ms; "
            f"inference p50 {_percentile(inference, 50):.1f} ms"
        )
        print(f"model {rewards[0].msg.model_id}; logs in {cfg.out_dir}/")
    # Frames skipped as stale (latest wins) are by design; a demo that scores fewer than
    # 90% of them, or whose camera failed, is not working.
    return 0 if len(rewards) >= 0.9 * cfg.frames and code == 0 else 1


@dataclass
class EpisodeResult:
    start: EpisodeEvent
    end: EpisodeEvent
    success_frames: int
    probabilities: list[float]


def episode_results(
    events: list[EpisodeEvent], labels: list[SuccessLabel], rewards: list[Received]
) -> list[EpisodeResult]:
    """Group the rewards by episode (image stamps between the START and end events' stamps)."""
    starts = {e.episode_index: e for e in events if e.event == EpisodeEvent.START}
    results = []
    for end in (e for e in events if e.event != EpisodeEvent.START):
        start = starts.get(end.episode_index)
        if start is None:
            continue
        lo, hi = stamp_to_nanoseconds(start.header.stamp), stamp_to_nanoseconds(end.header.stamp)
        probs = [r.msg.probability for r in rewards if lo <= stamp_to_nanoseconds(r.msg.header.stamp) <= hi]
        success = sum(m.success for m in labels if m.episode_index == end.episode_index)
        results.append(EpisodeResult(start, end, success, probs))
    return results


def run_sim_stage(cfg: DemoConfig) -> int:
    config = share_dir() / "config" / "sim_pickcube.yaml"
    qos = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
    events: list[EpisodeEvent] = []
    labels: list[SuccessLabel] = []

    def on_event(msg: EpisodeEvent) -> None:
        events.append(msg)
        if msg.event == EpisodeEvent.START:
            print(f"  episode {msg.episode_index}: {msg.mode}, seed {msg.seed} ...", flush=True)

    bridge = None
    with RewardListener("demo_sim_probe") as listener:
        listener.node.create_subscription(EpisodeEvent, "episode/event", on_event, qos)
        listener.node.create_subscription(SuccessLabel, "success_label", labels.append, qos)
        reward = NodeProcess(
            "reward_node",
            ros_args({"model.arch": cfg.arch, "model.precision": cfg.precision}, params_file=config),
            env=listener.env,
            log_path=cfg.out_dir / "sim_reward_node.log",
        )
        try:
            ready = listener.spin_until(
                lambda: listener.node.count_subscribers("/image_raw") > 0 or not reward.alive(), cfg.timeout
            )
            if not ready or not reward.alive():
                print("reward_node did not start:\n" + reward.output())
                return 1
            print(
                f"reward_node is up; starting maniskill_bridge (scripted driver: {cfg.episodes} success "
                f"+ {cfg.episodes} failure PickCube episodes, 128x128 camera, as fast as possible)"
            )
            bridge = NodeProcess(
                "maniskill_bridge",
                ros_args(
                    {
                        "driver": "scripted",
                        "target_success": cfg.episodes,
                        "target_failure": cfg.episodes,
                        "real_time": False,
                    },
                    params_file=config,
                ),
                env=listener.env,
                log_path=cfg.out_dir / "maniskill_bridge.log",
            )
            listener.spin_until(lambda: not bridge.alive(), cfg.timeout + 30.0 * cfg.episodes)
            listener.spin_until(lambda: False, 1.0)  # the last rewards in flight
        finally:
            if bridge is not None:
                bridge.stop()
            reward.stop()
    results = episode_results(events, labels, listener.received)
    print(f"{'episode':>7}  {'mode':<14} {'seed':>4}  {'truth':<7} {'success frames':>14}  mean p (frames)")
    for r in results:
        truth = "success" if r.end.label == EpisodeEvent.LABEL_SUCCESS else "failure"
        mean = f"{np.mean(r.probabilities):.3f} ({len(r.probabilities)})" if r.probabilities else "- (0)"
        print(
            f"{r.end.episode_index:>7}  {r.start.mode:<14} {r.start.seed:>4}  {truth:<7} "
            f"{r.success_frames:>14}  {mean}"
        )
    print(
        "(the classifier is freshly initialised: its probabilities mean nothing until a trained "
        f"checkpoint is given; logs in {cfg.out_dir}/)"
    )
    code = bridge.popen.returncode if bridge else None
    complete = len(results) == 2 * cfg.episodes and all(r.probabilities for r in results)
    return 0 if complete and code == 0 else 1


def run_demo(cfg: DemoConfig) -> int:
    from reward_model_ros.cli import check_interfaces

    print("== 1/3 interfaces: every reward_msgs type across two processes")
    if check_interfaces(True, "interface_echo", cfg.timeout) != 0:
        return 1
    print("\n== 2/3 camera_node -> reward_node: a video scored frame by frame")
    if run_reward_stage(cfg) != 0:
        return 1
    print("\n== 3/3 simulation: scripted PickCube episodes -> reward_node, ground truth per episode")
    return run_sim_stage(cfg)
