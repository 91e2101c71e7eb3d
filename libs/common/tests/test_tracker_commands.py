"""What each tracker protocol's command text is, and what it refuses (the vehicle service
refuses the same at `POST /devices/{id}/commands`)."""

import pytest

from fleet_common.tracker_commands import CommandNotExpressible, command_text


@pytest.mark.parametrize(
    ("protocol", "kind", "text"),
    [
        ("teltonika", "engine_stop", "setdigout 1"),
        ("teltonika", "engine_resume", "setdigout 0"),
        ("teltonika", "reboot", "cpureset"),
        ("teltonika", "request_position", "getgps"),
        ("gt06", "engine_stop", "RELAY,1#"),
        ("gt06", "engine_resume", "RELAY,0#"),
        ("gt06", "reboot", "RESET#"),
        ("gt06", "request_position", "WHERE#"),
    ],
)
def test_command_texts(protocol, kind, text):
    assert command_text(protocol, kind, {}) == text


def test_custom_is_sent_as_it_is_within_the_protocol_limits():
    assert command_text("teltonika", "custom", {"payload": "setparam 1000:30"}) == (
        "setparam 1000:30"
    )
    assert command_text("teltonika", "custom", {"payload": "x" * 512}) == "x" * 512
    assert command_text("gt06", "custom", {"payload": "x" * 251}) == "x" * 251
    for protocol, payload in [
        ("teltonika", "x" * 513),
        ("gt06", "x" * 252),
        ("gt06", "RELAY,1#\n"),
        ("teltonika", "caf\u00e9"),
        ("gt06", ""),
    ]:
        with pytest.raises(CommandNotExpressible):
            command_text(protocol, "custom", {"payload": payload})


@pytest.mark.parametrize(
    ("protocol", "kind"),
    [("teltonika", "set_interval"), ("gt06", "set_interval"), ("mqtt", "reboot")],
)
def test_what_a_protocol_cannot_express_is_refused(protocol, kind):
    with pytest.raises(CommandNotExpressible, match=kind):
        command_text(protocol, kind, {})
