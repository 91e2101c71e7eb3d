"""Simulated Teltonika and GT06 hardware for `fleet-sim --protocol teltonika|gt06`: one TCP
connection per vehicle, speaking the protocol as the devices do (blocking sockets: the
simulator ticks all its vehicles from one thread).

Both obey the server's commands (Teltonika Codec 12, GT06 0x80) as the real devices do and
answer them (Codec 12 response, GT06 0x15 with the command's server flag): the relay
commands stop and release the engine, the position request is answered with the fix, and a
reboot is not answered (the device restarts: the link drops and is made again).
"""

import secrets
import select
import socket
from datetime import UTC, datetime

from fleet_common.tracker_commands import CommandNotExpressible, command_text
from fleet_location.trackers import gt06, teltonika
from fleet_location.trackers.framing import Gt06Framer

# The command types with a text of their own on each protocol (the rest are `custom`).
_KINDS = ("engine_stop", "engine_resume", "request_position", "reboot")

TCP_PROTOCOLS = ("teltonika", "gt06")
DEFAULT_PORTS = {"teltonika": 5027, "gt06": 5023}


def new_imei() -> str:
    """A fresh IMEI-like uid (not from the seeded generator: a re-run must not collide)."""
    return "35" + "".join(str(secrets.randbelow(10)) for _ in range(13))


class TcpTracker:
    def __init__(self, protocol: str, uid: str, host: str, port: int) -> None:
        self.protocol = protocol
        self.uid = uid
        self.host = host
        self.port = port
        self.sock: socket.socket | None = None
        self.serial = 0
        # GT06: what the server sent and is not read yet (a command may follow the login
        # answer at once, and comes unprompted later).
        self._inbound = bytearray()
        self._framer = Gt06Framer(65_536)

    def connect(self) -> None:
        sock = socket.create_connection((self.host, self.port), timeout=30)
        self._inbound.clear()
        if self.protocol == "teltonika":
            sock.sendall(teltonika.encode_imei(self.uid))
            if _read(sock, 1) != teltonika.ACCEPT:
                raise ConnectionError(f"the server refused IMEI {self.uid}")
        else:
            sock.sendall(gt06.encode_login(self.uid, self._next_serial()))
            while True:  # the server closes the connection on a refused login
                frame = self._framer.next_frame(self._inbound)
                if frame is not None and gt06.parse_packet(frame.data).protocol == gt06.LOGIN:
                    break
                if frame is None:
                    self._inbound += _read(sock, 1, at_most=4096)
        self.sock = sock

    def poll(self, car) -> None:
        """Answer the GT06 commands the server sent since the last tick (a Teltonika's come
        ahead of an acknowledgement and are answered in `send`)."""
        if self.protocol != "gt06" or self.sock is None:
            return
        try:
            while select.select([self.sock], [], [], 0)[0]:
                chunk = self.sock.recv(4096)
                if not chunk:
                    raise ConnectionError("the server closed the connection")
                self._inbound += chunk
            while (frame := self._framer.next_frame(self._inbound)) is not None:
                packet = gt06.parse_packet(frame.data)
                if packet.protocol != gt06.SERVER_COMMAND:
                    continue  # the server's answers to our packets
                flag, text = gt06.decode_command(packet.content)
                answer = obey(car, "gt06", text)
                if answer is None:
                    self.close()  # rebooting
                    return
                self.sock.sendall(gt06.encode_command_response(answer, flag, self._next_serial()))
        except OSError:
            self.close()  # made again at the next send

    def _next_serial(self) -> int:
        self.serial = (self.serial + 1) & 0xFFFF
        return self.serial

    def send(self, car) -> None:
        """One position of `car` (a cli.Car); reconnects once if the link dropped."""
        for attempt in (1, 2):
            try:
                if self.sock is None:
                    self.connect()
                assert self.sock is not None
                self._send(car)
                return
            except OSError:
                self.close()
                if attempt == 2:
                    raise

    def _send(self, car) -> None:
        assert self.sock is not None
        now = datetime.now(UTC)
        if self.protocol == "gt06":
            self.sock.sendall(
                gt06.encode_location(
                    recorded_at=now,
                    lat=car.lat,
                    lon=car.lon,
                    speed_kph=round(car.speed_kph),
                    course_deg=round(car.heading_deg) % 360,
                    satellites=9,
                    serial=self._next_serial(),
                )
            )
            return
        record = teltonika.AvlRecord(
            recorded_at=now,
            priority=0,
            lon=car.lon,
            lat=car.lat,
            altitude_m=10,
            angle_deg=round(car.heading_deg) % 360,
            satellites=9,
            speed_kph=round(car.speed_kph),
            event_io=0,
            io={
                teltonika.IO_IGNITION: int(car.ignition),
                teltonika.IO_BATTERY_PCT: round(car.battery_pct),
                teltonika.IO_TOTAL_ODOMETER_M: round(car.odometer_km * 1000),
            },
        )
        self.sock.sendall(teltonika.encode_avl([record]))
        while True:
            answer = _read(self.sock, 4)
            if answer != b"\x00\x00\x00\x00":
                return  # the record count: committed
            # A Codec 12 command came first: take it and answer as a device does.
            size = int.from_bytes(_read(self.sock, 4), "big")
            data = _read(self.sock, size + 4)[:size]
            answer = obey(car, "teltonika", data[7:-1].decode("ascii", errors="replace"))
            if answer is None:
                self.close()  # rebooting: this record's answer is lost, the next is sent
                return
            self.sock.sendall(teltonika.encode_command_response(answer))

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def obey(car, protocol: str, text: str) -> str | None:
    """Carry out a command's text on `car` (a cli.Car); the device's answer, in the words of
    the real devices' replies, or None for a reboot (not answered)."""
    kind = next((k for k in _KINDS if _text_of(protocol, k) == text.strip()), None)
    if kind is None:
        # A custom command: real devices answer what they do not know with an error text.
        return f"Unknown command: {text}"
    if kind == "reboot":
        return None
    car.obey({"type": kind})
    if kind == "request_position":
        return _position_text(car, protocol)
    stopped = kind == "engine_stop"
    if protocol == "teltonika":
        return f"DOUT1:{int(stopped)} DOUT2:0"
    return "Cut off the fuel supply: Success!" if stopped else "Restore fuel supply: Success!"


