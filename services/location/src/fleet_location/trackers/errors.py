"""Why a tracker's bytes or connection were refused: each a `telemetry_rejected_total` reason."""


class TrackerReason:
    BAD_CRC = "bad_crc"
    MALFORMED_FRAME = "malformed_frame"
    UNSUPPORTED_CODEC = "unsupported_codec"
    FRAME_TOO_LARGE = "frame_too_large"
    GARBAGE = "garbage_before_frame"
    BUFFER_OVERFLOW = "buffer_overflow"
    READ_TIMEOUT = "read_timeout"
    HANDSHAKE_TIMEOUT = "handshake_timeout"
    NOT_LOGGED_IN = "not_logged_in"
    TOO_MANY_CONNECTIONS = "too_many_connections"
    TOO_MANY_FROM_SOURCE = "too_many_connections_from_source"
    NO_FIX = "no_fix"

    ALL = (
        BAD_CRC,
        MALFORMED_FRAME,
        UNSUPPORTED_CODEC,
        FRAME_TOO_LARGE,
        GARBAGE,
        BUFFER_OVERFLOW,
        READ_TIMEOUT,
        HANDSHAKE_TIMEOUT,
        NOT_LOGGED_IN,
        TOO_MANY_CONNECTIONS,
        TOO_MANY_FROM_SOURCE,
        NO_FIX,
    )


class ProtocolError(Exception):
    """Bytes a decoder or framer cannot take."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
