"""Simulated Teltonika and GT06 hardware for `fleet-sim --protocol teltonika|gt06`: one TCP
connection per vehicle, speaking the protocol as the devices do (blocking sockets: the
simulator ticks all its vehicles from one thread)."""

import secrets
import socket
from datetime import UTC, datetime

from fleet_location.trackers import gt06, teltonika

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

    def connect(self) -> None:
        sock = socket.create_connection((self.host, self.port), timeout=30)
        if self.protocol == "teltonika":
            sock.sendall(teltonika.encode_imei(self.uid))
            if _read(sock, 1) != teltonika.ACCEPT:
                raise ConnectionError(f"the server refused IMEI {self.uid}")
        else:
            sock.sendall(gt06.encode_login(self.uid, self._next_serial()))
            _read(sock, 10)
        self.sock = sock

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
            text = data[7:-1].decode("ascii", errors="replace")
            self.sock.sendall(teltonika.encode_command_response(f"{text}: OK"))

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def _read(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("the server closed the connection")
        data += chunk
    return data
