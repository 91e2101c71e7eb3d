"""What a tracker connection does with each decoded frame, per protocol.

A session is bound to the device of its handshake (Teltonika IMEI, GT06 login); everything
the connection sends after that is that device's. Records go into the ingest pipeline and
the device is answered only once they are committed, so a crash before the commit makes the
device send them again (stored once: positions are unique on `(device, ts)`).
"""

import time
from collections import deque
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from fleet_common.logging import get_logger
from fleet_location.ingest import metrics as ingest_metrics
from fleet_location.ingest.devices import MISSING, DirectoryUnavailable
from fleet_location.ingest.parsing import DeviceInfo, Reason, Rejected, build_position
from fleet_location.ingest.writer import RejectionRecord
from fleet_location.positions.model import Position
from fleet_location.trackers import gt06, teltonika
from fleet_location.trackers.errors import ProtocolError, TrackerReason
from fleet_location.trackers.framing import Frame

if TYPE_CHECKING:
    from fleet_location.trackers.server import Connection

log = get_logger(__name__)

REJECTED = ingest_metrics.REJECTED


class Session(Protocol):
    protocol: str
    device: DeviceInfo | None

    async def handle(self, frame: Frame) -> None: ...

    def command_bytes(self, text: str, command_id: str) -> bytes: ...


class _Base:
    protocol = ""

    def __init__(self, connection: "Connection") -> None:
        self.connection = connection
        self.device: DeviceInfo | None = None
        self._dead_lettered_at = 0.0
        # Commands written and not yet answered, oldest first: (our id, the caller's id).
        self.commands_in_flight: deque[tuple[int, str]] = deque(maxlen=32)

    @property
    def pipeline(self):
        return self.connection.server.pipeline

    async def _bind(self, uid: str, raw: bytes) -> bool:
        """Find the device of a handshake: a registered, active device of this protocol."""
        directory = self.connection.server.directory
        device = directory.lookup(uid)
        if device is MISSING:
            try:
                device = await directory.resolve(uid)
            except DirectoryUnavailable:
                # Not refused, only not now: the device tries again on a new connection.
                self.connection.close("directory_unavailable")
                return False
        refusal = None
        if device is None:
            refusal = Rejected(Reason.UNKNOWN_DEVICE, "no device has this IMEI")
        elif not device.active:
            refusal = Rejected(Reason.INACTIVE_DEVICE, "the device is deactivated")
        elif device.protocol != self.protocol:
            refusal = Rejected(
                Reason.INACTIVE_DEVICE, f"the device is registered for {device.protocol}"
            )
        if refusal is not None:
            REJECTED.labels(refusal.reason).inc()
            if self.connection.server.keep_refusal(uid):
                self._dead_letter(refusal.reason, refusal.detail, raw, uid, device)
            return False
        self.device = device
        self.connection.server.bind(uid, self.connection)
        return True

    async def _still_bound(self) -> DeviceInfo | None:
        """The bound device as it is now: a deleted or deactivated one loses its connection."""
        assert self.device is not None
        directory = self.connection.server.directory
        device = directory.lookup(self.device.uid)
        if device is MISSING:
            try:
                device = await directory.resolve(self.device.uid)
            except DirectoryUnavailable:
                return self.device
        if device is None or not device.active:
            reason = Reason.UNKNOWN_DEVICE if device is None else Reason.INACTIVE_DEVICE
            REJECTED.labels(reason).inc()
            self.connection.close(reason)
            return None
        self.device = device
        return device

    def _dead_letter(
        self,
        reason: str,
        detail: str,
        raw: bytes,
        uid: str | None = None,
        device: DeviceInfo | None = None,
    ) -> None:
        """Keep refused bytes for inspection: at most one a second per connection, so a
        device sending garbage in a loop costs a counter, not a row per frame."""
        now = time.monotonic()
        if now - self._dead_lettered_at < 1.0:
            return
        self._dead_lettered_at = now
        bound = device or self.device
        self.pipeline.keep_rejections(
            [
                RejectionRecord(
                    self.protocol,
                    reason,
                    uid or (bound.uid if bound else None),
                    bound.org_id if bound else None,
                    detail,
                    raw,
                )
            ]
        )

    def _build(
        self, device: DeviceInfo, fields: dict[str, Any], raw: bytes, now: datetime
    ) -> Position | RejectionRecord:
        try:
            if fields["lat"] == 0 and fields["lon"] == 0 and fields["attrs"].get("valid") is False:
                raise Rejected(TrackerReason.NO_FIX, "no fix and no last known position")
            return build_position(device, now, self.pipeline.limits, **fields)
        except Rejected as exc:
            REJECTED.labels(exc.reason).inc()
            return RejectionRecord(
                self.protocol, exc.reason, device.uid, device.org_id, exc.detail, raw
            )

    async def _store(self, device: DeviceInfo, fields: list[dict[str, Any]], raw: bytes) -> None:
        now = datetime.now(UTC)
        positions: list[Position] = []
        rejections: list[RejectionRecord] = []
        for item in fields:
            built = self._build(device, item, raw, now)
            (positions if isinstance(built, Position) else rejections).append(built)
        if positions or rejections:
            await self.pipeline.ingest_tracker(self.protocol, positions, rejections)

    def _answered(self, text: str, flag: int | None = None) -> None:
        """A device's answer to a command: matched by flag (GT06) or as the oldest (Codec 12
        carries no id)."""
        match = None
        for item in self.commands_in_flight:
            if flag is None or item[0] == flag:
                match = item
                break
        if match is None or self.device is None:
            ingest_metrics.IGNORED.labels("command_response").inc()
            return
        self.commands_in_flight.remove(match)
        self.connection.server.commands.answered(self.protocol, self.device, match[1], text)


