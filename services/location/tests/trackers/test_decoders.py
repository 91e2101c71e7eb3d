"""The decoders and framers on their own: the issue's frames, round trips, and fuzzing.

The same frames go through a real TCP connection into the database in test_listeners.py;
here each field is checked exactly, and hypothesis throws arbitrary bytes at every entry
point: each must answer with frames, None or `ProtocolError`, never anything else.
"""

import contextlib
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleet_location.trackers import gt06, teltonika
from fleet_location.trackers.errors import ProtocolError, TrackerReason
from fleet_location.trackers.framing import Gt06Framer, TeltonikaFramer

from .frames import (
    GT06_HEARTBEAT,
    GT06_LOCATION,
    GT06_LOGIN,
    GT06_STATUS,
    TELTONIKA_CODEC8,
    TELTONIKA_CODEC8E,
    TELTONIKA_HANDSHAKE,
)

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def teltonika_frames(hex_stream: str) -> list:
    framer = TeltonikaFramer(65_536)
    buffer = bytearray(bytes.fromhex(hex_stream))
    frames = []
    while (frame := framer.next_frame(buffer)) is not None:
        frames.append(frame)
    return frames


def test_teltonika_handshake_and_codec8_record():
    imei, avl = teltonika_frames(TELTONIKA_HANDSHAKE + TELTONIKA_CODEC8)
    assert teltonika.decode_imei(imei.data) == "123456789012345"
    teltonika.check_crc(avl.data, avl.crc)
    packet = teltonika.decode_avl(avl.data)
    assert packet.codec == teltonika.CODEC_8
    (record,) = packet.records
    assert record.recorded_at == datetime(2019, 1, 4, 12, 27, 19, tzinfo=UTC)
    assert (record.lat, record.lon) == (48.1523066, 16.3745183)
    assert (record.altitude_m, record.angle_deg, record.satellites, record.speed_kph) == (
        190,
        198,
        15,
        83,
    )
    assert record.io[240] == 1
    assert record.io[66] == 14233
    assert record.io[67] == 3976
    fields = teltonika.position_fields(record)
    assert fields["attrs"]["movement"] is True
    assert fields["attrs"]["external_voltage_mv"] == 14233
    assert fields["attrs"]["battery_voltage_mv"] == 3976
    assert fields["odometer_km"] == record.io[16] / 1000
    assert teltonika.encode_ack(len(packet.records)) == bytes.fromhex("00000001")


def test_teltonika_codec8_extended_with_a_variable_length_vin():
    (_imei, avl) = teltonika_frames(TELTONIKA_HANDSHAKE + TELTONIKA_CODEC8E)
    teltonika.check_crc(avl.data, avl.crc)
    packet = teltonika.decode_avl(avl.data)
    assert packet.codec == teltonika.CODEC_8E
    (record,) = packet.records
    assert record.recorded_at == datetime(2021, 4, 8, 10, 52, 26, tzinfo=UTC)
    assert (record.lat, record.lon, record.speed_kph) == (52.0296716, 6.7877833, 19)
    fields = teltonika.position_fields(record)
    assert fields["ignition"] is True
    assert fields["attrs"]["external_voltage_mv"] == 14304
    assert fields["attrs"]["io_256"] == "WV1ZZZ2EZ86015388"


def test_teltonika_crc_failure_is_a_bad_crc():
    (_imei, avl) = teltonika_frames(TELTONIKA_HANDSHAKE + TELTONIKA_CODEC8)
    corrupted = avl.data[:-5] + bytes((avl.data[-5] ^ 0xFF,)) + avl.data[-4:]
    with pytest.raises(ProtocolError) as caught:
        teltonika.check_crc(corrupted, avl.crc)
    assert caught.value.reason == TrackerReason.BAD_CRC


def test_teltonika_codec12_command_matches_the_documented_getinfo_packet():
    # Teltonika's Codec 12 documentation: "getinfo".
    assert teltonika.encode_command("getinfo") == bytes.fromhex(
        "000000000000000F0C010500000007676574696E666F0100004312"
    )
    engine_stop = teltonika.encode_command("setdigout 1")
    data = engine_stop[8:-4]
    teltonika.check_crc(data, engine_stop[-4:])
    response = teltonika.encode_command_response("OK")
    teltonika.check_crc(response[8:-4], response[-4:])
    assert teltonika.decode_command_response(response[8:-4]) == "OK"


