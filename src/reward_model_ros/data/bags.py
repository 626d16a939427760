"""rosbag2 episode bags written and read with `rosbags` (MCAP by default, sqlite3 readable).

- `TypeRegistry`: message definitions for every type recorded. Standard types come from
  rosbags' Kilted store; any other type (reward_msgs, a user's own) from its `.msg` file in
  an installed `share/<package>/msg/` (AMENT_PREFIX_PATH and this Python's prefix), with the
  types it references, so bags carry definitions and type hashes as a ROS build writes them.
- `EpisodeBagWriter`: one bag, written as it goes; `flush()` closes the pending MCAP chunk
  and hands it to the OS, so a crash loses at most what came after the last flush. Its MCAP
  chunks carry CRCs and repeat the definitions of the channels in them, and a full disk
  (`DiskFull`) still leaves a finished, readable bag (`finish_after_disk_full`).
- `open_checked` / `check_bag`: read a finished bag with every chunk's CRC checked; damaged
  chunks are left out and counted instead of reaching the reader.
- `recover_bag`: a bag whose writer was killed (no metadata.yaml, no MCAP summary), or whose
  chunks are damaged, is rebuilt from every readable chunk of its .mcap file; the original
  file is kept beside it (`<name>.mcap.original`), never deleted.
- `read_episode_info`: the episode description kept beside each bag (episode.json).
"""

from __future__ import annotations

import errno
import json
import logging
import mmap
import os
import shutil
import struct
import sys
from binascii import crc32
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Any, ClassVar

from rosbags.rosbag2 import StoragePlugin, Writer, WriterError
from rosbags.rosbag2.storage_mcap import McapWriter, PendingChunk, write_channel, write_schema
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from reward_model_ros.core.stamps import nanoseconds

EPISODE_FILE = "episode.json"
CUSTOM_DATA_KEY = "reward_model_ros.episode"
KEPT_SUFFIX = ".original"
"""a file replaced by a recovery is kept as `<name>.original` (then `.original.2`, ...)"""
RECOVERY_DIR = ".recovery"
"""where recover_bag builds the new bag, inside the bag's folder, before swapping it in"""
IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
EVENT_TYPE = "reward_msgs/msg/EpisodeEvent"

log = logging.getLogger(__name__)


class BagError(RuntimeError):
    """A bag that cannot be read or written; the message names it and says why."""


class DiskFull(BagError):
    """No space left on the device while writing a bag (ENOSPC, EDQUOT, sqlite's "disk is full")."""


