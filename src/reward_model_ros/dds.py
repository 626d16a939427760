"""Keep DDS traffic on this machine and give every run its own ROS domain.

Used by the tests, `reward-model demo` and the benchmarks. No rclpy import here: the
environment must be set before rclpy (or a child process) starts its DDS participant.
"""

from __future__ import annotations

import fcntl
import os
import random
import tempfile
from collections.abc import Mapping
from pathlib import Path

from reward_model_ros.paths import config_file

# ROS 2's default port mapping fits domain IDs 0..101 on Linux; 0 is what other ROS
# users on the same machine get by default, so leases come from 1..101.
DOMAIN_ID_RANGE = range(1, 102)
_LOCK_DIR = Path(tempfile.gettempdir()) / "reward_model_ros-domains"


def local_dds_env(domain_id: int, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """An environment for ROS processes that keeps all DDS traffic on loopback.

    Sets ROS_DOMAIN_ID, ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST, the Fast DDS RMW and the
    project's Fast DDS profile (SHM with 16 MiB segments + UDP on 127.0.0.1 only).
    """
    env = dict(os.environ if base is None else base)
    env.update(
        ROS_DOMAIN_ID=str(domain_id),
        ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
        RMW_IMPLEMENTATION="rmw_fastrtps_cpp",
        FASTDDS_DEFAULT_PROFILES_FILE=str(config_file("fastdds.xml")),
    )
    # A static peers list would add unicast destinations outside the machine.
    env.pop("ROS_STATIC_PEERS", None)
    env.pop("ROS_LOCALHOST_ONLY", None)  # deprecated since Jazzy; superseded by the range
    return env


class DomainLease:
    """Holds one ROS domain ID exclusively among the processes of this machine that use it.

    The lease is an flock on a file per ID, released on `release()` or when the process
    dies, so concurrent test runs (or a test run beside a demo) never share a domain.
    IDs are tried in a random order, so that back-to-back runs get different domains.
    """

    def __init__(self, rng: random.Random | None = None) -> None:
        _LOCK_DIR.mkdir(parents=True, exist_ok=True)
        ids = list(DOMAIN_ID_RANGE)
        (rng or random.Random()).shuffle(ids)
        for domain_id in ids:
            fd = os.open(_LOCK_DIR / f"domain-{domain_id}.lock", os.O_CREAT | os.O_RDWR, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            self.domain_id = domain_id
            self._fd: int | None = fd
            return
        raise RuntimeError(
            f"all ROS domain IDs {DOMAIN_ID_RANGE.start}..{DOMAIN_ID_RANGE.stop - 1} are "
            f"leased by other processes (lock files in {_LOCK_DIR}); stop other test runs."
        )

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> DomainLease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
