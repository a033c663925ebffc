"""Streaming rosbag2 reading and writing (sqlite3 and MCAP) with the `rosbags` library.

Replay, scoring and bag creation all go through this module so that every bad bag is refused
with one kind of error (``BagError``, naming the bag and the problem) and every reader streams:
messages are yielded one at a time in log-time order, never collected.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
import logging
from typing import TYPE_CHECKING, Any, Iterable, Iterator

import yaml

LOGGER = logging.getLogger(__name__)

if TYPE_CHECKING:
    from rosbags.interfaces import Qos
    from rosbags.typesys.store import Typestore

SUPPORTED_STORAGES = ("mcap", "sqlite3")
STORAGE_FILE_SUFFIXES = {".mcap": "mcap", ".db3": "sqlite3"}
# rosbag2 metadata version 8 keeps offered QoS as a YAML string, which Humble, Jazzy and
# later `ros2 bag info` / `ros2 bag play` all read.
BAG_FORMAT_VERSION = 8


class BagError(ValueError):
    """A bag cannot be used; the message names the bag and what is wrong."""


class BagReadError(BagError):
    """Reading stopped part-way through a truncated or corrupt bag.

    ``messages_read`` and ``last_log_time_ns`` say how far reading got, so callers can keep
    and report what was already evaluated.
    """

    def __init__(self, message: str, messages_read: int, last_log_time_ns: int | None) -> None:
        super().__init__(message)
        self.messages_read = messages_read
        self.last_log_time_ns = last_log_time_ns


class BagMessageError(BagError):
    """One stored message cannot be decoded (corrupt bytes); the messages after it still can."""


@dataclass(frozen=True)
class TopicSummary:
    name: str
    msgtype: str
    message_count: int


@dataclass(frozen=True)
class RawMessage:
    """One serialised message as stored: topic, type, bag (log) time and CDR bytes."""

    topic: str
    msgtype: str
    log_time_ns: int
    data: bytes | memoryview


def deserialize(typestore: "Typestore", raw: RawMessage) -> Any:
    """The message object of ``raw``; BagMessageError naming the topic and log time when its
    bytes do not decode (a corrupt bag: the CDR decoder then raises whatever the bytes lead it to)."""
    try:
        return typestore.deserialize_cdr(raw.data, raw.msgtype)
    except Exception as error:  # struct.error, IndexError, ValueError, UnicodeDecodeError, ...
        raise BagMessageError(
            f"{raw.msgtype} message on {raw.topic} at log time {raw.log_time_ns} ns does not decode "
            f"(corrupt bytes?): {type(error).__name__}: {error}"
        ) from error


def check_storage(name: str) -> str:
    """Return ``name`` if it is a storage this package reads and writes, else a clear error."""
    if name not in SUPPORTED_STORAGES:
        raise BagError(f"unknown storage {name!r}; supported storages: {', '.join(SUPPORTED_STORAGES)}")
    return name


def make_qos(*, reliable: bool = True, depth: int = 10) -> "Qos":
    """An offered QoS profile to record with a topic (what `ros2 bag play` will publish with).

    Reliable/volatile by default: a reliable publisher matches both reliable subscribers (RViz,
    `ros2 bag record`) and best-effort sensor-data subscribers (the segmentation node).
    """
    from rosbags.interfaces import (
        Qos,
        QosDurability,
        QosHistory,
        QosLiveliness,
        QosReliability,
        QosTime,
    )

    unset = QosTime(sec=0, nsec=0)  # 0 = the middleware default (infinite)
    return Qos(
        history=QosHistory.KEEP_LAST,
        depth=depth,
        reliability=QosReliability.RELIABLE if reliable else QosReliability.BEST_EFFORT,
        durability=QosDurability.VOLATILE,
        deadline=unset,
        lifespan=unset,
        liveliness=QosLiveliness.AUTOMATIC,
        liveliness_lease_duration=unset,
        avoid_ros_namespace_conventions=False,
    )


def _storage_of(path: Path) -> str:
    """Storage of a bag directory (from metadata.yaml) or of a single storage file."""
    if path.is_dir():
        metadata_path = path / "metadata.yaml"
        if not metadata_path.exists():
            raise BagError(
                f"{path} is not a rosbag2 directory: metadata.yaml is missing "
                f"(a crashed recording can be re-indexed with `ros2 bag reindex {path}`)"
            )
        try:
            metadata = yaml.safe_load(metadata_path.read_text())
            storage = metadata["rosbag2_bagfile_information"]["storage_identifier"]
        except (yaml.YAMLError, KeyError, TypeError, OSError) as error:
            raise BagError(f"bag {path}: metadata.yaml is unreadable or incomplete ({error})") from error
        if storage not in SUPPORTED_STORAGES:
            raise BagError(
                f"bag {path} uses unknown storage {storage!r}; supported storages: "
                f"{', '.join(SUPPORTED_STORAGES)}"
            )
        return str(storage)
    storage = STORAGE_FILE_SUFFIXES.get(path.suffix)
    if storage is None:
        raise BagError(
            f"{path} is neither a rosbag2 directory nor a storage file of a known storage "
            f"(unknown storage suffix {path.suffix!r}; supported: "
            + ", ".join(f"{suffix} ({name})" for suffix, name in STORAGE_FILE_SUFFIXES.items())
            + ")"
        )
    return storage


class BagReader:
    """Read-only, streaming view of one rosbag2 (directory or single .mcap/.db3 file)."""

    def __init__(self, path: str | Path) -> None:
        from rosbags.rosbag2 import Reader

        self.path = Path(path)
        if not self.path.exists():
            raise BagError(f"bag path does not exist: {self.path}")
        self.storage = _storage_of(self.path)
        self._reader = None
        self._recovery: _TruncatedMcap | None = None
        self.topics: dict[str, TopicSummary] = {}
        try:
            self._reader = Reader(self.path)
            self._reader.open()
        except Exception as error:  # rosbags, apsw and OS errors all mean an unusable bag
            self._reader = None
            if self.storage == "mcap" and _TruncatedMcap.applies(error):
                # A recording cut short (no summary or footer): its intact chunks are readable.
                self._recovery = _TruncatedMcap(self.path, str(error))
                self.topics = self._recovery.topics
                LOGGER.warning("bag %s is truncated (%s); reading its intact part", self.path, error)
                return
            raise BagError(
                f"bag {self.path} ({self.storage}) cannot be opened, it is truncated or corrupt: {error}"
            ) from error
        for connection in self._reader.connections:
            known = self.topics.get(connection.topic)
            count = connection.msgcount + (known.message_count if known else 0)
            self.topics[connection.topic] = TopicSummary(connection.topic, connection.msgtype, count)

    def __enter__(self) -> "BagReader":
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        if getattr(self, "_reader", None) is not None and self._reader.is_open:
            self._reader.close()

    @property
    def truncated(self) -> bool:
        """Whether the bag is a truncated MCAP read up to where its data ends."""
        return self._recovery is not None

    @property
    def message_count(self) -> int:
        if self._reader is None:
            return sum(topic.message_count for topic in self.topics.values())
        return int(self._reader.message_count)

    def topic_list(self) -> str:
        """Human-readable listing of what the bag holds, for error messages."""
        if not self.topics:
            return "(the bag has no topics)"
        return ", ".join(f"{t.name} [{t.msgtype}, {t.message_count} msgs]" for t in self.topics.values())

    def require_topics(self, names: Iterable[str], msgtype: str | None = None) -> None:
        """Refuse a bag that lacks one of ``names`` (or holds them with another type)."""
        missing = [name for name in names if name not in self.topics]
        if missing:
            raise BagError(
                f"bag {self.path} has no topic {', '.join(missing)}; topics in the bag: {self.topic_list()}"
            )
        if msgtype is not None:
            wrong = [name for name in names if self.topics[name].msgtype != msgtype]
            if wrong:
                raise BagError(
                    f"bag {self.path}: topic(s) {', '.join(wrong)} are not {msgtype}; "
                    f"topics in the bag: {self.topic_list()}"
                )

    def messages(self, topics: Iterable[str] | None = None) -> Iterator[RawMessage]:
        """Messages of ``topics`` (all topics when None) in log-time order, one at a time.

        A storage error part-way (truncated or corrupt file) ends the stream with
        ``BagReadError`` telling how many messages were read before it.
        """
        wanted = None if topics is None else set(topics)
        if self._recovery is not None:
            yield from self._recovery.messages(wanted)
            return
        connections = [c for c in self._reader.connections if wanted is None or c.topic in wanted]
        if not connections:
            return
        stream = self._reader.messages(connections=connections)
        count = 0
        last_time: int | None = None
        while True:
            try:
                connection, log_time, data = next(stream)
            except StopIteration:
                return
            except Exception as error:  # apsw / rosbags / OS errors of a damaged storage file
                where = "at the start" if last_time is None else f"after log time {last_time} ns"
                raise BagReadError(
                    f"bag {self.path} ({self.storage}) is truncated or corrupt: reading stopped "
                    f"{where}, after {count} messages: {error}",
                    count,
                    last_time,
                ) from error
            if not isinstance(log_time, int) or not isinstance(data, (bytes, bytearray, memoryview)):
                # A damaged sqlite3 row can read back with NULL columns.
                raise BagReadError(
                    f"bag {self.path} ({self.storage}) is corrupt: message {count + 1} has log time "
                    f"{log_time!r} and {type(data).__name__} data; reading stopped after {count} messages",
                    count,
                    last_time,
                )
            count += 1
            last_time = log_time
            yield RawMessage(connection.topic, connection.msgtype, log_time, data)


class _TruncatedMcap:
    """Sequential reading of MCAP files that lack their summary and footer (a recorder that was
    killed), with the `mcap` library's stream reader: every complete chunk is read, then the
    stream ends with BagReadError where the data stops. Messages come in the order written.
    """

    MARKERS = ("end magic", "footer", "summary", "truncated", "seems to be empty")

    @classmethod
    def applies(cls, error: Exception) -> bool:
        text = str(error).lower()
        return any(marker in text for marker in cls.MARKERS)

    def __init__(self, path: Path, reason: str) -> None:
        self.path = path
        self.reason = reason
        if path.is_dir():
            metadata = yaml.safe_load((path / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
            self.files = [path / Path(name).name for name in metadata["relative_file_paths"]]
            self.topics = {
                entry["topic_metadata"]["name"]: TopicSummary(
                    entry["topic_metadata"]["name"], entry["topic_metadata"]["type"], int(entry["message_count"])
                )
                for entry in metadata["topics_with_message_count"]
            }
        else:
            self.files = [path]
            self.topics = self._scan_topics()

    def _records(self) -> Iterator[Any]:
        from mcap.stream_reader import StreamReader

        for file in self.files:
            with file.open("rb") as handle:
                yield from StreamReader(handle, skip_magic=False).records

    def _scan_topics(self) -> dict[str, TopicSummary]:
        from mcap.records import Channel, Message, Schema

        schemas: dict[int, str] = {}
        channels: dict[int, tuple[str, str]] = {}
        counts: dict[int, int] = {}
        try:
            for record in self._records():
                if isinstance(record, Schema):
                    schemas[record.id] = record.name
                elif isinstance(record, Channel):
                    channels[record.id] = (record.topic, schemas.get(record.schema_id, ""))
                elif isinstance(record, Message):
                    counts[record.channel_id] = counts.get(record.channel_id, 0) + 1
        except Exception:  # the end of the intact data; what was read is what there is
            pass
        return {topic: TopicSummary(topic, msgtype, counts.get(cid, 0)) for cid, (topic, msgtype) in channels.items()}

    def messages(self, wanted: set[str] | None) -> Iterator[RawMessage]:
        from mcap.records import Channel, Message, Schema

        schemas: dict[int, str] = {}
        channels: dict[int, tuple[str, str]] = {}
        count = 0
        last_time: int | None = None
        records = self._records()
        while True:
            try:
                record = next(records)
            except StopIteration:
                break
            except Exception as error:  # mcap EndOfFile / McapError where the data stops
                raise BagReadError(
                    f"bag {self.path} (mcap) is truncated or corrupt: reading stopped after {count} messages "
                    f"where the data ends ({type(error).__name__}: {error or 'end of file'})",
                    count,
                    last_time,
                ) from error
            if isinstance(record, Schema):
                schemas[record.id] = record.name
            elif isinstance(record, Channel):
                channels[record.id] = (record.topic, schemas.get(record.schema_id, ""))
            elif isinstance(record, Message) and record.channel_id in channels:
                topic, msgtype = channels[record.channel_id]
                if wanted is None or topic in wanted:
                    count += 1
                    last_time = record.log_time
                    yield RawMessage(topic, msgtype or self.topics[topic].msgtype, record.log_time, record.data)
        raise BagReadError(
            f"bag {self.path} (mcap) is truncated: it has no summary or footer ({self.reason}); "
            f"read {count} messages up to its end",
            count,
            last_time,
        )


def list_topics(path: str | Path) -> dict[str, TopicSummary]:
    """Topics of a bag with types and message counts."""
    with BagReader(path) as reader:
        return dict(reader.topics)


class BagWriter:
    """Streaming rosbag2 writer; closing (also after an error) leaves a valid, readable bag.

    Messages are serialised with ``typestore`` (which must hold every type written; our own
    message definitions are stored in the bag so other tools can decode them).
    """

    def __init__(self, path: str | Path, typestore: "Typestore", storage: str = "mcap") -> None:
        from rosbags.rosbag2 import Writer
        from rosbags.rosbag2.enums import StoragePlugin

        self.path = Path(path)
        self.storage = check_storage(storage)
        if self.path.exists():
            raise BagError(f"output bag {self.path} exists already; remove it or choose another path")
        self.typestore = typestore
        plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
        self._writer = Writer(self.path, version=BAG_FORMAT_VERSION, storage_plugin=plugin)
        self._writer.open()
        self._connections: dict[str, Any] = {}
        self._types: dict[str, str] = {}
        self.counts: dict[str, int] = {}

    def __enter__(self) -> "BagWriter":
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def set_custom_data(self, key: str, value: str) -> None:
        """Free-form provenance (seed, model, parameters) kept in metadata.yaml."""
        self._writer.set_custom_data(key, str(value))

    def add_topic(self, topic: str, msgtype: str, qos: "Qos | None" = None) -> None:
        if topic in self._connections:
            raise BagError(f"topic {topic} added twice to {self.path}")
        if msgtype not in self.typestore.types:
            raise BagError(f"message type {msgtype} is not registered in the typestore used for {self.path}")
        self._connections[topic] = self._writer.add_connection(
            topic, msgtype, typestore=self.typestore, offered_qos_profiles=[qos or make_qos()]
        )
        self._types[topic] = msgtype
        self.counts[topic] = 0

    def write(self, topic: str, log_time_ns: int, message: object) -> bytes | memoryview:
        """Serialise ``message``, store it at bag time ``log_time_ns``; returns the bytes stored."""
        if topic not in self._connections:
            raise BagError(f"topic {topic} was not added to {self.path} before writing")
        data = self.typestore.serialize_cdr(message, self._types[topic])
        self._writer.write(self._connections[topic], int(log_time_ns), data)
        self.counts[topic] += 1
        return data

    def close(self) -> None:
        if getattr(self, "_writer", None) is not None and self._writer.storage is not None:
            self._writer.close()
