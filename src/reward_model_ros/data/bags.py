"""rosbag2 episode bags written and read with `rosbags` (MCAP by default, sqlite3 readable).

- `TypeRegistry`: message definitions for every type recorded. Standard types come from
  rosbags' Kilted store; any other type (reward_msgs, a user's own) from its `.msg` file in
  an installed `share/<package>/msg/` (AMENT_PREFIX_PATH and this Python's prefix), with the
  types it references, so bags carry definitions and type hashes as a ROS build writes them.
- `EpisodeBagWriter`: one bag, written as it goes; `flush()` closes the pending MCAP chunk
  and hands it to the OS, so a crash loses at most what came after the last flush.
- `recover_bag`: a bag whose writer was killed (no metadata.yaml, no MCAP summary) is
  rebuilt from the complete records of its .mcap file with a streaming reader.
- `read_episode_info`: the episode description kept beside each bag (episode.json).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

EPISODE_FILE = "episode.json"
CUSTOM_DATA_KEY = "reward_model_ros.episode"


class BagError(RuntimeError):
    """A bag that cannot be read or written; the message names it and says why."""


def share_prefixes() -> list[Path]:
    """Install prefixes whose share/<pkg>/msg/*.msg may hold message definitions."""
    prefixes = [Path(p) for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    prefixes.append(Path(sys.prefix))
    seen, out = set(), []
    for p in prefixes:
        if p not in seen:
            seen.add(p)
            out.append(p)
    return out


class TypeRegistry:
    """A rosbags typestore that learns types from installed `.msg` files on demand."""

    def __init__(self) -> None:
        self.store = get_typestore(Stores.ROS2_KILTED)

    def _msg_file(self, msgtype: str) -> Path | None:
        pkg, kind, name = msgtype.split("/")
        for prefix in share_prefixes():
            path = prefix / "share" / pkg / kind / f"{name}.msg"
            if path.is_file():
                return path
        return None

    def ensure(self, msgtype: str) -> None:
        """Make `msgtype` ('pkg/msg/Name') and the types it uses known; BagError if impossible."""
        for _ in range(64):  # one missing dependency registered per round
            if msgtype in self.store.fielddefs:
                try:
                    self.store.generate_msgdef(msgtype, ros_version=2)
                    return
                except Exception as exc:  # a referenced type is missing
                    missing = _missing_type(exc)
                    if missing is None or missing == msgtype:
                        raise BagError(f"cannot build the definition of {msgtype}: {exc}") from exc
                    self._register(missing)
            else:
                self._register(msgtype)
        raise BagError(f"cannot resolve the types used by {msgtype}")

    def _register(self, msgtype: str) -> None:
        path = self._msg_file(msgtype)
        if path is None:
            raise BagError(
                f"no definition of message type {msgtype}: not a standard type and no "
                f"share/{msgtype.split('/')[0]}/msg/{msgtype.split('/')[-1]}.msg under "
                f"{', '.join(map(str, share_prefixes()))}. Source the workspace that builds it."
            )
        self.store.register(get_types_from_msg(path.read_text(), msgtype))

    def register_definition(self, msgtype: str, text: str) -> None:
        """Register a type from a definition stored in a bag (ros2msg, dependencies
        separated by '=====' lines, as rosbag2 stores them)."""
        if msgtype in self.store.fielddefs:
            return
        parts = text.split("\n" + "=" * 80 + "\n")
        types = dict(get_types_from_msg(parts[0], msgtype))
        for part in parts[1:]:
            head, _, body = part.partition("\n")
            if head.startswith("MSG: "):
                name = head[5:].strip()
                if "/msg/" not in name:
                    name = name.replace("/", "/msg/")
                if name not in self.store.fielddefs:
                    types.update(get_types_from_msg(body, name))
        self.store.register(types)

    def definition(self, msgtype: str) -> tuple[str, str]:
        """(message definition text, RIHS01 hash) as rosbag2 stores them."""
        self.ensure(msgtype)
        msgdef, _ = self.store.generate_msgdef(msgtype, ros_version=2)
        return msgdef, self.store.hash_rihs01(msgtype)

    def starts_with_header(self, msgtype: str) -> bool:
        """Whether the type's first field is a std_msgs/Header (its stamp can be read from
        the first bytes of the CDR data without decoding the message)."""
        self.ensure(msgtype)
        fields = self.store.fielddefs[msgtype][1]
        if not fields:
            return False
        node = fields[0][1]
        return len(node) == 2 and node[1] == "std_msgs/msg/Header"


def _missing_type(exc: Exception) -> str | None:
    text = str(exc).strip("'\"")
    if "/msg/" in text:
        for word in text.replace(",", " ").replace("'", " ").split():
            if word.count("/") == 2 and "/msg/" in word:
                return word
    return None


def header_stamp_ns(data: bytes | memoryview) -> int:
    """The header stamp of a CDR message whose first field is a std_msgs/Header
    (4 bytes encapsulation, then int32 sec and uint32 nanosec, little or big endian)."""
    little = data[1] == 1
    order = "little" if little else "big"
    sec = int.from_bytes(data[4:8], order, signed=True)
    nsec = int.from_bytes(data[8:12], order, signed=False)
    return sec * 1_000_000_000 + nsec


class EpisodeBagWriter:
    """One rosbag2 folder, written as it goes."""

    def __init__(self, path: Path, registry: TypeRegistry, storage: str = "mcap") -> None:
        plugin = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}.get(storage)
        if plugin is None:
            raise BagError(f"storage {storage!r}: use mcap or sqlite3")
        self.path = Path(path)
        self.registry = registry
        self.writer = Writer(self.path, version=9, storage_plugin=plugin)
        self.writer.open()
        self.connections: dict[str, Any] = {}
        self.counts: dict[str, int] = {}
        self.first_ns: int | None = None
        self.last_ns: int | None = None

    def add_topic(self, topic: str, msgtype: str) -> None:
        if topic in self.connections:
            return
        msgdef, rihs01 = self.registry.definition(msgtype)
        self.connections[topic] = self.writer.add_connection(topic, msgtype, msgdef=msgdef, rihs01=rihs01)
        self.counts[topic] = 0

    def write(self, topic: str, t_ns: int, data: bytes | memoryview) -> None:
        self.writer.write(self.connections[topic], t_ns, bytes(data))
        self.counts[topic] += 1
        self.first_ns = t_ns if self.first_ns is None else min(self.first_ns, t_ns)
        self.last_ns = t_ns if self.last_ns is None else max(self.last_ns, t_ns)

    def flush(self) -> None:
        """Close the pending MCAP chunk and hand the bytes to the OS: a crash after this
        loses nothing written before it. (Uses rosbags' MCAP storage object, which does
        not flush on its own until a chunk reaches 1 MiB; sqlite3 commits on close.)"""
        storage = getattr(self.writer, "storage", None)
        chunk = getattr(storage, "chunk", None)
        if chunk is not None and hasattr(storage, "close_chunk"):
            if chunk.bio.tell():
                storage.close_chunk()
            storage.bio.flush()

    def close(self, episode: dict[str, Any] | None = None) -> None:
        """Finish the bag (summary, metadata.yaml) and write the episode description."""
        if episode is not None:
            self.writer.set_custom_data(CUSTOM_DATA_KEY, json.dumps(episode, sort_keys=True))
        self.writer.close()
        if episode is not None:
            write_episode_info(self.path, episode)


def write_episode_info(path: Path, episode: dict[str, Any]) -> None:
    tmp = Path(path) / (EPISODE_FILE + ".tmp")
    tmp.write_text(json.dumps(episode, indent=2, sort_keys=True) + "\n")
    tmp.replace(Path(path) / EPISODE_FILE)


def read_episode_info(path: Path) -> dict[str, Any] | None:
    f = Path(path) / EPISODE_FILE
    if not f.is_file():
        return None
    try:
        return json.loads(f.read_text())
    except json.JSONDecodeError as exc:
        raise BagError(f"{f}: not valid JSON ({exc})") from exc


def needs_recovery(path: Path) -> bool:
    """A bag folder with an .mcap file but no metadata.yaml: its writer did not finish."""
    path = Path(path)
    return path.is_dir() and not (path / "metadata.yaml").exists() and any(path.glob("*.mcap"))


def recover_bag(path: Path, registry: TypeRegistry | None = None) -> dict[str, int]:
    """Rebuild a bag whose writer died: read every complete record of its .mcap with a
    streaming reader and write them to a new, finished bag in the same place. Returns
    messages per topic. The damaged file is kept as `<name>.mcap.damaged` until the new bag
    is complete."""
    from mcap.records import Channel, Message, Schema
    from mcap.stream_reader import StreamReader

    path = Path(path)
    files = sorted(path.glob("*.mcap"))
    if not files:
        raise BagError(f"{path}: no .mcap file to recover")
    registry = registry or TypeRegistry()
    schemas: dict[int, Schema] = {}
    channels: dict[int, Channel] = {}
    messages: list[tuple[int, int, bytes]] = []
    truncated = False
    with files[0].open("rb") as f:
        try:
            for record in StreamReader(f, skip_magic=False, emit_chunks=False).records:
                if isinstance(record, Schema):
                    schemas[record.id] = record
                elif isinstance(record, Channel):
                    channels[record.id] = record
                elif isinstance(record, Message):
                    messages.append((record.channel_id, record.log_time, record.data))
        except Exception:  # a record cut by the crash (EndOfFile, bad CRC, ...): keep what came before
            truncated = True
    info = read_episode_info(path) or {}
    # the damaged folder is kept aside until the new bag is complete
    damaged = path.with_name(path.name + ".damaged")
    if damaged.exists():
        shutil.rmtree(damaged)
    path.rename(damaged)
    writer = EpisodeBagWriter(path, registry)
    counts: dict[str, int] = {}
    for channel in channels.values():
        schema = schemas.get(channel.schema_id)
        if schema is None:
            continue
        try:
            registry.ensure(schema.name)
        except BagError:
            registry.register_definition(schema.name, schema.data.decode())
        writer.add_topic(channel.topic, schema.name)
        counts[channel.topic] = 0
    for cid, t_ns, data in messages:
        channel = channels.get(cid)
        if channel is None or channel.topic not in writer.connections:
            continue
        writer.write(channel.topic, t_ns, data)
        counts[channel.topic] += 1
    info.update({"recovered": True, "recovered_truncated_record": truncated})
    writer.close(info)
    shutil.rmtree(damaged)
    return counts


def bag_dirs(paths: Iterable[Path]) -> list[Path]:
    """Every rosbag2 folder (a folder with metadata.yaml, or an unfinished .mcap) at or under `paths`."""
    found: list[Path] = []
    for p in map(Path, paths):
        if not p.exists():
            raise BagError(f"{p}: no such file or directory")
        if p.is_file() and p.name == "metadata.yaml":
            p = p.parent
        if p.is_file():
            raise BagError(f"{p}: give the bag's folder (the one with metadata.yaml), not a file in it")
        if (p / "metadata.yaml").is_file() or needs_recovery(p):
            found.append(p)
            continue
        found += sorted({m.parent for m in p.rglob("metadata.yaml")} | {m.parent for m in p.rglob("*.mcap")})
    return sorted(set(found))
