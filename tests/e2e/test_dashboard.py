"""The dispatcher dashboard in a real headless Chromium against the whole platform.

Selectors are the test ids the app documents in frontend/README.md. Devices publish over
MQTT with their own broker credentials; nothing here reaches the services except through
the page (or, to set an org up, the public API).
"""

import asyncio
import math
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

    # Past 31 days the replay is sampled hourly (each hour's ends of the six fixes); raw
    # exports stay refused there; past 366 days nothing is asked.
    await page.get_by_test_id("history-from").fill(await _local_input(page, days_ago=60))
    # To tomorrow: the input holds whole minutes, and the fixes are of this minute.
    await page.get_by_test_id("history-to").fill(await _local_input(page, days_ago=-1))
    await page.get_by_test_id("history-apply").click()
    sampled = page.get_by_test_id("history-sampled")
    await sampled.wait_for()
    assert "of 6 points shown" in await sampled.inner_text()
    await page.get_by_test_id("export-too-long").wait_for()
    assert await page.get_by_test_id("export-gpx").is_disabled()
    await screenshot(page, "history-sampled-hourly")
    await page.get_by_test_id("history-from").fill(await _local_input(page, days_ago=400))
    await page.get_by_test_id("history-apply").click()
    await page.get_by_test_id("range-too-long").wait_for()


async def _local_input(page, *, days_ago: int) -> str:
    """A `datetime-local` value `days_ago` days back, in the browser's own time zone."""
    return await page.evaluate(
        """(days) => {
            const d = new Date(Date.now() - days * 86400000);
            d.setMinutes(d.getMinutes() - d.getTimezoneOffset());
            return d.toISOString().slice(0, 16);
        }""",
        days_ago,
    )


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

    # Made through the API: drawing one with the pointer is the geofence test's.
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


# The geofence map's view comes from the URL (`#zoom/lat/lon`, MapLibre's hash), so the test
# knows where each pixel is: MapLibre's Web Mercator world is 512 px wide at zoom 0.
VIEW = (15.0, 10.775, 106.700)
EARTH_RADIUS_M = 6_371_008.8


def _world_px(zoom: float, lon: float, lat: float) -> tuple[float, float]:
    world = 512 * 2**zoom
    y = math.log(math.tan(math.pi / 4 + math.radians(lat) / 2))
    return (lon + 180) / 360 * world, (1 - y / math.pi) / 2 * world


def _to_lon_lat(view, size, x: float, y: float) -> tuple[float, float]:
    """The lon/lat at pixel (x, y) of a map of `size` (w, h) showing `view` (zoom, lat, lon)."""
    zoom, lat, lon = view
    world = 512 * 2**zoom
    cx, cy = _world_px(zoom, lon, lat)
    px, py = cx + x - size[0] / 2, cy + y - size[1] / 2
    return px / world * 360 - 180, math.degrees(
        math.atan(math.sinh(math.pi * (1 - 2 * py / world)))
    )


def _to_px(view, size, lon: float, lat: float) -> tuple[float, float]:
    zoom, view_lat, view_lon = view
    cx, cy = _world_px(zoom, view_lon, view_lat)
    px, py = _world_px(zoom, lon, lat)
    return px - cx + size[0] / 2, py - cy + size[1] / 2


def _distance_m(a, b) -> float:
    (lon1, lat1), (lon2, lat2) = (map(math.radians, a), map(math.radians, b))
    h = math.sin((lat2 - lat1) / 2) ** 2
    h += math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(h))


async def _view(page) -> tuple[float, float, float]:
    zoom, lat, lon = page.url.split("#", 1)[1].split("/")[:3]
    return float(zoom), float(lat), float(lon)


class MapPointer:
    """Real mouse input on the geofence map, at pixels of the map's own box (measured at
    each step: the form above it grows and shrinks with its hints). Few intermediate moves:
    each one re-renders terra-draw's layers, slow in software WebGL."""

    def __init__(self, page, area, size) -> None:
        self.page, self.area, self.size = page, area, size

    async def at(self, x: float, y: float) -> tuple[float, float]:
        box = await self.area.bounding_box()
        return box["x"] + x, box["y"] + y

    async def move(self, x: float, y: float) -> None:
        await self.page.mouse.move(*await self.at(x, y))

    async def click(self, x: float, y: float) -> None:
        await self.page.mouse.click(*await self.at(x, y))

    async def drag(self, start: tuple[float, float], end: tuple[float, float]) -> None:
        await self.move(*start)
        await self.page.mouse.down()
        await self.page.mouse.move(*await self.at(*end), steps=3)
        await self.page.mouse.up()


