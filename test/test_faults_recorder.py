"""Faults around recording (issue 11): damaged and cut-off bags, a full disk, labels that do
not exist. Nothing is lost, nothing is silently wrong."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import subprocess
import time
from binascii import crc32
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from helpers import call, spin_until, wait_for_service
from rclpy.serialization import serialize_message
from reward_msgs.msg import EpisodeEvent
from reward_msgs.srv import StartEpisode, StopEpisode
from rosbags.highlevel import AnyReader
from rosbags.rosbag2 import storage_mcap
from sensor_msgs.msg import Image

from reward_model_ros import cli
from reward_model_ros.data.bags import BagError, EpisodeBagWriter, TypeRegistry, recover_bag
from reward_model_ros.data.dataset import DataConfig, build_dataset, read_manifest
from reward_model_ros.data.recording import DATA, END, START, EpisodeRecorder, EventInfo, Item
from reward_model_ros.ros.conversions import seconds_to_stamp, stamp_to_nanoseconds

T0 = 1_700_000_000.0
PERIOD = 0.05
EVENT, IMAGE = "reward_msgs/msg/EpisodeEvent", "sensor_msgs/msg/Image"
NAME = "episode_000000"


def ns(t: float) -> int:
    return stamp_to_nanoseconds(seconds_to_stamp(t))


def img(i: int, t: float, side: int = 64) -> bytes:
    px = np.full((side, side, 3), i % 256, np.uint8)
    msg = Image(height=side, width=side, encoding="rgb8", step=side * 3, data=px.tobytes())
    msg.header.stamp = seconds_to_stamp(t)
    return serialize_message(msg)


def event(kind: int, t: float, label: int = -1) -> bytes:
    msg = EpisodeEvent(event=kind, task="insert_peg", mode="teleop", seed=7, label=label, episode_index=3)
    msg.header.stamp = seconds_to_stamp(t)
    return serialize_message(msg)


def images_in(bag: Path) -> list[int]:
    """The value of every image in a bag (image i is filled with i), in order."""
    with AnyReader([bag]) as reader:
        conns = [c for c in reader.connections if c.topic == "/image_raw"]
        return [bytes(reader.deserialize(raw, IMAGE).data)[0] for _c, _t, raw in reader.messages(conns)]


def record_walk(path: Path) -> list[tuple[int, int, int]]:
    """(opcode, offset, end) of the top-level records of an undamaged MCAP file."""
    data, out, pos = path.read_bytes(), [], 8
    while pos + 9 <= len(data):
        op, n = data[pos], int.from_bytes(data[pos + 1 : pos + 9], "little")
        if pos + 9 + n > len(data):
            break
        out.append((op, pos, pos + 9 + n))
        pos += 9 + n
    return out


def chunks_of(path: Path) -> list[tuple[int, int]]:
    return [(s, e) for op, s, e in record_walk(path) if op == 0x06]


def damage(path: Path, start: int, length: int) -> bytes:
    data = bytearray(path.read_bytes())
    for k in range(start, start + length):
        data[k] ^= 0x5A
    path.write_bytes(bytes(data))
    return bytes(data)


def leftover(root: Path, frames: int = 12) -> Path:
    """A bag as a killed recorder leaves it: START event and frame 0 in the first chunk, then
    one frame per chunk (flushed after each), no summary, no metadata.yaml."""
    src = root / "writing" / NAME
    w = EpisodeBagWriter(src, TypeRegistry())
    w.add_topic("/episode/event", EVENT)
    w.add_topic("/image_raw", IMAGE)
    w.write("/episode/event", ns(T0), event(EpisodeEvent.START, T0))
    for i in range(frames):
        t = T0 + i * PERIOD
        w.write("/image_raw", ns(t), img(i, t))
        w.flush()
    dst = root / "incomplete" / NAME
    dst.mkdir(parents=True)
    shutil.copy(src / f"{NAME}.mcap", dst / f"{NAME}.mcap")  # the bytes on disk at the kill
    w.close()
    return dst


def snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


# --- recovery -------------------------------------------------------------------------
def test_recovery_salvages_every_chunk_after_a_damaged_one(tmp_path, capsys):
    bag = leftover(tmp_path)
    mcap = bag / f"{NAME}.mcap"
    damaged = damage(mcap, 40, 64)  # 64 bytes near the start: the first chunk's header
    assert cli.main(["recover", str(bag)]) == 0
    assert images_in(bag) == list(range(1, 12))  # all but frame 0 (in the damaged chunk)
    from mcap.reader import make_reader

    with (bag / f"{NAME}.mcap").open("rb") as f:  # mcap's own reader, CRCs checked
        assert sum(1 for _ in make_reader(f, validate_crcs=True).iter_messages()) == 11
    kept = [p for p in bag.iterdir() if p.is_file() and p.read_bytes() == damaged]
    assert [p.name for p in kept] == [f"{NAME}.mcap.original"]  # the original, as it was
    out = capsys.readouterr().out
    assert "recovered 11 messages" in out and "mcap.original" in out


def test_recovery_drops_a_chunk_that_fails_its_crc(tmp_path):
    bag = leftover(tmp_path)
    mcap = bag / f"{NAME}.mcap"
    start, _end = chunks_of(mcap)[5]  # frame 5
    damage(mcap, start + 2000, 4096)  # inside the image data: the chunk frames fine, its CRC does not match
    result = recover_bag(bag)
    assert images_in(bag) == [i for i in range(12) if i != 5]
    assert result.messages_left_out == 1 and "CRC mismatch" in result.damage[0].reason
    info = json.loads((bag / "episode.json").read_text())
    assert info["recovery"]["messages_left_out"] == 1 and info["messages"]["/image_raw"] == 11


def test_recovery_that_reads_nothing_fails_and_touches_nothing(tmp_path, capsys):
    bag = leftover(tmp_path)
    mcap = bag / f"{NAME}.mcap"
    damage(mcap, 8, mcap.stat().st_size - 8)  # nothing readable
    before = snapshot(tmp_path / "incomplete")
    assert cli.main(["recover", str(bag)]) == 1
    err = capsys.readouterr().err
    assert "error:" in err and "no readable message" in err and "left as it is" in err
    assert snapshot(tmp_path / "incomplete") == before
    with pytest.raises(BagError, match="no readable message"):
        recover_bag(bag)
    # at the recorder's start-up: logged, left where it is, the recorder goes on
    rec = EpisodeRecorder(tmp_path)
    assert rec.recover_leftovers() == []
    assert snapshot(tmp_path / "incomplete") == before
    assert not (tmp_path / "aborted").exists()


def test_recovery_is_safe_to_run_again_and_after_an_interruption(tmp_path, monkeypatch, capsys):
    bag = leftover(tmp_path)
    original = (bag / f"{NAME}.mcap").read_bytes()

    def originals() -> list[Path]:
        return [p for p in tmp_path.rglob("*") if p.is_file() and p.read_bytes() == original]

    # 1. the first run fails while writing the new bag: the original stays
    real_close = EpisodeBagWriter.close

    def failing_close(self, episode=None):
        raise OSError(errno.EIO, "simulated I/O error")

    monkeypatch.setattr(EpisodeBagWriter, "close", failing_close)
    assert cli.main(["recover", str(bag)]) == 1
    monkeypatch.setattr(EpisodeBagWriter, "close", real_close)
    assert originals() and not (bag / "metadata.yaml").exists()
    # 2. the next run is interrupted in the middle of putting the new bag in place
    real_replace = os.replace

    def interrupted(src, dst, *a, **k):
        if Path(dst) == bag / "metadata.yaml":  # the last step of putting the new bag in place
            raise KeyboardInterrupt
        return real_replace(src, dst, *a, **k)

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        recover_bag(bag)
    monkeypatch.setattr(os, "replace", real_replace)
    assert originals()
    # 3. run again: done, from the original
    assert cli.main(["recover", str(bag)]) == 0
    assert images_in(bag) == list(range(12))
    assert [p.name for p in originals()] == [f"{NAME}.mcap.original"]
    # 4. and once more: nothing to do, nothing changed
    before = snapshot(bag)
    assert cli.main(["recover", str(bag)]) == 0
    assert "nothing to recover" in capsys.readouterr().out
    assert snapshot(bag) == before


def _recorder_leftover(tmp_path: Path, frames: int = 10) -> tuple[Path, Path]:
    """Record START + frames with EpisodeRecorder, flush, and copy the open episode's
    folder as a killed recorder leaves it into a second save_dir."""
    rec = EpisodeRecorder(tmp_path / "live", image_topics=("/image_raw",))
    start = EventInfo(START, "START", task="insert_peg", mode="teleop", seed=7, source_episode=3)
    items = [Item(ns(T0), START, 0, "/episode/event", EVENT, event(0, T0), 0.0, ns(T0), start)]
    for i in range(frames):
        t = T0 + i * PERIOD
        items.append(Item(ns(t), DATA, 0, "/image_raw", IMAGE, img(i, t), 0.0, ns(t)))
    for it in items:
        rec.put(it)
    rec.process(everything=True)
    rec.flush()
    save = tmp_path / "restart"
    shutil.copytree(tmp_path / "live" / "incomplete", save / "incomplete")
    return save, save / "incomplete" / NAME


@pytest.mark.parametrize("episode_json", ["none", "stale"])
def test_recovered_episode_json_is_rebuilt_from_the_bag(tmp_path, episode_json):
    save, left = _recorder_leftover(tmp_path)
    if episode_json == "none":  # task and mode only in the START event inside the bag
        (left / "episode.json").unlink(missing_ok=True)
    else:  # counts from before the crash
        stale = {"task": "insert_peg", "mode": "teleop", "seed": 7, "label": "incomplete"}
        stale |= {"messages": {"/image_raw": 999}, "frames": {"/image_raw": 999}, "duration_s": 99.0}
        (left / "episode.json").write_text(json.dumps(stale))
    rec = EpisodeRecorder(save)
    assert rec.recover_leftovers() == [save / "aborted" / NAME]
    info = json.loads((save / "aborted" / NAME / "episode.json").read_text())
    assert info["label"] == "aborted" and info["recovered"] is True
    assert (info["task"], info["mode"], info["seed"]) == ("insert_peg", "teleop", 7)
    assert info["messages"] == {"/episode/event": 1, "/image_raw": 10}
    assert info["frames"] == {"/image_raw": 10}
    assert info["start_stamp_ns"] == ns(T0) and info["end_stamp_ns"] == ns(T0 + 9 * PERIOD)
    assert info["duration_s"] == pytest.approx(9 * PERIOD, abs=1e-3)
    assert images_in(save / "aborted" / NAME) == list(range(10))


# --- a full disk ----------------------------------------------------------------------
class _Enospc:
    """rosbags' McapWriter.close_chunk failing with ENOSPC: `times` calls from the `after`-th on."""

    def __init__(self, monkeypatch, after: int = 0, times: int = 1) -> None:
        self.real = storage_mcap.McapWriter.close_chunk
        self.calls, self.after, self.times = 0, after, times
        monkeypatch.setattr(storage_mcap.McapWriter, "close_chunk", self)

    def __get__(self, obj, objtype=None):
        return lambda: self(obj)

    def __call__(self, writer) -> None:
        self.calls += 1
        if self.after < self.calls <= self.after + self.times:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.real(writer)


