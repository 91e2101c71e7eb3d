"""The dispatcher dashboard in a real headless Chromium against the whole platform.

Selectors are the test ids the app documents in frontend/README.md. Devices publish over
MQTT with their own broker credentials; nothing here reaches the services except through
the page (or, to set an org up, the public API).
"""

import asyncio
import uuid
from pathlib import Path

import pytest

from .conftest import (
    PASSWORD,
    colour_shares,
    eventually,
    offline_context,
    screenshot,
    sign_in,
)

# A square in Ho Chi Minh City and the vehicles' start points west of it.
DEPOT = {
    "type": "Polygon",
    "coordinates": [
        [[106.70, 10.77], [106.71, 10.77], [106.71, 10.78], [106.70, 10.78], [106.70, 10.77]]
    ],
}
STARTS = [(106.690, 10.772), (106.690, 10.775), (106.690, 10.778)]


async def rows(page) -> dict[str, str]:
    """vehicle id → the row's text, for every row the list shows."""
    found = {}
    for row in await page.get_by_test_id("vehicle-row").all():
        found[await row.get_attribute("data-vehicle-id")] = await row.inner_text()
    return found


async def map_png(page) -> bytes:
    return await page.get_by_test_id("map").screenshot()


async def test_register_sign_in_and_watch_vehicles_appear_and_move(page, e2e_gateway, make_org):
    email = f"dispatch-{uuid.uuid4().hex[:8]}@example.com"
    await page.goto(e2e_gateway.url + "/register")
    await page.get_by_test_id("register-org-name").fill("E2E Logistics")
    await page.get_by_test_id("register-full-name").fill("Dana Dispatcher")
    await page.get_by_test_id("register-email").fill(email)
    await page.get_by_test_id("register-password").fill(PASSWORD)
    await page.get_by_test_id("register-submit").click()
    await page.get_by_test_id("live-status").wait_for()
    await screenshot(page, "registered")

    org = make_org(email)  # the org the page registered, signed in through the API
    devices = [org.add_vehicle(f"Truck {n}", lon, lat) for n, (lon, lat) in enumerate(STARTS)]
    for device in devices:
        org.publish(device)
    # Signed out and in again: the session survives a reload, and the sign-in form works.
    await page.get_by_test_id("sign-out").click()
    await sign_in(page, e2e_gateway, email)

    async def all_listed():
        listed = await rows(page)
        return listed if set(listed) == {d.vehicle_id for d in devices} else None

    await eventually(all_listed)
    assert await page.get_by_test_id("live-status").get_attribute("data-state") == "live"

    async def on_the_map():
        return await page.evaluate("window.__fleet.vehiclesDrawn") == len(devices)

    await eventually(on_the_map)
    await eventually(lambda: _drawn(page))
    before = await map_png(page)
    listed_before = await all_listed()
    await screenshot(page, "vehicles-drawn")

    org.drive(step_deg=0.002)
    try:
        # The list updates (each fix's time and speed) and the map redraws as they move.
        async def moved():
            listed = await all_listed()
            changed = listed and all(listed[k] != listed_before[k] for k in listed_before)
            return changed and await map_png(page) != before

        await eventually(moved)
    finally:
        org.park()
    await screenshot(page, "vehicles-moved")


async def _drawn(page) -> bool:
    """The map canvas shows more than a blank or single-colour area."""
    return len(await colour_shares(page, await map_png(page))) >= 3


async def _land_and_sea(page) -> bool:
    """At least two colours each fill a good part of the map: land and water."""
    shares = await colour_shares(page, await map_png(page))
    return len([s for s in shares if s >= 0.05]) >= 2


async def test_select_a_vehicle_open_its_history_replay_it_and_export_gpx(
    page, e2e_gateway, make_org
):
    org = make_org()
    device = org.add_vehicle("Replay 1", 106.690, 10.775)
    for n in range(6):
        device.lon += 0.001
        org.publish(device, speed_kph=20 + 10 * n)
        await asyncio.sleep(1.1)  # a second apart: six distinct fixes
    await sign_in(page, e2e_gateway, org.email)
    await page.locator(f'[data-testid=vehicle-row][data-vehicle-id="{device.vehicle_id}"]').click()
    await page.get_by_test_id("vehicle-panel").wait_for()
    await page.get_by_test_id("open-history").click()
    controls = page.get_by_test_id("replay-controls")

    async def loaded():
        return int(await controls.get_attribute("data-points") or 0) >= 6

    await eventually(loaded)
    await screenshot(page, "history")
    time_shown = page.get_by_test_id("replay-time")
    first = await time_shown.inner_text()
    await page.get_by_test_id("replay-rate").select_option("20")
    await page.get_by_test_id("replay-play").click()

    async def replayed():
        return await time_shown.inner_text() != first

    await eventually(replayed)
    await screenshot(page, "replaying")
    async with page.expect_download() as download_info:
        await page.get_by_test_id("export-gpx").click()
    download = await download_info.value
    gpx = await asyncio.to_thread(Path(await download.path()).read_text)
    assert download.suggested_filename.endswith(".gpx")
    assert "<gpx" in gpx
    assert gpx.count("<trkpt") >= 6


