"""Cutting whole frames out of a tracker's byte stream, apart from what the frames mean.

A framer is fed the connection's buffer (a bytearray) and takes whole frames off its front,
leaving a partial frame in place for the next read. Bytes that cannot start a frame are
skipped up to the next frame start and counted in `skipped` (the caller counts them as a
rejection and closes a connection that sends too many); a frame longer than allowed raises
`ProtocolError` (the caller closes the connection: its stream cannot be trusted).
"""

from dataclasses import dataclass

from fleet_location.trackers import gt06
from fleet_location.trackers.errors import ProtocolError, TrackerReason

_TELTONIKA_PREAMBLE = b"\x00\x00\x00\x00"
MAX_IMEI_BYTES = 17


@dataclass(slots=True)
class Frame:
    kind: str  # "imei" or "avl" (Teltonika), "packet" (GT06)
    data: bytes  # the IMEI; the AVL data field; the whole GT06 frame
    crc: bytes = b""  # Teltonika: the 4-byte CRC field after the data


class TeltonikaFramer:
    """The IMEI handshake (2-byte length + ASCII), then AVL packets: 4 zero bytes, 4-byte
    data length, data, 4-byte CRC."""

    def __init__(self, max_frame_bytes: int) -> None:
        self.max_frame_bytes = max_frame_bytes
        self.handshake_done = False
        self.skipped = 0

    def next_frame(self, buffer: bytearray) -> Frame | None:
        if not self.handshake_done:
            if len(buffer) < 2:
                return None
            size = int.from_bytes(buffer[:2], "big")
            if not 1 <= size <= MAX_IMEI_BYTES:
                raise ProtocolError(TrackerReason.MALFORMED_FRAME, "not an IMEI handshake")
            if len(buffer) < 2 + size:
                return None
            imei = bytes(buffer[2 : 2 + size])
            del buffer[: 2 + size]
            self.handshake_done = True
            return Frame("imei", imei)
        self._resync(buffer)
        if len(buffer) < 8:
            return None
        size = int.from_bytes(buffer[4:8], "big")
        if size > self.max_frame_bytes:
            raise ProtocolError(TrackerReason.FRAME_TOO_LARGE, f"a {size}-byte packet")
        if size < 3:
            raise ProtocolError(TrackerReason.MALFORMED_FRAME, "an AVL packet of under 3 bytes")
        end = 8 + size + 4
        if len(buffer) < end:
            return None
        frame = Frame("avl", bytes(buffer[8 : 8 + size]), bytes(buffer[8 + size : end]))
        del buffer[:end]
        return frame

    def _resync(self, buffer: bytearray) -> None:
        """Drop bytes before the next 4-zero-byte preamble (keeping a possible start of one)."""
        if buffer[:4] == _TELTONIKA_PREAMBLE or not buffer:
            return
        at = buffer.find(_TELTONIKA_PREAMBLE)
        if at < 0:
            # Keep a trailing run of zeros: it may be the start of a preamble.
            keep = len(buffer) - len(buffer.rstrip(b"\x00"))
            at = len(buffer) - min(keep, 3)
            if at == 0:
                return
        self.skipped += at
        del buffer[:at]


class Gt06Framer:
    """`78 78 <len:1>` or `79 79 <len:2>` .. `0D 0A`; resynchronises on the start bytes."""

    def __init__(self, max_frame_bytes: int) -> None:
        self.max_frame_bytes = max_frame_bytes
        self.skipped = 0

    def next_frame(self, buffer: bytearray) -> Frame | None:
        while True:
            self._resync(buffer)
            if len(buffer) < 5:
                return None
            if buffer[:2] == gt06.SHORT_START:
                end = 3 + buffer[2] + 2
            else:
                size = int.from_bytes(buffer[2:4], "big")
                if size > self.max_frame_bytes:
                    raise ProtocolError(TrackerReason.FRAME_TOO_LARGE, f"a {size}-byte packet")
                end = 4 + size + 2
            if len(buffer) < end:
                return None
            if buffer[end - 2 : end] != gt06.STOP or end < 10:
                # Start bytes that are not a frame's: skip them and look again.
                self.skipped += 2
                del buffer[:2]
                continue
            frame = Frame("packet", bytes(buffer[:end]))
            del buffer[:end]
            return frame

    def _resync(self, buffer: bytearray) -> None:
        if buffer[:2] not in (gt06.SHORT_START, gt06.LONG_START) and len(buffer) >= 2:
            found = [
                at
                for at in (buffer.find(gt06.SHORT_START), buffer.find(gt06.LONG_START))
                if at >= 0
            ]
            # None found: keep the last byte, which may be the first of a start pair.
            at = min(found) if found else len(buffer) - (buffer[-1] in (0x78, 0x79))
            self.skipped += at
            del buffer[:at]
        # A start byte of garbage right before a frame reads as `78 78 78`: take the later
        # pair (a short frame of 0x78 = 120 bytes is far longer than any GT06 packet).
        while buffer[:3] in (b"\x78\x78\x78", b"\x79\x79\x79"):
            self.skipped += 1
            del buffer[:1]
