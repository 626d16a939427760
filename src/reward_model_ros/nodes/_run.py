"""The `main()` shared by every node: init, spin, clean shutdown, clear start-up errors."""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from typing import Any

from reward_model_ros.nodes.params import ParameterError


def spin_node(factory: Callable[[], Any], args: list[str] | None = None) -> int:
    """Create the node with `factory`, spin it until Ctrl-C / SIGTERM (or until its
    `finished` future, if it has one, completes: a node that ends its own job), then clean up.

    A `ParameterError` (or FileNotFoundError, e.g. a missing checkpoint) during start-up is
    printed as one clear line and exits with code 2 instead of a traceback.
    """
    import rclpy
    from rclpy.executors import ExternalShutdownException

    node = None
    try:
        rclpy.init(args=args)
        node = factory()
        finished = getattr(node, "finished", None)
        if finished is not None:
            rclpy.spin_until_future_complete(node, finished)
        else:
            rclpy.spin(node)
    except (ParameterError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        # A second Ctrl-C (or a launch system's repeated SIGINT) must not interrupt cleanup.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0