async def test_a_device_driving_into_a_geofence_raises_a_toast_that_can_be_acknowledged(
    page, e2e_gateway, make_org
):
    org = make_org()
    org.post(
        "/alert-rules",
        {
            "name": "Depot",
            "channels": ["in_app"],
            "cooldown_s": 0,
            "event_types": ["geofence_enter"],
        },
    )
    device = org.add_vehicle("Van 1", 106.690, 10.775)
    org.publish(device)
    await sign_in(page, e2e_gateway, org.email)
    await page.get_by_test_id("vehicle-row").first.wait_for()

    # Made through the API: drawing it on the map (terra-draw) is not driven by this test.
    org.post("/geofences", {"name": "Depot", "geometry": DEPOT})
    fences = org.api.get("/geofences", headers=org.headers).json()["items"]
    centre = _inside(fences[0]["geometry"])
    device.lon, device.lat = centre[0] + 1.0, centre[1]  # well outside it first
    org.publish(device)
    await page.goto(e2e_gateway.url + "/")
    await page.get_by_test_id("vehicle-row").first.wait_for()
    await asyncio.sleep(1.1)
    device.lon, device.lat = centre
    org.publish(device)  # into the geofence

    async def raised():
        response = org.api.get("/alerts?limit=100", headers=org.headers)
        return response.json()["items"]

    await eventually(raised)
    toast = page.get_by_test_id("alert-toast")
    await toast.first.wait_for(timeout=30_000)
    await screenshot(page, "alert-toast")
    alert_id = await toast.first.get_attribute("data-alert-id")
    await page.get_by_test_id("toast-ack").first.click()

    async def acknowledged():
        response = org.api.get("/alerts?limit=100", headers=org.headers)
        items = {a["id"]: a for a in response.json()["items"]}
        return items.get(alert_id, {}).get("status") == "acknowledged"

    await eventually(acknowledged)
    await toast.first.wait_for(state="detached")


def _inside(geometry: dict) -> tuple[float, float]:
    """A point inside a geofence's geometry (its centre)."""
    if geometry["type"] == "Circle":
        lon, lat = geometry["center"]
        return lon, lat
    ring = geometry["coordinates"][0][:-1]
    return sum(p[0] for p in ring) / len(ring), sum(p[1] for p in ring) / len(ring)


async def test_a_viewer_sees_no_edit_controls_and_never_another_orgs_vehicles(
    page, e2e_gateway, make_org
):
    org, other = make_org(), make_org()
    viewer = org.add_user("viewer")
    mine = org.add_vehicle("Ours", 106.690, 10.772)
    theirs = other.add_vehicle("Theirs", 106.691, 10.773)
    org.publish(mine)
    other.publish(theirs)
    org.post(
        "/alert-rules",
        {"name": "All", "channels": ["in_app"], "cooldown_s": 0, "event_types": ["geofence_enter"]},
    )
    org.post("/geofences", {"name": "Depot", "geometry": DEPOT})

    await sign_in(page, e2e_gateway, viewer)
    assert await page.get_by_test_id("user-menu").get_attribute("data-role") == "viewer"
    await page.get_by_test_id("vehicle-row").first.wait_for()
    # The other org keeps publishing; its vehicle must never show up.
    for _ in range(3):
        other.publish(theirs)
        org.publish(mine)
        await asyncio.sleep(1)
        assert set(await rows(page)) == {mine.vehicle_id}

    mine.lon = 106.705
    org.publish(mine)
    await page.get_by_test_id("alert-toast").first.wait_for(timeout=30_000)
    assert await page.get_by_test_id("toast-ack").count() == 0
    await page.get_by_test_id("nav-alerts").click()
    await page.get_by_test_id("alert-row").first.wait_for()
    assert await page.get_by_test_id("ack-button").count() == 0
    assert await page.get_by_test_id("ack-selected").count() == 0
    await page.goto(e2e_gateway.url + "/geofences")
    await page.get_by_test_id("geofence-row").first.wait_for()
    for control in ("geofence-form", "draw-polygon", "geofence-edit", "geofence-delete"):
        assert await page.get_by_test_id(control).count() == 0, control
    await screenshot(page, "viewer-alerts")