def _start_and_frames(rec: EpisodeRecorder, frames: int, first: int = 0, flush: bool = True) -> None:
    if first == 0:
        ev = EventInfo(START, "START", task="t", mode="m")
        rec.put(Item(ns(T0), START, 0, "/episode/event", EVENT, event(0, T0), 0.0, ns(T0), ev))
    for i in range(first, first + frames):
        t = T0 + i * PERIOD
        rec.put(Item(ns(t), DATA, 0, "/image_raw", IMAGE, img(i, t), 0.0, ns(t)))
        rec.process(everything=True)
        if flush:
            rec.flush()


def test_disk_full_while_flushing_closes_the_episode_with_everything_readable(tmp_path, monkeypatch):
    rec = EpisodeRecorder(tmp_path, image_topics=("/image_raw",))
    _start_and_frames(rec, 5)
    _Enospc(monkeypatch, after=0, times=1)  # the next chunk write fails once
    _start_and_frames(rec, 3, first=5)  # no exception
    bag = tmp_path / "aborted" / NAME
    assert images_in(bag) == list(range(6))  # the failed chunk was written once space was freed
    info = json.loads((bag / "episode.json").read_text())
    assert info["label"] == "aborted" and info["message"] == "disk full"
    assert info["messages"] == {"/episode/event": 1, "/image_raw": 6}
    assert "disk full" in rec.stopped_reason
    # no new episode starts: a START is ignored, the service answers why
    _start_and_frames(rec, 2)
    assert not (tmp_path / "incomplete" / "episode_000001").exists()
    with pytest.raises(RuntimeError, match="disk full"):
        rec.start_manual(ns(T0 + 10), "t", "m")


