"""reward_msgs: every type is fully sampled, and round-trips unchanged across processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import call, wait_for_service

from reward_model_ros.ros.interface_check import run_interface_check
from reward_model_ros.ros.interface_samples import (
    MESSAGE_TYPES,
    sample_compute_rewards_request,
    sample_messages,
    sample_reset_request,
)
from reward_model_ros.ros.processes import _group_has_live_members


@pytest.mark.parametrize("suffix", sorted(MESSAGE_TYPES))
def test_sample_sets_every_field(suffix):
    """A field left at its default would round-trip unnoticed even if transport dropped it."""
    sample = sample_messages()[suffix]
    default = MESSAGE_TYPES[suffix]()
    unset = [f for f in sample.get_fields_and_field_types() if getattr(sample, f) == getattr(default, f)]
    assert not unset, f"{type(sample).__name__} sample leaves {unset} at the default"


@pytest.mark.parametrize("request_factory", [sample_compute_rewards_request, sample_reset_request])
def test_service_request_samples_set_every_field(request_factory):
    sample = request_factory()
    default = type(sample)()
    unset = [f for f in sample.get_fields_and_field_types() if getattr(sample, f) == getattr(default, f)]
    assert not unset


def test_every_type_round_trips_across_processes(ros_node, start_node):
    echo = start_node("interface_echo_node")
    results = run_interface_check(ros_node, timeout=20.0)
    assert echo.alive(), echo.output()
    names = {r.name for r in results}
    assert names == {
        "reward_msgs/msg/RewardStamped",
        "reward_msgs/msg/EpisodeEvent",
        "reward_msgs/msg/SuccessLabel",
        "reward_msgs/msg/PolicyAction",
        "reward_msgs/msg/ObservationVector",
        "reward_msgs/srv/ComputeRewards",
        "reward_msgs/srv/ResetEpisode",
    }
    failed = [f"{r.name}: {r.detail}" for r in results if not r.ok]
    assert not failed, failed


def test_round_trip_detects_a_changed_field(ros_node, start_node):
    """The comparison is real: an echo on another topic with one field changed is caught."""
    from reward_msgs.msg import SuccessLabel

    from reward_model_ros.ros.interface_check import _diff_fields

    sent = sample_messages()["success_label"]
    got = SuccessLabel(
        header=sent.header,
        success=not sent.success,
        source=sent.source,
        confidence=sent.confidence,
        episode_index=sent.episode_index,
    )
    assert _diff_fields(sent, got) == "fields differ: success"


RL_SMOKE = (
    "demos.episodes=2",
    "eval.episodes=2",
    "eval.interval=100000",
    "sac.learning_starts=50",
    "sac.bc_pretrain_steps=20",
    "sac.batch_size=32",
)


def test_reduced_demo_runs_every_stage(tmp_path):
    """`reward-model demo` (what `make demo` runs) with few episodes and one epoch: collect
    through ROS, process, train, evaluate on held-out seeds, replay through reward_node."""
    exe = os.path.join(os.path.dirname(sys.executable), "reward-model")
    out_dir = tmp_path / "demo"
    out = subprocess.run(
        [
            exe,
            "demo",
            "--episodes",
            "2",
            "--eval-episodes",
            "1",
            "--epochs",
            "1",
            "--out",
            str(out_dir),
            # stage 6 with a token budget: a few hundred SAC steps, evaluated on 2 seeds
            "--rl-minutes",
            "0.25",
            *(f"--rl-set={o}" for o in RL_SMOKE),
            "model.arch=resnet10",
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    for stage in (
        "1/6 collect",
        "2/6 process",
        "3/6 train",
        "4/6 evaluate",
        "5/6 replay",
        "6/6 RL",
        "summary",
    ):
        assert stage in out.stdout
    rl = json.loads((out_dir / "summary.json").read_text())["rl"]
    assert rl["steps"] > 0 and rl["final_eval"]["episodes"] == 2
    assert (out_dir / "rl" / "success.png").is_file()
    assert len(list((out_dir / "bags" / "train" / "success").iterdir())) == 2
    assert len(list((out_dir / "bags" / "eval" / "failure").iterdir())) == 1
    assert (out_dir / "train" / "best_model" / "model.safetensors").is_file()
    for f in ("eval/metrics.json", "eval/roc_pr.png", "replay.png", "summary.json", "dataset/manifest.jsonl"):
        assert (out_dir / f).is_file(), f
    summary = json.loads((out_dir / "summary.json").read_text())
    eval_seeds = {json.loads(line)["seed"] for line in (out_dir / "dataset_eval" / "manifest.jsonl").open()}
    train_seeds = {json.loads(line)["seed"] for line in (out_dir / "dataset" / "manifest.jsonl").open()}
    assert eval_seeds and not eval_seeds & train_seeds  # held-out seeds never used in training
    assert [r["truth"] for r in summary["replay"]] == ["success", "failure"]
    assert all(r["frames_scored"] > 20 for r in summary["replay"])
    assert set(summary["targets_met"]) == {"frame_accuracy", "auroc", "false_positive_episodes"}
    # the accuracy target is judged at the checkpoint's validation threshold, not at the threshold
    # recommended on the very frames it grades
    metrics = json.loads((out_dir / "eval" / "metrics.json").read_text())
    assert summary["evaluation"]["frame_accuracy"] == metrics["frames"]["accuracy"]
    assert (
        summary["evaluation"]["frame_accuracy_at_recommended"] == metrics["frames_at_recommended"]["accuracy"]
    )
    # reward_node was given only the checkpoint: it served the settings evaluate stored in it
    stored = json.loads((out_dir / "train" / "best_model" / "config.json").read_text())["recommended"]
    assert stored["reward_threshold"] == summary["recommended_threshold"]
    assert stored["debounce_frames"] == summary["recommended_debounce_frames"]
    assert summary["replay_threshold_served"] == pytest.approx(stored["reward_threshold"], abs=1e-6)
    assert f"debounce {stored['debounce_frames']} (recommended)" in summary["replay_decision"]


def _live_children(parent: int) -> list[int]:
    """PIDs of the live (not zombie) processes whose parent is `parent`."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == parent and fields[0] != "Z":
                pids.append(int(proc.name))
    return pids