def _text_of(protocol: str, kind: str) -> str | None:
    try:
        return command_text(protocol, kind, None)
    except CommandNotExpressible:
        return None


def _position_text(car, protocol: str) -> str:
    now = datetime.now(UTC)
    if protocol == "teltonika":
        return (
            f"GPS:1 Sat:9 Lat:{car.lat:.6f} Long:{car.lon:.6f} Alt:10 "
            f"Speed:{round(car.speed_kph)} Dir:{round(car.heading_deg) % 360} "
            f"Date: {now:%Y/%m/%d} Time: {now:%H:%M:%S}"
        )
    return (
        f"Lat:{'N' if car.lat >= 0 else 'S'}{abs(car.lat):.6f},"
        f"Lon:{'E' if car.lon >= 0 else 'W'}{abs(car.lon):.6f},"
        f"Course:{car.heading_deg % 360:.2f},Speed:{car.speed_kph:.2f},"
        f"DateTime:{now:%Y-%m-%d %H:%M:%S}"
    )


def _read(sock: socket.socket, size: int, at_most: int | None = None) -> bytes:
    """`size` bytes (or, with `at_most`, at least `size` and what else has come, up to it)."""
    data = b""
    while len(data) < size:
        chunk = sock.recv((at_most or size) - len(data))
        if not chunk:
            raise ConnectionError("the server closed the connection")
        data += chunk
    return data
