"""Concox GT06 (and its many clones): packet decoding and encoding.

framing.py cuts whole packets out of the stream: `78 78 <len:1>` or `79 79 <len:2>`, then
protocol number, content, serial (2), CRC-ITU (X.25, over length .. serial), `0D 0A`.
`parse_packet` checks the CRC and splits a packet; the `decode_*` functions read one kind of
content. Each raises `ProtocolError` on anything malformed, and nothing else.
"""

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fastcrc import crc16

from fleet_location.trackers.errors import ProtocolError, TrackerReason

SHORT_START = b"\x78\x78"
LONG_START = b"\x79\x79"
STOP = b"\x0d\x0a"

LOGIN = 0x01
GPS = 0x10
GPS_LBS = 0x12
STATUS = 0x13
COMMAND_RESPONSE = 0x15
ALARM = 0x16
COMMAND_RESPONSE_2 = 0x21
GPS_LBS_2 = 0x22
HEARTBEAT = 0x23
ALARM_2 = 0x26
GPS_LBS_3 = 0x37
GPS_4G = 0xA0
SERVER_COMMAND = 0x80

LOCATION_PROTOCOLS = frozenset((GPS, GPS_LBS, GPS_LBS_2, GPS_LBS_3, GPS_4G))
ALARM_PROTOCOLS = frozenset((ALARM, ALARM_2))
STATUS_PROTOCOLS = frozenset((STATUS, HEARTBEAT))
# What the device expects an answer to (with its serial); location packets go unanswered.
ANSWERED = frozenset((LOGIN, STATUS, HEARTBEAT, ALARM, ALARM_2))

# The alarm byte of alarm packets (Concox GT06N / GT06E protocol documents): the names are
# the `attrs.alarm` values event detection turns into `alarm` events.
ALARMS = {
    0x01: "sos",
    0x02: "power_cut",
    0x03: "vibration",
    0x04: "geofence_enter",
    0x05: "geofence_exit",
    0x06: "overspeed",
    0x09: "movement",
    0x0E: "low_battery",
    0x0F: "low_battery",
    0x11: "power_off",
    0x13: "tampering",
}
# Bits 3-5 of the terminal information byte carry an alarm too.
_TERMINAL_ALARMS = {4: "sos", 3: "low_battery", 2: "power_cut", 1: "vibration"}
_GPS_SIZE = 18


@dataclass(slots=True)
class Packet:
    protocol: int
    content: bytes
    serial: int


@dataclass(slots=True)
class Fix:
    recorded_at: datetime
    lat: float
    lon: float
    speed_kph: int
    course_deg: int
    satellites: int
    valid: bool


def crc_itu(data: bytes) -> int:
    """CRC-ITU as GT06 uses it: CRC-16/X.25 (IBM-SDLC), over length .. serial."""
    return crc16.ibm_sdlc(data)


def parse_packet(frame: bytes) -> Packet:
    """A whole frame (start bytes .. stop bytes) into protocol, content and serial."""
    header = 3 if frame[:2] == SHORT_START else 4
    if len(frame) < header + 7 or frame[-2:] != STOP:
        raise ProtocolError(TrackerReason.MALFORMED_FRAME, "not a GT06 frame")
    body = frame[2:-4]
    if crc_itu(body) != int.from_bytes(frame[-4:-2], "big"):
        raise ProtocolError(TrackerReason.BAD_CRC, "the packet's CRC does not match")
    return Packet(frame[header], frame[header + 1 : -6], int.from_bytes(frame[-6:-4], "big"))


def decode_login(content: bytes) -> str:
    """The IMEI: 8 bytes of BCD, 16 digits with a leading zero."""
    if len(content) < 8:
        raise ProtocolError(TrackerReason.MALFORMED_FRAME, "the login packet is too short")
    digits = content[:8].hex()
    if not digits.isdigit():
        raise ProtocolError(TrackerReason.MALFORMED_FRAME, "the IMEI is not BCD digits")
    return digits.lstrip("0") or "0"


