"""The latest-position timestamp format: fixed width, UTC, so string order is time order."""

from datetime import UTC, datetime, timedelta, timezone

from fleet_location.ingest.live import iso_utc


def test_every_timestamp_has_six_fraction_digits_and_a_z() -> None:
    assert iso_utc(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)) == "2026-01-02T03:04:05.000000Z"
    assert iso_utc(datetime(2026, 1, 2, 3, 4, 5, 120000, tzinfo=UTC)) == (
        "2026-01-02T03:04:05.120000Z"
    )
    assert iso_utc(datetime(2026, 1, 2, 3, 4, 5, 7, tzinfo=UTC)) == "2026-01-02T03:04:05.000007Z"


def test_other_offsets_are_converted_to_utc() -> None:
    moment = datetime(2026, 1, 2, 3, 4, 5, 7, tzinfo=timezone(timedelta(hours=2)))
    assert iso_utc(moment) == "2026-01-02T01:04:05.000007Z"


def test_string_order_is_time_order() -> None:
    start = datetime(2026, 1, 2, 23, 59, 59, tzinfo=UTC)
    moments = [start + timedelta(microseconds=step) for step in (0, 1, 999_999, 1_000_000)]
    stamps = [iso_utc(m) for m in moments]
    assert stamps == sorted(stamps)
    assert len({len(s) for s in stamps}) == 1
