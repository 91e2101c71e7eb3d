"""Teltonika Codec 8 / 8 Extended (AVL data) and Codec 12 (commands): decoding and encoding.

Only whole frames come here (framing.py cuts them out of the stream): the IMEI handshake's
ASCII text, and an AVL packet's data field (codec id .. second record count) with its CRC.
Each decoder raises `ProtocolError` with a `telemetry_rejected_total` reason on anything
malformed; nothing else escapes them (the hypothesis tests hold them to that).
"""

import struct
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fastcrc import crc16

from fleet_location.trackers.errors import ProtocolError, TrackerReason

CODEC_8 = 0x08
CODEC_8E = 0x8E
CODEC_12 = 0x0C
COMMAND_TYPE = 0x05
RESPONSE_TYPE = 0x06
ACCEPT = b"\x01"
REFUSE = b"\x00"

# IO ids with a meaning of their own (Teltonika FMB AVL ID list); every other id is kept
# raw in attrs as `io_<id>`.
IO_IGNITION = 239
IO_MOVEMENT = 240
IO_EXTERNAL_VOLTAGE_MV = 66
IO_BATTERY_VOLTAGE_MV = 67
IO_BATTERY_PCT = 113
IO_TOTAL_ODOMETER_M = 16
IO_GSM_SIGNAL = 21

_GPS = struct.Struct(">QBiihHBH")  # time ms, priority, lon, lat, altitude, angle, sats, speed


@dataclass(slots=True)
class AvlRecord:
    recorded_at: datetime
    priority: int
    lon: float
    lat: float
    altitude_m: int
    angle_deg: int
    satellites: int
    speed_kph: int
    event_io: int
    io: dict[int, int | bytes] = field(default_factory=dict)


@dataclass(slots=True)
class AvlPacket:
    codec: int
    records: list[AvlRecord]


def crc16_ibm(data: bytes) -> int:
    """CRC-16/IBM (also called CRC-16/ARC): polynomial 0xA001 reflected, initial 0."""
    return crc16.arc(data)


def decode_imei(payload: bytes) -> str:
    """The handshake's IMEI (the 2-byte length is the framer's): ASCII digits."""
    if not payload.isdigit() or not 8 <= len(payload) <= 17:
        raise ProtocolError(TrackerReason.MALFORMED_FRAME, "the IMEI must be 8 to 17 digits")
    return payload.decode("ascii")


def check_crc(data: bytes, crc_field: bytes) -> None:
    """The last 4 bytes of a packet: 2 zero bytes, then the CRC of the data field."""
    expected = int.from_bytes(crc_field, "big")
    if expected > 0xFFFF or crc16_ibm(data) != expected:
        raise ProtocolError(TrackerReason.BAD_CRC, "the packet's CRC does not match")


# IO element layouts: (id, value) for the 1/2/4/8-byte value groups, with 1-byte ids
# (Codec 8) or 2-byte ids (Codec 8 Extended). Read with unpack_from at an offset: this is
# the per-record work of the listener's hot path (no slice, no int per byte group).
_IO_GROUPS = {
    False: tuple(struct.Struct(f">B{code}") for code in "BHIQ"),
    True: tuple(struct.Struct(f">H{code}") for code in "BHIQ"),
}
_EVENT_AND_TOTAL = {False: struct.Struct(">BB"), True: struct.Struct(">HH")}
_U16 = struct.Struct(">H")


def decode_avl(data: bytes) -> AvlPacket:
    """An AVL data field: codec id, record count, records, record count (CRC checked)."""
    if len(data) < 3:
        raise ProtocolError(TrackerReason.MALFORMED_FRAME, "the AVL packet is too short")
    codec = data[0]
    if codec not in (CODEC_8, CODEC_8E):
        raise ProtocolError(TrackerReason.UNSUPPORTED_CODEC, f"codec 0x{codec:02x} is not read")
    count = data[1]
    if count == 0 or data[-1] != count:
        raise ProtocolError(TrackerReason.MALFORMED_FRAME, "the record counts do not match")
    wide = codec == CODEC_8E
    # The records end before the closing count byte: reading into it is reading past them.
    body = memoryview(data)[:-1]
    offset = 2
    records = []
    try:
        for _ in range(count):
            record, offset = _record(body, offset, wide)
            records.append(record)
    except (struct.error, IndexError):
        raise ProtocolError(TrackerReason.MALFORMED_FRAME, "the packet ends mid-record") from None
    if offset != len(body):
        raise ProtocolError(TrackerReason.MALFORMED_FRAME, "bytes left after the last record")
    return AvlPacket(codec, records)