def _fix(content: bytes) -> Fix:
    if len(content) < _GPS_SIZE:
        raise ProtocolError(TrackerReason.MALFORMED_FRAME, "the GPS block is too short")
    year, month, day, hour, minute, second = content[:6]
    try:
        recorded_at = datetime(2000 + year, month, day, hour, minute, second, tzinfo=UTC)
    except ValueError:
        raise ProtocolError(TrackerReason.MALFORMED_FRAME, "the date-time is not a date") from None
    satellites = content[6] & 0x0F
    lat = int.from_bytes(content[7:11], "big") / 30000.0 / 60.0
    lon = int.from_bytes(content[11:15], "big") / 30000.0 / 60.0
    flags = int.from_bytes(content[16:18], "big")
    if not flags & 0x0400:  # bit 10: north latitude
        lat = -lat
    if flags & 0x0800:  # bit 11: west longitude
        lon = -lon
    return Fix(
        recorded_at=recorded_at,
        lat=lat,
        lon=lon,
        speed_kph=content[15],
        course_deg=flags & 0x03FF,
        satellites=satellites,
        valid=bool(flags & 0x1000),  # bit 12: GPS positioned
    )


def decode_location(protocol: int, content: bytes) -> tuple[Fix, dict[str, Any]]:
    """A GPS (+ LBS) location packet: the fix, and the cell and ACC data as attributes."""
    fix = _fix(content)
    attrs: dict[str, Any] = {}
    rest = content[_GPS_SIZE:]
    if protocol == GPS_4G:
        wide_mnc = len(rest) >= 2 and rest[0] & 0x80
        cell_sizes = (2, 2 if wide_mnc else 1, 4, 8)
    else:
        cell_sizes = (2, 1, 2, 3)
    if len(rest) >= sum(cell_sizes):
        values = []
        offset = 0
        for size in cell_sizes:
            values.append(int.from_bytes(rest[offset : offset + size], "big"))
            offset += size
        mcc, mnc, lac, cell = values
        attrs.update(mcc=mcc & 0x7FFF, mnc=mnc, lac=lac, cell_id=cell)
        rest = rest[offset:]
        if protocol in (GPS_LBS_2, GPS_LBS_3, GPS_4G) and rest:
            attrs["acc"] = bool(rest[0])
    return fix, attrs


def decode_status(protocol: int, content: bytes) -> dict[str, Any]:
    """A status (0x13) or heartbeat (0x23) packet: ACC, charging, battery, GSM level."""
    if protocol == HEARTBEAT:
        if len(content) < 4:
            raise ProtocolError(TrackerReason.MALFORMED_FRAME, "the heartbeat is too short")
        attrs = _terminal(content[0])
        # Heartbeat voltage is in hundredths of a volt.
        attrs["battery_voltage_mv"] = int.from_bytes(content[1:3], "big") * 10
        attrs["gsm_signal"] = content[3]
        return attrs
    if len(content) < 3:
        raise ProtocolError(TrackerReason.MALFORMED_FRAME, "the status packet is too short")
    attrs = _terminal(content[0])
    attrs.update(_levels(content[1], content[2]))
    return attrs


def _levels(voltage_level: int, gsm_level: int) -> dict[str, Any]:
    # Voltage level 0 (no power) .. 6 (full): as a battery percentage.
    attrs: dict[str, Any] = {"gsm_signal": gsm_level}
    if voltage_level <= 6:
        attrs["battery_pct"] = round(voltage_level * 100 / 6)
    return attrs


def _terminal(info: int) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        "armed": bool(info & 0x01),
        "acc": bool(info & 0x02),
        "charging": bool(info & 0x04),
        "gps_tracking": bool(info & 0x40),
        "fuel_cut": bool(info & 0x80),
    }
    alarm = _TERMINAL_ALARMS.get((info >> 3) & 0x07)
    if alarm is not None:
        attrs["alarm"] = alarm
    return attrs


def decode_alarm(content: bytes) -> tuple[Fix, dict[str, Any]]:
    """An alarm packet (0x16, 0x26): GPS, LBS with its length byte, status, alarm byte."""
    fix = _fix(content)
    rest = content[_GPS_SIZE:]
    if not rest:
        raise ProtocolError(TrackerReason.MALFORMED_FRAME, "the alarm packet has no LBS block")
    lbs_size = max(rest[0], 1)  # the LBS length counts its own byte
    status = rest[lbs_size:]
    if len(status) < 4:
        raise ProtocolError(TrackerReason.MALFORMED_FRAME, "the alarm packet is too short")
    attrs = _terminal(status[0])
    attrs.update(_levels(status[1], status[2]))
    code = status[3]
    if code:
        attrs["alarm"] = ALARMS.get(code, f"alarm_{code:02x}")
        attrs["alarm_code"] = code
    return fix, attrs


