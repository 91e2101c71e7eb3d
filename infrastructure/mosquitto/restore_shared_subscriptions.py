#!/usr/bin/env python3
"""Give Mosquitto 2.0's persisted sessions back their shared subscriptions, before it starts.

Mosquitto 2.0 saves a persistent session (its queued and in-flight messages) and its ordinary
subscriptions, but not its shared subscriptions (`$share/<group>/<filter>`): after a restart
the session is back without them, and until its client reconnects and subscribes again every
message for the group reaches no subscriber and is dropped, although the broker acknowledged
it to the device. Whatever Mosquitto does restore, it restores through one code path, which
handles `$share/...` filters: so this adds the missing subscription records to the
persistence file, and the broker restores them like any other.

Which subscriptions: each subscriber that wants them restored keeps a retained message on
`fleet-internal/shared-subscriptions/<its client id>` listing them (`{"filters": [...],
"qos": 1}`; the location service does). A listed subscription is restored only for a session
the file still holds.

Run it with the broker stopped, on every start (the broker's container command does, and so
does the devstack). Standard library only: it runs in the broker's image. It understands the
file format of Mosquitto 2.0 (version 6) and refuses any other, so that an upgrade which
changes the format stops the broker's start loudly instead of silently losing positions.

    restore_shared_subscriptions.py /mosquitto/data/mosquitto.db
"""

import json
import os
import struct
import sys

MAGIC = b"\x00\xb5\x00mosquitto db"
HEADER = struct.Struct("!II")  # crc (unused), format version
SUPPORTED_VERSION = 6
CHUNK = struct.Struct("!II")  # chunk type, body length
MSG_STORE, RETAIN, SUB, CLIENT = 2, 4, 5, 6
# PF_client: session expiry time (i64), session expiry interval (u32), last mid, id length,
# listener port, username length (u16 each), 4 bytes of padding.
CLIENT_ID_LEN = struct.Struct("!H")
CLIENT_HEAD_SIZE, CLIENT_ID_LEN_AT = 24, 14
# PF_msg_store: store id (8), expiry time (8), payload length (u32), source mid, source id
# length, source username length, topic length, source port (u16 each), qos, retain (u8).
STORE_HEAD = struct.Struct("!8s8sIHHHHHBB")
# PF_sub: identifier (u32), client id length, topic length (u16), qos, options (u8), padding.
SUB_HEAD = struct.Struct("!IHHBBxx")
RETAIN_ID = struct.Struct("!8s")

MANIFEST_PREFIX = "fleet-internal/shared-subscriptions/"


class FormatError(Exception):
    pass


def read_chunks(data: bytes):
    """(type, body) of every chunk in a version 6 persistence file."""
    if not data.startswith(MAGIC):
        raise FormatError("not a Mosquitto persistence file")
    _crc, version = HEADER.unpack_from(data, len(MAGIC))
    if version != SUPPORTED_VERSION:
        raise FormatError(
            f"persistence format version {version}; this tool knows version "
            f"{SUPPORTED_VERSION} (Mosquitto 2.0) only"
        )
    offset = len(MAGIC) + HEADER.size
    while offset < len(data):
        if offset + CHUNK.size > len(data):
            raise FormatError(f"truncated chunk header at byte {offset}")
        kind, length = CHUNK.unpack_from(data, offset)
        offset += CHUNK.size
        if offset + length > len(data):
            raise FormatError(f"truncated chunk at byte {offset}")
        yield kind, data[offset : offset + length]
        offset += length


def missing_subscriptions(data: bytes) -> list[tuple[str, str, int]]:
    """(client id, filter, qos) listed in a manifest, for a session the file holds, and not
    already among the file's subscriptions."""
    clients: set[str] = set()
    existing: set[tuple[str, str]] = set()
    stored: dict[bytes, tuple[str, bytes]] = {}
    retained: list[bytes] = []
    for kind, body in read_chunks(data):
        if kind == CLIENT:
            (id_len,) = CLIENT_ID_LEN.unpack_from(body, CLIENT_ID_LEN_AT)
            clients.add(body[CLIENT_HEAD_SIZE : CLIENT_HEAD_SIZE + id_len].decode())
        elif kind == SUB:
            _ident, id_len, topic_len, _qos, _options = SUB_HEAD.unpack_from(body)
            start = SUB_HEAD.size
            client = body[start : start + id_len].decode()
            existing.add((client, body[start + id_len : start + id_len + topic_len].decode()))
        elif kind == MSG_STORE:
            head = STORE_HEAD.unpack_from(body)
            store_id, payload_len, source_len, user_len, topic_len = (
                head[0],
                head[2],
                head[4],
                head[5],
                head[6],
            )
            start = STORE_HEAD.size + source_len + user_len
            topic = body[start : start + topic_len].decode(errors="replace")
            if topic.startswith(MANIFEST_PREFIX):
                payload = body[start + topic_len : start + topic_len + payload_len]
                stored[store_id] = (topic, payload)
        elif kind == RETAIN:
            retained.append(RETAIN_ID.unpack_from(body)[0])
    missing = []
    for store_id in retained:
        if store_id not in stored:
            continue
        topic, payload = stored[store_id]
        client = topic.removeprefix(MANIFEST_PREFIX)
        if client not in clients or not payload:
            continue  # the session ended or expired, or it cleared its manifest
        try:
            manifest = json.loads(payload)
            filters, qos = list(manifest["filters"]), int(manifest.get("qos", 1))
        except (ValueError, KeyError, TypeError):
            print(f"restore: ignoring the unreadable manifest of {client!r}", file=sys.stderr)
            continue
        for topic_filter in filters:
            if isinstance(topic_filter, str) and (client, topic_filter) not in existing:
                missing.append((client, topic_filter, max(0, min(qos, 2))))
    return missing


def sub_chunk(client: str, topic_filter: str, qos: int) -> bytes:
    client_b, filter_b = client.encode(), topic_filter.encode()
    body = SUB_HEAD.pack(0, len(client_b), len(filter_b), qos, 0) + client_b + filter_b
    return CHUNK.pack(SUB, len(body)) + body


def restore(path: str) -> list[tuple[str, str, int]]:
    """Add the missing shared subscriptions to the file at `path`; returns what was added."""
    try:
        with open(path, "rb") as db:
            data = db.read()
    except FileNotFoundError:
        return []  # a first start: nothing was saved
    missing = missing_subscriptions(data)
    if not missing:
        return []
    # A new file beside the old one, renamed over it: a crash leaves one or the other whole.
    partial = f"{path}.restore"
    with open(partial, "wb") as out:
        out.write(data)
        out.write(b"".join(sub_chunk(*entry) for entry in missing))
        out.flush()
        os.fsync(out.fileno())
    stat = os.stat(path)
    os.chmod(partial, stat.st_mode & 0o777)
    if os.geteuid() == 0:
        os.chown(partial, stat.st_uid, stat.st_gid)
    os.replace(partial, path)
    return missing


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[-1].strip(), file=sys.stderr)
        return 2
    try:
        added = restore(argv[1])
    except (FormatError, UnicodeDecodeError, struct.error) as exc:
        print(f"restore: {argv[1]}: {exc}; the broker is not started", file=sys.stderr)
        return 1
    for client, topic_filter, qos in added:
        print(f"restore: {client} {topic_filter} qos {qos}")
    print(f"restore: {len(added)} shared subscription(s) restored in {argv[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