def is_disk_full(exc: BaseException | None) -> bool:
    """Whether `exc`, or an exception it was raised from, means that the disk is full."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, DiskFull):
            return True
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if type(exc).__name__ == "OperationalError" and "full" in str(exc):  # sqlite3
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


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
    return nanoseconds(sec, nsec)


# --- writing ---------------------------------------------------------------------------
class _AppendFile:
    """An unbuffered file written front to back: every write reaches the OS before it returns
    (or raises), `tell()` stays exact after a failed write, and `cut(offset)` drops a tail
    written in part."""

    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_WRONLY | getattr(os, "O_CLOEXEC", 0))
        self.pos = os.lseek(self.fd, 0, os.SEEK_END)

    def write(self, data: Any) -> int:
        with memoryview(data) as raw, raw.cast("B") as view:
            done = 0
            while done < len(view):
                n = os.write(self.fd, view[done:])
                if n <= 0:
                    raise OSError(errno.ENOSPC, "no space left on device (short write)")
                done += n
                self.pos += n
            return done

    def tell(self) -> int:
        return self.pos

    def patch(self, offset: int, data: bytes) -> None:
        """Overwrite bytes already written (the position does not move)."""
        if os.pwrite(self.fd, data, offset) != len(data):
            raise OSError(errno.ENOSPC, "no space left on device (short write)")

    def cut(self, offset: int) -> None:
        os.ftruncate(self.fd, offset)
        self.pos = os.lseek(self.fd, offset, os.SEEK_SET)

    def flush(self) -> None:
        """Nothing to do: nothing is buffered here."""

    @property
    def closed(self) -> bool:
        return self.fd < 0

    def close(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)


class _McapStorage(McapWriter):
    """rosbags' MCAP writer with three changes:

    - every chunk carries the CRC32 of its uncompressed records (rosbags writes 0, "not
      computed"), so that readers can tell a damaged chunk;
    - every chunk repeats the schema and channel records of the messages in it (the MCAP
      spec allows repeated records), so that a chunk can be read without the ones before it;
    - the file is written unbuffered and the end of the last complete chunk is known: after
      a failed write (disk full) the file is cut back there and can still be finished.
    """

    def __init__(self, path: Path, compression: Any) -> None:
        super().__init__(path, compression)
        self.bio.close()  # rosbags' buffered file, holding the header: flushed, then unbuffered
        self.bio = _AppendFile(self.path)
        self._in_chunk: set[tuple[int, int]] = set()
        """(opcode, id) of the schema and channel records in the pending chunk"""
        self.good_offset = self.bio.tell()
        """the end of the last chunk written completely"""
        self.good_counts: dict[int, int] = {}
        self.good_times = (2**63 - 1, 0)

    def add_msgtype(self, connection: Any) -> None:
        super().add_msgtype(connection)
        self._in_chunk.add((0x03, self.schemas[-1].id))

    def add_connection(self, connection: Any, offered_qos_profiles: str) -> None:
        super().add_connection(connection, offered_qos_profiles)
        self._in_chunk.add((0x04, connection.id))

    def write(self, connection: Any, timestamp: int, data: bytes | memoryview) -> None:
        if (0x04, connection.id) not in self._in_chunk:
            channel = next(c for c in self.channels if c.id == connection.id)
            schema = next(s for s in self.schemas if s.name == channel.schema)
            if (0x03, schema.id) not in self._in_chunk:
                write_schema(self.chunk.bio, schema)
                self._in_chunk.add((0x03, schema.id))
            write_channel(self.chunk.bio, channel, self.schemas)
            self._in_chunk.add((0x04, channel.id))
        super().write(connection, timestamp, data)

    def close_chunk(self) -> None:
        pending = self.chunk
        crc = crc32(pending.bio.getbuffer())
        start, n_chunks = self.bio.tell(), len(self.chunks)
        try:
            super().close_chunk()
            self.bio.patch(start + 9 + 24, crc.to_bytes(4, "little"))  # opcode, length, 3 x uint64
        except BaseException:
            self.chunk = pending
            del self.chunks[n_chunks:]
            self.bio.cut(self.good_offset)
            raise
        self._in_chunk = set()
        self.good_offset = self.bio.tell()
        for cid, msgs in pending.msgs.items():
            self.good_counts[cid] = self.good_counts.get(cid, 0) + len(msgs)
        if pending.msgs:
            lo, hi = self.good_times
            self.good_times = (min(lo, pending.message_start_time), max(hi, pending.message_end_time))

    def close(self, version: int, metadata: str) -> None:
        try:
            super().close(version, metadata)
        except BaseException:
            if not self.bio.closed:
                self.bio.cut(self.good_offset)  # the complete chunks stay, readable by recover_bag
            raise

    def drop_pending(self) -> int:
        """Forget the messages not yet in a complete chunk; returns how many."""
        lost = sum(len(m) for m in self.chunk.msgs.values())
        self.chunk = PendingChunk(2**63 - 1, 0, BytesIO(), defaultdict(list))
        self._in_chunk = set()
        self.channel_stats = {cid: self.good_counts.get(cid, 0) for cid in self.channel_stats}
        self.message_start_time, self.message_end_time = self.good_times
        return lost


class _Writer(Writer):
    STORAGE_PLUGINS: ClassVar = {**Writer.STORAGE_PLUGINS, StoragePlugin.MCAP: _McapStorage}


Episode = dict[str, Any] | Callable[[dict[str, int]], dict[str, Any]] | None
"""episode.json's content, or a function of the messages per topic that makes it"""


class EpisodeBagWriter:
    """One rosbag2 folder, written as it goes.

    :raises DiskFull: from any method when the disk is full (after `write`/`flush`, call
        `finish_after_disk_full`).
    """

    def __init__(self, path: Path, registry: TypeRegistry, storage: str = "mcap") -> None:
        plugin = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}.get(storage)
        if plugin is None:
            raise BagError(f"storage {storage!r}: use mcap or sqlite3")
        self.path = Path(path)
        self.registry = registry
        self.writer = _Writer(self.path, version=9, storage_plugin=plugin)  # refuses an existing path
        try:
            self.writer.open()
        except WriterError:  # someone else's folder appeared there
            raise
        except Exception as exc:
            shutil.rmtree(self.path, ignore_errors=True)  # made just now: holds no data
            if is_disk_full(exc):
                raise DiskFull(f"{self.path}: no space left on the device to start a bag ({exc})") from exc
            raise
        self.connections: dict[str, Any] = {}
        self.counts: dict[str, int] = {}
        self.first_ns: int | None = None
        self.last_ns: int | None = None
        self.bytes_written = 0
        """message bytes handed to the writer (with their record overhead)"""
        self.lost_disk_full = 0
        """messages lost when the disk filled (those not yet in a complete chunk)"""

    def add_topic(self, topic: str, msgtype: str) -> None:
        if topic in self.connections:
            return
        msgdef, rihs01 = self.registry.definition(msgtype)
        self.connections[topic] = self.writer.add_connection(topic, msgtype, msgdef=msgdef, rihs01=rihs01)
        self.counts[topic] = 0

    def write(self, topic: str, t_ns: int, data: bytes | memoryview) -> None:
        try:
            self.writer.write(self.connections[topic], t_ns, bytes(data))
        except Exception as exc:
            self._raise_disk_full(exc, "writing")
            raise
        self.counts[topic] += 1
        self.bytes_written += len(data) + 47  # message record and its index entry
        self.first_ns = t_ns if self.first_ns is None else min(self.first_ns, t_ns)
        self.last_ns = t_ns if self.last_ns is None else max(self.last_ns, t_ns)

    def flush(self) -> None:
        """Close the pending MCAP chunk and hand the bytes to the OS: a crash after this
        loses nothing written before it. (rosbags' MCAP storage does not flush on its own
        until a chunk reaches 1 MiB; sqlite3 commits on close.)"""
        storage = self.writer.storage
        chunk = getattr(storage, "chunk", None)
        if chunk is not None and chunk.bio.tell():
            try:
                storage.close_chunk()
            except Exception as exc:
                self._raise_disk_full(exc, "flushing")
                raise

    def message_counts(self) -> dict[str, int]:
        """Messages per topic in the bag (for MCAP: as the storage holds them)."""
        stats = getattr(self.writer.storage, "channel_stats", None)
        if stats is None:
            return dict(self.counts)
        return {topic: stats.get(conn.id, 0) for topic, conn in self.connections.items()}

    def close(self, episode: Episode = None) -> dict[str, Any] | None:
        """Finish the bag (summary, metadata.yaml) and write the episode description;
        returns it. DiskFull if the disk is full (then call `finish_after_disk_full`)."""
        try:
            return self._finish(episode)
        except Exception as exc:
            self._raise_disk_full(exc, "closing")
            raise

    def finish_after_disk_full(self, episode: Episode = None) -> dict[str, Any] | None:
        """Finish the bag on a full disk: first with every message written (the last chunk
        may fit now that the failed write was cut back), else without those not yet in a
        complete chunk (counted in `lost_disk_full`). DiskFull if even that fails: the file
        then ends with its last complete chunk and has no metadata.yaml; `recover_bag`
        rebuilds it once there is space."""
        storage = self.writer.storage
        attempts = 2 if hasattr(storage, "drop_pending") else 1
        for attempt in range(attempts):
            if attempt == 1:
                self.lost_disk_full += storage.drop_pending()
            try:
                return self._finish(episode)
            except Exception as exc:
                if not is_disk_full(exc):
                    raise
                error = exc
        self.abort()
        raise DiskFull(
            f"{self.path}: the disk is full: the bag could not be finished ({error}); its complete "
            f"chunks are kept: free some space, then `reward-model recover {self.path}`"
        ) from error

    def abort(self) -> None:
        """Close the file without finishing the bag (what is written stays)."""
        self.writer.abort()

    def _finish(self, episode: Episode) -> dict[str, Any] | None:
        storage = self.writer.storage
        if storage is not None:
            stats = getattr(storage, "channel_stats", None)
            if stats is not None:  # the storage's counts: a failed write may have left one out
                self.writer.counts.update(stats)
                self.writer.min_timestamp = storage.message_start_time
                self.writer.max_timestamp = storage.message_end_time
        info = episode(self.message_counts()) if callable(episode) else episode
        if info is not None:
            self.writer.set_custom_data(CUSTOM_DATA_KEY, json.dumps(info, sort_keys=True))
        if storage is not None:
            self.writer.close()
        if not (self.path / "metadata.yaml").is_file():  # its write failed after the storage closed
            raise DiskFull(f"{self.path}: metadata.yaml could not be written")
        if info is not None:
            write_episode_info(self.path, info)
        return info

    def _raise_disk_full(self, exc: BaseException, doing: str) -> None:
        if is_disk_full(exc) and not isinstance(exc, DiskFull):
            raise DiskFull(f"{self.path}: no space left on the device while {doing} the bag ({exc})") from exc