class TeltonikaSession(_Base):
    protocol = "teltonika"

    async def handle(self, frame: Frame) -> None:
        if frame.kind == "imei":
            uid = teltonika.decode_imei(frame.data)
            if await self._bind(uid, frame.data):
                self.connection.write(teltonika.ACCEPT)
            else:
                self.connection.write(teltonika.REFUSE)
                self.connection.close("handshake_refused")
            return
        try:
            teltonika.check_crc(frame.data, frame.crc)
        except ProtocolError as exc:
            # Not answered: the device sends the packet again.
            REJECTED.labels(exc.reason).inc()
            self._dead_letter(exc.reason, exc.detail, frame.data)
            return
        if frame.data[0] == teltonika.CODEC_12:
            self._answered(teltonika.decode_command_response(frame.data))
            return
        device = await self._still_bound()
        if device is None:
            return
        try:
            packet = teltonika.decode_avl(frame.data)
        except ProtocolError as exc:
            # Intact (the CRC holds) but unreadable: kept, and answered, since sending it
            # again cannot help.
            REJECTED.labels(exc.reason).inc()
            record = RejectionRecord(
                self.protocol, exc.reason, device.uid, device.org_id, exc.detail, frame.data
            )
            await self.pipeline.ingest_tracker(self.protocol, [], [record])
            self.connection.write(teltonika.encode_ack(frame.data[1]))
            return
        fields = [teltonika.position_fields(record) for record in packet.records]
        await self._store(device, fields, frame.data)
        self.connection.write(teltonika.encode_ack(len(packet.records)))

    def command_bytes(self, text: str, command_id: str) -> bytes:
        self.commands_in_flight.append((0, command_id))
        return teltonika.encode_command(text)


class Gt06Session(_Base):
    protocol = "gt06"

    def __init__(self, connection: "Connection") -> None:
        super().__init__(connection)
        self.last_fix: tuple[float, float] | None = None
        self._serial = 0
        self._flag = 0

    async def handle(self, frame: Frame) -> None:
        try:
            packet = gt06.parse_packet(frame.data)
        except ProtocolError as exc:
            # Not answered; the device sends it again.
            REJECTED.labels(exc.reason).inc()
            self._dead_letter(exc.reason, exc.detail, frame.data)
            return
        if packet.protocol == gt06.LOGIN:
            uid = gt06.decode_login(packet.content)
            if await self._bind(uid, frame.data):
                self.connection.write(gt06.encode_response(gt06.LOGIN, packet.serial))
            else:
                self.connection.close("handshake_refused")
            return
        if self.device is None:
            raise ProtocolError(TrackerReason.NOT_LOGGED_IN, "a packet before the login")
        device = await self._still_bound()
        if device is None:
            return
        protocol = packet.protocol
        if protocol in gt06.LOCATION_PROTOCOLS:
            fix, attrs = gt06.decode_location(protocol, packet.content)
            await self._store(device, [self._fix_fields(fix, attrs)], frame.data)
        elif protocol in gt06.ALARM_PROTOCOLS:
            fix, attrs = gt06.decode_alarm(packet.content)
            await self._store(device, [self._fix_fields(fix, attrs)], frame.data)
        elif protocol in gt06.STATUS_PROTOCOLS:
            attrs = gt06.decode_status(protocol, packet.content)
            if self.last_fix is not None:
                await self._store(device, [self._status_fields(attrs)], frame.data)
            else:
                ingest_metrics.IGNORED.labels("status").inc()
        elif protocol in (gt06.COMMAND_RESPONSE, gt06.COMMAND_RESPONSE_2):
            flag, text = gt06.decode_command_response(packet.content)
            self._answered(text, flag)
        else:
            ingest_metrics.IGNORED.labels(f"gt06_0x{protocol:02x}").inc()
        if protocol in gt06.ANSWERED:
            self.connection.write(gt06.encode_response(protocol, packet.serial))

    def _fix_fields(self, fix: gt06.Fix, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs["satellites"] = fix.satellites
        if not fix.valid:
            attrs["valid"] = False
        if fix.valid or fix.lat or fix.lon:
            self.last_fix = (fix.lat, fix.lon)
        return {
            "ts": fix.recorded_at.timestamp(),
            "lat": fix.lat,
            "lon": fix.lon,
            "speed_kph": float(fix.speed_kph),
            "heading_deg": float(fix.course_deg) if fix.course_deg <= 360 else None,
            "ignition": attrs.pop("acc", None),
            "battery_pct": attrs.pop("battery_pct", None),
            "attrs": attrs,
        }

    def _status_fields(self, attrs: dict[str, Any]) -> dict[str, Any]:
        """A status or heartbeat packet has no position: it is stored at its arrival time at
        the connection's last fix, flagged not valid (its ACC and battery are current)."""
        assert self.last_fix is not None
        lat, lon = self.last_fix
        attrs["valid"] = False
        return {
            "ts": time.time(),
            "lat": lat,
            "lon": lon,
            "ignition": attrs.pop("acc", None),
            "battery_pct": attrs.pop("battery_pct", None),
            "attrs": attrs,
        }

    def command_bytes(self, text: str, command_id: str) -> bytes:
        self._flag = (self._flag + 1) & 0xFFFFFFFF
        self._serial = (self._serial + 1) & 0xFFFF
        self.commands_in_flight.append((self._flag, command_id))
        return gt06.encode_command(text, self._flag, self._serial)
