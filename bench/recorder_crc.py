"""What chunk CRCs cost: bag writing with rosbags' own MCAP writer (chunk CRC 0, buffered)
against EpisodeBagWriter (CRC32 per chunk, unbuffered, definitions repeated per chunk), then
the CRC check that the dataset builder runs and the record scan that recovery runs. Prints
one JSON object.

    python bench/recorder_crc.py [--frames 300] [--width 640 --height 480] [--flush-every 30]

Frames are rgb8 sensor_msgs/Image (640x480: 921,600 bytes of pixels), flushed every
`--flush-every` frames (the recorder flushes once a second: 30 frames at 30 Hz) and closed;
the two writers take turns, `--repeat` runs each, every bag deleted after its run (so that
neither pays for the other's disk writeback). Files go to `--dir` (a tmpfs such as /dev/shm
measures CPU and syscalls only).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from rclpy.serialization import serialize_message
from rosbags.rosbag2 import StoragePlugin, Writer
from sensor_msgs.msg import Image

from reward_model_ros.data.bags import EpisodeBagWriter, TypeRegistry, check_bag, scan_mcap


def frames(n: int, width: int, height: int) -> list[bytes]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        msg = Image(height=height, width=width, encoding="rgb8", step=width * 3)
        msg.data = rng.integers(0, 255, (height, width, 3), np.uint8).tobytes()
        msg.header.stamp.sec = i
        out.append(serialize_message(msg))
    return out


def write_plain(path: Path, data: list[bytes], flush_every: int, registry: TypeRegistry) -> None:
    msgdef, rihs01 = registry.definition("sensor_msgs/msg/Image")
    w = Writer(path, version=9, storage_plugin=StoragePlugin.MCAP)
    w.open()
    conn = w.add_connection("/image_raw", "sensor_msgs/msg/Image", msgdef=msgdef, rihs01=rihs01)
    for i, d in enumerate(data):
        w.write(conn, i, d)
        if (i + 1) % flush_every == 0 and w.storage.chunk.bio.tell():  # as the recorder flushes
            w.storage.close_chunk()
            w.storage.bio.flush()
    w.close()


def write_checked(path: Path, data: list[bytes], flush_every: int, registry: TypeRegistry) -> None:
    w = EpisodeBagWriter(path, registry)
    w.add_topic("/image_raw", "sensor_msgs/msg/Image")
    for i, d in enumerate(data):
        w.write("/image_raw", i, d)
        if (i + 1) % flush_every == 0:
            w.flush()
    w.close({"label": "success"})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--flush-every", type=int, default=30)
    ap.add_argument("--repeat", type=int, default=6)
    ap.add_argument("--dir", default=None, help="where the bags go (default: the system's temp folder)")
    args = ap.parse_args()
    data = frames(args.frames, args.width, args.height)
    mb = sum(map(len, data)) / 2**20
    registry = TypeRegistry()
    root = Path(tempfile.mkdtemp(prefix="recorder_crc_", dir=args.dir))
    writers = {"rosbags_crc0": write_plain, "episode_bag_writer_crc": write_checked}
    times: dict[str, list[float]] = {name: [] for name in writers}
    sizes: dict[str, float] = {}
    result: dict = {"frames": args.frames, "frame_bytes": len(data[0]), "payload_mb": round(mb, 1)}
    try:
        for k in range(args.repeat):  # interleaved, each bag deleted after its run: no order effect
            for name, fn in list(writers.items())[:: 1 if k % 2 else -1]:
                path = root / name
                t = time.perf_counter()
                fn(path, data, args.flush_every, registry)
                times[name].append(time.perf_counter() - t)
                sizes[name] = (path / f"{name}.mcap").stat().st_size / 2**20
                if k < args.repeat - 1 or name == "rosbags_crc0":
                    shutil.rmtree(path)
        for name, ts in times.items():
            result[name] = {
                "ms_per_frame_min": round(1000 * min(ts) / args.frames, 3),
                "ms_per_frame_median": round(1000 * statistics.median(ts) / args.frames, 3),
                "mb_per_s_median": round(mb / statistics.median(ts), 1),
                "file_mb": round(sizes[name], 2),
            }
        bag = root / "episode_bag_writer_crc"
        ts = [_timed(lambda: check_bag(bag)) for _ in range(3)]
        result["check_bag"] = {"mb_per_s": round(mb / min(ts), 1), "chunks": check_bag(bag).chunks}
        ts = [_timed(lambda: scan_mcap(bag / f"{bag.name}.mcap")) for _ in range(3)]
        result["recovery_scan"] = {"mb_per_s": round(mb / min(ts), 1)}
        plain, crc = result["rosbags_crc0"], result["episode_bag_writer_crc"]
        result["extra_ms_per_frame_median"] = round(
            crc["ms_per_frame_median"] - plain["ms_per_frame_median"], 3
        )
        result["size_overhead_pct"] = round(100 * (crc["file_mb"] / plain["file_mb"] - 1), 3)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(result, indent=2))


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


if __name__ == "__main__":
    main()