def write_episode_info(path: Path, episode: dict[str, Any]) -> None:
    tmp = Path(path) / (EPISODE_FILE + ".tmp")
    try:
        tmp.write_text(json.dumps(episode, indent=2, sort_keys=True) + "\n")
        tmp.replace(Path(path) / EPISODE_FILE)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_episode_info(path: Path) -> dict[str, Any] | None:
    f = Path(path) / EPISODE_FILE
    if not f.is_file():
        return None
    try:
        return json.loads(f.read_text())
    except json.JSONDecodeError as exc:
        raise BagError(f"{f}: not valid JSON ({exc})") from exc


# --- MCAP at the record level (recovery and chunk checks) ---------------------------------
# A record is an opcode (uint8), a length (uint64 LE) and that many bytes. A Chunk (0x06)
# holds Schema (0x03), Channel (0x04) and Message (0x05) records, optionally compressed,
# with the CRC32 of the uncompressed records (0: not computed).
MCAP_MAGIC = b"\x89MCAP0\r\n"
_FOOTER, _SCHEMA, _CHANNEL, _MESSAGE, _CHUNK, _MESSAGE_INDEX, _DATA_END = (
    0x02,
    0x03,
    0x04,
    0x05,
    0x06,
    0x07,
    0x0F,
)
_KNOWN = frozenset(range(0x01, 0x11))
_U16, _U32, _U64 = struct.Struct("<H"), struct.Struct("<I"), struct.Struct("<Q")
_CHUNK_HEAD = struct.Struct("<QQQI")  # start time, end time, uncompressed size, uncompressed CRC
_MESSAGE_HEAD = struct.Struct("<HIQQ")  # channel, sequence, log time, publish time


class _Bad(Exception):
    """A record that does not parse; the message says why."""


