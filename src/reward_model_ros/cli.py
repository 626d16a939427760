"""The `reward-model` command: a thin layer over the library's functions.

reward-model demo                 the main job on the embedded default (see README)
reward-model check-interfaces     round-trip every reward_msgs type through an echo node
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path


def _print_results(results) -> None:
    width = max(len(r.name) for r in results)
    for r in results:
        status = "ok  " if r.ok else "FAIL"
        print(f"  {status} {r.name:<{width}}  {r.seconds * 1000:7.1f} ms  {r.detail}")


def _check(echo_node: str, timeout: float) -> list:
    import rclpy

    from reward_model_ros.ros.interface_check import run_interface_check

    rclpy.init()
    try:
        node = rclpy.create_node("interface_check")
        try:
            return run_interface_check(node, echo_node=echo_node, timeout=timeout)
        finally:
            node.destroy_node()
    finally:
        rclpy.try_shutdown()


def check_interfaces(spawn_echo: bool, echo_node: str, timeout: float) -> int:
    """Run the interface round trip; with spawn_echo, in an isolated local DDS domain."""
    from reward_model_ros.dds import DomainLease, local_dds_env
    from reward_model_ros.ros.processes import NodeProcess, ros_args

    if not spawn_echo:
        print(
            f"checking against a running echo node /{echo_node} (ROS_DOMAIN_ID="
            f"{os.environ.get('ROS_DOMAIN_ID', '0')})"
        )
        results = _check(echo_node, timeout)
        _print_results(results)
        return 0 if all(r.ok for r in results) else 1

    with DomainLease() as lease:
        env = local_dds_env(lease.domain_id)
        os.environ.update(env)  # before rclpy starts its participant in this process
        print(
            f"DDS kept on this machine: ROS_DOMAIN_ID={lease.domain_id}, "
            f"ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST, "
            f"FASTDDS_DEFAULT_PROFILES_FILE={env['FASTDDS_DEFAULT_PROFILES_FILE']}"
        )
        log_path = Path(tempfile.mkdtemp(prefix="reward_model_ros-")) / "interface_echo_node.log"
        start = time.monotonic()
        echo = NodeProcess("interface_echo_node", ros_args(node_name=echo_node), env=env, log_path=log_path)
        print(f"started {echo.command[0]} as process {echo.pid} (log: {log_path})")
        try:
            results = _check(echo_node, timeout)
        finally:
            code = echo.stop()
        print(f"round trip of every reward_msgs type between process {os.getpid()} and process {echo.pid}:")
        _print_results(results)
        passed = sum(r.ok for r in results)
        print(
            f"{passed}/{len(results)} interfaces came back unchanged in "
            f"{time.monotonic() - start:.1f} s; echo node exited with code {code}",
            flush=True,
        )
        if passed != len(results):
            print("echo node log:\n" + echo.output(), file=sys.stderr)
        return 0 if passed == len(results) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="reward-model", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="the main job on the embedded default")
    demo.add_argument("--timeout", type=float, default=60.0, help="seconds to wait per stage")
    demo.add_argument("--frames", type=int, default=90, help="frames of the generated video")
    demo.add_argument("--rate", type=float, default=30.0, help="camera frame rate, Hz")
    demo.add_argument("--arch", default="resnet18", help="classifier backbone")
    demo.add_argument("--precision", default="fp32", help="fp32 | bf16 | fp16")
    demo.add_argument("--out", type=Path, default=Path("runs/demo"), help="output directory")
    demo.add_argument(
        "--episodes", type=int, default=2, help="simulation: scripted success and failure episodes, each"
    )

    chk = sub.add_parser(
        "check-interfaces", help="round-trip every reward_msgs type through interface_echo_node"
    )
    chk.add_argument(
        "--spawn-echo",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="start the echo node here in an isolated local DDS domain (default); "
        "--no-spawn-echo checks against one already running in your domain, "
        "e.g. on another machine",
    )
    chk.add_argument("--echo-node", default="interface_echo", help="name of the echo node")
    chk.add_argument("--timeout", type=float, default=20.0, help="seconds to wait per interface")

    args = parser.parse_args(argv)
    try:
        if args.command == "demo":
            from reward_model_ros.demo import DemoConfig, run_demo

            return run_demo(
                DemoConfig(
                    out_dir=args.out,
                    frames=args.frames,
                    arch=args.arch,
                    precision=args.precision,
                    timeout=args.timeout,
                    episodes=args.episodes,
                )
            )
        if args.command == "check-interfaces":
            return check_interfaces(args.spawn_echo, args.echo_node, args.timeout)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if type(exc).__name__ == "ExternalShutdownException":  # rclpy shut down by a signal
            print("interrupted", file=sys.stderr)
            return 130
        raise
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