def test_disk_full_for_good_keeps_every_complete_chunk(tmp_path, monkeypatch):
    rec = EpisodeRecorder(tmp_path, image_topics=("/image_raw",))
    _start_and_frames(rec, 4)  # 4 complete chunks
    _Enospc(monkeypatch, after=0, times=10**6)  # no chunk can be written any more
    _start_and_frames(rec, 3, first=4, flush=False)  # in the pending chunk
    rec.flush()
    bag = tmp_path / "aborted" / NAME
    assert images_in(bag) == [0, 1, 2, 3]
    info = json.loads((bag / "episode.json").read_text())
    assert info["messages"]["/image_raw"] == 4 and info["lost_disk_full"] == 3
    assert (bag / "metadata.yaml").is_file()


def test_disk_full_while_stopping_still_answers(tmp_path, monkeypatch):
    rec = EpisodeRecorder(tmp_path, image_topics=("/image_raw",))
    index = rec.start_manual(ns(T0), "t", "manual")
    _start_and_frames(rec, 3, first=1, flush=False)
    _Enospc(monkeypatch, after=0, times=1)
    path = rec.stop_manual(ns(T0 + 1), 1, "done")  # no exception
    assert index == 0 and path == tmp_path / "aborted" / NAME
    assert images_in(path) == [1, 2, 3] and rec.last_info["message"] == "disk full"