def _flagged_text(content: bytes) -> tuple[int, str]:
    """A length byte (server flag + text), the 4-byte server flag, the ASCII text, and on
    some models a 2-byte language after it (0x0002 English), which the length leaves out."""
    if len(content) < 5:
        raise ProtocolError(TrackerReason.MALFORMED_FRAME, "the command packet is too short")
    size = content[0]
    flag = int.from_bytes(content[1:5], "big")
    text = content[5 : 1 + size] if size >= 4 else b""
    return flag, text.decode("ascii", errors="replace")


def decode_command_response(content: bytes) -> tuple[int, str]:
    """A device's answer to a server command (0x15): our server flag, and its text."""
    return _flagged_text(content)


def decode_command(content: bytes) -> tuple[int, str]:
    """A 0x80 server command as a device reads it (the simulator's): its flag and text."""
    return _flagged_text(content)


def encode(protocol: int, content: bytes, serial: int) -> bytes:
    """A packet from protocol, content and serial; the long form when it needs it."""
    size = 1 + len(content) + 2 + 2
    body_tail = bytes((protocol,)) + content + (serial & 0xFFFF).to_bytes(2, "big")
    if size <= 0xFF:
        body = bytes((size,)) + body_tail
        start = SHORT_START
    else:
        body = size.to_bytes(2, "big") + body_tail
        start = LONG_START
    return start + body + crc_itu(body).to_bytes(2, "big") + STOP


def encode_response(protocol: int, serial: int) -> bytes:
    """The server's answer to a login, status, heartbeat or alarm: protocol and serial."""
    return encode(protocol, b"", serial)


def encode_command(text: str, server_flag: int, serial: int) -> bytes:
    """A 0x80 server command (e.g. `RELAY,1#` engine stop); `server_flag` comes back in the
    device's answer, to match the answer to the command."""
    command = text.encode("ascii")
    content = bytes((4 + len(command),)) + server_flag.to_bytes(4, "big") + command
    return encode(SERVER_COMMAND, content, serial)


def encode_command_response(text: str, server_flag: int, serial: int) -> bytes:
    """A device's 0x15 answer to a server command, as a device sends it (the simulator's):
    the command's server flag back, the reply text, the language (English)."""
    reply = text.encode("ascii", errors="replace")[:251]
    content = bytes((4 + len(reply),)) + server_flag.to_bytes(4, "big") + reply + b"\x00\x02"
    return encode(COMMAND_RESPONSE, content, serial)


def encode_login(imei: str, serial: int) -> bytes:
    """A login packet, as a device sends it (the simulator's and the tests')."""
    return encode(LOGIN, bytes.fromhex(imei.rjust(16, "0")), serial)


def encode_location(
    *,
    recorded_at: datetime,
    lat: float,
    lon: float,
    speed_kph: int,
    course_deg: int,
    satellites: int,
    serial: int,
    valid: bool = True,
) -> bytes:
    """A 0x12 GPS+LBS packet, as a device sends it (the simulator's and the tests')."""
    moment = recorded_at.astimezone(UTC)
    flags = (course_deg & 0x03FF) | (0x1000 if valid else 0)
    if lat >= 0:
        flags |= 0x0400
    if lon < 0:
        flags |= 0x0800
    content = (
        bytes(
            (
                moment.year - 2000,
                moment.month,
                moment.day,
                moment.hour,
                moment.minute,
                moment.second,
                0xC0 | (satellites & 0x0F),
            )
        )
        + round(abs(lat) * 60 * 30000).to_bytes(4, "big")
        + round(abs(lon) * 60 * 30000).to_bytes(4, "big")
        + bytes((min(speed_kph, 255),))
        + flags.to_bytes(2, "big")
        + bytes(8)  # no cell
    )
    return encode(GPS_LBS, content, serial)