def _string(buf: Any, pos: int, end: int) -> tuple[bytes, int]:
    if pos + 4 > end:
        raise _Bad("a field runs past its record")
    (n,) = _U32.unpack_from(buf, pos)
    if pos + 4 + n > end:
        raise _Bad("a field runs past its record")
    return bytes(buf[pos + 4 : pos + 4 + n]), pos + 4 + n


def _chunk_data(buf: Any, offset: int, end: int) -> tuple[bytes, int]:
    """(uncompressed records, CRC) of the chunk record at buf[offset:end]; _Bad if it is damaged."""
    from rosbags.rosbag2.storage_mcap import DECOMPRESSORS

    body = offset + 9
    if end - body < 40:
        raise _Bad("chunk record too short")
    _start, _stop, size, crc = _CHUNK_HEAD.unpack_from(buf, body)
    (clen,) = _U32.unpack_from(buf, body + 28)
    if clen > 16:
        raise _Bad("implausible compression name")
    compression = bytes(buf[body + 32 : body + 32 + clen]).decode("ascii", "replace")
    if compression and compression not in DECOMPRESSORS:
        raise _Bad(f"unknown compression {compression!r}")
    pos = body + 32 + clen
    (csize,) = _U64.unpack_from(buf, pos)
    if pos + 8 + csize != end:
        raise _Bad("the chunk's sizes do not add up")
    if size > 1 << 36:
        raise _Bad("implausible chunk size")
    data = bytes(buf[pos + 8 : end])
    if compression:
        try:
            data = DECOMPRESSORS[compression](data, size)
        except Exception as exc:
            raise _Bad(f"does not decompress ({exc})") from exc
    if len(data) != size:
        raise _Bad(f"holds {len(data)} bytes, its header says {size}")
    if crc and crc32(data) != crc:
        raise _Bad("CRC mismatch")
    return data, crc


def _records(data: bytes) -> Iterator[tuple[int, int, int]]:
    """(opcode, body start, body end) of each record in a chunk's data; _Bad if they do not frame it."""
    pos, end = 0, len(data)
    while pos < end:
        if pos + 9 > end:
            raise _Bad("the records inside do not frame the chunk")
        op = data[pos]
        (n,) = _U64.unpack_from(data, pos + 1)
        if pos + 9 + n > end or (op == _MESSAGE and n < _MESSAGE_HEAD.size):
            raise _Bad("the records inside do not frame the chunk")
        yield op, pos + 9, pos + 9 + n
        pos += 9 + n


@dataclass
class Damage:
    """A stretch of an MCAP file that was left out."""

    offset: int
    length: int
    reason: str
    messages: int | None = None
    """messages known to be in it (from the message indexes after it); None: unknown"""

    def describe(self) -> str:
        n = "an unknown number of" if self.messages is None else str(self.messages)
        return f"{self.length} bytes at byte {self.offset} ({self.reason}; {n} messages)"


@dataclass
class McapScan:
    """What a record-by-record read of an MCAP file found readable."""

    path: Path
    size: int = 0
    schemas: dict[int, tuple[str, str, bytes]] = field(default_factory=dict)
    """id: (name, encoding, definition)"""
    channels: dict[int, tuple[int, str, str]] = field(default_factory=dict)
    """id: (schema id, topic, message encoding)"""
    records: list[tuple[int, int, int]] = field(default_factory=list)
    """(opcode, start, end) of every readable chunk or message record, in file order"""
    messages: int = 0
    damage: list[Damage] = field(default_factory=list)
    chunks_without_crc: int = 0
    """readable chunks written without a CRC: damage inside them cannot be detected"""


def _define(scan: McapScan, op: int, buf: Any, start: int, end: int) -> None:
    if op == _SCHEMA:
        (sid,) = _U16.unpack_from(buf, start)
        name, pos = _string(buf, start + 2, end)
        encoding, pos = _string(buf, pos, end)
        data, _ = _string(buf, pos, end)
        scan.schemas.setdefault(sid, (name.decode(), encoding.decode(), data))
    elif op == _CHANNEL:
        cid, sid = struct.unpack_from("<HH", buf, start)
        topic, pos = _string(buf, start + 4, end)
        encoding, _ = _string(buf, pos, end)
        scan.channels.setdefault(cid, (sid, topic.decode(), encoding.decode()))


def _read_chunk(scan: McapScan | None, buf: Any, offset: int, end: int) -> int:
    """Check the chunk record at buf[offset:end] and learn its definitions; returns its message count."""
    data, crc = _chunk_data(buf, offset, end)
    found: list[tuple[int, int, int]] = list(_records(data))
    try:
        for op, start, stop in found:
            if op in (_SCHEMA, _CHANNEL) and scan is not None:
                _define(scan, op, data, start, stop)
    except (struct.error, UnicodeDecodeError) as exc:
        raise _Bad(f"a definition inside does not parse ({exc})") from exc
    if scan is not None and not crc:
        scan.chunks_without_crc += 1
    return sum(op == _MESSAGE for op, _, _ in found)


