"""The harness itself: domains are exclusive, environments local, processes always stopped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from reward_model_ros.dds import DomainLease, local_dds_env
from reward_model_ros.ros import processes
from reward_model_ros.ros.processes import NodeProcess, find_executable, ros_args


def test_leases_are_exclusive_across_processes():
    code = (
        "from reward_model_ros.dds import DomainLease; import sys, time; "
        "l = DomainLease(); print(l.domain_id, flush=True); time.sleep(30)"
    )
    children = [
        subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) for _ in range(3)
    ]
    try:
        ids = [int(c.stdout.readline()) for c in children]
        with DomainLease() as mine:
            ids.append(mine.domain_id)
        assert len(set(ids)) == 4, ids
        assert all(1 <= i <= 101 for i in ids)
    finally:
        for c in children:
            c.kill()
            c.wait()


def test_local_env_keeps_dds_on_loopback():
    env = local_dds_env(17, base={"ROS_STATIC_PEERS": "10.0.0.2", "ROS_LOCALHOST_ONLY": "0"})
    assert env["ROS_DOMAIN_ID"] == "17"
    assert env["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
    assert env["RMW_IMPLEMENTATION"] == "rmw_fastrtps_cpp"
    assert env["FASTDDS_DEFAULT_PROFILES_FILE"].endswith("config/fastdds.xml")
    assert "ROS_STATIC_PEERS" not in env and "ROS_LOCALHOST_ONLY" not in env


def test_fastdds_profile_restricts_udp_to_loopback():
    import xml.etree.ElementTree as ET

    path = local_dds_env(1)["FASTDDS_DEFAULT_PROFILES_FILE"]
    root = ET.parse(path).getroot()
    ns = {"d": "http://www.eprosima.com"}
    descs = {
        d.findtext("d:transport_id", namespaces=ns): d for d in root.iterfind(".//d:transport_descriptor", ns)
    }
    kinds = {d.findtext("d:type", namespaces=ns): d for d in descs.values()}
    assert int(kinds["SHM"].findtext("d:segment_size", namespaces=ns)) >= 640 * 480 * 3 * 2
    allowed = [a.text for a in kinds["UDPv4"].iterfind(".//d:address", ns)]
    assert allowed == ["127.0.0.1"]
    participant = root.find(".//d:participant", ns)
    assert participant.get("is_default_profile") == "true"
    assert participant.findtext(".//d:useBuiltinTransports", namespaces=ns) == "false"
    used = [t.text for t in participant.iterfind(".//d:userTransports/d:transport_id", ns)]
    assert set(used) == set(descs)


def test_ros_args():
    args = ros_args({"a": 1, "b": True, "c": "x", "d": [1, 2], "e": ""}, "p.yaml", {"in": "out"}, "n")
    assert args == [
        "--ros-args",
        "--params-file",
        "p.yaml",
        "-p",
        "a:=1",
        "-p",
        "b:=true",
        "-p",
        "c:=x",
        "-p",
        "d:=[1,2]",
        "-p",
        "e:=''",
        "-r",
        "__node:=n",
        "-r",
        "in:=out",
    ]


def test_missing_executable_is_a_clear_error():
    with pytest.raises(FileNotFoundError, match=r"no_such_node.*make setup"):
        find_executable("no_such_node")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(") ")[1][0] != "Z"


def test_stop_kills_the_whole_group_even_when_sigint_is_ignored(tmp_path, monkeypatch):
    """A stubborn process and its child are gone after stop(): nothing leaks past a test."""
    script = tmp_path / "stubborn"
    script.write_text("#!/bin/bash\ntrap '' INT TERM\nsleep 300 &\necho child $!\nwait\n")
    script.chmod(0o755)
    monkeypatch.setattr(processes, "find_executable", lambda name: str(script))
    proc = NodeProcess("stubborn", log_path=tmp_path / "log")
    deadline = time.monotonic() + 10
    while "child" not in proc.output() and time.monotonic() < deadline:
        time.sleep(0.05)
    child = int(proc.output().split()[1])
    assert _alive(proc.pid) and _alive(child)
    start = time.monotonic()
    code = proc.stop(timeout=0.5)
    assert code == -signal.SIGKILL
    assert not _alive(proc.pid) and not _alive(child)
    assert time.monotonic() - start < 6


def test_node_stops_cleanly_on_sigint(start_node):
    echo = start_node("interface_echo_node")
    deadline = time.monotonic() + 20
    while "echoing" not in echo.output() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert echo.stop() == 0, echo.output()
