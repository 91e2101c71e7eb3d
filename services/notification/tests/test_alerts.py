"""From a `fleet:events` entry to alerts and in-app delivery; the alerts and rules API."""

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from fleet_common.redis import live_channel
from fleet_notification.models import Alert, Delivery

from .conftest import eventually, make_event, publish

pytestmark = pytest.mark.usefixtures("notification")


def assert_problem(response, status):
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    return response.json()


async def alerts_of(app, org_id, **where) -> list[Alert]:
    async with app.state.sessionmaker() as session:
        query = select(Alert).where(Alert.org_id == uuid.UUID(str(org_id)))
        for key, value in where.items():
            query = query.where(getattr(Alert, key) == value)
        return list(await session.scalars(query))


@pytest.fixture(scope="module")
def org(make_org):
    return make_org()


@pytest.fixture(scope="module")
def other_org(make_org):
    return make_org()


async def create_rule(client, org, **fields):
    body = {"name": "Rule", "event_types": ["overspeed"], "channels": ["in_app"], **fields}
    response = await client.post(
        "/api/v1/alert-rules", headers=org.headers("dispatcher"), json=body
    )
    assert response.status_code == 201, response.text
    return response.json()


async def test_event_becomes_alert_and_reaches_the_live_channel(notification, org, other_org):
    client, _app, redis = notification
    rule = await create_rule(client, org, event_types=["overspeed", "geofence_enter"])
    async with redis.pubsub() as pubsub:
        await pubsub.subscribe(live_channel(org.org_id))
        event = make_event(org.org_id)
        await publish(redis, event, make_event(other_org.org_id))
        message = await eventually(
            lambda: pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2)
        )
    pushed = json.loads(message["data"])
    assert pushed["type"] == "alert"
    assert pushed["data"]["event_id"] == event["id"]
    assert pushed["data"]["rule_id"] == rule["id"]
    assert pushed["data"]["severity"] == "warning"

    listed = (await client.get("/api/v1/alerts", headers=org.headers("viewer"))).json()
    assert listed["total"] == 1
    alert = listed["items"][0]
    assert alert["status"] == "open"
    assert alert["position"]["speed_kph"] == 97.0
    detail = (await client.get(f"/api/v1/alerts/{alert['id']}", headers=org.headers())).json()
    assert detail["deliveries"][0]["channel"] == "in_app"

    # Another org sees nothing of it.
    theirs = other_org.headers()
    assert (await client.get("/api/v1/alerts", headers=theirs)).json()["total"] == 0
    assert_problem(await client.get(f"/api/v1/alerts/{alert['id']}", headers=theirs), 404)
    assert_problem(await client.post(f"/api/v1/alerts/{alert['id']}/ack", headers=theirs), 404)
    assert_problem(await client.post(f"/api/v1/alerts/{alert['id']}/resolve", headers=theirs), 404)
    assert_problem(
        await client.post(f"/api/v1/alerts/{alert['id']}/ack", headers=org.headers("viewer")), 403
    )

    acked = await client.post(
        f"/api/v1/alerts/{alert['id']}/ack", headers=org.headers("dispatcher")
    )
    assert acked.status_code == 200
    assert acked.json()["status"] == "acknowledged"
    assert acked.json()["acknowledged_by"] == org.user_ids["dispatcher"]
    assert acked.json()["acknowledged_at"]
    assert_problem(
        await client.post(f"/api/v1/alerts/{alert['id']}/ack", headers=org.headers()), 409
    )
    resolved = await client.post(f"/api/v1/alerts/{alert['id']}/resolve", headers=org.headers())
    assert resolved.json()["status"] == "resolved"
    assert resolved.json()["resolved_by"] == org.user_ids["admin"]
    assert_problem(
        await client.post(f"/api/v1/alerts/{alert['id']}/resolve", headers=org.headers()), 409
    )