async def test_draw_a_circle_and_a_polygon_on_the_map_then_edit_their_shapes(
    page, e2e_gateway, make_org
):
    org = make_org()
    await sign_in(page, e2e_gateway, org.email)
    await page.goto(e2e_gateway.url + "/geofences#{:g}/{:g}/{:g}".format(*VIEW))
    area = page.get_by_test_id("geofence-map")
    await area.scroll_into_view_if_needed()
    draw_circle = page.get_by_test_id("draw-circle")
    await eventually(draw_circle.is_enabled)  # the map has loaded and terra-draw started
    box = await area.bounding_box()
    pointer = MapPointer(page, area, (box["width"], box["height"]))
    w, h = pointer.size

    def fences() -> dict[str, dict]:
        items = org.api.get("/geofences", headers=org.headers).json()["items"]
        return {g["name"]: g for g in items}

    async def save(name: str) -> None:
        await page.get_by_test_id("geofence-name").fill(name)
        await page.get_by_test_id("geofence-save").click()
        await page.get_by_test_id("geofence-row").filter(has_text=name).wait_for()

    # A circle: a click at its centre, a move to its edge and a click there.
    centre_px, radius_px = (w * 0.3, h * 0.5), 90
    await draw_circle.click()
    await pointer.click(*centre_px)
    await pointer.move(centre_px[0] + radius_px, centre_px[1])
    await pointer.click(centre_px[0] + radius_px, centre_px[1])
    await save("Drawn circle")
    circle = fences()["Drawn circle"]["geometry"]
    centre = _to_lon_lat(VIEW, pointer.size, *centre_px)
    radius_m = _distance_m(
        centre, _to_lon_lat(VIEW, pointer.size, centre_px[0] + radius_px, h * 0.5)
    )
    assert circle["type"] == "Circle"
    assert _distance_m(circle["center"], centre) < 0.03 * radius_m, (circle, centre)
    assert abs(circle["radius_m"] - radius_m) < 0.03 * radius_m, (circle, radius_m)

    # A polygon: four clicks, then one on the first point closes it.
    corners_px = [
        (w * 0.7 + dx, h * 0.5 + dy) for dx, dy in [(-60, -60), (60, -60), (60, 60), (-60, 60)]
    ]
    await page.get_by_test_id("draw-polygon").click()
    for x, y in [*corners_px, corners_px[0]]:
        await pointer.click(x, y)
    await save("Drawn square")
    ring = fences()["Drawn square"]["geometry"]["coordinates"][0]
    corners = [_to_lon_lat(VIEW, pointer.size, x, y) for x, y in corners_px]
    assert len(ring) == 5
    assert ring[0] == ring[-1]
    for corner in corners:
        assert min(_distance_m(corner, v) for v in ring) < 5, (corner, ring)
    await screenshot(page, "geofences-drawn")

    async def edit(name: str, centre: tuple[float, float]):
        """Edit `name`: the map fits it; its view once the URL shows `centre` in the middle."""
        await (
            page.get_by_test_id("geofence-row")
            .filter(has_text=name)
            .get_by_test_id("geofence-edit")
            .click()
        )

        async def fitted():
            view = await _view(page)
            return view if _distance_m((view[2], view[1]), centre) < 5 else None

        return await eventually(fitted)

    # The circle resized: its east point dragged 50 px further east, about a fixed centre.
    view = await edit("Drawn circle", circle["center"])
    east = (
        circle["center"][0]
        + math.degrees(
            circle["radius_m"] / (EARTH_RADIUS_M * math.cos(math.radians(circle["center"][1])))
        ),
        circle["center"][1],
    )
    east_px = _to_px(view, pointer.size, *east)
    centre_px = _to_px(view, pointer.size, *circle["center"])
    await pointer.drag(east_px, (east_px[0] + 50, east_px[1]))
    await page.get_by_test_id("geofence-save").click()

    async def resized():
        geometry = fences()["Drawn circle"]["geometry"]
        return geometry if geometry["radius_m"] != circle["radius_m"] else None

    edited = await eventually(resized)
    scale = (east_px[0] + 50 - centre_px[0]) / (east_px[0] - centre_px[0])
    assert abs(edited["radius_m"] - circle["radius_m"] * scale) < 0.03 * circle["radius_m"] * scale
    assert _distance_m(edited["center"], circle["center"]) < 2, (edited, circle)

    # The square's first corner dragged 40 px right and down; the other corners stay.
    view = await edit("Drawn square", _centre(ring))
    moved_px = _to_px(view, pointer.size, *ring[0])
    target_px = (moved_px[0] + 40, moved_px[1] + 40)
    await pointer.drag(moved_px, target_px)
    await page.get_by_test_id("geofence-save").click()

    async def reshaped():
        coordinates = fences()["Drawn square"]["geometry"]["coordinates"][0]
        return coordinates if coordinates != ring else None

    new_ring = await eventually(reshaped)
    target = _to_lon_lat(view, pointer.size, *target_px)
    assert min(_distance_m(target, v) for v in new_ring) < 3, (target, new_ring)
    for kept in ring[1:-1]:
        assert min(_distance_m(kept, v) for v in new_ring) < 0.5, (kept, new_ring)
    assert len(new_ring) == 5
    await screenshot(page, "geofences-edited")