def _plausible(buf: Any, pos: int, size: int) -> bool:
    """Whether a record that frames correctly starts at `pos` (or the file ends there)."""
    if pos == size:
        return True
    if pos + 9 > size or buf[pos] not in _KNOWN:
        return False
    (n,) = _U64.unpack_from(buf, pos + 1)
    if pos + 9 + n > size:
        return False
    if buf[pos] == _MESSAGE_INDEX:
        return n >= 6 and _U32.unpack_from(buf, pos + 11)[0] + 6 == n
    if buf[pos] == _CHUNK:
        try:
            _chunk_data(buf, pos, pos + 9 + n)
        except _Bad:
            return False
    return True


def _next_chunk(buf: Any, pos: int, size: int) -> int | None:
    """The start of the next chunk record at or after `pos` that reads correctly."""
    while True:
        pos = buf.find(bytes([_CHUNK]), pos, size)
        if pos < 0 or pos + 9 > size:
            return None
        (n,) = _U64.unpack_from(buf, pos + 1)
        if 40 <= n <= size - pos - 9:
            try:
                _read_chunk(None, buf, pos, pos + 9 + n)
                return pos
            except (_Bad, struct.error):
                pass
        pos += 1


def _summary_definitions(scan: McapScan, buf: Any, size: int) -> int:
    """Learn the schemas and channels of a finished file's summary; returns where its data ends."""
    foot = size - 37
    if foot < 8 or bytes(buf[size - 8 : size]) != MCAP_MAGIC or buf[foot] != _FOOTER:
        return size
    (start,) = _U64.unpack_from(buf, foot + 9)
    if not 8 <= start < foot:
        return size
    pos = start
    try:
        while pos + 9 <= foot:
            op = buf[pos]
            (n,) = _U64.unpack_from(buf, pos + 1)
            if pos + 9 + n > foot:
                break
            if op in (_SCHEMA, _CHANNEL):
                _define(scan, op, buf, pos + 9, pos + 9 + n)
            pos += 9 + n
    except (_Bad, struct.error, UnicodeDecodeError):
        pass
    return start


def scan_mcap(path: Path) -> McapScan:
    """Read an MCAP file record by record, as far as it can be read: every chunk that
    decompresses, matches its CRC and frames its records is readable; past a damaged record
    the scan goes on at the next record (when the damaged one's length is intact) or at the
    next chunk that reads correctly. Definitions come from every readable chunk and from the
    summary of a finished file."""
    path = Path(path)
    scan = McapScan(path)
    with path.open("rb") as f:
        scan.size = size = os.fstat(f.fileno()).st_size
        if size == 0:
            scan.damage.append(Damage(0, 0, "the file is empty"))
            return scan
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            _scan(scan, buf, size)
    return scan


def _scan(scan: McapScan, buf: Any, size: int) -> None:
    data_end = _summary_definitions(scan, buf, size)
    if bytes(buf[:8]) != MCAP_MAGIC:
        scan.damage.append(Damage(0, min(8, size), "no MCAP magic at the start"))
    pos, last_bad = min(8, size), None
    while pos < data_end:
        if pos + 9 > data_end:
            scan.damage.append(
                Damage(pos, size - pos, "cut off inside a record (the writer stopped here)", 0)
            )
            return
        op = buf[pos]
        (n,) = _U64.unpack_from(buf, pos + 1)
        end = pos + 9 + n
        if op in _KNOWN and end <= data_end:
            if op in (_DATA_END, _FOOTER):
                return
            try:
                if op == _CHUNK:
                    count = _read_chunk(scan, buf, pos, end)
                    scan.records.append((op, pos, end))
                    scan.messages += count
                    last_bad = None
                elif op == _MESSAGE_INDEX:
                    if last_bad is not None and n >= 6:  # the index of a damaged chunk: its message count
                        (length,) = _U32.unpack_from(buf, pos + 11)
                        last_bad.messages = (last_bad.messages or 0) + length // 16
                elif op in (_SCHEMA, _CHANNEL):
                    _define(scan, op, buf, pos + 9, end)
                elif op == _MESSAGE:  # outside a chunk (other writers)
                    if n < _MESSAGE_HEAD.size:
                        raise _Bad("message record too short")
                    scan.records.append((op, pos, end))
                    scan.messages += 1
                pos = end
                continue
            except (_Bad, struct.error, UnicodeDecodeError) as exc:
                if _plausible(buf, end, size):  # only the body is damaged: skip this record
                    if op == _CHUNK:  # its message count follows, in its message indexes
                        bad = last_bad = Damage(pos, end - pos, str(exc))
                    else:
                        bad, last_bad = (
                            Damage(pos, end - pos, f"record {op:#04x}: {exc}", int(op == _MESSAGE)),
                            None,
                        )
                    scan.damage.append(bad)
                    pos = end
                    continue
        nxt = _next_chunk(buf, pos + 1, data_end)
        cut = op in _KNOWN and end > size and nxt is None
        reason = "cut off inside a record (the writer stopped here)" if cut else "unreadable bytes"
        stop = data_end if nxt is None else nxt
        scan.damage.append(Damage(pos, stop - pos, reason, 0 if cut and op != _CHUNK else None))
        if nxt is None:
            return
        pos, last_bad = nxt, None