async def test_filters_and_pagination(notification, make_org):
    client, app, redis = notification
    org = make_org()
    await create_rule(client, org, event_types=["overspeed", "low_battery"], cooldown_s=0)
    vehicle = uuid.uuid4()
    base = datetime(2026, 11, 1, tzinfo=UTC)
    await publish(
        redis,
        *(
            make_event(org.org_id, vehicle_id=vehicle, ts=base + timedelta(hours=i))
            for i in range(5)
        ),
        make_event(org.org_id, "low_battery", ts=base, details={"battery_pct": 12}),
    )
    await eventually(lambda: _count(app, org.org_id, 6))
    h = org.headers("viewer")
    get = lambda q: client.get(f"/api/v1/alerts?{q}", headers=h)  # noqa: E731
    assert (await get("type=low_battery")).json()["total"] == 1
    assert (await get(f"vehicle_id={vehicle}")).json()["total"] == 5
    page = (await get(f"vehicle_id={vehicle}&limit=2&offset=1")).json()
    assert page["total"] == 5
    assert [a["occurred_at"][:13] for a in page["items"]] == ["2026-11-01T03", "2026-11-01T02"]
    window = "from=2026-11-01T01:00:00Z&to=2026-11-01T03:00:00Z"
    assert (await get(window)).json()["total"] == 2
    assert (await get("status=open")).json()["total"] == 6
    assert (await get("status=resolved")).json()["total"] == 0
    for bad in (
        "status=bogus",
        "type=explosion",
        "vehicle_id=nope",
        "from=2026-11-01T01:00:00",
        "from=yesterday",
        "from=2026-11-02T00:00:00Z&to=2026-11-01T00:00:00Z",
        "limit=0",
        "limit=501",
        "offset=-3",
    ):
        assert_problem(await get(bad), 422)
    assert_problem(await client.get("/api/v1/alerts/not-a-uuid", headers=h), 422)
    assert_problem(
        await client.post(f"/api/v1/alerts/{uuid.uuid4()}/ack", headers=org.headers()), 404
    )
    assert_problem(await client.get("/api/v1/alerts"), 401)


async def _count(app, org_id, expected):
    return len(await alerts_of(app, org_id)) == expected


async def test_redelivered_event_raises_one_alert(notification, make_org):
    client, app, redis = notification
    org = make_org()
    await create_rule(client, org, cooldown_s=0)
    event = make_event(org.org_id)
    await publish(redis, event, event, event)
    marker = make_event(org.org_id)
    await publish(redis, marker)
    await eventually(lambda: alerts_of(app, org.org_id, event_id=uuid.UUID(marker["id"])))
    assert len(await alerts_of(app, org.org_id, event_id=uuid.UUID(event["id"]))) == 1


async def test_malformed_entries_do_not_stop_the_consumer(notification, make_org):
    client, app, redis = notification
    org = make_org()
    await create_rule(client, org, cooldown_s=0)
    from fleet_common.redis import EVENTS_STREAM

    for fields in (
        {"event": "not json"},
        {"event": json.dumps({"type": "overspeed"})},
        {"event": json.dumps({**make_event(org.org_id), "org_id": "x"})},
        {"event": json.dumps({**make_event(org.org_id), "type": "explosion"})},
        {"event": json.dumps({**make_event(org.org_id), "ts": "2026-11-01T00:00:00"})},
        {"other": "field"},
        {"event": b"\xff\xfe"},
    ):
        await redis.xadd(EVENTS_STREAM, fields)
    good = make_event(org.org_id)
    await publish(redis, good)
    await eventually(lambda: alerts_of(app, org.org_id))
    assert len(await alerts_of(app, org.org_id)) == 1


async def test_cooldown_per_rule_and_vehicle(notification, make_org):
    client, app, redis = notification
    org = make_org()
    await create_rule(client, org, cooldown_s=600)
    car, van = uuid.uuid4(), uuid.uuid4()
    t = datetime(2026, 11, 5, 8, tzinfo=UTC)
    await publish(
        redis,
        make_event(org.org_id, vehicle_id=car, ts=t),
        make_event(org.org_id, vehicle_id=car, ts=t + timedelta(minutes=1)),
        make_event(org.org_id, vehicle_id=van, ts=t + timedelta(minutes=2)),
        make_event(org.org_id, vehicle_id=car, ts=t + timedelta(minutes=9)),
        make_event(org.org_id, vehicle_id=car, ts=t + timedelta(minutes=11)),
    )
    marker_rule = await create_rule(client, org, event_types=["idle"], cooldown_s=0)
    marker = make_event(org.org_id, "idle")
    await publish(redis, marker)
    await eventually(lambda: alerts_of(app, org.org_id, type="idle"))
    alerts = await alerts_of(app, org.org_id, type="overspeed")
    assert sorted((a.vehicle_id == car, a.occurred_at) for a in alerts) == [
        (False, t + timedelta(minutes=2)),
        (True, t),
        (True, t + timedelta(minutes=11)),
    ]
    assert marker_rule["cooldown_s"] == 0


