"""Poison events: an entry that keeps failing goes to the dead-letter table after
NOTIFICATION_MAX_EVENT_ATTEMPTS (3 here) deliveries, is acknowledged, counted, and listed to
its org's admins; an unreadable one to operators only."""

import uuid

import pytest

from fleet_common.redis import EVENTS_GROUP, EVENTS_STREAM
from fleet_notification.dead_letters import service as dead_letters

from .conftest import INTERNAL_TOKEN, eventually, make_event, publish
from .test_alerts import alerts_of, assert_problem, create_rule

pytestmark = pytest.mark.usefixtures("notification")

INTERNAL = {"X-Internal-Token": INTERNAL_TOKEN}


async def dead_lettered_total(client, reason: str) -> float:
    text = (await client.get("/metrics")).text
    line = f'notification_events_dead_lettered_total{{reason="{reason}"}} '
    found = [row for row in text.splitlines() if row.startswith(line)]
    return float(found[0].split()[-1]) if found else 0.0


async def pending_ids(redis) -> set[str]:
    rows = await redis.xpending_range(EVENTS_STREAM, EVENTS_GROUP, min="-", max="+", count=10_000)
    return {row["message_id"].decode() for row in rows}


async def test_an_event_the_database_keeps_refusing_is_dead_lettered(notification, make_org):
    client, app, redis = notification
    org, other = make_org(), make_org()
    await create_rule(client, org, cooldown_s=0)
    before = await dead_lettered_total(client, "failing")
    # A real failure on the database side: PostgreSQL's jsonb cannot hold U+0000, so the
    # alert's insert fails every time the event is tried.
    poison = make_event(org.org_id, details={"note": "a NUL \u0000 in the details"})
    good = make_event(org.org_id)
    await publish(redis, poison, good)
    poison_entry = (await redis.xrevrange(EVENTS_STREAM, count=2))[1][0].decode()

    # The entry behind it is not held up.
    await eventually(lambda: alerts_of(app, org.org_id, event_id=uuid.UUID(good["id"])))

    async def listed():
        response = await client.get("/api/v1/event-dead-letters", headers=org.headers("admin"))
        assert response.status_code == 200, response.text
        return response.json()["items"]

    [letter] = await eventually(listed, timeout_s=20)
    assert letter["event_id"] == poison["id"]
    assert letter["entry_id"] == poison_entry
    assert letter["org_id"] == org.org_id
    assert letter["event_type"] == "overspeed"
    assert letter["reason"] == "failing"
    assert letter["attempts"] == 3
    assert "Unicode" in letter["last_error"]
    assert poison["id"] in letter["raw"]
    # Acknowledged: no longer pending, never claimed again; counted; no alert.
    assert poison_entry not in await pending_ids(redis)
    assert await dead_lettered_total(client, "failing") == before + 1
    assert await alerts_of(app, org.org_id, event_id=uuid.UUID(poison["id"])) == []

    # Admins of the org only.
    for role in ("dispatcher", "viewer"):
        assert_problem(
            await client.get("/api/v1/event-dead-letters", headers=org.headers(role)), 403
        )
    theirs = await client.get("/api/v1/event-dead-letters", headers=other.headers("admin"))
    assert theirs.json()["items"] == []
    assert_problem(await client.get("/api/v1/event-dead-letters"), 401)
    for params in ({"limit": 0}, {"limit": 501}, {"offset": -1}):
        response = await client.get(
            "/api/v1/event-dead-letters", params=params, headers=org.headers("admin")
        )
        assert_problem(response, 422)

    # Operators see it through the internal route, filtered by org.
    by_org = await client.get(
        "/internal/event-dead-letters", params={"org_id": org.org_id}, headers=INTERNAL
    )
    assert [i["event_id"] for i in by_org.json()["items"]] == [poison["id"]]


async def test_an_unreadable_entry_is_for_operators_only(notification, make_org):
    client, _app, redis = notification
    org = make_org()
    before = await dead_lettered_total(client, "malformed")
    marker = uuid.uuid4().hex
    claimed_org = {**make_event(org.org_id), "type": "explosion", "marker": marker}
    await redis.xadd(EVENTS_STREAM, {"event": f'{{"broken": "{marker}"'})
    await publish(redis, claimed_org)

    async def unowned():
        response = await client.get(
            "/internal/event-dead-letters",
            params={"unowned": "true", "limit": 500},
            headers=INTERNAL,
        )
        assert response.status_code == 200, response.text
        items = [i for i in response.json()["items"] if marker in i["raw"]]
        return items if len(items) == 2 else None

    letters = await eventually(unowned)
    assert {i["reason"] for i in letters} == {"malformed"}
    assert all(i["org_id"] is None and i["attempts"] == 1 for i in letters)
    assert await dead_lettered_total(client, "malformed") >= before + 2
    # An entry that only claims an org is not shown to that org's admins.
    mine = await client.get("/api/v1/event-dead-letters", headers=org.headers("admin"))
    assert mine.json()["items"] == []
    for headers in ({}, {"X-Internal-Token": "wrong"}, org.headers("admin")):
        response = await client.get("/internal/event-dead-letters", headers=headers)
        assert_problem(response, 403)
    assert_problem(
        await client.get(
            "/internal/event-dead-letters", params={"org_id": "nope"}, headers=INTERNAL
        ),
        422,
    )


async def test_the_dead_letter_table_is_bounded(notification):
    _client, app, _redis = notification
    for n in range(4):
        async with app.state.sessionmaker() as session:
            await dead_letters.store(
                session,
                entry_id=f"0-{n}",
                fields={b"event": b"\x00\xff" + str(n).encode()},
                org_id=None,
                event_id=None,
                event_type=None,
                reason="malformed",
                attempts=1,
                error=f"error {n}\x00",
                max_rows=2,
            )
            await session.commit()
    async with app.state.sessionmaker() as session:
        rows = (await dead_letters.list_dead_letters(session, org_id=None, limit=10, offset=0))[0]
    assert [r.entry_id for r in rows] == ["0-3", "0-2"]
    assert rows[0].last_error == "error 3\\u0000"