def _iter_scan(scan: McapScan) -> Iterator[tuple[int, int, bytes]]:
    """(channel id, log time, data) of every message in the scan's readable chunks."""
    with scan.path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        for kind, start, end in scan.records:
            if kind == _MESSAGE:
                data, inner = bytes(buf[start:end]), [(_MESSAGE, 9, end - start)]
            else:
                data, _ = _chunk_data(buf, start, end)
                inner = _records(data)
            for op, s, e in inner:
                if op == _MESSAGE:
                    cid, _seq, log_time, _pub = _MESSAGE_HEAD.unpack_from(data, s)
                    yield cid, log_time, data[s + _MESSAGE_HEAD.size : e]


# --- reading with CRC checks -------------------------------------------------------------
@dataclass
class BagCheck:
    """The chunks of a bag's MCAP files that failed their checks (and were left out)."""

    bag: Path
    chunks: int = 0
    chunks_without_crc: int = 0
    damaged: list[dict[str, Any]] = field(default_factory=list)
    """{"file", "offset", "messages", "reason"} per damaged chunk"""

    @property
    def messages_dropped(self) -> int:
        return sum(d["messages"] for d in self.damaged)

    def describe(self) -> list[str]:
        return [
            f"{self.bag}: chunk at byte {d['offset']} of {d['file']} is damaged ({d['reason']}): "
            f"its {d['messages']} messages are left out"
            for d in self.damaged
        ]


@contextmanager
def open_checked(bag: Path, known: BagCheck | None = None) -> Iterator[tuple[Any, BagCheck]]:
    """A rosbags AnyReader on `bag` that reads only chunks whose CRC matches (and that
    decompress and frame their records): damaged chunks are left out and listed in the
    BagCheck instead of failing the whole read (rosbags raises on a CRC mismatch) or, for a
    chunk written without a CRC, being read as if it were good. `known`: a BagCheck from an
    earlier open of the same bag (not checked again). sqlite3 bags are read unchecked."""
    from rosbags.highlevel import AnyReader

    bag = Path(bag)
    reader = AnyReader([bag])
    reader.open()
    try:
        check = known or BagCheck(bag)
        for storage in _storages(reader):
            chunks = getattr(storage, "chunks", None)
            if chunks is not None:  # an MCAP file (its chunk index)
                name = Path(storage.path).name
                if known is None:
                    _check_chunks(check, Path(storage.path), chunks)
                bad = {d["offset"] for d in check.damaged if d["file"] == name}
                chunks[:] = [c for c in chunks if c.chunk_start_offset not in bad]
        yield reader, check
    finally:
        reader.close()


def _storages(reader: Any) -> Iterator[Any]:
    """The storage readers (one per .mcap/.db3 file) inside a rosbags AnyReader."""
    for sub in reader.readers:
        storage = getattr(sub, "storage", sub)
        yield from getattr(storage, "storages", [storage])


def _check_chunks(check: BagCheck, path: Path, chunks: list) -> None:
    with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        for c in chunks:
            check.chunks += 1
            try:
                if c.chunk_start_offset + c.chunk_length > len(buf) or buf[c.chunk_start_offset] != _CHUNK:
                    raise _Bad("not a chunk where the index says")
                data, crc = _chunk_data(buf, c.chunk_start_offset, c.chunk_start_offset + c.chunk_length)
                for _ in _records(data):
                    pass
                check.chunks_without_crc += not crc
            except (_Bad, struct.error) as exc:
                messages = sum(c.channel_count.values())
                check.damaged.append(
                    {
                        "file": path.name,
                        "offset": c.chunk_start_offset,
                        "messages": messages,
                        "reason": str(exc),
                    }
                )


def check_bag(bag: Path) -> BagCheck:
    """Check every chunk of a finished bag (see open_checked). BagError if rosbags cannot
    open it at all (a damaged summary or header)."""
    try:
        with open_checked(bag) as (_reader, check):
            return check
    except BagError:
        raise
    except Exception as exc:
        raise BagError(f"{bag}: cannot be read ({type(exc).__name__}: {exc})") from exc


# --- recovery ------------------------------------------------------------------------------
def needs_recovery(path: Path) -> bool:
    """A bag folder with an .mcap file (or the kept original of an interrupted recovery) but
    no metadata.yaml: its writer did not finish."""
    path = Path(path)
    if not path.is_dir() or (path / "metadata.yaml").exists():
        return False
    return any(path.glob("*.mcap")) or any(path.glob(f"*.mcap{KEPT_SUFFIX}*"))


@dataclass
class Recovery:
    """What `recover_bag` did."""

    path: Path
    counts: dict[str, int]
    """messages per topic in the rebuilt bag"""
    kept: Path
    """the original file, kept as it was"""
    damage: list[Damage]
    """the stretches of the original that could not be read"""
    skipped_topics: list[str]
    chunks_without_crc: int

    @property
    def messages(self) -> int:
        return sum(self.counts.values())

    @property
    def messages_left_out(self) -> int | None:
        """messages known to be lost; None when some damaged stretch held an unknown number"""
        if any(d.messages is None for d in self.damage):
            return None
        return sum(d.messages or 0 for d in self.damage)