async def test_active_hours_in_the_rules_timezone(notification, make_org):
    client, app, redis = notification
    org = make_org()
    await create_rule(
        client,
        org,
        event_types=["idle"],
        cooldown_s=0,
        active_hours={"start": "09:00", "end": "17:00", "days": [0, 1, 2, 3, 4]},
        timezone="Europe/Berlin",
    )
    await create_rule(
        client,
        org,
        name="Night",
        event_types=["device_offline"],
        cooldown_s=0,
        active_hours={"start": "22:00", "end": "06:00", "days": [4]},
        timezone="Asia/Ho_Chi_Minh",
    )
    monday_10_berlin = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)  # 10:00 CET
    events = {
        "mon-10": make_event(org.org_id, "idle", ts=monday_10_berlin),
        "mon-20": make_event(org.org_id, "idle", ts=monday_10_berlin + timedelta(hours=10)),
        "sat-10": make_event(org.org_id, "idle", ts=monday_10_berlin - timedelta(days=2)),
        # Friday 23:00 and Saturday 02:00 in Saigon are Friday's night; Saturday 23:00 is not.
        "fri-23": make_event(
            org.org_id, "device_offline", ts=datetime(2026, 11, 27, 16, tzinfo=UTC)
        ),
        "sat-02": make_event(
            org.org_id, "device_offline", ts=datetime(2026, 11, 27, 19, tzinfo=UTC)
        ),
        "sat-23": make_event(
            org.org_id, "device_offline", ts=datetime(2026, 11, 28, 16, tzinfo=UTC)
        ),
    }
    await publish(redis, *events.values())
    await create_rule(client, org, name="marker", event_types=["low_battery"], cooldown_s=0)
    await publish(redis, make_event(org.org_id, "low_battery"))
    await eventually(lambda: alerts_of(app, org.org_id, type="low_battery"))
    raised = {str(a.event_id) for a in await alerts_of(app, org.org_id)}
    assert {k for k, e in events.items() if e["id"] in raised} == {"mon-10", "fri-23", "sat-02"}


async def test_rule_filters_by_vehicle_and_geofence(notification, make_org):
    client, app, redis = notification
    org = make_org()
    car, fence = uuid.uuid4(), uuid.uuid4()
    await create_rule(
        client,
        org,
        event_types=["geofence_enter"],
        vehicle_ids=[str(car)],
        geofence_ids=[str(fence)],
        cooldown_s=0,
    )
    hit = make_event(
        org.org_id, "geofence_enter", vehicle_id=car, details={"geofence_id": str(fence)}
    )
    await publish(
        redis,
        make_event(org.org_id, "geofence_enter", details={"geofence_id": str(fence)}),
        make_event(
            org.org_id, "geofence_enter", vehicle_id=car, details={"geofence_id": str(uuid.uuid4())}
        ),
        make_event(org.org_id, "geofence_enter", vehicle_id=car, details={}),
        hit,
    )
    await eventually(lambda: alerts_of(app, org.org_id))
    await asyncio.sleep(0.3)
    assert [str(a.event_id) for a in await alerts_of(app, org.org_id)] == [hit["id"]]