def test_teltonika_encoder_round_trips_a_backlog():
    moment = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
    records = [
        teltonika.AvlRecord(
            recorded_at=moment.replace(second=i),
            priority=0,
            lon=round(106.7 + i / 1e4, 7),
            lat=round(-10.77 - i / 1e4, 7),
            altitude_m=-12,
            angle_deg=270,
            satellites=9,
            speed_kph=40 + i,
            event_io=0,
            io={239: 1, 16: 123_456_789, 66: 12_500},
        )
        for i in range(50)
    ]
    packet = teltonika.encode_avl(records)
    (avl,) = teltonika_frames(teltonika.encode_imei("356307042441013").hex() + packet.hex())[1:]
    teltonika.check_crc(avl.data, avl.crc)
    assert teltonika.decode_avl(avl.data).records == records


def gt06_packets(hex_stream: str) -> list[gt06.Packet]:
    framer = Gt06Framer(4096)
    buffer = bytearray(bytes.fromhex(hex_stream))
    packets = []
    while (frame := framer.next_frame(buffer)) is not None:
        packets.append(gt06.parse_packet(frame.data))
    return packets


def test_gt06_login_answered_with_its_serial():
    (login,) = gt06_packets(GT06_LOGIN)
    assert login.protocol == gt06.LOGIN
    assert gt06.decode_login(login.content) == "123456789012345"
    assert login.serial == 0x0001
    answer = gt06.encode_response(gt06.LOGIN, login.serial)
    assert answer[:6] == bytes.fromhex("787805010001")
    assert answer[-2:] == b"\r\n"
    assert gt06.parse_packet(answer).protocol == gt06.LOGIN


def test_gt06_location_0x12():
    (packet,) = gt06_packets(GT06_LOCATION)
    fix, attrs = gt06.decode_location(packet.protocol, packet.content)
    assert fix.recorded_at == datetime(2015, 10, 20, 14, 21, 11, tzinfo=UTC)
    assert fix.valid is True
    assert round(fix.lat, 5) == 54.94535
    assert round(fix.lon, 5) == 24.01762
    assert attrs["mcc"] == 246


def test_gt06_status_and_heartbeat():
    (status,) = gt06_packets(GT06_STATUS)
    assert (status.protocol, status.serial) == (gt06.STATUS, 0x01BA)
    attrs = gt06.decode_status(status.protocol, status.content)
    assert attrs["charging"] is True
    assert attrs["acc"] is False
    assert attrs["battery_pct"] == 100
    assert attrs["gsm_signal"] == 4
    (heartbeat,) = gt06_packets(GT06_HEARTBEAT)
    assert (heartbeat.protocol, heartbeat.serial) == (gt06.HEARTBEAT, 0x0008)
    attrs = gt06.decode_status(heartbeat.protocol, heartbeat.content)
    assert attrs["battery_voltage_mv"] == 2900
    assert attrs["gsm_signal"] == 4


@pytest.mark.parametrize(
    ("code", "alarm"),
    [(0x01, "sos"), (0x02, "power_cut"), (0x03, "vibration"), (0x06, "overspeed")],
)
def test_gt06_alarm_packets(code, alarm):
    (location,) = gt06_packets(GT06_LOCATION)
    gps = location.content[:18]
    lbs = bytes((9,)) + location.content[18:26]
    for protocol in (gt06.ALARM, gt06.ALARM_2):
        content = gps + lbs + bytes((0x46, 0x04, 0x03, code, 0x02))
        packet = gt06.parse_packet(gt06.encode(protocol, content, 7))
        fix, attrs = gt06.decode_alarm(packet.content)
        assert attrs["alarm"] == alarm
        assert attrs["acc"] is True
        assert fix.valid


def test_gt06_garbage_before_a_frame_is_skipped_and_counted():
    framer = Gt06Framer(4096)
    buffer = bytearray(b"\x00\x01HELLO\x78" + bytes.fromhex(GT06_LOGIN))
    frame = framer.next_frame(buffer)
    assert frame is not None
    assert gt06.parse_packet(frame.data).protocol == gt06.LOGIN
    assert framer.skipped == 8


def test_gt06_bad_crc_and_server_command():
    broken = bytearray(bytes.fromhex(GT06_LOGIN))
    broken[-4] ^= 0x01
    with pytest.raises(ProtocolError) as caught:
        gt06.parse_packet(bytes(broken))
    assert caught.value.reason == TrackerReason.BAD_CRC
    command = gt06.parse_packet(gt06.encode_command("RELAY,1#", 42, 3))
    assert command.protocol == gt06.SERVER_COMMAND
    assert command.serial == 3
    assert command.content == bytes((12,)) + (42).to_bytes(4, "big") + b"RELAY,1#"
    flag, text = gt06.decode_command_response(bytes((8,)) + (42).to_bytes(4, "big") + b"OK!")
    assert (flag, text) == (42, "OK!")


