"""label_keyboard_node: a person labels success frames and episode ends from a terminal.

Keys (read from this terminal, no window system needed):
  space   mark success: in `toggle` mode (default) each press switches it on/off; in `hold`
          mode it stays on while the key is held (the terminal's auto-repeat keeps it alive;
          it goes off `hold_release` seconds after the last repeat)
  n       start a new episode (EpisodeEvent START)
  enter   end the episode as a success   (EpisodeEvent SUCCESS, label success)
  f       end the episode as a failure   (EpisodeEvent FAILURE, label failure)
  q       quit

It publishes a SuccessLabel (source PERSON) `rate` times a second and at every change, and
the EpisodeEvents that the recorder and the reward node follow. The prompt line shows the
current mark and the successes/failures recorded so far (counted from every EpisodeEvent
on the topic, so ends from other labellers count too).

Terminals report key presses, not releases: `hold` mode is an approximation (HIL-SERL and
LeRobot read the keyboard through the window system for that); `toggle` is exact.
"""

from __future__ import annotations

import os
import select
import sys
import termios
import threading
import time
import tty

from rclpy.node import Node
from reward_msgs.msg import EpisodeEvent, SuccessLabel
from std_msgs.msg import Header

from reward_model_ros.nodes._run import spin_node
from reward_model_ros.nodes.params import (
    Param,
    ParameterError,
    declare_parameters,
    in_range,
    one_of,
    topic_name,
)
from reward_model_ros.ros import qos as qos_profiles
from reward_model_ros.ros.diagnostics import OK, Diagnostics

NODE_NAME = "label_keyboard"

PARAMETERS = (
    Param(
        "mode",
        "toggle",
        "toggle (space switches success on/off) | hold (on while space is held)",
        one_of("toggle", "hold"),
    ),
    Param(
        "hold_release",
        0.6,
        "hold mode: seconds after the last key repeat that success goes off",
        in_range(0.05, 5.0),
    ),
    Param("rate", 10.0, "SuccessLabels per second (and one at every change)", in_range(0.5, 1000.0)),
    Param("task", "", "task name in the EpisodeEvents"),
    Param("label_topic", "success_label", "reward_msgs/SuccessLabel output", topic_name, read_only=True),
    Param(
        "episode_event_topic",
        "episode/event",
        "reward_msgs/EpisodeEvent output (and counted)",
        topic_name,
        read_only=True,
    ),
)