async def test_deliveries_are_recorded_per_channel(notification, make_org):
    client, app, redis = notification
    org = make_org()
    await create_rule(
        client,
        org,
        channels=["in_app", "email"],
        cooldown_s=0,
        recipients={"emails": ["ops@example.com"]},
    )
    await publish(redis, make_event(org.org_id))
    [alert] = await eventually(lambda: alerts_of(app, org.org_id))

    async def settled():
        async with app.state.sessionmaker() as session:
            rows = list(
                await session.scalars(select(Delivery).where(Delivery.alert_id == alert.id))
            )
        return rows if rows and all(d.status != "pending" for d in rows) else None

    rows = await eventually(settled)
    assert {(d.channel, d.status, d.attempts) for d in rows} == {
        ("in_app", "delivered", 1),
        ("email", "delivered", 1),
    }
    async with app.state.sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(Delivery)) >= 2


async def test_rules_target_vehicle_groups(notification, make_org):
    client, app, redis = notification
    org, other = make_org(), make_org()
    north = await create_rule(
        client, org, name="North", vehicle_groups=[" North ", "North", "East"], cooldown_s=0
    )
    assert north["vehicle_groups"] == ["North", "East"]
    named = uuid.uuid4()
    either = await create_rule(
        client, org, name="Either", vehicle_ids=[str(named)], vehicle_groups=["South"], cooldown_s=0
    )
    everyone = await create_rule(client, org, name="All", cooldown_s=0)
    # Another org's rule on the same group name never sees this org's events.
    await create_rule(client, other, name="Theirs", vehicle_groups=["North"], cooldown_s=0)
    events = {
        "north": make_event(org.org_id, vehicle_group="North"),
        "east": make_event(org.org_id, vehicle_group="East"),
        "south": make_event(org.org_id, vehicle_group="South"),
        "named": make_event(org.org_id, vehicle_id=named),
        "ungrouped": make_event(org.org_id),
        "north-lower": make_event(org.org_id, vehicle_group="north"),
    }
    await publish(redis, *events.values())
    await eventually(lambda: _count(app, org.org_id, 10))
    await asyncio.sleep(0.3)
    raised = {
        (rule_name, key)
        for a in await alerts_of(app, org.org_id)
        for key, e in events.items()
        if e["id"] == str(a.event_id)
        for rule_name in [a.rule_name]
    }
    assert raised == {
        ("North", "north"),
        ("North", "east"),
        ("Either", "south"),
        ("Either", "named"),
        *{("All", key) for key in events},
    }
    assert await alerts_of(app, other.org_id) == []

    # Alerts keep the group and filter by it; rules filter by the group they name.
    headers = org.headers("viewer")
    listed = await client.get("/api/v1/alerts", params={"vehicle_group": "North"}, headers=headers)
    assert listed.status_code == 200
    assert {(a["rule_name"], a["vehicle_group"]) for a in listed.json()["items"]} == {
        ("North", "North"),
        ("All", "North"),
    }
    rules = await client.get(
        "/api/v1/alert-rules", params={"vehicle_group": "South"}, headers=headers
    )
    assert [r["id"] for r in rules.json()["items"]] == [either["id"]]
    by_vehicle = await client.get(
        "/api/v1/alert-rules", params={"vehicle_id": str(named)}, headers=headers
    )
    assert [r["id"] for r in by_vehicle.json()["items"]] == [either["id"]]

    # Changing the groups of a rule; clearing them makes it match every vehicle.
    url = f"/api/v1/alert-rules/{north['id']}"
    patched = await client.patch(url, json={"vehicle_groups": []}, headers=org.headers())
    assert patched.status_code == 200
    assert patched.json()["vehicle_groups"] == []
    assert everyone["vehicle_groups"] == []

    for bad in ([""], ["x" * 61], ["ok"] * 101, "North", [1]):
        response = await client.patch(url, json={"vehicle_groups": bad}, headers=org.headers())
        assert_problem(response, 422)
    for params in ({"vehicle_group": ""}, {"vehicle_group": "x" * 61}):
        assert_problem(await client.get("/api/v1/alerts", params=params, headers=headers), 422)
        assert_problem(await client.get("/api/v1/alert-rules", params=params, headers=headers), 422)
    # A viewer cannot write a rule's groups; another org's rule is not found.
    assert_problem(await client.patch(url, json={"vehicle_groups": ["A"]}, headers=headers), 403)
    assert_problem(
        await client.patch(url, json={"vehicle_groups": ["A"]}, headers=other.headers()), 404
    )


