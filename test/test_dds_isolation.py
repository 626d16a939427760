"""No DDS packet leaves the machine: sniff every interface during a cross-process exchange."""

from __future__ import annotations

import pytest
from dds_sniffer import Sniffer, _rtps_over_udp

from reward_model_ros.ros.interface_check import run_interface_check


def _udp_frame(payload: bytes) -> bytes:
    eth = b"\x00" * 12 + b"\x08\x00"
    ip = bytes([0x45, 0, 0, 0, 0, 0, 0, 0, 64, 17]) + b"\x00" * 10
    udp = b"\x1c\xe8\x1c\xe9\x00\x00\x00\x00"
    return eth + ip + udp + payload


def test_rtps_detection():
    assert _rtps_over_udp(_udp_frame(b"RTPS\x02\x03"))
    assert not _rtps_over_udp(_udp_frame(b"HTTP/1.1"))
    assert not _rtps_over_udp(b"\x00" * 10)


def test_no_rtps_packet_on_any_interface_but_loopback(ros_node, start_node):
    reason = Sniffer.available()
    if reason:
        pytest.skip(reason)
    sniffer = Sniffer().start()
    try:
        start_node("interface_echo_node")
        results = run_interface_check(ros_node, timeout=20.0)
    finally:
        sniffer.stop()
    assert all(r.ok for r in results)
    # the sniffer works: discovery between the two processes went over loopback UDP
    assert sniffer.loopback > 0
    assert sniffer.elsewhere == 0, sniffer.leaks
