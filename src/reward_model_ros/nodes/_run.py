"""The `main()` shared by every node: init, spin, clean shutdown, clear start-up errors."""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from reward_model_ros.nodes.params import ParameterError


def steady_clock() -> Any:
    """A steady clock for a node's housekeeping timers: under use_sim_time a ROS-time timer
    would not fire until /clock runs."""
    from rclpy.clock import Clock, ClockType

    return Clock(clock_type=ClockType.STEADY_TIME)


class Finished:
    """A node's "my job is done" signal (targets met, a one-shot job over): `set()` from any
    thread; `spin_node` then stops spinning and `main()` returns 0. A steady timer turns the
    thread-safe event into the executor's future."""

    def __init__(self, node: Any, period: float = 0.2) -> None:
        from rclpy.task import Future

        self.future = Future()
        self._event = threading.Event()
        node.create_timer(period, self._poll, clock=steady_clock())

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def _poll(self) -> None:
        if self._event.is_set() and not self.future.done():
            self.future.set_result(True)


def wants_help(args: list[str] | None) -> bool:
    """`-h` / `--help` before any `--ros-args`."""
    argv = sys.argv[1:] if args is None else list(args)
    if "--ros-args" in argv:
        argv = argv[: argv.index("--ros-args")]
    return "-h" in argv or "--help" in argv


def print_help(factory: Callable[[], Any]) -> None:
    """The node's description and every parameter (name, default, meaning): what
    `ros2 run reward_model_ros <node> --help` shows. Creates no node and needs no ROS graph."""
    import json

    module = sys.modules.get(getattr(factory, "__module__", ""), None)
    doc = (getattr(module, "__doc__", None) or "").strip()
    name = getattr(module, "NODE_NAME", getattr(factory, "__name__", "node"))
    print(f"node {name}: {doc.splitlines()[0] if doc else ''}")
    print("usage: <executable> [--ros-args -p name:=value ... | --params-file FILE | -r __node:=NAME]")
    params = getattr(module, "PARAMETERS", ())
    if params:
        print("parameters:")
        width = max(len(p.name) for p in params)
        for p in params:
            default = json.dumps(p.default) if not isinstance(p.default, bool) else str(p.default).lower()
            ro = " (read-only)" if p.read_only else ""
            print(f"  {p.name:<{width}}  {default:<14} {p.description}{ro}")


def shutdown_race(exc: BaseException, context_down: Callable[[], bool], wait_s: float = 2.0) -> bool:
    """Whether `exc`, raised out of the executor, is only a Ctrl-C / SIGTERM racing it.

    rclpy's signal handler raises KeyboardInterrupt in the main thread and shuts the context
    down from its own thread. Between two iterations the next wait set fails with RCLError
    ("the given context is not valid"); inside one, the take of a message that was ready is
    interrupted and pybind11 raises RuntimeError ("Unable to convert call argument '0' to
    Python object", seen in CI on rl_trainer). That error can reach us *before* the signal
    thread has shut the context down (CI, stop 34: the check found the context still up and
    rl_trainer exited 1), so an RCLError / RuntimeError counts as a shutdown when the context
    is down now or goes down within `wait_s`. The same errors with the context still up after
    that are real failures and propagate (`wait_s` later).
    """
    if type(exc).__name__ not in ("RCLError", "RuntimeError"):
        return False
    deadline = time.monotonic() + wait_s
    while not context_down():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


def _context_down() -> bool:
    import rclpy

    try:
        return not rclpy.ok()
    except Exception:  # a handle already destroyed by the shutdown: down
        return True


def spin_node(factory: Callable[[], Any], args: list[str] | None = None) -> int:
    """Create the node with `factory`, spin it until Ctrl-C / SIGTERM (or until its
    `finished` (a `Finished`), if it has one, is set: a node that ends its own job), then clean up.

    A `ParameterError` (or FileNotFoundError, e.g. a missing checkpoint) during start-up is
    printed as one clear line and exits with code 2 instead of a traceback.
    """
    if wants_help(args):
        print_help(factory)
        return 0
    import rclpy
    from rclpy.executors import ExternalShutdownException

    node = None
    try:
        rclpy.init(args=args)
        node = factory()
        # one thread: rclpy's MultiThreadedExecutor spins on entities whose callback group is
        # busy (measured ~85% of a core and 0.4 s action latency in franka_adapter); a service
        # that must wait is a coroutine in its own callback group (see franka_adapter)
        finished = getattr(node, "finished", None)
        if finished is not None:
            rclpy.spin_until_future_complete(node, finished.future)
        else:
            rclpy.spin(node)
    except (ParameterError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception as exc:
        if not shutdown_race(exc, _context_down):
            raise
    finally:
        # A second Ctrl-C (or a launch system's repeated SIGINT) must not interrupt cleanup.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


def exit_fast(code: int) -> None:
    """End the process now, after a node has shut down cleanly: flush, then skip the
    interpreter's teardown. With SAPIEN, torch and rclpy loaded that teardown takes 1-2 s on
    2 cores (measured: the bridge's main returned 0.17 s after SIGINT, the process ended 2.0 s
    after it), and a launch system waits for it. Only for entry points (never in-process)."""
    import logging
    import os

    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
