"""Events the vehicle service raises itself: `driver_changed` on `fleet:events`."""

import json

from fleet_common.redis import EVENTS_STREAM

from .test_api import make_driver, make_vehicle


async def driver_changes(redis, vehicle_id: str) -> list[dict]:
    found = []
    for _id, fields in await redis.xrange(EVENTS_STREAM):
        event = json.loads(fields[b"event"])
        if event["type"] == "driver_changed" and event["vehicle_id"] == vehicle_id:
            found.append(event)
    return found


async def test_driver_changed_when_the_assignment_changes(client, org_a, redis):
    vehicle = await make_vehicle(client, org_a, group="South")
    ana = await make_driver(client, org_a)
    bao = await make_driver(client, org_a)
    url = f"/api/v1/vehicles/{vehicle['id']}/driver"
    headers = org_a.headers("dispatcher")
    for driver_id in (ana["id"], ana["id"], bao["id"], None):
        response = await client.put(url, json={"driver_id": driver_id}, headers=headers)
        assert response.status_code == 200, response.text
    events = await driver_changes(redis, vehicle["id"])
    # Putting the same driver in again changes nothing.
    assert [(e["details"]["previous_driver_id"], e["details"]["driver_id"]) for e in events] == [
        (None, ana["id"]),
        (ana["id"], bao["id"]),
        (bao["id"], None),
    ]
    assert events[0]["org_id"] == org_a.org_id
    assert events[0]["vehicle_group"] == "South"
    assert events[0]["details"]["changed_by"] == org_a.user_ids["dispatcher"]
    assert events[0]["position"] is None