def _record(data: memoryview, offset: int, wide: bool) -> tuple[AvlRecord, int]:
    ms, priority, lon, lat, altitude, angle, satellites, speed = _GPS.unpack_from(data, offset)
    offset += _GPS.size
    try:
        recorded_at = datetime.fromtimestamp(ms / 1000.0, UTC)
    except (OverflowError, OSError, ValueError):
        raise ProtocolError(
            TrackerReason.MALFORMED_FRAME, "the record time is out of range"
        ) from None
    io: dict[int, int | bytes] = {}
    if wide:
        # The total IO count is not used: each group below carries its own.
        event_io, _total = _EVENT_AND_TOTAL[True].unpack_from(data, offset)
        offset += 4
        for element in _IO_GROUPS[True]:
            (elements,) = _U16.unpack_from(data, offset)
            offset += 2
            for _ in range(elements):
                io_id, value = element.unpack_from(data, offset)
                offset += element.size
                io[io_id] = value
    else:
        # Codec 8's counts and ids are single bytes: indexed, not unpacked (the hot path).
        event_io = data[offset]
        offset += 2
        for element in _IO_GROUPS[False]:
            elements = data[offset]
            offset += 1
            for _ in range(elements):
                io_id, value = element.unpack_from(data, offset)
                offset += element.size
                io[io_id] = value
    if wide:
        (elements,) = _U16.unpack_from(data, offset)
        offset += 2
        for _ in range(elements):
            io_id, size = struct.unpack_from(">HH", data, offset)
            offset += 4
            if offset + size > len(data):
                raise struct.error("a variable-length IO value past the end")
            io[io_id] = bytes(data[offset : offset + size])
            offset += size
    # Positional: half the cost of keywords, per record (the fields' order is just above).
    lon_deg, lat_deg = lon / 1e7, lat / 1e7
    record = AvlRecord(
        recorded_at, priority, lon_deg, lat_deg, altitude, angle, satellites, speed, event_io, io
    )
    return record, offset


def _io_value(value: int | bytes) -> Any:
    if isinstance(value, int):
        return value
    if value.isascii() and value.decode("ascii").isprintable():
        return value.decode("ascii")
    return value.hex()


def position_fields(record: AvlRecord) -> dict[str, Any]:
    """The record as `build_position` keyword arguments (our field names and units).

    A record with no satellites carries the device's last known coordinates, not a current
    fix: it is kept (its IO data, ignition above all, is current) with `attrs.valid` false,
    unless it has no coordinates at all (0, 0), which `no_fix` rejects (see docs/trackers.md).
    """
    io = record.io
    attrs: dict[str, Any] = {"satellites": record.satellites}
    if record.satellites == 0:
        attrs["valid"] = False
    if record.priority:
        attrs["priority"] = record.priority
    if record.event_io:
        attrs["event_io"] = record.event_io
    ignition = None
    battery_pct = None
    odometer_km = None
    for io_id, value in io.items():
        if io_id == IO_IGNITION:
            ignition = bool(value)
        elif io_id == IO_MOVEMENT:
            attrs["movement"] = bool(value)
        elif io_id == IO_EXTERNAL_VOLTAGE_MV:
            attrs["external_voltage_mv"] = value
        elif io_id == IO_BATTERY_VOLTAGE_MV:
            attrs["battery_voltage_mv"] = value
        elif io_id == IO_BATTERY_PCT and isinstance(value, int) and value <= 100:
            battery_pct = value
        elif io_id == IO_TOTAL_ODOMETER_M and isinstance(value, int):
            odometer_km = value / 1000.0
        elif io_id == IO_GSM_SIGNAL:
            attrs["gsm_signal"] = value
        else:
            attrs[f"io_{io_id}"] = _io_value(value)
    return {
        "ts": record.recorded_at,
        "lat": record.lat,
        "lon": record.lon,
        "speed_kph": float(record.speed_kph),
        "heading_deg": float(record.angle_deg) if record.angle_deg <= 360 else None,
        "altitude_m": float(record.altitude_m),
        "battery_pct": battery_pct,
        "ignition": ignition,
        "odometer_km": odometer_km,
        "attrs": attrs,
    }


