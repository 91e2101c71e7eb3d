"""Downlink commands to hardware trackers: the Redis contract and each protocol's command text.

The vehicle service queues a command for a `teltonika`/`gt06` device; the location process
holding the tracker's TCP connection writes it (docs/trackers.md). Both need what is here: the
vehicle service refuses at `POST /devices/{id}/commands` a command the protocol cannot
express, and the location service turns the same command into the text it writes.

- `queue_key(uid)`: a list of the device's waiting commands, JSON `{"id", "type", "params",
  "ts", "expires_at"}`, RPUSHed by the vehicle service (with an EXPIRE, once per command id)
  and LPOPed by the location process holding the connection (at once, or at the device's
  next handshake);
- `COMMANDS_CHANNEL`: pub/sub, the uid of a device with new commands;
- `RESULTS_STREAM`: the location service's outcomes (`id`, `uid`, `device_id`, `org_id`,
  `status`: `delivered` | `acknowledged` | `failed`, `message`), read by the vehicle
  service's replicas in a consumer group.
"""

from collections.abc import Mapping
from typing import Any

TRACKER_PROTOCOLS = frozenset({"teltonika", "gt06"})
COMMANDS_CHANNEL = "fleet:tracker-commands"
RESULTS_STREAM = "fleet:tracker-command-results"

# A GT06 0x80 command carries its length in one byte (4 of them the server flag).
MAX_COMMAND_CHARS = {"teltonika": 512, "gt06": 251}

# What the API's command types are on each protocol. A Teltonika FMB's DOUT1 and a GT06's
# relay are what an installer wires to the starter (engine immobiliser). Neither protocol
# has one text for `set_interval` across models (Teltonika sets it by parameter id through
# `setparam`, per model): it is sent as `custom` with the model's own text.
_TEXTS: dict[str, dict[str, str]] = {
    "teltonika": {
        "engine_stop": "setdigout 1",
        "engine_resume": "setdigout 0",
        "request_position": "getgps",  # answered with the current fix as text
        "reboot": "cpureset",  # not answered: the device restarts
    },
    "gt06": {
        "engine_stop": "RELAY,1#",
        "engine_resume": "RELAY,0#",
        "request_position": "WHERE#",
        "reboot": "RESET#",
    },
}


def queue_key(uid: str) -> str:
    # The uid in braces is the key's hash tag: the vehicle service's push script also uses
    # a per-command key of the same device (Redis Cluster runs a script on one slot).
    return f"{COMMANDS_CHANNEL}:{{{uid}}}"


class CommandNotExpressible(ValueError):
    """The command has no text in the tracker's protocol."""


def command_text(protocol: str, kind: str, params: Mapping[str, Any] | None) -> str:
    """The text a tracker of `protocol` understands for a command; `custom` sends
    `params.payload` as it is (printable ASCII)."""
    kind = str(kind)  # an enum member reads as its value in the messages
    if kind == "custom":
        text = params.get("payload") if isinstance(params, Mapping) else None
    else:
        text = _TEXTS.get(protocol, {}).get(kind)
        if text is None:
            raise CommandNotExpressible(
                f"{protocol} trackers take no {kind!r} command; send it as 'custom' with "
                "the text the tracker's model understands"
            )
    limit = MAX_COMMAND_CHARS.get(protocol, 0)
    if not isinstance(text, str) or not text:
        raise CommandNotExpressible("a custom command needs params.payload")
    if len(text) > limit or not text.isascii() or not text.isprintable():
        raise CommandNotExpressible(
            f"a {protocol} command is printable ASCII of at most {limit} characters"
        )
    return text
