"""Field types with the rules every schema of the service shares."""

import re
from typing import Annotated

from pydantic import AfterValidator, Field, StringConstraints

# Printable text without control characters; trimmed; bounded.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _no_control_chars(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError("must not contain control characters")
    return value


def text_field(max_length: int, min_length: int = 1):
    return Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=min_length, max_length=max_length),
        AfterValidator(_no_control_chars),
    ]


Name = text_field(120)
ShortText = text_field(60)
Notes = Annotated[
    str, StringConstraints(max_length=2000), Field(description="Free text, up to 2000 characters")
]

# A device uid is its broker username and a topic segment: no `/`, `+`, `#`, spaces or `$`.
DEVICE_UID_PATTERN = r"^[A-Za-z0-9_-]{3,64}$"
DeviceUid = Annotated[
    str,
    StringConstraints(pattern=DEVICE_UID_PATTERN),
    Field(description="IMEI or serial; letters, digits, `_` and `-`, 3 to 64 characters"),
]

# ISO 3779: 17 characters, digits and capital letters except I, O and Q. The check digit
# (position 9) is mandatory only in North America, so it is not enforced.
_VIN = re.compile(r"^[A-HJ-NPR-Z0-9]{17}$")


def _valid_vin(value: str) -> str:
    value = value.strip().upper()
    if not _VIN.match(value):
        raise ValueError("a VIN has 17 characters: digits and letters other than I, O and Q")
    return value


Vin = Annotated[str, StringConstraints(max_length=32), AfterValidator(_valid_vin)]

_PLATE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 .\-]{0,19}$")


def _valid_plate(value: str) -> str:
    value = " ".join(value.split()).upper()
    if not _PLATE.match(value):
        raise ValueError("a plate has up to 20 letters, digits, spaces, dots and dashes")
    return value


Plate = Annotated[str, StringConstraints(max_length=40), AfterValidator(_valid_plate)]
Tag = text_field(40)