async def test_an_admin_edits_a_driver_in_place_and_a_dispatcher_picks_a_rules_recipient(
    page, e2e_gateway, make_org
):
    org = make_org()
    dispatcher = org.add_user("dispatcher")
    viewer = org.add_user("viewer")
    driver = org.post("/drivers", {"name": "Trần Thị Lan", "licence_number": "B2-0001"})
    await sign_in(page, e2e_gateway, org.email)

    await page.goto(e2e_gateway.url + "/admin?tab=drivers")
    row = page.locator(f'[data-testid=driver-row][data-driver-id="{driver["id"]}"]')
    await row.get_by_test_id("driver-edit").click()
    await row.get_by_test_id("driver-name").fill("Trần Thị Mai")
    await row.get_by_test_id("driver-phone").fill("+84 90 123 4567")
    await row.get_by_test_id("driver-save").click()
    await row.get_by_test_id("driver-edit").wait_for()
    saved = org.api.get(f"/drivers/{driver['id']}", headers=org.headers).json()
    assert (saved["name"], saved["phone"], saved["licence_number"]) == (
        "Trần Thị Mai",
        "+84 90 123 4567",
        "B2-0001",
    )

    # A dispatcher may not list users, but picks recipients from the org's directory.
    await page.get_by_test_id("sign-out").click()
    await sign_in(page, e2e_gateway, dispatcher)
    await page.goto(e2e_gateway.url + "/alerts/rules")
    await page.get_by_test_id("rule-name").fill("Night shift")
    await page.get_by_test_id("rule-event-geofence_exit").check()
    await page.get_by_test_id("recipient-search").fill(viewer[:12])
    await page.get_by_test_id("recipient-option").check()
    await page.get_by_test_id("rule-save").click()
    await page.get_by_test_id("rule-row").filter(has_text="Night shift").wait_for()
    users = org.api.get("/users", headers=org.headers).json()["items"]
    viewer_id = next(u["id"] for u in users if u["email"] == viewer)
    rules = org.api.get("/alert-rules", headers=org.headers).json()["items"]
    assert [r["recipients"]["user_ids"] for r in rules] == [[viewer_id]]


def _centre(ring: list) -> tuple[float, float]:
    """The middle of a ring's bounding box (where the map centres when it fits it)."""
    lons, lats = [p[0] for p in ring], [p[1] for p in ring]
    return (min(lons) + max(lons)) / 2, (min(lats) + max(lats)) / 2


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


async def test_a_dispatcher_adds_maintenance_services_a_vehicle_that_is_due_and_edits_one(
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
    await page.get_by_test_id("maintenance-save").click()
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

    # Edited in the same form: its meter fixed, only what changed sent.
    engine = table.get_by_role("row").filter(has_text="Engine check")
    await engine.get_by_test_id("maintenance-edit").click()
    assert await page.get_by_test_id("maintenance-meter").is_disabled()
    assert await page.get_by_test_id("maintenance-next-due").input_value() == "250"
    await page.get_by_test_id("maintenance-name").fill("Engine service")
    await page.get_by_test_id("maintenance-interval").fill("300")
    await page.get_by_test_id("maintenance-next-due").fill("280")
    await page.get_by_test_id("maintenance-save").click()
    await table.get_by_text("Engine service").wait_for()
    await page.get_by_test_id("maintenance-cancel").wait_for(state="detached")
    found = {
        s["name"]: (s["meter"], s["interval"], s["next_due"])
        for s in org.api.get(schedules, headers=org.headers).json()["items"]
    }
    assert found == {
        "Oil change": ("odometer_km", 5000, 10100),
        "Engine service": ("engine_hours", 300, 280),
    }
    await screenshot(page, "maintenance-edited")