async def test_the_page_reconnects_after_a_gateway_restart_and_keeps_updating(
    page, e2e_gateway, make_org
):
    org = make_org()
    device = org.add_vehicle("Bus 9", 106.690, 10.775)
    org.publish(device)
    await sign_in(page, e2e_gateway, org.email)
    status = page.get_by_test_id("live-status")
    await eventually(lambda: _state_is(status, "live"))
    org.drive()
    try:
        e2e_gateway.stop()
        await eventually(lambda: _state_is(status, "reconnecting", "offline"))
        await screenshot(page, "gateway-down")
        before = await rows(page)
        e2e_gateway.run()
        await eventually(lambda: _state_is(status, "live"), timeout_s=60)

        async def updated():
            return (await rows(page)).get(device.vehicle_id) != before.get(device.vehicle_id)

        await eventually(updated)
    finally:
        org.park()
    await screenshot(page, "reconnected")


async def _state_is(status, *states: str) -> bool:
    return await status.get_attribute("data-state") in states


@pytest.mark.parametrize("style", ["none", "unreachable"])
async def test_the_map_renders_with_no_network_at_all(browser, e2e_gateway, make_org, style):
    """Only the gateway is reachable: the offline base layer is drawn, also when the
    configured map style's server cannot be reached."""
    context = await offline_context(browser, e2e_gateway)
    if style == "unreachable":
        await context.add_init_script(
            "window.__FLEET_CONFIG__ = {mapStyleUrl: 'https://tiles.example.com/style.json'}"
        )
    try:
        page = await context.new_page()
        org = make_org()
        # Ho Chi Minh City and Singapore: the map fits both, with the sea between them.
        for lon, lat in [(106.70, 10.77), (103.85, 1.29)]:
            org.publish(org.add_vehicle(f"At {lon}", lon, lat))
        await sign_in(page, e2e_gateway, org.email)
        await eventually(lambda: _land_and_sea(page))
        await screenshot(page, f"offline-map-{style}")
        blocked = context.blocked  # type: ignore[attr-defined]
        if style == "unreachable":
            assert any("tiles.example.com" in url for url in blocked)
        else:
            assert blocked == [], f"the page tried to reach {blocked}"
    finally:
        await context.close()


async def test_the_api_docs_page_works_offline(page, e2e_gateway, context):
    await page.goto(e2e_gateway.url + "/api/v1/docs")
    await page.locator(".opblock").first.wait_for()
    assert await page.locator(".opblock").count() > 20
    assert context.blocked == []  # type: ignore[attr-defined]
    await screenshot(page, "api-docs")


async def test_a_dispatcher_adds_maintenance_and_services_a_vehicle_that_is_due(
    page, e2e_gateway, make_org
):
    org = make_org()
    truck = org.add_vehicle("Truck", 106.690, 10.772, odometer_km=4900)
    org.publish(truck, odometer=5100)  # the device's own odometer: the meter now
    schedules = f"/vehicles/{truck.vehicle_id}/maintenance"
    org.post(
        schedules,
        {"name": "Oil change", "meter": "odometer_km", "interval": 5000, "next_due": 5000},
    )

    await sign_in(page, e2e_gateway, org.email)
    await page.goto(e2e_gateway.url + "/admin?tab=vehicles")
    await page.get_by_test_id("vehicle-maintenance").click()
    table = page.get_by_test_id("maintenance-schedules")

    async def oil_due():
        text = await table.inner_text()
        return "Oil change" in text and "5,100" in text and "due" in text

    await eventually(oil_due)  # the location service counted the meter the device sent
    await page.get_by_test_id("maintenance-name").fill("Engine check")
    await (
        page.get_by_test_id("maintenance-form")
        .get_by_role("combobox")
        .select_option("engine_hours")
    )
    await page.get_by_test_id("maintenance-interval").fill("250")
    await page.get_by_test_id("maintenance-form").get_by_role("button").click()
    await table.get_by_text("Engine check").wait_for()
    oil = table.get_by_role("row").filter(has_text="Oil change")
    await oil.get_by_test_id("maintenance-serviced").click()

    async def serviced():
        response = org.api.get(schedules, headers=org.headers)
        found = {s["name"]: s["next_due"] for s in response.json()["items"]}
        return found if found["Oil change"] != 5000 else None

    assert await eventually(serviced) == {"Oil change": 10100, "Engine check": 250}
    await table.get_by_text("10,100").wait_for()
    await screenshot(page, "maintenance-serviced")