class LabelKeyboardNode(Node):
    def __init__(self) -> None:
        super().__init__(NODE_NAME)
        self.p = p = declare_parameters(self, PARAMETERS, on_change=lambda c: self.p.update(c))
        if not os.isatty(sys.stdin.fileno()):
            raise ParameterError(
                f"{NODE_NAME} reads keys from its terminal, but stdin is not a terminal: run it in a "
                "terminal of its own (`ros2 run reward_model_ros label_keyboard_node`), not from launch"
            )
        reliable = qos_profiles.reliable(50)
        self.label_pub = self.create_publisher(SuccessLabel, p["label_topic"], reliable)
        self.event_pub = self.create_publisher(EpisodeEvent, p["episode_event_topic"], reliable)
        self.create_subscription(EpisodeEvent, p["episode_event_topic"], self._on_event, reliable)
        self.success = False
        self.last_key = 0.0
        self.episode = -1
        self.in_episode = False
        self.counts = {"success": 0, "failure": 0}
        self.diagnostics = Diagnostics(self, "keyboard labeller", self._health)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.create_timer(1.0 / p["rate"], self._tick)
        self._saved = termios.tcgetattr(sys.stdin.fileno())
        tty.setcbreak(sys.stdin.fileno())
        self._thread = threading.Thread(target=self._read_keys, name="keyboard", daemon=True)
        self._thread.start()
        print(
            "keys: space = success mark, n = new episode, enter = end as success, "
            "f = end as failure, q = quit",
            flush=True,
        )
        self._prompt()

    # --- keys ---------------------------------------------------------------------------
    def _read_keys(self) -> None:
        fd = sys.stdin.fileno()
        while not self._stop.is_set():
            ready, _, _ = select.select([fd], [], [], 0.05)
            if not ready:
                continue
            key = os.read(fd, 1).decode(errors="ignore")
            if not key:
                return
            self._on_key(key)

    def _on_key(self, key: str) -> None:
        with self._lock:
            if key == " ":
                self.last_key = time.monotonic()
                if self.p["mode"] == "toggle":
                    self.success = not self.success
                elif not self.success:
                    self.success = True
                else:
                    return  # an auto-repeat of a held key: nothing changes
                self._publish_label()
            elif key == "n":
                self._start()
            elif key in ("\n", "\r"):
                self._end(EpisodeEvent.SUCCESS, EpisodeEvent.LABEL_SUCCESS, "marked successful")
            elif key == "f":
                self._end(EpisodeEvent.FAILURE, EpisodeEvent.LABEL_FAILURE, "marked failed")
            elif key == "q":
                self._stop.set()
                os.kill(os.getpid(), 2)  # SIGINT: the usual clean shutdown
                return
        self._prompt()

    def _start(self) -> None:
        if self.in_episode:
            self._end(EpisodeEvent.ABORT, EpisodeEvent.LABEL_UNKNOWN, "a new episode was started")
        self.episode += 1
        self.in_episode, self.success = True, False
        self._publish_event(EpisodeEvent.START, EpisodeEvent.LABEL_UNKNOWN, "")

    def _end(self, event: int, label: int, message: str) -> None:
        self._publish_event(event, label, message)
        self.in_episode, self.success = False, False
        self._publish_label()

    # --- outputs ------------------------------------------------------------------------
    def _header(self) -> Header:
        return Header(stamp=self.get_clock().now().to_msg())

    def _publish_label(self) -> None:
        self.label_pub.publish(
            SuccessLabel(
                header=self._header(),
                success=self.success,
                source=SuccessLabel.SOURCE_PERSON,
                confidence=1.0,
                episode_index=max(self.episode, 0),
            )
        )

    def _publish_event(self, event: int, label: int, message: str) -> None:
        self.event_pub.publish(
            EpisodeEvent(
                header=self._header(),
                event=event,
                episode_index=max(self.episode, 0),
                task=self.p["task"],
                mode="manual",
                label=label,
                message=message,
            )
        )

    def _health(self):
        """/diagnostics: the labelling state a person at the robot should see."""
        values = {
            "episode": self.episode,
            "in_episode": self.in_episode,
            "success": self.success,
            **self.counts,
        }
        state = "success held" if self.success else "no success"
        return OK, f"episode {self.episode}: {state}" if self.in_episode else "between episodes", values

    def _tick(self) -> None:
        with self._lock:
            if (
                self.p["mode"] == "hold"
                and self.success
                and time.monotonic() - self.last_key > self.p["hold_release"]
            ):
                self.success = False
                self._prompt()
            self._publish_label()

    def _on_event(self, msg: EpisodeEvent) -> None:
        if msg.label == EpisodeEvent.LABEL_SUCCESS and msg.event != EpisodeEvent.START:
            self.counts["success"] += 1
        elif msg.label == EpisodeEvent.LABEL_FAILURE and msg.event != EpisodeEvent.START:
            self.counts["failure"] += 1
        else:
            return
        self._prompt()

    def _prompt(self) -> None:
        state = "SUCCESS" if self.success else "-------"
        ep = f"episode {self.episode}" if self.in_episode else "no episode (n starts one)"
        sys.stdout.write(
            f"\r[{state}] {ep:<26} recorded: {self.counts['success']} success, "
            f"{self.counts['failure']} failure   "
        )
        sys.stdout.flush()

    def destroy_node(self) -> None:
        if hasattr(self, "_thread"):
            self._stop.set()
            self._thread.join(timeout=1.0)
            termios.tcsetattr(sys.stdin.fileno(), termios.TCSADRAIN, self._saved)
            print(flush=True)
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    return spin_node(LabelKeyboardNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