def test_gt06_device_reads_a_command_and_answers_with_its_flag_and_the_language():
    """The simulator's side: the 0x80 command read as a device does, and its 0x15 answer
    (length, the server flag back, text, language 0x0002) as the server decodes it."""
    command = gt06.parse_packet(gt06.encode_command("WHERE#", 7, 9))
    assert gt06.decode_command(command.content) == (7, "WHERE#")
    answer = gt06.parse_packet(gt06.encode_command_response("Lat:N10.776900", 7, 4))
    assert (answer.protocol, answer.serial) == (gt06.COMMAND_RESPONSE, 4)
    assert answer.content == bytes((4 + 14,)) + (7).to_bytes(4, "big") + b"Lat:N10.776900\x00\x02"
    assert gt06.decode_command_response(answer.content) == (7, "Lat:N10.776900")


def test_oversized_lengths_are_refused_before_the_bytes_arrive():
    framer = TeltonikaFramer(1024)
    framer.handshake_done = True
    with pytest.raises(ProtocolError) as caught:
        framer.next_frame(bytearray(b"\x00\x00\x00\x00\x7f\xff\xff\xff"))
    assert caught.value.reason == TrackerReason.FRAME_TOO_LARGE
    with pytest.raises(ProtocolError) as caught:
        Gt06Framer(1024).next_frame(bytearray(b"\x79\x79\xff\xff\x01"))
    assert caught.value.reason == TrackerReason.FRAME_TOO_LARGE


# ------------------------------------------------------------------------------ fuzzing


def _drain(framer, data: bytes) -> list:
    buffer = bytearray(data)
    frames = []
    try:
        while (frame := framer.next_frame(buffer)) is not None:
            frames.append(frame)
    except ProtocolError:
        pass
    assert len(buffer) <= len(data)
    return frames


def _mutations(frames_hex: list[str]):
    base = st.sampled_from([bytes.fromhex(h) for h in frames_hex])
    return st.one_of(
        st.binary(max_size=600),
        st.tuples(base, st.integers(0, 400), st.integers(0, 255)).map(
            lambda t: (
                t[0][: t[1] % (len(t[0]) + 1)] + bytes((t[2],)) + t[0][t[1] % (len(t[0]) + 1) + 1 :]
            )
        ),
        st.tuples(base, st.integers(0, 400)).map(lambda t: t[0][: t[1] % (len(t[0]) + 1)]),
    )


@FUZZ
@given(_mutations([TELTONIKA_CODEC8, TELTONIKA_CODEC8E]))
def test_fuzz_teltonika_decoder(data):
    framer = TeltonikaFramer(65_536)
    framer.handshake_done = True
    for frame in _drain(framer, data):
        with contextlib.suppress(ProtocolError):
            teltonika.check_crc(frame.data, frame.crc)
        try:
            packet = teltonika.decode_avl(frame.data)
        except ProtocolError:
            continue
        for record in packet.records:
            teltonika.position_fields(record)
    try:
        packet = teltonika.decode_avl(data)
        for record in packet.records:
            teltonika.position_fields(record)
    except ProtocolError:
        pass


@FUZZ
@given(_mutations([GT06_LOGIN, GT06_LOCATION, GT06_STATUS, GT06_HEARTBEAT]))
def test_fuzz_gt06_decoder(data):
    for frame in _drain(Gt06Framer(4096), data):
        try:
            packet = gt06.parse_packet(frame.data)
        except ProtocolError:
            continue
        for decode in (
            lambda p: gt06.decode_login(p.content),
            lambda p: gt06.decode_location(p.protocol, p.content),
            lambda p: gt06.decode_status(p.protocol, p.content),
            lambda p: gt06.decode_alarm(p.content),
            lambda p: gt06.decode_command_response(p.content),
        ):
            with contextlib.suppress(ProtocolError):
                decode(packet)
    for content_decoder in (gt06.decode_alarm, gt06.decode_command_response, gt06.decode_login):
        with contextlib.suppress(ProtocolError):
            content_decoder(data)
    for protocol in (gt06.GPS_LBS, gt06.GPS_LBS_2, gt06.GPS_4G, gt06.STATUS, gt06.HEARTBEAT):
        with contextlib.suppress(ProtocolError):
            gt06.decode_location(protocol, data)
        with contextlib.suppress(ProtocolError):
            gt06.decode_status(protocol, data)