def test_free_space_is_checked_against_the_write_rate(tmp_path, monkeypatch):
    mb = 2**20
    free = 11 * mb
    monkeypatch.setattr(
        "reward_model_ros.data.recording.shutil.disk_usage", lambda p: SimpleNamespace(free=free)
    )
    rec = EpisodeRecorder(tmp_path, min_free_bytes=10 * mb, disk_horizon=5.0, image_topics=("/image_raw",))
    assert rec.check_disk(now=100.0) is None  # nothing written yet: 11 MB free > 10 MB
    ev = EventInfo(START, "START")
    rec.put(Item(ns(T0), START, 0, "/ev", EVENT, event(0, T0), 0.0, ns(T0), ev))
    for i in range(8):  # 8 x 192 KiB frames
        rec.put(Item(ns(T0 + i), DATA, 0, "/image_raw", IMAGE, img(i, T0 + i, side=256), 0.0, ns(T0 + i)))
    rec.process(everything=True)
    reason = rec.check_disk(now=102.0)  # 1.5 MB in 2 s: 0.75 MB/s x 5 s does not fit in the 1 MB spare
    assert reason is not None and "MB/s" in reason and "min_free_disk_mb" in reason
    info = json.loads((tmp_path / "aborted" / NAME / "episode.json").read_text())
    assert info["label"] == "aborted" and info["message"].startswith("disk nearly full")
    assert rec.stopped_reason == reason and rec.check_disk(now=103.0) is None


