"""Multi-camera matching and the debug output (no ROS)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from reward_model_ros.core.debug import GREEN, RED, DebugImageWriter, annotate
from reward_model_ros.core.sync import FrameSynchronizer

MS = 1_000_000


def test_single_camera_passes_every_frame():
    sync = FrameSynchronizer(1, 10 * MS)
    assert [sync.add(0, i * MS, i) for i in range(3)] == [[0], [1], [2]]
    assert sync.stats.replaced == 0


def test_two_cameras_pair_frames_within_tolerance():
    sync = FrameSynchronizer(2, 10 * MS)
    assert sync.add(0, 100 * MS, "a0") is None
    assert sync.add(1, 105 * MS, "b0") == ["a0", "b0"]
    assert sync.add(1, 140 * MS, "b1") is None  # waits for camera 0
    assert sync.add(0, 133 * MS, "a1") == ["a1", "b1"]
    assert sync.stats.sets == 2 and sync.stats.replaced == 0


def test_a_late_frame_still_pairs_with_its_partner():
    """Camera 0's next frame arrives before camera 1's current one: both sets survive."""
    sync = FrameSynchronizer(2, 10 * MS)
    assert sync.add(0, 100 * MS, "a0") is None
    assert sync.add(0, 166 * MS, "a1") is None
    assert sync.add(1, 100 * MS, "b0") == ["a0", "b0"]
    assert sync.add(1, 166 * MS, "b1") == ["a1", "b1"]
    assert sync.stats.replaced == 0


def test_frames_without_a_partner_are_dropped_not_paired():
    sync = FrameSynchronizer(2, 10 * MS)
    sync.add(0, 100 * MS, "a0")
    assert sync.add(1, 200 * MS, "b0") is None  # a0 is 100 ms older: no pair
    assert sync.add(0, 203 * MS, "a1") == ["a1", "b0"]
    assert sync.stats.replaced == 1  # a0 never made it into a set


def test_queue_is_bounded():
    sync = FrameSynchronizer(2, 10 * MS, queue_size=3)
    for i in range(10):
        assert sync.add(0, i * 100 * MS, i) is None  # camera 1 is silent
    assert sync.stats.replaced == 7
    assert sync.add(1, 900 * MS, "b") == [9, "b"]


def test_annotate_colours_and_shrinks():
    frame = np.full((480, 640, 3), 128, np.uint8)
    ok = annotate(frame, 0.91, True, 0.5, max_width=320)
    bad = annotate(frame, 0.12, False, 0.5)
    assert ok.shape == (240, 320, 3) and bad.shape == (480, 640, 3)
    assert tuple(ok[-1, 160]) == GREEN and tuple(bad[-1, 320]) == RED
    assert (frame == 128).all()  # the input is not drawn on
    assert not (bad[5:30, 5:200] == 128).all()  # text box drawn


def test_debug_writer_names_and_cap(tmp_path, caplog):
    writer = DebugImageWriter(tmp_path, max_files=2)
    chw = np.zeros((3, 8, 8), np.uint8)
    chw[0] = 255  # red in RGB
    p1 = writer.write(chw, 0.87654, True)
    p2 = writer.write(chw, 0.1, False)
    assert p1.relative_to(tmp_path).as_posix() == "resnet_success/000000_prob0.8765.png"
    assert p2.relative_to(tmp_path).as_posix() == "resnet_fail/000001_prob0.1000.png"
    assert tuple(cv2.imread(str(p1))[0, 0]) == (0, 0, 255)  # saved as a real RGB picture
    with caplog.at_level("WARNING"):
        assert writer.write(chw, 0.5, True) is None
        assert writer.write(chw, 0.5, True) is None
    assert caplog.text.count("reached debug_save_max_files=2") == 1


def test_synchronizer_needs_a_camera():
    with pytest.raises(ValueError):
        FrameSynchronizer(0, 1)