async def test_cooldown_holds_back_only_repeats_of_the_same_thing(notification, make_org):
    """One rule for enter and exit, a 300 s cooldown: an enter and the exit after it are two
    alerts; the same enter again is one; another geofence or event type is its own subject."""
    client, app, redis = notification
    org = make_org()
    await create_rule(
        client, org, event_types=["geofence_enter", "geofence_exit", "overspeed"], cooldown_s=300
    )
    car = uuid.uuid4()
    depot, yard = str(uuid.uuid4()), str(uuid.uuid4())
    t = datetime(2026, 11, 6, 8, tzinfo=UTC)

    def at(type_, minutes, geofence=None):
        details = {"geofence_id": geofence} if geofence else {"max_speed_kph": 90.0}
        return make_event(
            org.org_id, type_, vehicle_id=car, ts=t + timedelta(minutes=minutes), details=details
        )

    await publish(
        redis,
        at("geofence_enter", 0, depot),
        at("geofence_exit", 1, depot),  # a different event: alerted
        at("geofence_enter", 2, depot),  # a repeat of the first within 300 s: held back
        at("geofence_enter", 3, yard),  # another geofence: alerted
        at("overspeed", 3.5),  # another event type: alerted
        at("geofence_enter", 6, depot),  # 6 min after the first: alerted again
    )
    marker = make_event(org.org_id, "overspeed", vehicle_id=car, ts=t + timedelta(minutes=20))
    await publish(redis, marker)
    await eventually(lambda: alerts_of(app, org.org_id, event_id=uuid.UUID(marker["id"])))
    alerts = await alerts_of(app, org.org_id)
    got = sorted(
        ((a.occurred_at - t).total_seconds() / 60, a.type, a.details.get("geofence_id"))
        for a in alerts
    )
    assert got == [
        (0, "geofence_enter", depot),
        (1, "geofence_exit", depot),
        (3, "geofence_enter", yard),
        (3.5, "overspeed", None),
        (6, "geofence_enter", depot),
        (20, "overspeed", None),
    ]


async def test_overspeed_alert_is_completed_when_its_episode_ends(notification, make_org):
    client, app, redis = notification
    org = make_org()
    await create_rule(client, org, event_types=["overspeed"], cooldown_s=0)
    car = uuid.uuid4()
    t = datetime(2026, 11, 7, 8, tzinfo=UTC)
    episode, unalerted = str(uuid.uuid4()), str(uuid.uuid4())
    started = make_event(
        org.org_id,
        vehicle_id=car,
        ts=t + timedelta(seconds=10),
        details={
            "phase": "started",
            "episode_id": episode,
            "speed_kph": 92.0,
            "max_speed_kph": 92.0,
            "limit_kph": 50,
            "started_at": t.isoformat(),
            "duration_s": 10.0,
        },
    )
    await publish(redis, started)
    [alert] = await eventually(lambda: alerts_of(app, org.org_id))
    assert alert.details["speed_kph"] == 92.0
    assert alert.details["limit_kph"] == 50

    def ended(episode_id):
        return make_event(
            org.org_id,
            vehicle_id=car,
            ts=t + timedelta(seconds=40),
            details={
                "phase": "ended",
                "episode_id": episode_id,
                "max_speed_kph": 118.0,
                "limit_kph": 50,
                "started_at": t.isoformat(),
                "ended_at": (t + timedelta(seconds=40)).isoformat(),
                "duration_s": 40.0,
                "ended_by": "slowed",
            },
        )

    # An episode that ends without having been alerted (under the minimum) raises nothing.
    await publish(redis, ended(unalerted), ended(episode))

    async def completed():
        [row] = await alerts_of(app, org.org_id)
        return row if row.details.get("phase") == "ended" else None

    row = await eventually(completed)
    assert row.id == alert.id
    assert row.details["max_speed_kph"] == 118.0
    assert row.details["duration_s"] == 40.0
    assert row.details["speed_kph"] == 92.0  # the speed when it was alerted stays
    async with app.state.sessionmaker() as session:
        deliveries = await session.scalar(
            select(func.count()).select_from(Delivery).where(Delivery.alert_id == alert.id)
        )
    assert deliveries == 1