@pytest.fixture
def small_disk(tmp_path):
    """A 40 MiB tmpfs (root only; skipped where mounting is not permitted); always unmounted."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=40m", "tmpfs", str(mnt)], capture_output=True, timeout=20
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"cannot mount a tmpfs here: {exc}")
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True, timeout=20)


def fill(disk: Path, leave: int = 0) -> Path:
    """Fill `disk` up to `leave` bytes free."""
    filler = disk / f"filler{len(list(disk.glob('filler*')))}"
    with filler.open("wb") as f:
        block = b"\xff" * (1 << 20)
        try:
            while (room := shutil.disk_usage(disk).free - leave) > 0:
                f.write(block[: min(len(block), room)])
                f.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler


def test_a_real_full_disk(small_disk):
    from reward_model_ros.data.recording import RESERVE_BYTES

    rec = EpisodeRecorder(small_disk, image_topics=("/image_raw",), reserve_bytes=RESERVE_BYTES)
    rec.reserve.take()
    fill(small_disk, leave=3 << 20)  # 3 MiB left: about 16 frames of 192 KiB
    ev = EventInfo(START, "START", task="t", mode="m")
    rec.put(Item(ns(T0), START, 0, "/episode/event", EVENT, event(0, T0), 0.0, ns(T0), ev))
    for i in range(100):  # no check_disk: the disk fills between two checks
        t = T0 + i * PERIOD
        rec.put(Item(ns(t), DATA, 0, "/image_raw", IMAGE, img(i, t, side=256), 0.0, ns(t)))
        rec.process(everything=True)
        if i % 2:
            rec.flush()
        if rec.stopped_reason:
            break
    assert rec.stopped_reason and "disk full" in rec.stopped_reason, "the disk never filled"
    bag = small_disk / "aborted" / NAME
    got = images_in(bag)
    info = json.loads((bag / "episode.json").read_text())
    assert info["message"] == "disk full" and info["messages"]["/image_raw"] == len(got) >= 10
    assert got == list(range(len(got)))
    # restart on the full disk, with a bag left by a crash: no traceback, no episode, no
    # 0-byte MCAP, the leftover untouched
    shutil.copytree(leftover(small_disk.parent / "elsewhere"), small_disk / "incomplete" / "episode_000005")
    fill(small_disk)
    before = snapshot(small_disk / "incomplete")
    again = EpisodeRecorder(small_disk, reserve_bytes=RESERVE_BYTES)
    with pytest.raises(BagError, match="disk reserve"):
        again.reserve.take()
    assert again.recover_leftovers() == []
    assert snapshot(small_disk / "incomplete") == before
    again.put(Item(ns(T0 + 10), START, 0, "/episode/event", EVENT, event(0, T0 + 10), 0.0, ns(T0 + 10), ev))
    again.process(everything=True)
    assert again.open is None and "disk full" in again.stopped_reason
    assert not [p for p in small_disk.rglob("*.mcap") if p.stat().st_size == 0]
    assert not (small_disk / "incomplete" / "episode_000001").exists()


def test_recorder_node_on_a_full_disk_exits_with_one_error_line(start_node, small_disk):
    fill(small_disk)
    rec = start_node("recorder_node", params={"save_dir": str(small_disk), "min_free_disk_mb": 0})
    deadline = time.monotonic() + 30
    while rec.alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    out = rec.output()
    assert rec.popen.returncode == 2, out
    assert "error: recorder:" in out and "MB free under" in out and "Traceback" not in out
    assert not list(small_disk.rglob("*.mcap"))


# --- labels ----------------------------------------------------------------------------
def test_stop_refuses_labels_that_do_not_exist(tmp_path):
    rec = EpisodeRecorder(tmp_path)
    rec.start_manual(ns(T0), "t", "manual")
    for label in (5, -7):
        with pytest.raises(ValueError, match=r"1 \(success\), 0 \(failure\) or -1"):
            rec.stop_manual(ns(T0 + 1), label, "")
        assert rec.open is not None  # still recording
    assert rec.stop_manual(ns(T0 + 1), 1, "") == tmp_path / "success" / NAME


def test_an_end_event_with_a_label_that_does_not_exist_is_kept_and_said(tmp_path, caplog):
    """A topic cannot be refused like a service: the episode is kept (in aborted/), with the
    reason in episode.json and an error line that says what to do."""
    rec = EpisodeRecorder(tmp_path, image_topics=("/image_raw",))
    start = EventInfo(START, "START", task="t", mode="m")
    rec.put(Item(ns(T0), START, 0, "/episode/event", EVENT, event(0, T0), 0.0, ns(T0), start))
    for i in range(3):
        t = T0 + (i + 1) * PERIOD
        rec.put(Item(ns(t), DATA, 0, "/image_raw", IMAGE, img(i, t), 0.0, ns(t)))
    end = EventInfo(END, "SUCCESS", label=5, message="from the driver")
    t_end = T0 + 10 * PERIOD
    rec.put(Item(ns(t_end), END, 0, "/episode/event", EVENT, event(1, t_end, 5), 0.0, ns(t_end), end))
    with caplog.at_level("ERROR"):
        rec.process(everything=True)
    bag = tmp_path / "aborted" / NAME
    info = json.loads((bag / "episode.json").read_text())
    assert images_in(bag) == [0, 1, 2]
    assert "label 5, which does not exist" in info["message"] and "from the driver" in info["message"]
    assert "label 5, which does not exist" in caplog.text and "move its directory" in caplog.text


def test_stop_episode_service_refuses_labels_that_do_not_exist(ros_node, start_node, tmp_path):
    start_node("recorder_node", params={"save_dir": str(tmp_path), "min_free_disk_mb": 1, "topics": ["x"]})
    start = wait_for_service(ros_node, StartEpisode, "/recorder/start_episode", timeout=30)
    stop = wait_for_service(ros_node, StopEpisode, "/recorder/stop_episode")
    assert call(ros_node, start, StartEpisode.Request(mode="teleop")).accepted
    for label in (5, -7):
        answer = call(ros_node, stop, StopEpisode.Request(label=label))
        assert not answer.accepted and "1 (success), 0 (failure) or -1" in answer.message
        assert "still being recorded" in answer.message
    assert not (tmp_path / "aborted").exists()
    done = call(ros_node, stop, StopEpisode.Request(label=1))
    assert done.accepted and done.path.endswith(f"success/{NAME}")
    spin_until(ros_node, lambda: (Path(done.path) / "episode.json").is_file(), 5, "episode.json")


# --- chunk CRCs -------------------------------------------------------------------------
def test_chunks_carry_crcs_and_stay_readable_everywhere(tmp_path):
    bag = tmp_path / "bag"
    w = EpisodeBagWriter(bag, TypeRegistry())
    w.add_topic("/image_raw", IMAGE)
    for i in range(5):
        w.write("/image_raw", ns(T0 + i), img(i, T0 + i))
        w.flush()
    w.close({"label": "success"})
    from mcap.records import Chunk
    from mcap.stream_reader import StreamReader
    from mcap_ros2.decoder import DecoderFactory

    mcap = bag / "bag.mcap"
    with mcap.open("rb") as f:
        chunks = [r for r in StreamReader(f, emit_chunks=True).records if isinstance(r, Chunk)]
    assert len(chunks) == 5 and all(c.uncompressed_crc == crc32(c.data) != 0 for c in chunks)
    from mcap.reader import make_reader

    with mcap.open("rb") as f:
        reader = make_reader(f, validate_crcs=True, decoder_factories=[DecoderFactory()])
        assert [m.data[0] for _s, _c, _r, m in reader.iter_decoded_messages()] == list(range(5))
    assert images_in(bag) == list(range(5))
    meta = (bag / "metadata.yaml").read_text()
    assert "version: 9" in meta and "storage_identifier: mcap" in meta


def _episode(path: Path, label: str, frames: int, first_value: int) -> Path:
    w = EpisodeBagWriter(path, TypeRegistry())
    w.add_topic("/image_raw", IMAGE)
    for i in range(frames):
        t = T0 + i * PERIOD
        w.write("/image_raw", ns(t), img(first_value + i, t))
        w.flush()  # one frame per chunk
    end = T0 + (frames - 1) * PERIOD
    w.close({"label": label, "start_stamp_ns": ns(T0), "end_stamp_ns": ns(end), "seed": 1, "mode": "m"})
    return path


def test_dataset_leaves_out_a_damaged_chunk_and_says_so(tmp_path):
    good = _episode(tmp_path / "bags" / "failure" / "episode_000001", "failure", 10, 100)
    bad = _episode(tmp_path / "bags" / "success" / NAME, "success", 10, 0)
    mcap = bad / f"{NAME}.mcap"
    start, _end = chunks_of(mcap)[7]
    damage(mcap, start + 3000, 4096)  # a 4 KiB flip inside frame 7
    lines: list[str] = []
    cfg = DataConfig(success_tail_frames=0, val_fraction=0.0)
    summary = build_dataset([tmp_path / "bags"], tmp_path / "ds", cfg, log=lines.append)
    rows = read_manifest(tmp_path / "ds")
    success = [r for r in rows if r["episode"].endswith(NAME)]
    assert len(success) == 9 and ns(T0 + 7 * PERIOD) not in {r["stamp_ns"] for r in success}
    assert len([r for r in rows if r["episode"].endswith("episode_000001")]) == 10
    assert summary["damaged_bags"] == [
        {"bag": str(bad), "messages_dropped": 1, "chunks": summary["damaged_bags"][0]["chunks"]}
    ]
    assert summary["damaged_bags"][0]["chunks"][0]["offset"] == start
    assert any(str(bad) in line and f"chunk at byte {start}" in line and "CRC" in line for line in lines)
    assert good.exists() and not summary["skipped_bags"]


def test_recover_rebuilds_a_finished_bag_whose_chunk_is_damaged(tmp_path, capsys):
    bag = _episode(tmp_path / "success" / NAME, "success", 6, 0)
    mcap = bag / f"{NAME}.mcap"
    start, _end = chunks_of(mcap)[2]
    damaged = damage(mcap, start + 3000, 64)
    with pytest.raises(Exception, match="checksum"):  # rosbags alone refuses the whole bag
        images_in(bag)
    assert cli.main(["recover", str(bag)]) == 0
    out = capsys.readouterr().out
    assert f"chunk at byte {start}" in out and "recovered 5 messages" in out
    assert images_in(bag) == [0, 1, 3, 4, 5]
    assert (bag / f"{NAME}.mcap.original").read_bytes() == damaged
    assert (bag / "metadata.yaml.original").is_file()
    assert json.loads((bag / "episode.json").read_text())["label"] == "success"  # a finished label stays


def test_recorder_node_stays_up_and_answers_when_the_disk_fills(ros_node, start_node, small_disk):
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    pub = ros_node.create_publisher(
        Image, "/image_raw", QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
    )
    params = {
        "save_dir": str(small_disk),
        "min_free_disk_mb": 0,
        "disk_horizon": 0.0,
        "topics": ["/image_raw"],
    }
    rec = start_node("recorder_node", params=params)
    start = wait_for_service(ros_node, StartEpisode, "/recorder/start_episode", timeout=30)
    stop = wait_for_service(ros_node, StopEpisode, "/recorder/stop_episode")
    spin_until(ros_node, lambda: pub.get_subscription_count() > 0, 30, "the recorder to subscribe")
    assert call(ros_node, start, StartEpisode.Request(mode="teleop")).accepted
    bag = small_disk / "aborted" / NAME
    px = np.zeros((256, 256, 3), np.uint8)
    for i in range(400):  # 192 KiB frames at about 20 Hz; the disk fills after 10 of them
        msg = Image(height=256, width=256, encoding="rgb8", step=768, data=(px + i % 256).tobytes())
        msg.header.stamp = ros_node.get_clock().now().to_msg()
        pub.publish(msg)
        time.sleep(0.05)
        if i == 10:
            fill(small_disk)
        if (bag / "episode.json").is_file():
            break
    assert rec.alive() and (bag / "episode.json").is_file(), rec.output()
    info = json.loads((bag / "episode.json").read_text())
    assert info["label"] == "aborted" and "disk" in info["message"]
    assert info["messages"]["/image_raw"] == len(images_in(bag)) >= 5
    answer = call(ros_node, stop, StopEpisode.Request(label=1))
    assert not answer.accepted and "recording has stopped" in answer.message
    answer = call(ros_node, start, StartEpisode.Request())
    assert not answer.accepted and "disk" in answer.message
    assert rec.alive() and "Traceback" not in rec.output()