def _kept_number(p: Path) -> int:
    tail = p.name.rsplit(KEPT_SUFFIX, 1)[-1]
    return int(tail[1:]) if tail[1:].isdigit() else 1


def _kept_name(folder: Path, name: str) -> Path:
    """Where a file replaced by a recovery is kept: the first free `<name>.original[.N]`."""
    candidate, n = folder / f"{name}{KEPT_SUFFIX}", 2
    while candidate.exists():
        candidate, n = folder / f"{name}{KEPT_SUFFIX}.{n}", n + 1
    return candidate


def _recovery_source(path: Path) -> Path:
    if not (path / "metadata.yaml").exists():
        kept = sorted(path.glob(f"*.mcap{KEPT_SUFFIX}*"), key=_kept_number)
        if kept:  # an interrupted recovery: start again from the original it kept
            return kept[-1]
    files = sorted(path.glob("*.mcap"))
    if not files:
        raise BagError(f"{path}: no .mcap file to recover")
    if len(files) > 1:
        raise BagError(
            f"{path}: {len(files)} .mcap files ({', '.join(f.name for f in files)}); recover handles "
            "a bag of one file: move each into a folder of its own and recover those"
        )
    return files[0]


def recover_bag(
    path: Path, registry: TypeRegistry | None = None, label: str | None = None, force: bool = False
) -> Recovery:
    """Rebuild a bag whose writer died (no metadata.yaml), or with `force` a finished bag with
    damaged chunks, from every readable chunk of its .mcap file (see `scan_mcap`).

    The new bag is written in `<path>/.recovery/` and checked (read back with rosbags'
    Reader, every message counted) before anything is replaced; then the original file
    stays beside the new one as `<name>.mcap.original` (and a replaced metadata.yaml as
    `metadata.yaml.original`) until the user deletes it. Nothing is deleted or overwritten
    before that, so an interrupted recovery is simply run again. episode.json is rewritten
    from what was recovered (messages per topic, stamps, duration), keeping task, mode, seed
    and label from the old episode.json or the START EpisodeEvent in the bag; `label`
    overrides the label (the recorder's leftovers are "aborted").

    :raises BagError: nothing readable, or the new bag could not be written or checked
        (DiskFull for a full disk); the original is then left exactly as it was.
    """
    path = Path(path)
    if not path.is_dir():
        raise BagError(f"{path}: not a bag folder")
    if (path / "metadata.yaml").exists() and not force:
        raise BagError(f"{path}: finished (it has metadata.yaml): nothing to recover")
    source = _recovery_source(path)
    scan = scan_mcap(source)
    if not scan.messages:
        why = "; ".join(d.describe() for d in scan.damage) or "it holds no message"
        raise BagError(f"{source}: no readable message ({why}); the file is left as it is")
    try:
        original = read_episode_info(path) or {}
    except BagError as exc:
        log.warning(f"{exc}: episode.json is rebuilt from the bag alone")
        original = {}
    work = path / RECOVERY_DIR
    shutil.rmtree(work, ignore_errors=True)  # the output of an earlier, interrupted recovery
    out = work / path.name
    kept = source if KEPT_SUFFIX in source.name else _kept_name(path, source.name)
    try:
        counts, skipped = _rebuild(out, scan, registry or TypeRegistry(), original, label, kept)
        if not sum(counts.values()):
            raise BagError(f"no message could be rebuilt ({'; '.join(skipped)})")
        _verify(out, counts)
    except Exception as exc:
        shutil.rmtree(work, ignore_errors=True)
        kind = DiskFull if is_disk_full(exc) else BagError
        raise kind(f"{path}: recovery failed, {source.name} is left as it was: {exc}") from exc
    _swap(path, out, source, kept)
    shutil.rmtree(work, ignore_errors=True)
    return Recovery(path, counts, kept, scan.damage, skipped, scan.chunks_without_crc)


def _rebuild(
    out: Path, scan: McapScan, registry: TypeRegistry, original: dict, label: str | None, kept: Path
) -> tuple[dict[str, int], list[str]]:
    writer = EpisodeBagWriter(out, registry)
    try:
        topics, skipped = _add_topics(writer, scan, registry)
        counts = {topic: 0 for topic, _ in topics.values()}
        header = {t: registry.starts_with_header(t) for _, t in topics.values()}
        first = last = start_event = None
        no_channel = 0
        for cid, t_ns, data in _iter_scan(scan):
            if cid not in topics:
                no_channel += 1
                continue
            topic, msgtype = topics[cid]
            writer.write(topic, t_ns, data)
            counts[topic] += 1
            stamp = header_stamp_ns(data) if header[msgtype] and len(data) >= 12 else t_ns
            first = stamp if first is None else min(first, stamp)
            last = stamp if last is None else max(last, stamp)
            if msgtype == EVENT_TYPE and start_event is None:
                start_event = _start_event(registry, data)
        if no_channel:
            skipped.append(f"{no_channel} messages of channels whose definition was lost")
        facts = {"first": first, "last": last, "start": start_event, "skipped": skipped}
        writer.close(lambda c: _recovered_info(original, c, facts, scan, label, kept))
    except BaseException:
        writer.abort()
        raise
    return counts, skipped