def test_sigterm_stops_the_demo_and_every_node_it_started(tmp_path, ros_domain):
    """A `kill` (SIGTERM) of `reward-model demo` mid-collection ends it like Ctrl-C (exit 130),
    and the bridge and recorder it started stop with it. Before, they lived on as orphans in
    their own process groups, still simulating and recording."""
    exe = os.path.join(os.path.dirname(sys.executable), "reward-model")
    out_dir, log = tmp_path / "demo_killed", tmp_path / "demo.log"
    children: list[int] = []
    with log.open("w") as sink:
        demo = subprocess.Popen(
            [exe, "demo", "--episodes", "50", "--out", str(out_dir), "--rl-minutes", "0"],
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (out_dir / "bags" / "train").is_dir():
            time.sleep(0.2)
        while time.monotonic() < deadline and len(children := _live_children(demo.pid)) < 2:
            time.sleep(0.2)
        assert len(children) >= 2, "the demo started no bridge and recorder"  # both node processes
        demo.send_signal(signal.SIGTERM)
        code = demo.wait(timeout=60)
        assert code == 130, log.read_text()[-3000:]
        deadline = time.monotonic() + 20
        # each node runs in a process group of its own, led by the process the demo started
        while time.monotonic() < deadline and any(map(_group_has_live_members, children)):
            time.sleep(0.2)
        assert not any(map(_group_has_live_members, children)), "node processes outlived the demo"
    finally:
        if demo.poll() is None:
            demo.kill()
        for pid in filter(_group_has_live_members, children):
            os.killpg(pid, signal.SIGKILL)


def test_check_without_echo_node_fails_fast_and_says_why(ros_domain):
    exe = os.path.join(os.path.dirname(sys.executable), "reward-model")
    out = subprocess.run(
        [exe, "check-interfaces", "--no-spawn-echo", "--timeout", "2"],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ),
    )
    assert out.returncode == 1
    assert "no node /interface_echo in this ROS domain after 2 s" in out.stdout, out.stdout + out.stderr


def test_bad_parameter_at_start_is_refused_with_the_reason(start_node):
    echo = start_node("interface_echo_node", params={"qos_depth": 0})
    assert echo.popen.wait(timeout=30) == 2
    out = echo.output()
    assert "qos_depth=0" in out and "must be in [1, 1000]" in out, out


def test_integer_for_a_float_parameter_is_accepted_and_a_wrong_type_explained(ros_node, start_node):
    ok = start_node("interface_echo_node", params={"threshold": 1})  # `-p threshold:=1` is an int
    bad = start_node("interface_echo_node", params={"qos_depth": "deep"}, name="echo_bad")
    assert bad.popen.wait(timeout=30) == 2
    assert "parameter qos_depth must be a int like its default 10" in bad.output()
    deadline = time.monotonic() + 20
    while "echoing" not in ok.output() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ok.alive() and "echoing" in ok.output(), ok.output()


def test_bad_parameter_change_is_refused_and_the_node_keeps_running(ros_node, start_node):
    from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
    from rcl_interfaces.srv import GetParameters, SetParameters

    echo = start_node("interface_echo_node")
    client = wait_for_service(ros_node, SetParameters, "/interface_echo/set_parameters")

    def set_threshold(value):
        req = SetParameters.Request(
            parameters=[
                Parameter(
                    name="threshold",
                    value=ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=value),
                )
            ]
        )
        return call(ros_node, client, req, resend=True).results[0]

    bad = set_threshold(1.5)
    assert not bad.successful and "must be in [0.0, 1.0]" in bad.reason
    good = set_threshold(0.7)
    assert good.successful
    getter = wait_for_service(ros_node, GetParameters, "/interface_echo/get_parameters")
    values = call(ros_node, getter, GetParameters.Request(names=["threshold"]), resend=True).values
    assert values[0].double_value == pytest.approx(0.7)
    assert echo.alive()


def test_compute_rewards_answer_uses_the_new_threshold(ros_node, start_node):
    """A parameter change takes effect in the service answer (all fields cross processes)."""
    from reward_msgs.srv import ComputeRewards

    start_node("interface_echo_node", params={"threshold": 0.0})
    client = wait_for_service(ros_node, ComputeRewards, "/interface_echo/compute_rewards")
    answer = call(ros_node, client, sample_compute_rewards_request(), resend=True)
    assert answer.threshold == 0.0
    assert list(answer.successes) == [True, True]
    assert answer.model_id == "interface_echo"