def encode_ack(record_count: int) -> bytes:
    """The server's answer to an AVL packet: how many records it took, 4 bytes big-endian."""
    return record_count.to_bytes(4, "big")


def encode_command(text: str) -> bytes:
    """A Codec 12 command packet (e.g. `setdigout 1` for engine stop on an FMB with DOUT1
    wired to the starter relay)."""
    command = text.encode("ascii")
    data = bytes((CODEC_12, 1, COMMAND_TYPE)) + len(command).to_bytes(4, "big") + command + b"\x01"
    return _packet(data)


def _packet(data: bytes) -> bytes:
    return (
        b"\x00\x00\x00\x00"
        + len(data).to_bytes(4, "big")
        + data
        + crc16_ibm(data).to_bytes(4, "big")
    )


def encode_command_response(text: str) -> bytes:
    """A device's Codec 12 answer to a command (the simulator's and the tests')."""
    reply = text.encode("ascii")
    return _packet(
        bytes((CODEC_12, 1, RESPONSE_TYPE)) + len(reply).to_bytes(4, "big") + reply + b"\x01"
    )


def decode_command_response(data: bytes) -> str:
    """A Codec 12 packet's text (a device's answer to a command, type 0x06)."""
    if len(data) < 8 or data[0] != CODEC_12 or data[2] != RESPONSE_TYPE:
        raise ProtocolError(TrackerReason.MALFORMED_FRAME, "not a Codec 12 response")
    size = int.from_bytes(data[3:7], "big")
    if 7 + size + 1 != len(data):
        raise ProtocolError(TrackerReason.MALFORMED_FRAME, "the Codec 12 size does not match")
    return data[7 : 7 + size].decode("utf-8", errors="replace")


def encode_imei(imei: str) -> bytes:
    """The handshake a device opens with (the simulator's and the tests')."""
    return len(imei).to_bytes(2, "big") + imei.encode("ascii")


def encode_avl(records: list[AvlRecord]) -> bytes:
    """A Codec 8 AVL packet of 1-255 records, as a device sends it (the simulator's and the
    tests'); IO values must be ints of at most 8 bytes."""
    if not 1 <= len(records) <= 255:
        raise ValueError("an AVL packet holds 1 to 255 records")
    parts = [bytes((CODEC_8, len(records)))]
    for record in records:
        parts.append(
            _GPS.pack(
                round(record.recorded_at.timestamp() * 1000),
                record.priority,
                round(record.lon * 1e7),
                round(record.lat * 1e7),
                record.altitude_m,
                record.angle_deg,
                record.satellites,
                record.speed_kph,
            )
        )
        groups: dict[int, list[tuple[int, int]]] = {1: [], 2: [], 4: [], 8: []}
        for io_id, value in record.io.items():
            assert isinstance(value, int)
            size = next(s for s in (1, 2, 4, 8) if value < 1 << (8 * s))
            groups[size].append((io_id, value))
        parts.append(bytes((record.event_io, len(record.io))))
        for size, items in groups.items():
            parts.append(bytes((len(items),)))
            for io_id, value in items:
                parts.append(bytes((io_id,)) + value.to_bytes(size, "big"))
    parts.append(bytes((len(records),)))
    return _packet(b"".join(parts))