def _add_topics(writer: EpisodeBagWriter, scan: McapScan, registry: TypeRegistry):
    topics: dict[int, tuple[str, str]] = {}
    skipped: list[str] = []
    for cid, (sid, topic, encoding) in sorted(scan.channels.items()):
        schema = scan.schemas.get(sid)
        if schema is None or encoding != "cdr":
            skipped.append(f"{topic}: {'its schema was lost' if schema is None else encoding + ' encoding'}")
            continue
        name, schema_encoding, text = schema
        try:
            try:
                registry.ensure(name)
            except BagError:
                if schema_encoding != "ros2msg":
                    raise
                registry.register_definition(name, text.decode())
            writer.add_topic(topic, name)
        except Exception as exc:
            skipped.append(f"{topic} ({name}): {exc}")
            continue
        topics[cid] = (topic, name)
    return topics, skipped


def _start_event(registry: TypeRegistry, data: bytes) -> Any:
    try:
        msg = registry.store.deserialize_cdr(data, EVENT_TYPE)
    except Exception:
        return None
    return msg if int(msg.event) == 0 else None  # EpisodeEvent.START


def _recovered_info(
    original: dict, counts: dict[str, int], facts: dict, scan: McapScan, label: str | None, kept: Path
) -> dict[str, Any]:
    info = {k: v for k, v in original.items() if k != "path"}
    start = facts["start"]
    if start is not None:  # what the START event says fills what episode.json does not
        stamp = nanoseconds(start.header.stamp.sec, start.header.stamp.nanosec)
        for key, value in (
            ("task", start.task),
            ("mode", start.mode),
            ("seed", int(start.seed)),
            ("source_episode_index", int(start.episode_index)),
        ):
            if info.get(key) in (None, "", -1):
                info[key] = value
    for key, value in (("task", ""), ("mode", ""), ("seed", -1), ("source_episode_index", -1)):
        info.setdefault(key, value)
    closed = info.get("label") in ("success", "failure")
    info["label"] = label or (info["label"] if closed else "aborted")
    if info["label"] not in ("success", "failure"):
        info["end_event"] = "ABORT"
    first, last = facts["first"], facts["last"]
    info["start_stamp_ns"] = stamp if start is not None else first
    info["end_stamp_ns"] = last
    info["duration_s"] = round((last - info["start_stamp_ns"]) / 1e9, 3) if last is not None else 0.0
    info["messages"] = dict(counts)
    images = info.get("frames") or [
        t for sid, t, _e in scan.channels.values() if scan.schemas.get(sid, ("",))[0] in IMAGE_TYPES
    ]
    info["frames"] = {t: counts.get(t, 0) for t in images}
    if not info.get("message"):
        info["message"] = "recovered: the recorder stopped without finishing the bag"
    info["recovered"] = True
    left_out = [d.messages for d in scan.damage]
    info["recovery"] = {
        "original": kept.name,
        "messages": sum(counts.values()),
        "messages_left_out": None if None in left_out else sum(left_out),
        "damaged": [d.describe() for d in scan.damage],
        "chunks_without_crc": scan.chunks_without_crc,
        "skipped": facts["skipped"],
    }
    return info


def _verify(bag: Path, counts: dict[str, int]) -> None:
    """Read the new bag back with rosbags' Reader: every message, counted per topic."""
    from rosbags.rosbag2 import Reader

    got: dict[str, int] = dict.fromkeys(counts, 0)
    with Reader(bag) as reader:
        for conn, _t, _raw in reader.messages():
            got[conn.topic] = got.get(conn.topic, 0) + 1
    if got != counts:
        raise BagError(f"the rebuilt bag reads back {got}, but {counts} were written")


def _swap(path: Path, out: Path, source: Path, kept: Path) -> None:
    """Put the checked new bag in place; the replaced files are kept as `*.original`. Each
    step is a rename; metadata.yaml comes last, so until then the folder still reads as
    needing recovery and a second run starts again from the kept original."""
    meta = path / "metadata.yaml"
    if meta.exists():
        meta.rename(_kept_name(path, meta.name))
    if source != kept:
        source.rename(kept)
    new = out / f"{out.name}.mcap"
    os.replace(new, path / new.name)
    os.replace(out / EPISODE_FILE, path / EPISODE_FILE)
    os.replace(out / "metadata.yaml", meta)


def bag_dirs(paths: Iterable[Path]) -> list[Path]:
    """Every rosbag2 folder (a folder with metadata.yaml, or an unfinished .mcap) at or under
    `paths` (not the work folders of a recovery)."""
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
        marks = [*p.rglob("metadata.yaml"), *p.rglob("*.mcap"), *p.rglob(f"*.mcap{KEPT_SUFFIX}*")]
        found += [m.parent for m in marks if RECOVERY_DIR not in m.relative_to(p).parts]
    return sorted(set(found))
